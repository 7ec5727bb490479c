"""Non-maximum suppression for the cascade: ``lanner.ops.nms`` (feat/nms), with a NumPy
stand-in until that op is merged into this branch."""
from __future__ import annotations

import numpy as np

from .. import ops

__all__ = ["nms"]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, mode: str = "union") -> np.ndarray:
    """Indices of kept boxes by descending score; suppress when overlap > iou_threshold.

    ``mode="union"``: intersection over union; ``"min"``: intersection over the smaller area.
    """
    native = getattr(ops, "nms", None)
    if native is not None:
        return np.asarray(native(boxes, scores, iou_threshold, mode=mode), dtype=np.int64)
    return _nms_numpy(boxes, scores, iou_threshold, mode)


def _nms_numpy(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, mode: str) -> np.ndarray:
    n = len(boxes)
    if n == 0:
        return np.zeros((0,), np.int64)
    order = np.argsort(-scores, kind="stable")
    b = boxes[order].astype(np.float32)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    suppressed = np.zeros(n, bool)
    keep = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = np.arange(i + 1, n)
        rest = rest[~suppressed[rest]]
        if not len(rest):
            continue
        iw = np.maximum(0, np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]))
        ih = np.maximum(0, np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]))
        inter = iw * ih
        denom = np.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            over = inter / denom > iou_threshold
        suppressed[rest[over]] = True
    return order[np.asarray(keep, np.int64)]
