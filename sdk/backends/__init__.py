"""Backend adapters: one module per toolchain, the only place that toolchain is imported.

Each adapter module exposes:

* ``import_toolchain()`` -- import and return the toolchain module, or raise ``ImportError``
  that says what to install;
* ``toolchain_versions() -> dict[str, str]``;
* ``open_session(package_dir, manifest, target, num_threads) -> Session``, where a
  :class:`Session` runs the package's artifact.

The compile pipeline reaches the toolchains through the same modules, so that each of
OpenVINO, ONNX Runtime and TVM is imported in exactly one place. Their telemetry is turned
off first (:mod:`lanner.backends.telemetry`): Lanner makes no network connection at run time.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .base import Session
from .telemetry import disable_env_telemetry

disable_env_telemetry()  # before any toolchain's native library loads

__all__ = ["Session", "adapter"]

_MODULES = {"openvino": "ov_backend", "onnxruntime": "ort_backend", "tvm": "tvm_backend"}


def adapter(backend: str) -> ModuleType:
    """Return the adapter module for a backend name (imports nothing heavy by itself).

    Raises:
        ValueError: unknown backend name.
    """
    try:
        module = _MODULES[backend]
    except KeyError:
        raise ValueError(f"unknown backend {backend!r}; expected one of {sorted(_MODULES)}") from None
    return importlib.import_module(f"{__name__}.{module}")
