"""OpenVINO builder: ONNX -> OpenVINO IR (fp32 / fp16 weights) and NNCF INT8 post-training
quantization. The only module that imports ``nncf``; OpenVINO comes through its adapter."""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import io
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from lanner.backends import ov_backend
from lanner.targets import Target

from . import onnx_graph
from .artifact import BuildResult, UnsupportedError
from .calibration import Feed

__all__ = ["build_openvino"]


def _import_nncf():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nncf warns about optional frameworks it does not find
            import nncf
        nncf.set_log_level(logging.ERROR)  # no progress bars on stdout; we report progress ourselves
    except ImportError as exc:
        raise ImportError("OpenVINO INT8 needs NNCF: pip install 'lanner[compile]'") from exc
    return nncf


def build_openvino(
    onnx_path: Path,
    out_dir: Path,
    target: Target,
    precision: str,
    calibration: Sequence[Feed] | None,
    progress: Callable[[str], None],
) -> BuildResult:
    """Convert to IR in ``out_dir`` (``model.xml`` + ``model.bin``).

    fp32 runs with ``INFERENCE_PRECISION_HINT=f32`` (the CPU plugin would otherwise pick bf16 on
    CPUs with AVX512-BF16); fp16 needs a CPU whose plugin lists FP16; bf16 (fp32 weights and I/O,
    ``INFERENCE_PRECISION_HINT=bf16``: bf16 convolutions/matmuls with fp32 accumulation) needs a
    CPU whose plugin lists BF16 (AVX512-BF16 or AMX); int8 is NNCF PTQ.

    Raises:
        UnsupportedError: a non-CPU target, fp16/bf16 on a CPU without FP16/BF16 support, or int8 of a model
            that is already quantized (its fp32 build runs the model's own Q/DQ on int8 kernels).
        ValueError: int8 without calibration samples.
    """
    if target.device != "cpu":
        raise UnsupportedError(f"OpenVINO builds CPU packages only; target {target.name!r} is a {target.device} target")
    ov = ov_backend.import_toolchain()
    core = ov.Core()
    capabilities = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    toolchain = ov_backend.toolchain_versions()
    notes: dict = {"cpu_capabilities": capabilities}
    if precision == "fp16" and "FP16" not in capabilities:
        raise UnsupportedError(
            f"fp16 is not supported by the OpenVINO CPU plugin on this CPU (capabilities {capabilities}); "
            "it would run in another precision. Use fp32, int8, or bf16 where the plugin lists BF16"
        )
    if precision == "bf16" and "BF16" not in capabilities:
        raise UnsupportedError(
            f"bf16 is not supported by the OpenVINO CPU plugin on this CPU (capabilities {capabilities}); "
            "it needs AVX512-BF16 or AMX. Use fp32 or int8"
        )
    progress(f"openvino: converting {onnx_path.name} to IR")
    model = ov.convert_model(str(onnx_path))
    if precision == "fp32":
        hint = "f32"
    elif precision == "fp16":
        hint = "f16"
    elif precision == "bf16":
        hint = "bf16"
        notes["bf16"] = (
            "CPU plugin INFERENCE_PRECISION_HINT=bf16: bf16 multiplies with fp32 accumulation; "
            "fp32 weights in the IR, fp32 inputs and outputs"
        )
    elif precision == "int8":
        if not calibration:
            raise ValueError("int8 needs calibration samples: pass calib= (a folder of images or .npy arrays)")
        onnx_graph.refuse_requantization(onnx_path, "openvino")
        nncf = _import_nncf()
        toolchain["nncf"] = md.version("nncf")
        progress(f"openvino: NNCF post-training quantization on {len(calibration)} calibration samples")
        # NNCF draws rich progress bars on stdout, which belongs to the CLI's results.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            model = nncf.quantize(model, nncf.Dataset(list(calibration)), subset_size=len(calibration))
        notes["quantization"] = {
            "tool": "nncf.quantize",
            "preset": "performance (symmetric)",
            "samples": len(calibration),
        }
        hint = "f32"  # non-quantized ops stay fp32, not bf16
    else:
        raise UnsupportedError(f"unknown precision {precision!r}")
    ov.save_model(model, str(out_dir / "model.xml"), compress_to_fp16=(precision == "fp16"))
    return BuildResult(
        artifacts={"model": "model.xml", "weights": "model.bin"},
        backend_options={"device": "CPU", "inference_precision": hint},
        toolchain=toolchain,
        notes=notes,
    )
