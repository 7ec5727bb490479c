"""VOC average precision of a face detector, with ignore regions (issue 15's masked / tiny benchmark).

Pascal VOC's protocol (Everingham et al., IJCV 2010): detections of all photos sorted by
descending score; each is matched greedily to the unmatched ground-truth box it overlaps most
(IoU >= the threshold), a true positive; otherwise it is a false positive (a second detection of
a matched box included). Ground-truth boxes that are not *positives* are ignore regions, VOC's
"difficult" boxes and WIDER FACE's treatment of faces below the evaluated size: a detection whose
best match is one of them is neither a true nor a false positive, and they do not count in the
recall. AP is the area under the precision envelope (VOC 2010+, every point).

IoU is taken on continuous ``x1, y1, x2, y2`` corners (no +1 pixel convention).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..ops import box_iou

__all__ = ["PrecisionRecall", "match_detections", "voc_average_precision"]


@dataclass(frozen=True)
class PrecisionRecall:
    """A precision-recall curve and its average precision (frozen: safe to share between threads).

    Attributes:
        average_precision: area under the precision envelope, in [0, 1].
        precision: (K,) float64 precision after each counted detection, by descending score.
        recall: (K,) float64 recall after each counted detection.
        scores: (K,) float32 the counted detections' scores (the thresholds of the curve's points).
        positives: number of positive ground-truth boxes.
    """

    average_precision: float
    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    positives: int


def _check_boxes(boxes: np.ndarray, name: str) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} should be (N, 4) x1, y1, x2, y2, got shape {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise ValueError(f"{name} should be finite")
    return boxes


def match_detections(
    boxes: np.ndarray, scores: np.ndarray, truth: np.ndarray, positive: np.ndarray, iou_threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Match one photo's detections to its ground truth (VOC's greedy rule, ignore regions).

    Args:
        boxes: (D, 4) detections, xyxy pixels.
        scores: (D,) their scores.
        truth: (M, 4) ground-truth boxes, xyxy pixels.
        positive: (M,) bool: True for the boxes evaluated, False for ignore regions.
        iou_threshold: least IoU of a match.

    Returns:
        ``(true_positive (D,) bool, counted (D,) bool)`` in the input order; a detection that is
        not counted matched an ignore region.

    Raises:
        ValueError: shapes disagree or a value is not finite.
    """
    boxes, truth = _check_boxes(boxes, "boxes"), _check_boxes(truth, "truth")
    scores, positive = np.asarray(scores), np.asarray(positive, bool)
    if scores.shape != (len(boxes),):
        raise ValueError(f"scores should be ({len(boxes)},), got shape {scores.shape}")
    if positive.shape != (len(truth),):
        raise ValueError(f"positive should be ({len(truth)},), got shape {positive.shape}")
    true_positive = np.zeros(len(boxes), bool)
    counted = np.ones(len(boxes), bool)
    if not len(truth):
        return true_positive, counted
    used = np.zeros(len(truth), bool)
    for d in np.argsort(-scores, kind="stable"):
        iou = box_iou(boxes[d], truth)[0]
        best = int(np.argmax(iou))
        if iou[best] < iou_threshold:
            continue  # a false positive
        if not positive[best]:
            counted[d] = False
        elif not used[best]:
            used[best] = True
            true_positive[d] = True
    return true_positive, counted


def voc_average_precision(
    detections: Sequence[tuple[np.ndarray, np.ndarray]],
    ground_truth: Sequence[tuple[np.ndarray, np.ndarray]],
    iou_threshold: float = 0.5,
) -> PrecisionRecall:
    """VOC average precision over a set of photos.

    Args:
        detections: per photo, ``(boxes (D, 4) xyxy, scores (D,))``.
        ground_truth: per photo, ``(boxes (M, 4) xyxy, positive (M,) bool)``; boxes not positive
            are ignore regions.
        iou_threshold: least IoU of a match (VOC: 0.5).

    Returns:
        :class:`PrecisionRecall` (AP 0 when there is no positive box).

    Raises:
        ValueError: the two sequences differ in length, or a photo's arrays are malformed.
    """
    if len(detections) != len(ground_truth):
        raise ValueError(
            f"detections and ground_truth should list the same photos, got {len(detections)} and {len(ground_truth)}"
        )
    all_scores, all_tp = [], []
    positives = 0
    for (boxes, scores), (truth, positive) in zip(detections, ground_truth):
        tp, counted = match_detections(boxes, scores, truth, positive, iou_threshold)
        all_scores.append(np.asarray(scores, np.float32)[counted])
        all_tp.append(tp[counted])
        positives += int(np.count_nonzero(positive))
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0, np.float32)
    tp = np.concatenate(all_tp) if all_tp else np.zeros(0, bool)
    order = np.argsort(-scores, kind="stable")
    scores, tp = scores[order], tp[order]
    tp_sum = np.cumsum(tp)
    precision = tp_sum / np.arange(1, len(tp) + 1)
    recall = tp_sum / positives if positives else np.zeros(len(tp))
    if not positives or not len(tp):
        return PrecisionRecall(0.0, precision, recall, scores, positives)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return PrecisionRecall(float(np.sum(steps * envelope)), precision, recall, scores, positives)
