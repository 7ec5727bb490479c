"""Students to ONNX (the issue-14 student contract) and to compiled, verified packages.

Contract: input ``image`` float32 (N, 3, S, S) RGB in [0, 1]; output ``embedding`` float32 (N, 128),
not normalised. Export goes through :func:`lanner.compile.export_torch`; int8 through
:func:`lanner.compile.compile_model` (static QDQ for ONNX Runtime, NNCF for OpenVINO), which
checks fidelity against the fp32 model on held-out calibration samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .student import FaceStudent

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "export_student", "compile_student", "embed_with_package"]

INPUT_NAME = "image"
OUTPUT_NAME = "embedding"
INT8_MIN_COSINE = 0.98  # fidelity bar of an int8 student vs its fp32 ONNX (lanner.compile's int8 default)


def export_student(model: FaceStudent, path: str | Path) -> Path:
    """Export a student (eval mode, BatchNorm folded by the exporter) with a dynamic batch axis.

    Args:
        model: the trained student.
        path: destination ``.onnx``.

    Returns:
        The written path.

    Raises:
        TypeError: ``model`` is not a :class:`FaceStudent`.
    """
    from ..compile import export_torch

    if not isinstance(model, FaceStudent):
        raise TypeError(f"model should be a FaceStudent, got {type(model).__name__}")
    model = model.eval().to(memory_format=torch.contiguous_format)
    size = model.config.size
    example = torch.zeros(1, 3, size, size)
    return export_torch(
        model,
        example,
        path,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "n"}, OUTPUT_NAME: {0: "n"}},
    )


def compile_student(
    onnx_path: str | Path,
    out: str | Path,
    *,
    backend: str,
    precision: str,
    calibration: np.ndarray | None = None,
    num_threads: int = 1,
):
    """Compile a student ONNX into a package for this machine (fidelity checked by lanner.compile).

    Args:
        onnx_path: the exported student.
        out: package folder to create.
        backend: ``openvino`` or ``onnxruntime``.
        precision: ``fp32`` or ``int8``.
        calibration: (N, 3, S, S) float32 chips (int8 only; the last ones are held out for fidelity).
        num_threads: threads for the fidelity/latency measurement.

    Returns:
        The package's :class:`lanner.Manifest`.

    Raises:
        ValueError: int8 without calibration, or fidelity below the bar (``lanner.compile.FidelityError``).
    """
    from ..compile import compile_model

    feeds = None if calibration is None else [{INPUT_NAME: calibration[i : i + 1]} for i in range(len(calibration))]
    thresholds = {"min_cosine": INT8_MIN_COSINE, "max_rel_error": None} if precision == "int8" else None
    return compile_model(
        str(onnx_path),
        backend=backend,
        precision=precision,
        calib=feeds,
        out=str(out),
        thresholds=thresholds,
        num_threads=num_threads,
        name=Path(onnx_path).stem,
        task="face-embedding",
    )


def embed_with_package(package: str | Path, chips: np.ndarray, batch: int = 64, num_threads: int = 1) -> np.ndarray:
    """Run a compiled student package over (N, 3, S, S) float32 chips in batches.

    Returns:
        (N, 128) float32 embeddings (not normalised).
    """
    from .. import load

    outputs: list[np.ndarray] = []
    with load(package, num_threads=num_threads) as model:
        for i in range(0, len(chips), batch):
            outputs.append(model.run({INPUT_NAME: np.ascontiguousarray(chips[i : i + batch])})[OUTPUT_NAME])
    return np.concatenate(outputs) if outputs else np.zeros((0, 128), np.float32)
