"""The Lanner target of the GPU the GPU tests run on."""

from __future__ import annotations


def gpu_target() -> str:
    """The Lanner target of this machine's GPU (``cuda-smXY``: a cubin runs only on its own SM generation),
    or ``cuda`` where Lanner names no target for it."""
    from lanner.backends.tvm_backend import import_toolchain
    from lanner.targets import TARGETS

    name = "cuda-sm" + import_toolchain().cuda(0).compute_version.replace(".", "")
    return name if name in TARGETS else "cuda"
