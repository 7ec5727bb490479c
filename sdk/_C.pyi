"""Type stub for the native module ``lanner._C`` (C++/pybind11, optional CUDA).

The bindings are strict: arrays must be C-contiguous ``numpy.ndarray`` of the exact dtype.
Use the wrappers in :mod:`lanner.ops`, which convert array-likes and document semantics.
Errors: TypeError for a non-ndarray argument, ValueError for a wrong dtype, shape, layout,
non-finite value or out-of-range parameter, RuntimeError for ``device="cuda"`` without CUDA.
"""
from typing import Optional, Tuple

import numpy as np
import numpy.typing as npt

built_with_cuda: bool

def cuda_device_count() -> int:
    """Number of usable CUDA devices (0 when built without CUDA or no driver/device)."""

def nms(
    boxes: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    iou_threshold: float,
    score_threshold: Optional[float] = None,
    max_output: Optional[int] = None,
    mode: str = "union",
    device: str = "cpu",
) -> npt.NDArray[np.int64]:
    """Greedy NMS: boxes (N, 4) float32 xyxy, scores (N,) float32 -> kept indices (K,) int64."""

def batched_nms(
    boxes: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    class_ids: npt.NDArray[np.int64],
    iou_threshold: float,
    score_threshold: Optional[float] = None,
    max_output: Optional[int] = None,
    mode: str = "union",
    device: str = "cpu",
) -> npt.NDArray[np.int64]:
    """Per-class greedy NMS; class_ids (N,) int64."""

def soft_nms(
    boxes: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    method: str = "gaussian",
    sigma: float = 0.5,
    iou_threshold: float = 0.3,
    score_threshold: float = 0.001,
) -> Tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Soft-NMS (CPU): (indices (K,) int64 in selection order, rescored scores (K,) float32)."""
