"""``lanner info``: what this install can do (native build, CUDA, backends)."""

from __future__ import annotations

import argparse
import platform


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show the build, devices and installed backends")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import _C, __version__, ops
    from ..names import DISTRIBUTIONS, package_versions

    print(f"lanner {__version__} (python {platform.python_version()}, {platform.machine()})")
    print(
        f"  native ops: built with CUDA={bool(_C.built_with_cuda)}, CUDA devices usable={ops.has_cuda()}, "
        f"tracker cuFFT batch path={bool(_C.built_with_cufft)}"
    )
    for dist, version in package_versions(DISTRIBUTIONS).items():
        print(f"  {dist}: {version or 'not installed'}")
    return 0
