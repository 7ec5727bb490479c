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
built_with_cufft: bool

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

# --- MTCNN pre/post-processing (csrc/mtcnn; matches facenet-pytorch 2.6.0) ---------------
def mtcnn_integral(
    image: npt.NDArray[np.uint8],
    channel_order: str = "rgb",
    out: npt.NDArray[np.uint32] | None = None,
    num_threads: int = 1,
) -> npt.NDArray[np.uint32]:
    """Summed-area table of a uint8 image -- (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) (alpha ignored), any
    strides, colours in ``channel_order`` ("rgb" or "bgr") -- as RGB: (H + 1, W + 1, 3) uint32 (modulo 2^32).
    ``out``: a 1d workspace buffer to write into (the result is then a view of it); bands of rows over
    ``num_threads`` threads (<= 0: one per core)."""

def mtcnn_pyramid(
    integral: npt.NDArray[np.uint32],
    sizes: list[Tuple[int, int]],
    out: npt.NDArray[np.float32] | None = None,
    num_threads: int = 1,
) -> list[npt.NDArray[np.float32]]:
    """Area-resize (bit-identical to torch interpolate mode="area") to each (h, w): [(1, 3, h, w) float32,
    (x - 127.5) / 128], views of one block (``out``: a 1d workspace buffer for it); rows spread over
    ``num_threads`` threads (<= 0: one per core)."""

def mtcnn_pyramid_canvas(
    integral: npt.NDArray[np.uint32],
    sizes: list[Tuple[int, int]],
    offsets: list[Tuple[int, int]],
    canvas: Tuple[int, int],
    out: npt.NDArray[np.float32] | None = None,
    num_threads: int = 1,
) -> npt.NDArray[np.float32]:
    """The levels of ``sizes`` (as mtcnn_pyramid) in one (1, 3, canvas_h, canvas_w) image at ``offsets`` (y, x), 0
    elsewhere, placed so that one P-Net run gives each level's own maps (even offsets, no overlap, odd widths /
    heights ending at the canvas's right / bottom edge: checked)."""

def mtcnn_generate_candidates(
    maps: npt.NDArray[np.float32],
    scale: float,
    threshold: float,
    window: Optional[Tuple[int, int, int, int]] = None,
) -> npt.NDArray[np.float32]:
    """P-Net maps (1, 6, h, w) -- face logits (not face, face), then 4 box regressions -- to (N, 9) rows
    x1, y1, x2, y2, score, reg0..3 (row-major cells) for the cells whose face probability (softmax of
    the logits) is >= threshold; ``window`` (y0, x0, h, w): only that part of the maps (one level of a
    packed canvas)."""

def mtcnn_crop_resize(
    integral: npt.NDArray[np.uint32], boxes: npt.NDArray[np.float32], size: int,
    out: npt.NDArray[np.float32] | None = None,
    num_threads: int = 1,
) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Crop (N, 4) xyxy boxes (facenet-pytorch pad rules), area-resize: ((N, 3, size, size) float32, (N,) valid);
    ``out``: a 1d workspace buffer for the crops; crops spread over ``num_threads`` threads (<= 0: one per core)."""
