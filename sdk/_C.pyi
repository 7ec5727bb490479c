"""Type stub for the native module ``lanner._C`` (C++/pybind11, optional CUDA).

The bindings are strict: arrays must be C-contiguous ``numpy.ndarray`` of the exact dtype.
Use the wrappers in :mod:`lanner.ops`, which convert array-likes and document semantics.
Errors: TypeError for a non-ndarray argument, ValueError for a wrong dtype, shape, layout,
non-finite value or out-of-range parameter, RuntimeError for ``device="cuda"`` without CUDA.
"""

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
    score_threshold: float | None = None,
    max_output: int | None = None,
    mode: str = "union",
    device: str = "cpu",
) -> npt.NDArray[np.int64]:
    """Greedy NMS: boxes (N, 4) float32 xyxy, scores (N,) float32 -> kept indices (K,) int64."""

def batched_nms(
    boxes: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    class_ids: npt.NDArray[np.int64],
    iou_threshold: float,
    score_threshold: float | None = None,
    max_output: int | None = None,
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
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
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
    sizes: list[tuple[int, int]],
    out: npt.NDArray[np.float32] | None = None,
    num_threads: int = 1,
) -> list[npt.NDArray[np.float32]]:
    """Area-resize (bit-identical to torch interpolate mode="area") to each (h, w): [(1, 3, h, w) float32,
    (x - 127.5) / 128], views of one block (``out``: a 1d workspace buffer for it); rows spread over
    ``num_threads`` threads (<= 0: one per core)."""

def mtcnn_pyramid_canvas(
    integral: npt.NDArray[np.uint32],
    sizes: list[tuple[int, int]],
    offsets: list[tuple[int, int]],
    canvas: tuple[int, int],
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
    window: tuple[int, int, int, int] | None = None,
) -> npt.NDArray[np.float32]:
    """P-Net maps (1, 6, h, w) -- face logits (not face, face), then 4 box regressions -- to (N, 9) rows
    x1, y1, x2, y2, score, reg0..3 (row-major cells) for the cells whose face probability (softmax of
    the logits) is >= threshold; ``window`` (y0, x0, h, w): only that part of the maps (one level of a
    packed canvas)."""

def mtcnn_crop_resize(
    integral: npt.NDArray[np.uint32],
    boxes: npt.NDArray[np.float32],
    size: int,
    out: npt.NDArray[np.float32] | None = None,
    num_threads: int = 1,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Crop (N, 4) xyxy boxes (facenet-pytorch pad rules), area-resize: ((N, 3, size, size) float32, (N,) valid);
    ``out``: a 1d workspace buffer for the crops; crops spread over ``num_threads`` threads (<= 0: one per core)."""

# --- Face alignment's geometry (csrc/face; use lanner.face.align.align_faces) ---------------------
def align_transforms(
    landmarks: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    template: npt.NDArray[np.float64],
    size: int,
    image_size: tuple[int, int] | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int32]]:
    """Check (N, 5, 2) landmarks (finite, not of zero size, inside an (H, W) ``image_size`` when given), fit each
    face's similarity onto ``template`` (unit chip coordinates) at chip side ``size``: ((N, 2, 3) image -> chip
    matrices, (N,) supersampling factors)."""

def faces_inside(
    landmarks: npt.NDArray[np.float32] | npt.NDArray[np.float64], image_size: tuple[int, int]
) -> npt.NDArray[np.bool_]:
    """(N,) bool: which faces have every landmark inside an (H, W) image (``align_transforms``'s border rule)."""

# --- Correlation-filter tracker (csrc/tracking; use lanner.Tracker / lanner.MultiTracker) --------
# Objects may be shared between threads: calls on one object are serialised, with the GIL
# released while they wait and work.
class TrackerParams:
    """Tracker parameters (fields as lanner.TrackerOptions; ``lambda_`` for lambda)."""

    padding: float
    cell_size: int
    min_grid: int
    max_grid: int
    window_power: float
    kernel: str
    kernel_sigma: float
    lambda_: float
    output_sigma_factor: float
    learning_rate: float
    num_scales: int
    scale_step: float
    scale_penalty: float
    lost_psr: float
    good_psr: float
    recover_psr: float
    miss_ratio: float
    peak_ratio: float
    recover_ratio: float
    recover_peak_ratio: float
    snapshot_ratio: float
    miss_motion: float
    lost_patience: int
    redetect_spread: float
    redetect_radius: float
    num_threads: int
    def __init__(self) -> None: ...
    def validate(self) -> None:
        """Raise ValueError when a parameter is out of range."""

class CorrelationTracker:
    """One target (use lanner.Tracker)."""

    def __init__(self, params: TrackerParams) -> None: ...
    def init(self, frame: npt.NDArray[np.uint8], box: list[float]) -> None:
        """frame (H, W) gray or (H, W, 3) BGR uint8; box [x, y, w, h] px."""
    def update(self, frame: npt.NDArray[np.uint8]) -> tuple[tuple[float, float, float, float], float, bool, bool]:
        """((x, y, w, h), psr, lost, recovered)."""

class MultiCorrelationTracker:
    """N targets per call (use lanner.MultiTracker); backend "cpu" or "cuda" (a build with cuFFT)."""

    def __init__(self, params: TrackerParams, backend: str = "cpu") -> None: ...
    def init(self, frame: npt.NDArray[np.uint8], boxes: npt.NDArray[np.float64]) -> None:
        """boxes (N, 4) x, y, w, h px, 1 <= N <= 4096."""
    def update(
        self, frame: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """(boxes (N, 4) float32, psr (N,) float32, lost (N,) bool, recovered (N,) bool)."""
    def __len__(self) -> int: ...

def tracker_features(patch: npt.NDArray[np.float32], cell: int) -> npt.NDArray[np.float32]:
    """HOG (9 bins) + gray + 2 opponent-colour cell features of a patch with a 1 px border, (rows, cols) gray
    or (3, rows, cols) [gray, o1, o2] -> (12, gh, gw)."""

def tracker_psr(response: npt.NDArray[np.float32], exclude: int) -> float:
    """Peak-to-sidelobe ratio of a (h, w) response."""

def tracker_kcf_response(
    z: npt.NDArray[np.float32], x: npt.NDArray[np.float32], alpha: npt.NDArray[np.float32], kernel: str, sigma: float
) -> npt.NDArray[np.float32]:
    """KCF detection response of z (c, h, w) against model x (c, h, w), alpha (h, w)."""

def tracker_kcf_response_batch_cuda(
    z: npt.NDArray[np.float32], x: npt.NDArray[np.float32], alpha: npt.NDArray[np.float32], kernel: str, sigma: float
) -> npt.NDArray[np.float32]:
    """Batched KCF responses (n, c, h, w) on the GPU with cuFFT (only in builds with cuFFT)."""

class testing:
    """Test hooks of the native ops (a submodule); not part of Lanner's API."""

    @staticmethod
    def batched_cpu_multi_tracker(params: TrackerParams) -> MultiCorrelationTracker:
        """A MultiCorrelationTracker whose detection step takes the batched path (as backend "cuda") with the
        CPU kcf_response."""
