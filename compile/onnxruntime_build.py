"""ONNX Runtime builder: the (shape-fixed) ONNX for fp32, static QDQ quantization for int8."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from lanner.backends import ort_backend
from lanner.targets import Target

from . import onnx_graph
from .artifact import BuildResult, UnsupportedError
from .calibration import Feed

__all__ = ["build_onnxruntime", "quantize_qdq"]


@contextlib.contextmanager
def _quiet_root_logger():
    """ORT's quantizer logs advice through the root logger; keep the CLI output to our progress lines."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def build_onnxruntime(
    onnx_path: Path,
    out_dir: Path,
    target: Target,
    precision: str,
    calibration: Sequence[Feed] | None,
    progress: Callable[[str], None],
) -> BuildResult:
    """Write ``model.onnx`` for the CPU (x86) or CUDA execution provider.

    int8: ``quantize_static`` in QDQ format, per-channel int8 weights, uint8 activations,
    MinMax calibration.

    Raises:
        UnsupportedError: fp16 (no fp16 CPU kernels in ONNX Runtime), int8 on a CUDA target, or a
            Jetson target (use TVM).
        ValueError: int8 without calibration samples.
    """
    if target.device == "cuda" and target.machine != "x86_64":
        raise UnsupportedError(f"ONNX Runtime packages for {target.name!r} are not supported; use backend='tvm'")
    toolchain = ort_backend.toolchain_versions()
    notes: dict = {}
    dest = out_dir / "model.onnx"
    if precision == "fp32":
        shutil.copyfile(onnx_path, dest)
    elif precision == "fp16":
        raise UnsupportedError(
            "fp16 is not supported for the onnxruntime backend (its CPU EP lacks fp16 kernels); use fp32 or int8"
        )
    elif precision == "bf16":
        raise UnsupportedError(
            "bf16 is not supported for the onnxruntime backend (no bf16 CPU kernels); use fp32 or int8"
        )
    elif precision == "int8":
        if target.device != "cpu":
            raise UnsupportedError("int8 for the onnxruntime backend is supported on CPU targets only")
        if not calibration:
            raise ValueError("int8 needs calibration samples: pass calib= (a folder of images or .npy arrays)")
        notes.update(quantize_qdq(onnx_path, dest, calibration, progress, "onnxruntime"))
    else:
        raise UnsupportedError(f"unknown precision {precision!r}")
    return BuildResult(
        artifacts={"model": "model.onnx"},
        backend_options={
            "execution_provider": "CUDAExecutionProvider" if target.device == "cuda" else "CPUExecutionProvider"
        },
        toolchain=toolchain,
        notes=notes,
    )


def quantize_qdq(
    onnx_path: Path, dest: Path, calibration: Sequence[Feed], progress: Callable[[str], None], backend: str
) -> dict:
    """Write ``dest``: ``onnx_path`` quantized by ONNX Runtime's ``quantize_static`` in QDQ format,
    per-channel int8 weights, uint8 activations, MinMax calibration on ``calibration``. The int8
    model of the onnxruntime backend, and the source of the tvm backend's int8 packages. Returns
    the notes for the manifest.

    Raises:
        UnsupportedError: the model already has Q/DQ nodes.
    """
    notes: dict = {}
    out_dir = dest.parent
    onnx_graph.refuse_requantization(onnx_path, backend)
    q = ort_backend.import_quantization()

    class _Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(list(calibration))

        def get_next(self):
            return next(self._it, None)

    # ORT's recommended pre-processing (shape inference + graph optimisation) helps the
    # quantizer find Conv+Relu patterns; it fails on some graphs, which then go in as they are.
    source = out_dir / "preprocessed.onnx"
    try:
        with _quiet_root_logger():
            q.quant_pre_process(str(onnx_path), str(source), skip_symbolic_shape=True)
        notes["pre_process"] = "onnxruntime.quantization.quant_pre_process"
    except Exception as exc:  # noqa: BLE001 - any failure means "quantize the original"
        notes["pre_process"] = f"skipped: {type(exc).__name__}: {exc}"[:300]
        shutil.copyfile(onnx_path, source)
    progress(f"{backend}: static QDQ quantization on {len(calibration)} calibration samples")
    with _quiet_root_logger():
        q.quantize_static(
            str(source),
            str(dest),
            _Reader(),
            quant_format=q.QuantFormat.QDQ,
            per_channel=True,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            calibrate_method=q.CalibrationMethod.MinMax,
        )
    source.unlink()
    notes["quantization"] = {
        "tool": "onnxruntime.quantization.quantize_static",
        "format": "QDQ",
        "weights": "int8 per-channel",
        "activations": "uint8",
        "samples": len(calibration),
    }
    return notes
