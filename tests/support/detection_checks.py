"""Comparing face detections with expected ones (goldens, facenet-pytorch, another configuration)."""

from __future__ import annotations

import numpy as np


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) xyxy boxes -> (N, M) IoU."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def assert_matches(got, boxes, scores, landmarks, *, min_iou=0.98, score_tol=5e-3, px=1.0) -> None:
    """Assert ``got`` (a ``lanner.Detections``) holds the same faces: same count, each matched to a
    different expected face with IoU >= ``min_iou``, scores within ``score_tol``, landmarks within ``px``."""
    boxes, scores, landmarks = (
        np.asarray(x, np.float32).reshape(s) for x, s in ((boxes, (-1, 4)), (scores, (-1,)), (landmarks, (-1, 5, 2)))
    )
    assert len(got) == len(scores)
    if not len(scores):
        return
    overlap = iou(got.boxes, boxes)
    match = overlap.argmax(1)
    assert len(set(match.tolist())) == len(match), "two detections matched one golden face"
    assert overlap.max(1).min() >= min_iou
    np.testing.assert_allclose(got.scores, scores[match], atol=score_tol)
    np.testing.assert_allclose(got.landmarks, landmarks[match], atol=px)
