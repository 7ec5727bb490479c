"""Build (compile) and open the registry's models for this host.

Each shipped ONNX is compiled once by ``lanner.compile.compile_model`` into
:func:`lanner.models.package_dir` (a verified package with its manifest and checksums) and
opened with ``lanner.load``. Building takes about a second per net and prints one line to
stderr; later runs only load the cached package.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import get_spec, onnx_path, package_dir, resolve

__all__ = ["build_package", "open_net"]

_lock = threading.Lock()
# P-Net has dynamic height/width: compile-time fidelity/latency samples use this shape.
_SAMPLE_SHAPES = {"mtcnn-pnet": {"image": [1, 3, 120, 160]}}


def _note(message: str) -> None:
    print(f"lanner: {message}", file=sys.stderr, flush=True)


def _host_target() -> str:
    from ..targets import host_machine

    machine = host_machine()
    if machine != "x86_64":
        raise ValueError(f"building the face detector for this host ({machine}) is not supported yet; "
                         "expected an x86_64 CPU")
    return "x86"


def build_package(name: str, backend: str = "auto", precision: str = "auto", *, force: bool = False,
                  quiet: bool = False) -> Path:
    """Compile ``name`` for this host into the cache; a no-op when the package exists.

    Args:
        name: registry name, e.g. ``"mtcnn-pnet"``.
        backend, precision: as in :class:`lanner.FaceDetector` (``"auto"`` resolves by the
            registry's measured choice).
        force: rebuild even when a package exists.
        quiet: do not print the one-line build notes on stderr.

    Returns:
        The package folder.

    Raises:
        ValueError: unknown model, backend or precision; checksum mismatch; unsupported host.
        ImportError: the compile toolchain (``onnx``) is missing.
    """
    backend, precision = resolve(backend, precision)
    out = package_dir(name, backend, precision)
    with _lock:
        if (out / "manifest.json").is_file() and not force:
            return out
        source = onnx_path(name)
        from lanner.compile import compile_model

        if not quiet:
            _note(f"compiling {name} for this machine ({backend}, {precision}) into {out} -- once, about a second")
        start = time.perf_counter()
        out.parent.mkdir(parents=True, exist_ok=True)
        # Build aside and rename, so an interrupted build never leaves a half package behind.
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
        try:
            compile_model(str(source), target=_host_target(), backend=backend, precision=precision,
                          out=str(staging / "pkg"), name=name, task="face-detection",
                          sample_shapes=_SAMPLE_SHAPES.get(name))
            if out.exists():
                shutil.rmtree(out)
            (staging / "pkg").rename(out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if not quiet:
            _note(f"compiled {name} in {time.perf_counter() - start:.1f} s")
    return out


def open_net(name: str, backend: str = "auto", precision: str = "auto", *, num_threads: int | None = None):
    """Open ``name`` for inference on this host, building its package first if needed.

    Returns:
        A ``lanner.Model`` (``run({"image": array}) -> {output name: array}``, ``close()``).

    Raises:
        ValueError: unknown model, backend or precision; checksum mismatch.
    """
    get_spec(name)
    from ..runtime import load

    return load(build_package(name, backend, precision), num_threads=num_threads)
