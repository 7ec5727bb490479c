"""Build (compile) and open the registry's models for this host.

Packages are compiled by ``lanner.compile.compile_model`` into :func:`lanner.models.cache_dir`
and opened with ``lanner.load``. Until the compile toolchain is merged into this branch, the
shipped ONNX is opened directly with OpenVINO or ONNX Runtime (same backends, no package).
"""
from __future__ import annotations

import importlib
import sys
import threading
import time
from pathlib import Path
from typing import Mapping

import numpy as np

from . import get_spec, onnx_path, package_dir, resolve

__all__ = ["build_package", "open_net"]

_lock = threading.Lock()


def _note(message: str) -> None:
    print(f"lanner: {message}", file=sys.stderr, flush=True)


def _has_compile() -> bool:
    try:
        mod = importlib.import_module("lanner.compile")
    except ImportError:
        return False
    return hasattr(mod, "compile_model")


def build_package(name: str, backend: str = "auto", precision: str = "auto", *, force: bool = False) -> Path | None:
    """Compile ``name`` for this host into the cache (no-op when already built).

    Args:
        name: registry name, e.g. ``"mtcnn-pnet"``.
        backend, precision: as in :class:`lanner.FaceDetector`.
        force: rebuild even when a package exists.

    Returns:
        The package folder, or None when ``lanner.compile`` is not available in this build
        (the ONNX is then run directly).

    Raises:
        ValueError: unknown model, backend or precision; checksum mismatch.
    """
    backend, precision = resolve(backend, precision)
    source = onnx_path(name)
    if not _has_compile():
        return None
    from lanner.compile import compile_model

    out = package_dir(name, backend, precision)
    with _lock:
        if (out / "manifest.json").is_file() and not force:
            return out
        _note(f"compiling {name} for this machine ({backend}, {precision}) into {out} (once)")
        start = time.perf_counter()
        out.parent.mkdir(parents=True, exist_ok=True)
        compile_model(str(source), target="x86", backend=backend, precision=precision, out=str(out),
                      name=name, task="face-detection")
        _note(f"compiled {name} in {time.perf_counter() - start:.1f} s")
    return out


class _DirectNet:
    """An ONNX model run directly by OpenVINO or ONNX Runtime (until lanner.compile lands)."""

    def __init__(self, path: Path, backend: str, precision: str, num_threads: int | None) -> None:
        self._lock = threading.Lock()
        if backend == "openvino":
            import openvino as ov

            config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32" if precision == "fp32" else "f16"}
            if num_threads is not None:
                config["INFERENCE_NUM_THREADS"] = int(num_threads)
            compiled = ov.Core().compile_model(str(path), "CPU", config)
            self._names = [o.get_any_name() for o in compiled.outputs]
            self._request = compiled.create_infer_request()
            self._ov = True
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            if num_threads is not None:
                options.intra_op_num_threads = int(num_threads)
                options.inter_op_num_threads = 1
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self._names = [o.name for o in self._session.get_outputs()]
            self._ov = False

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            if self._ov:
                results = self._request.infer(dict(inputs))
                return {n: np.array(results[i]) for i, n in enumerate(self._names)}
            return dict(zip(self._names, self._session.run(None, dict(inputs))))


def open_net(name: str, backend: str = "auto", precision: str = "auto", *, num_threads: int | None = None):
    """Open ``name`` for inference on this host, building its package first if needed.

    Returns:
        An object with ``run({"image": array}) -> {output name: array}``.

    Raises:
        ValueError: unknown model, backend or precision; checksum mismatch.
    """
    get_spec(name)
    backend, precision = resolve(backend, precision)
    package = build_package(name, backend, precision)
    if package is None:
        return _DirectNet(onnx_path(name), backend, precision, num_threads)
    import lanner

    return lanner.load(package, num_threads=num_threads)
