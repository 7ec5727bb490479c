"""Build (compile) and open the registry's models for this host.

Each shipped ONNX is compiled once by ``lanner.compile.compile_model`` into
:func:`lanner.models.package_dir` (a verified package with its manifest and checksums) and
opened with ``lanner.load``. Building takes about a second per net and prints one line to
stderr; later runs only load the cached package. Building needs only the runtime install:
OpenVINO and ONNX Runtime read the shipped ONNX themselves (no ``onnx``, ``torch`` or TVM).

Several processes may share the cache: a build holds an exclusive ``fcntl.flock`` on a lock
file beside the package, writes into a temporary folder and renames it into place, so a
package is built once and no process ever sees half of one.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ..manifest import Manifest, PackageError
from ..names import MANIFEST_FILENAME
from . import QDQ_FIDELITY, get_spec, onnx_path, package_dir, resolve

__all__ = ["build_package", "open_net", "package_status", "REPAIR_COMMAND"]

#: What a user runs to rebuild a corrupt cached package.
REPAIR_COMMAND = "lanner models build"
# P-Net has dynamic height/width: compile-time fidelity/latency samples use this shape.
_SAMPLE_SHAPES = {"mtcnn-pnet": {"image": [1, 3, 120, 160]}}


def _note(message: str) -> None:
    print(f"lanner: {message}", file=sys.stderr, flush=True)


def _host_target() -> str:
    from ..targets import host_machine

    machine = host_machine()
    if machine != "x86_64":
        raise ValueError(
            f"building the face detector for this host ({machine}) is not supported yet; expected an x86_64 CPU"
        )
    return "x86"


@contextlib.contextmanager
def _build_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock for building ``out``, across threads and processes (one lock
    file per package, beside it; the lock goes with the file descriptor, also on a crash)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def package_status(name: str, backend: str = "auto", precision: str = "auto") -> str:
    """The state of a cached package: ``"built"``, ``"not built"`` or ``"corrupt: <why>"``
    (its manifest unreadable or a file missing or altered: checksums are verified).

    Raises:
        ValueError: unknown model, backend or precision.
    """
    out = package_dir(name, backend, precision)
    if not (out / MANIFEST_FILENAME).is_file():
        return "not built"
    try:
        Manifest.read(out).verify(out)
    except (PackageError, OSError) as exc:
        return f"corrupt: {exc}"
    return "built"


def build_package(
    name: str, backend: str = "auto", precision: str = "auto", *, force: bool = False, quiet: bool = False
) -> Path:
    """Compile ``name`` for this host into the cache; a no-op when the package exists.

    Args:
        name: registry name, e.g. ``"mtcnn-pnet"``.
        backend, precision: as in :class:`lanner.FaceDetector` (``"auto"`` resolves by the
            registry's measured choice).
        force: rebuild even when a package exists (``lanner models build`` forces corrupt ones).
        quiet: do not print the one-line build notes on stderr.

    Returns:
        The package folder.

    Raises:
        ValueError: unknown model, backend or precision; checksum mismatch; unsupported host.
    """
    backend, precision = resolve(backend, precision)
    out = package_dir(name, backend, precision)
    if (out / MANIFEST_FILENAME).is_file() and not force:
        return out
    with _build_lock(out):
        # Another process may have built it while this one waited for the lock.
        if (out / MANIFEST_FILENAME).is_file() and not force:
            return out
        source = onnx_path(name)
        spec = get_spec(name)
        from lanner.compile import compile_model

        if not quiet:
            _note(f"compiling {name} for this machine ({backend}, {precision}) into {out} -- once, about a second")
        start = time.perf_counter()
        # Build aside and rename, so that no process ever sees a half-built package.
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
        try:
            compile_model(
                str(source),
                target=_host_target(),
                backend=backend,
                precision=precision,
                out=str(staging / "pkg"),
                name=name,
                task="face-detection",
                sample_shapes=_SAMPLE_SHAPES.get(name),
                thresholds=QDQ_FIDELITY if spec.quantized else None,
            )
            if out.exists():
                out.rename(staging / "old")  # replaced in two renames: never a half package at ``out``
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
        PackageError (a ValueError): the cached package is corrupt (the message names the repair command).
    """
    get_spec(name)
    from ..runtime import load

    path = build_package(name, backend, precision)
    try:
        return load(path, num_threads=num_threads)
    except PackageError as exc:
        raise PackageError(
            f"the cached package {path} is corrupt: {exc}. Rebuild it with "
            f"`{REPAIR_COMMAND} --backend {backend} --precision {precision}`"
        ) from exc
