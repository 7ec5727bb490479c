"""NumPy reference implementations of the NMS ops: the test oracle and the benchmark baseline.

Plain, readable greedy algorithms with the same conventions as :mod:`lanner.ops` (see its
module docstring). Overlaps are computed in float64 with exactly the operations, in the same
order, as the native kernels (``csrc/nms/nms.h``: ``box_area``, ``box_overlap``), so kept sets
are identical, not just close. Inputs are assumed valid: no argument checking here.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

__all__ = ["box_areas", "overlap_with", "rank_order", "nms_reference", "batched_nms_reference", "soft_nms_reference"]


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """Areas of ``(N, 4)`` xyxy boxes as float64; 0 for zero or negative width/height."""
    b = np.asarray(boxes, dtype=np.float32).astype(np.float64)
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    return np.where((w > 0) & (h > 0), w * h, 0.0)


def overlap_with(
    box: np.ndarray, area: float, boxes: np.ndarray, areas: np.ndarray, mode: Literal["union", "min"] = "union"
) -> np.ndarray:
    """Overlap (IoU, or intersection over the smaller area) of one box with each of ``boxes``.

    Args:
        box: ``(4,)`` float64 xyxy; area: its area from :func:`box_areas`.
        boxes: ``(M, 4)`` float64 xyxy; areas: ``(M,)`` from :func:`box_areas`.
        mode: ``"union"`` or ``"min"``.

    Returns:
        ``(M,)`` float64 overlaps; 0 where the boxes share no region of positive area.
    """
    iw = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    ih = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    valid = (iw > 0) & (ih > 0)
    inter = np.where(valid, iw * ih, 0.0)
    denom = np.minimum(area, areas) if mode == "min" else (area + areas) - inter
    out = np.zeros(len(boxes), dtype=np.float64)
    with np.errstate(divide="ignore"):  # a union that rounds to 0 gives inf, as in C++
        np.divide(inter, denom, out=out, where=valid)
    return out


def rank_order(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score, ties by ascending index (a stable sort)."""
    s = np.asarray(scores, dtype=np.float32)
    return np.argsort(-s.astype(np.float64), kind="stable")


def nms_reference(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    score_threshold: float | None = None,
    max_output: int | None = None,
    mode: Literal["union", "min"] = "union",
) -> np.ndarray:
    """Greedy NMS, the textbook loop: keep the best remaining box, drop all it overlaps > threshold.

    Returns:
        ``(K,)`` int64 kept indices by descending score (ties: lower index).
    """
    boxes64 = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).astype(np.float64)
    areas = box_areas(boxes64)
    order = rank_order(scores)
    if score_threshold is not None:
        s = np.asarray(scores, dtype=np.float32).astype(np.float64)
        order = order[s[order] > score_threshold]
    keep = []
    limit = len(order) if max_output is None else max_output
    while len(order) and len(keep) < limit:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        ov = overlap_with(boxes64[i], areas[i], boxes64[rest], areas[rest], mode)
        order = rest[~(ov > iou_threshold)]
    return np.asarray(keep, dtype=np.int64)


def batched_nms_reference(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
    score_threshold: float | None = None,
    max_output: int | None = None,
    mode: Literal["union", "min"] = "union",
) -> np.ndarray:
    """Per-class greedy NMS: :func:`nms_reference` on each class, merged by rank.

    Returns:
        ``(K,)`` int64 kept indices of all classes by descending score (ties: lower index).
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32)
    class_ids = np.asarray(class_ids, dtype=np.int64)
    kept = []
    for c in np.unique(class_ids):
        rows = np.flatnonzero(class_ids == c)
        kept.append(rows[nms_reference(boxes[rows], scores[rows], iou_threshold, score_threshold, None, mode)])
    if not kept:
        return np.zeros(0, dtype=np.int64)
    kept = np.concatenate(kept)
    kept = kept[np.lexsort((kept, -scores[kept].astype(np.float64)))]  # score desc, then index
    return kept[:max_output].astype(np.int64)


def soft_nms_reference(
    boxes: np.ndarray,
    scores: np.ndarray,
    method: Literal["gaussian", "linear"] = "gaussian",
    sigma: float = 0.5,
    iou_threshold: float = 0.3,
    score_threshold: float = 0.001,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft-NMS (Bodla et al., ICCV 2017), the plain loop.

    Returns:
        ``(indices, rescored)``: int64 selection order and float32 rescored scores.
    """
    boxes64 = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).astype(np.float64)
    areas = box_areas(boxes64)
    s = np.asarray(scores, dtype=np.float32).astype(np.float64)
    live = np.flatnonzero(s > score_threshold)
    cur = s.copy()
    out_idx, out_score = [], []
    while len(live):
        best_score = cur[live].max()
        best = live[cur[live] == best_score].min()
        out_idx.append(best)
        out_score.append(cur[best])
        live = live[live != best]
        ov = overlap_with(boxes64[best], areas[best], boxes64[live], areas[live], "union")
        if method == "gaussian":
            # the C library's exp, as the C++ op calls it: NumPy's vectorised exp may round differently by one
            # ulp (exp(-2**-54) is 1.0 in libm, 1 - 2**-53 in NumPy), which reorders two scores that tie in C++
            weight = np.array([math.exp(-(v * v) / sigma) if v > 0 else 1.0 for v in ov], dtype=np.float64)
        else:
            weight = np.where(ov > iou_threshold, 1.0 - ov, 1.0)
        cur[live] = cur[live] * weight
        live = live[~((ov > 0) & ~(cur[live] > score_threshold))]
    return np.asarray(out_idx, dtype=np.int64), np.asarray(out_score, dtype=np.float64).astype(np.float32)
