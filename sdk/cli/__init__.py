"""The ``lanner`` command line. Each subcommand lives in its own module under
``lanner.cli`` and exposes ``add_parser(subparsers)``, which registers itself and
sets ``func(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import sys

# One line per subcommand module; the order is the order of ``lanner --help``.
SUBCOMMANDS: tuple[str, ...] = (
    "info",
    "detect",
    "track",
    "watch",
    "recognition",
    "compile",
    "inspect_cmd",
    "bench",
    "models",
    "distill",
)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="lanner", description="Lanner edge-vision SDK")
    parser.add_argument("--version", action="version", version=f"lanner {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, OSError, ImportError) as exc:  # OSError: missing files, permissions
        # User errors: one clear line, non-zero exit, no traceback.
        print(f"lanner {args.command}: error: {exc}", file=sys.stderr)
        return 2
