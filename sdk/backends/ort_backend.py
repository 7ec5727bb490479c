"""ONNX Runtime adapter: the only module that imports ``onnxruntime``."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from ..manifest import PackageError
from .base import Session, check_declared_inputs
from .telemetry import disable_onnxruntime_events

if TYPE_CHECKING:
    from ..manifest import Manifest
    from ..targets import Target

__all__ = ["import_toolchain", "import_quantization", "toolchain_versions", "open_session", "OnnxRuntimeSession"]


def import_toolchain() -> ModuleType:
    """Import ONNX Runtime.

    Raises:
        ImportError: onnxruntime is not installed.
    """
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - it is a runtime dependency
        raise ImportError("the ONNX Runtime backend needs onnxruntime: pip install onnxruntime") from exc
    disable_onnxruntime_events(onnxruntime)
    return onnxruntime


def import_quantization() -> ModuleType:
    """Import ``onnxruntime.quantization`` (static QDQ quantization; needs the ``onnx`` package)."""
    import_toolchain()
    try:
        from onnxruntime import quantization
    except ImportError as exc:
        raise ImportError("ONNX Runtime quantization needs the onnx package: pip install 'lanner[compile]'") from exc
    return quantization


def toolchain_versions() -> dict[str, str]:
    """Versions of the toolchain packages (recorded in manifests)."""
    return {"onnxruntime": import_toolchain().__version__}


class OnnxRuntimeSession(Session):
    """An ``onnxruntime.InferenceSession`` on the CPU or CUDA execution provider."""

    def __init__(
        self, model_path: str | bytes, output_names: list[str], *, device: str = "cpu", num_threads: int | None = None
    ) -> None:
        ort = import_toolchain()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ValueError(
                    "this package targets a CUDA GPU but onnxruntime has no CUDAExecutionProvider here "
                    f"(available: {ort.get_available_providers()}); install onnxruntime-gpu on a machine with a GPU"
                )
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        self._session = ort.InferenceSession(model_path, sess_options=options, providers=providers)
        has = [o.name for o in self._session.get_outputs()]
        missing = [n for n in output_names if n not in has]
        if missing:
            raise PackageError(
                f"the package's manifest lists outputs {output_names} but its ONNX model has no "
                f"output named {missing}; it has {has}: rebuild the package"
            )
        self._output_names = output_names

    def run(self, inputs: dict[str, np.ndarray], copy: bool = True) -> list[np.ndarray]:
        return list(self._session.run(self._output_names, inputs))

    def close(self) -> None:
        self._session = None


def open_session(package_dir: Path, manifest: Manifest, target: Target, num_threads: int | None) -> OnnxRuntimeSession:
    """Load the package's ONNX model on the execution provider its target needs."""
    path = manifest.artifact_path(package_dir, "model")
    session = OnnxRuntimeSession(
        str(path), [o.name for o in manifest.outputs], device=target.device, num_threads=num_threads
    )
    actual = [(i.name, [d if isinstance(d, int) else None for d in i.shape]) for i in session._session.get_inputs()]
    check_declared_inputs(manifest.inputs, actual, str(path))
    return session
