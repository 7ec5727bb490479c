"""Native ops from ``lanner._C`` with documented shapes and NumPy-friendly signatures.

Non-maximum suppression (NMS) conventions, shared by :func:`nms`, :func:`batched_nms` and
:func:`soft_nms` (and by the NumPy oracle in :mod:`lanner.ops_reference`):

* ``boxes`` are ``(N, 4)`` ``xyxy`` pixel coordinates, cast to float32; ``scores`` are ``(N,)``,
  cast to float32. Any array-like of a real numeric dtype is accepted; contiguous float32
  NumPy arrays are passed through without a copy.
* Overlap is computed in float64 from the float32 coordinates. ``mode="union"`` is intersection
  over union (IoU); ``mode="min"`` is intersection over the smaller area (MTCNN's "Min").
* A box is suppressed when its overlap with a kept, higher-ranked box is **strictly greater**
  than ``iou_threshold`` (ONNX ``NonMaxSuppression`` semantics, as ``cv2.dnn.NMSBoxes``).
* A box with zero or negative width or height has zero area. Its overlap with any box is 0, so
  it is never suppressed and never suppresses another box: it is kept unless the score
  threshold or ``max_output`` drops it.
* ``score_threshold`` drops boxes whose score is not strictly greater than it.
* Results are ranked by descending score; ties go to the lower index. Output is deterministic.
* Corners are continuous coordinates (width = x2 - x1). To reproduce the pixel-inclusive
  convention of some MTCNN ports (facenet-pytorch's ``nms_numpy``: width = x2 - x1 + 1), pass
  ``x2 + 1, y2 + 1``; the overlaps are then identical.

Thread safety: the ops are stateless functions of their arguments; any number of threads may
call them at once (each call works on its own buffers).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from . import _C

__all__ = ["has_cuda", "box_iou", "nms", "batched_nms", "soft_nms", "SoftNMSResult"]

OverlapMode = Literal["union", "min"]
Device = Literal["cpu", "cuda"]


def has_cuda() -> bool:
    """Return True when the CUDA kernels were built and a CUDA device is usable.

    Returns:
        False when ``lanner._C`` was built without nvcc, or no driver/device is present.
    """
    return bool(_C.built_with_cuda) and _C.cuda_device_count() > 0


_REAL_KINDS = "fiu"  # float, signed and unsigned integer


def _as_array(name: str, value: object, dtype: type, kinds: str) -> np.ndarray:
    """``value`` as a C-contiguous array of ``dtype``; no copy when it already is one.

    Raises:
        TypeError: when ``value`` does not convert to a numeric array of an allowed kind.
        ValueError: a 0-d value (a scalar): the ops take (N, 4) boxes and (N,) scores.
    """
    if isinstance(value, np.ndarray) and value.dtype == dtype and value.flags.c_contiguous and value.ndim:
        return value
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged sequences, unconvertible objects
        raise TypeError(f"{name} should be an array-like of numbers, got {type(value).__name__}: {exc}") from None
    if array.dtype.kind not in kinds:
        expected = "an integer dtype" if kinds == "iu" else "a real numeric dtype (float or integer)"
        raise TypeError(f"{name} should have {expected}, got dtype {array.dtype}")
    if array.ndim == 0:  # ascontiguousarray would make it 1-d, and the message would show a shape it never had
        expected = "(N, 4)" if name == "boxes" else "(N,)"
        raise ValueError(f"{name} should have shape {expected}, got a 0-d {type(value).__name__} (shape ())")
    if array.dtype.kind == "u" and array.dtype.itemsize == 8 and dtype == np.int64 and array.size:
        if int(array.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"{name} should fit in int64, got a value of {int(array.max())}")
    # Float64 values beyond float32's range become inf and are then rejected by the
    # native check as non-finite, with a ValueError instead of a cast warning.
    with np.errstate(over="ignore", invalid="ignore"):
        return np.ascontiguousarray(array, dtype=dtype)


def _real(name: str, value: object, *, optional: bool = False) -> float | None:
    """A Python float from a real number (bool refused); None passes when ``optional``.

    Raises:
        TypeError: not a real number.
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        expected = "a number or None" if optional else "a number"
        raise TypeError(f"{name} should be {expected}, got {type(value).__name__}")
    return float(value)


def _count(name: str, value: object) -> int | None:
    """A Python int from an integer or None (bool and floats refused).

    Raises:
        TypeError: not an integer.
        ValueError: out of the int64 range.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} should be an int or None, got {type(value).__name__}")
    value = int(value)
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"{name} should fit in int64, got {value}")
    return value


def _name(name: str, value: object) -> str:
    """``value`` when it is a str.

    Raises:
        TypeError: not a str.
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} should be a str, got {type(value).__name__}")
    return value


def nms(
    boxes: object,
    scores: object,
    iou_threshold: float,
    *,
    score_threshold: float | None = None,
    max_output: int | None = None,
    mode: OverlapMode = "union",
    device: Device = "cpu",
) -> np.ndarray:
    """Greedy hard non-maximum suppression.

    Walks the boxes by descending score (ties: lower index first) and keeps a box unless a
    kept box overlaps it by more than ``iou_threshold``. The CPU kernel is single-threaded
    and files kept boxes in a uniform grid, so its cost does not grow as N x kept.

    Args:
        boxes: ``(N, 4)`` ``xyxy`` pixel coordinates (cast to float32). A box with ``x2 <= x1`` or ``y2 <= y1``
            has no area: it overlaps nothing, so it is kept or dropped on its score alone (as torchvision's
            ``nms`` does; ONNX's ``NonMaxSuppression`` would swap its corners instead).
        scores: ``(N,)`` scores (cast to float32).
        iou_threshold: in [0, 1]; suppress when overlap > iou_threshold.
        score_threshold: in [0, 1] or None; boxes with score <= score_threshold are dropped first.
        max_output: keep at most this many boxes (the highest ranked); None for no limit.
        mode: ``"union"`` (IoU) or ``"min"`` (intersection over the smaller area).
        device: ``"cpu"`` or ``"cuda"`` (bitmask kernel; needs :func:`has_cuda`).

    Returns:
        ``(K,)`` int64 indices into ``boxes`` of the kept boxes, by descending score.

    Raises:
        TypeError: ``boxes``/``scores`` are not numeric array-likes (strings, objects, ...); a
            threshold that is not a number, ``max_output`` that is not an int (``True`` is
            not taken as 1), or ``mode``/``device`` that are not strings.
        ValueError: wrong rank or shape (a scalar is reported as 0-d), length mismatch, non-finite values, a threshold
            outside [0, 1], ``max_output < 0``, or an unknown ``mode``/``device``.
        RuntimeError: ``device="cuda"`` but CUDA is unavailable (``has_cuda()`` is False).
    """
    return _C.nms(
        _as_array("boxes", boxes, np.float32, _REAL_KINDS),
        _as_array("scores", scores, np.float32, _REAL_KINDS),
        _real("iou_threshold", iou_threshold),
        _real("score_threshold", score_threshold, optional=True),
        _count("max_output", max_output),
        _name("mode", mode),
        _name("device", device),
    )


def batched_nms(
    boxes: object,
    scores: object,
    class_ids: object,
    iou_threshold: float,
    *,
    score_threshold: float | None = None,
    max_output: int | None = None,
    mode: OverlapMode = "union",
    device: Device = "cpu",
) -> np.ndarray:
    """Per-class greedy NMS in one call: boxes of different classes never suppress each other.

    Args:
        boxes: ``(N, 4)`` ``xyxy`` pixel coordinates (cast to float32); boxes with no area as for :func:`nms`.
        scores: ``(N,)`` scores (cast to float32).
        class_ids: ``(N,)`` integer class of each box (cast to int64).
        iou_threshold: in [0, 1]; suppress when overlap > iou_threshold (same class only).
        score_threshold: in [0, 1] or None; boxes with score <= score_threshold are dropped first.
        max_output: keep at most this many boxes over all classes; None for no limit.
        mode: ``"union"`` (IoU) or ``"min"`` (intersection over the smaller area).
        device: ``"cpu"`` or ``"cuda"``.

    Returns:
        ``(K,)`` int64 indices of the kept boxes of all classes, by descending score
        (ties: lower index first).

    Raises:
        TypeError: non-numeric ``boxes``/``scores``, or ``class_ids`` not of an integer dtype.
        ValueError: as :func:`nms`, plus a ``class_ids`` shape that does not match ``boxes``.
        RuntimeError: ``device="cuda"`` but CUDA is unavailable.
    """
    return _C.batched_nms(
        _as_array("boxes", boxes, np.float32, _REAL_KINDS),
        _as_array("scores", scores, np.float32, _REAL_KINDS),
        _as_array("class_ids", class_ids, np.int64, "iu"),
        _real("iou_threshold", iou_threshold),
        _real("score_threshold", score_threshold, optional=True),
        _count("max_output", max_output),
        _name("mode", mode),
        _name("device", device),
    )


@dataclass(frozen=True)
class SoftNMSResult:
    """Result of :func:`soft_nms`; unpacks as ``indices, scores = soft_nms(...)``.

    Attributes:
        indices: ``(K,)`` int64 indices into the input boxes, in selection order.
        scores: ``(K,)`` float32 rescored (decayed) scores, non-increasing.
    """

    indices: np.ndarray
    scores: np.ndarray

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.indices, self.scores))


def soft_nms(
    boxes: object,
    scores: object,
    *,
    method: Literal["gaussian", "linear"] = "gaussian",
    sigma: float = 0.5,
    iou_threshold: float = 0.3,
    score_threshold: float = 0.001,
) -> SoftNMSResult:
    """Soft-NMS (Bodla et al., ICCV 2017): decay the scores of overlapping boxes instead of removing them.

    Repeatedly selects the box with the highest current score (ties: lower index) and
    multiplies the score of every remaining box by ``exp(-iou**2 / sigma)`` (gaussian) or,
    when ``iou > iou_threshold``, by ``1 - iou`` (linear). Boxes whose score falls to
    ``score_threshold`` or below are dropped. CPU only; O(N x selected).

    Args:
        boxes: ``(N, 4)`` ``xyxy`` pixel coordinates (cast to float32); boxes with no area as for :func:`nms`.
        scores: ``(N,)`` scores (cast to float32).
        method: ``"gaussian"`` or ``"linear"``.
        sigma: Gaussian decay width, > 0 (unused by ``"linear"``).
        iou_threshold: in [0, 1]; the linear decay applies above it (unused by ``"gaussian"``).
        score_threshold: in [0, 1]; boxes whose (rescored) score is <= it are dropped.

    Returns:
        :class:`SoftNMSResult` with ``indices`` (int64, selection order) and ``scores``
        (float32, the rescored scores).

    Raises:
        TypeError: ``boxes``/``scores`` are not numeric array-likes.
        ValueError: wrong shapes, non-finite values, thresholds outside [0, 1], ``sigma <= 0``,
            or an unknown ``method``.
    """
    indices, rescored = _C.soft_nms(
        _as_array("boxes", boxes, np.float32, _REAL_KINDS),
        _as_array("scores", scores, np.float32, _REAL_KINDS),
        _name("method", method),
        _real("sigma", sigma),
        _real("iou_threshold", iou_threshold),
        _real("score_threshold", score_threshold),
    )
    return SoftNMSResult(indices=indices, scores=rescored)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two sets of ``xyxy`` boxes.

    Args:
        a: ``(N, 4)`` boxes.
        b: ``(M, 4)`` boxes.

    Returns:
        ``(N, M)`` float64 IoU (0 for boxes of zero area).
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
