"""CPU/CUDA parity of lanner.ops.nms / batched_nms (skipped without a CUDA device).

Not marked ``native``: the sanitizer run (ASan+UBSan, ``make sanitize``) does not drive the
CUDA runtime. The CUDA kernel makes the same float64, FMA-free overlap decisions as the CPU
kernel, so results must be identical, ties included.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_nms import DEGENERATE, MODES, clustered_boxes

import lanner
from lanner import ops

cuda = pytest.mark.skipif(not lanner.has_cuda(), reason="no CUDA device (lanner.has_cuda() is False)")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 1000, 20_000])
@pytest.mark.parametrize("iou_threshold", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("mode", MODES)
def test_cuda_matches_cpu(n, iou_threshold, mode):
    boxes, scores = clustered_boxes(n, seed=n)
    if n:
        scores[::9] = scores[0]  # ties
    for kwargs in ({}, {"score_threshold": 0.3}, {"max_output": 10}):
        cpu = ops.nms(boxes, scores, iou_threshold, mode=mode, **kwargs)
        gpu = ops.nms(boxes, scores, iou_threshold, mode=mode, device="cuda", **kwargs)
        np.testing.assert_array_equal(gpu, cpu)
    class_ids = np.random.default_rng(n).integers(0, 4, n)
    np.testing.assert_array_equal(
        ops.batched_nms(boxes, scores, class_ids, iou_threshold, mode=mode, device="cuda"),
        ops.batched_nms(boxes, scores, class_ids, iou_threshold, mode=mode),
    )


@pytest.mark.cuda
@cuda
def test_cuda_degenerate_and_tied_boxes_match_cpu():
    boxes = np.concatenate([DEGENERATE, np.tile(np.array([[0, 0, 20, 20]], np.float32), (100, 1))])
    scores = np.full(len(boxes), 0.5, np.float32)
    scores[::2] = -0.0
    np.testing.assert_array_equal(ops.nms(boxes, scores, 0.5, device="cuda"), ops.nms(boxes, scores, 0.5))
