"""The ``lanner`` command line. Each subcommand lives in its own module under
``lanner.cli`` and exposes ``add_parser(subparsers)``, which registers itself and
sets ``func(args) -> int``."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Iterator

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
    with _sigterm_as_exit():
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt:  # Ctrl-C: what a command had running is cleaned up on the way out
            print(f"lanner {args.command}: interrupted", file=sys.stderr)
            return 130
        except (ValueError, TypeError, OSError, ImportError) as exc:  # OSError: missing files, permissions
            # User errors: one clear line, non-zero exit, no traceback.
            print(f"lanner {args.command}: error: {exc}", file=sys.stderr)
            return 2


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """While a command runs, SIGTERM (``kill``, ``timeout``, a service manager stopping it) exits through
    ``SystemExit(143)`` instead of killing the process on the spot, so ``finally`` blocks and ``with``
    exits run: temporary folders are removed and partial outputs are not left behind. Only in the main
    thread (where Python delivers signals); the previous handler is restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
