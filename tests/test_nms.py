"""Tests of lanner.ops.nms / batched_nms / soft_nms against the NumPy oracle (tests/support/ops_reference.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import lanner
from lanner import _C, ops

from ops_reference import (
    batched_nms_reference,
    box_areas,
    nms_reference,
    overlap_with,
    soft_nms_reference,
)

pytestmark = pytest.mark.native

THRESHOLDS = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
MODES = ["union", "min"]
# Example counts stay moderate: these tests also run under ASan+UBSan (make sanitize).
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def clustered_boxes(n: int, seed: int, frame: float = 640.0) -> tuple[np.ndarray, np.ndarray]:
    """Detector-like boxes: jittered clusters around objects, float32 xyxy, scores in (0, 1)."""
    rng = np.random.default_rng(seed)
    n_objects = max(1, n // 20)
    cx, cy = rng.uniform(0, frame, (2, n_objects))
    size = rng.uniform(8, 120, n_objects)
    obj = rng.integers(0, n_objects, n)
    w = size[obj] * rng.uniform(0.6, 1.4, n)
    h = size[obj] * rng.uniform(0.6, 1.4, n)
    x = cx[obj] + rng.normal(0, 0.2, n) * size[obj]
    y = cy[obj] + rng.normal(0, 0.2, n) * size[obj]
    boxes = np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=1).astype(np.float32)
    return boxes, rng.uniform(0.01, 1.0, n).astype(np.float32)


def check_greedy_invariants(boxes, scores, keep, iou_threshold, mode="union"):
    """Kept boxes pairwise overlap <= threshold; every dropped box overlaps a better kept box."""
    b = boxes.astype(np.float64)
    areas = box_areas(b)
    kept = set(keep.tolist())
    rank = {i: r for r, i in enumerate(np.lexsort((np.arange(len(scores)), -scores.astype(np.float64))))}
    for i in keep:
        others = keep[keep != i]
        assert not np.any(overlap_with(b[i], areas[i], b[others], areas[others], mode) > iou_threshold)
    for j in range(len(scores)):
        if j in kept:
            continue
        better = np.array([i for i in keep if rank[i] < rank[j]], dtype=np.int64)
        assert np.any(overlap_with(b[j], areas[j], b[better], areas[better], mode) > iou_threshold)


# --- agreement with the NumPy oracle ------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 17, 127, 128, 300, 3000])
@pytest.mark.parametrize("iou_threshold", THRESHOLDS)
@pytest.mark.parametrize("mode", MODES)
def test_nms_matches_reference(n, iou_threshold, mode):
    boxes, scores = clustered_boxes(n, seed=n)
    keep = ops.nms(boxes, scores, iou_threshold, mode=mode)
    assert keep.dtype == np.int64
    np.testing.assert_array_equal(keep, nms_reference(boxes, scores, iou_threshold, mode=mode))


@pytest.mark.parametrize("score_threshold", [0.0, 0.25, 0.9, 1.0])
@pytest.mark.parametrize("max_output", [None, 0, 1, 7, 10_000])
def test_nms_score_threshold_and_max_output_match_reference(score_threshold, max_output):
    boxes, scores = clustered_boxes(800, seed=3)
    keep = ops.nms(boxes, scores, 0.45, score_threshold=score_threshold, max_output=max_output)
    ref = nms_reference(boxes, scores, 0.45, score_threshold=score_threshold, max_output=max_output)
    np.testing.assert_array_equal(keep, ref)
    assert np.all(scores[keep] > score_threshold)
    if max_output is not None:
        assert len(keep) <= max_output


@pytest.mark.parametrize("n", [0, 5, 200, 2500])
@pytest.mark.parametrize("n_classes", [1, 3, 40])
@pytest.mark.parametrize("mode", MODES)
def test_batched_nms_matches_reference(n, n_classes, mode):
    boxes, scores = clustered_boxes(n, seed=n + n_classes)
    class_ids = np.random.default_rng(n).integers(-5, n_classes - 5, n)
    for max_output in (None, 3):
        keep = ops.batched_nms(boxes, scores, class_ids, 0.5, mode=mode, max_output=max_output)
        ref = batched_nms_reference(boxes, scores, class_ids, 0.5, mode=mode, max_output=max_output)
        np.testing.assert_array_equal(keep, ref)


def test_batched_nms_classes_do_not_suppress_each_other():
    boxes = np.array([[0, 0, 10, 10]] * 3, dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7], dtype=np.float32)
    np.testing.assert_array_equal(ops.batched_nms(boxes, scores, [0, 1, 0], 0.5), [0, 1])
    np.testing.assert_array_equal(ops.batched_nms(boxes, scores, np.array([2, 1, 0], np.uint8), 0.5), [0, 1, 2])


@pytest.mark.parametrize("method", ["gaussian", "linear"])
@pytest.mark.parametrize("n", [0, 1, 30, 400])
@pytest.mark.parametrize("sigma,iou_threshold,score_threshold", [(0.5, 0.3, 0.001), (0.1, 0.6, 0.05), (2.0, 0.0, 0.0)])
def test_soft_nms_matches_reference(method, n, sigma, iou_threshold, score_threshold):
    boxes, scores = clustered_boxes(n, seed=7 + n)
    indices, rescored = ops.soft_nms(
        boxes, scores, method=method, sigma=sigma, iou_threshold=iou_threshold, score_threshold=score_threshold
    )
    ref_indices, ref_scores = soft_nms_reference(boxes, scores, method, sigma, iou_threshold, score_threshold)
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_allclose(rescored, ref_scores, rtol=1e-6)
    assert indices.dtype == np.int64 and rescored.dtype == np.float32
    assert np.all(np.diff(rescored) <= 0)
    assert np.all(rescored > score_threshold)


def test_soft_nms_result_is_frozen_and_unpacks():
    result = ops.soft_nms([[0, 0, 10, 10], [0, 0, 10, 9]], [0.9, 0.8])
    indices, rescored = result
    assert indices is result.indices and rescored is result.scores
    np.testing.assert_array_equal(indices, [0, 1])
    assert rescored[1] == pytest.approx(0.8 * np.exp(-(0.9**2) / 0.5), rel=1e-6)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.indices = None  # type: ignore[misc]


def test_soft_nms_linear_leaves_low_overlap_untouched():
    boxes = [[0, 0, 10, 10], [0, 0, 10, 7], [0, 0, 10, 2]]  # IoU 0.7 and 0.2 with the first
    indices, rescored = ops.soft_nms(boxes, [0.9, 0.8, 0.6], method="linear", iou_threshold=0.3)
    np.testing.assert_array_equal(indices, [0, 2, 1])
    np.testing.assert_allclose(rescored, [0.9, 0.6, 0.8 * 0.3], rtol=1e-6)


# --- threshold semantics, ties, degenerate boxes ----------------------------------------


def pair_with_overlap(value: float, mode: str) -> np.ndarray:
    """Two 100x100-ish boxes whose overlap (IoU or min-area ratio) is ``value``."""
    if mode == "union":
        # B inside A: IoU = area(B) / area(A) = w / 100.
        return np.array([[0, 0, 100, 100], [0, 0, 100 * value, 100]], dtype=np.float32)
    # Equal areas, B shifted: inter / min(area) = overlap width / 100.
    shift = 100 * (1 - value)
    return np.array([[0, 0, 100, 100], [shift, 0, shift + 100, 100]], dtype=np.float32)


@pytest.mark.parametrize(
    "iou_threshold,delta",
    [(t, d) for t in (0.0, 0.2, 0.5, 0.8, 1.0) for d in (-1e-5, 1e-5) if 0.0 < t + d <= 1.0],
)
@pytest.mark.parametrize("mode", MODES)
def test_threshold_is_strict_at_plus_minus_1e5(iou_threshold, delta, mode):
    value = iou_threshold + delta
    boxes = pair_with_overlap(value, mode)
    scores = np.array([0.9, 0.8], dtype=np.float32)
    expected = [0] if delta > 0 else [0, 1]
    np.testing.assert_array_equal(ops.nms(boxes, scores, iou_threshold, mode=mode), expected)
    np.testing.assert_array_equal(nms_reference(boxes, scores, iou_threshold, mode=mode), expected)


@pytest.mark.parametrize("iou_threshold", [0.25, 0.5, 0.75])
def test_overlap_exactly_at_threshold_is_not_suppressed(iou_threshold):
    # IoU = w / 4 exactly in binary floating point.
    boxes = np.array([[0, 0, 4, 1], [0, 0, 4 * iou_threshold, 1]], dtype=np.float32)
    np.testing.assert_array_equal(ops.nms(boxes, [0.9, 0.8], iou_threshold), [0, 1])
    np.testing.assert_array_equal(ops.nms(boxes, [0.9, 0.8], np.nextafter(iou_threshold, 0)), [0])


def test_min_mode_suppresses_nested_box_that_union_keeps():
    boxes = np.array([[0, 0, 100, 100], [10, 10, 40, 40]], dtype=np.float32)  # IoU 0.09, min-ratio 1
    scores = np.array([0.9, 0.8], dtype=np.float32)
    np.testing.assert_array_equal(ops.nms(boxes, scores, 0.7, mode="union"), [0, 1])
    np.testing.assert_array_equal(ops.nms(boxes, scores, 0.7, mode="min"), [0])


@pytest.mark.parametrize("n", [5, 500])
def test_ties_go_to_the_lower_index(n):
    boxes = np.tile(np.array([[0, 0, 10, 10]], np.float32), (n, 1))
    scores = np.full(n, 0.5, np.float32)
    np.testing.assert_array_equal(ops.nms(boxes, scores, 0.5), [0])
    # Disjoint boxes with tied scores come out by index; -0.0 ties with +0.0.
    boxes = np.stack([np.arange(n) * 20, np.zeros(n), np.arange(n) * 20 + 10, np.full(n, 10)], 1).astype(np.float32)
    scores = np.zeros(n, np.float32)
    scores[::2] = -0.0
    scores[n // 2] = 1.0
    expected = [n // 2] + [i for i in range(n) if i != n // 2]
    np.testing.assert_array_equal(ops.nms(boxes, scores, 0.5), expected)
    np.testing.assert_array_equal(nms_reference(boxes, scores, 0.5), expected)


DEGENERATE = np.array(
    [
        [5, 5, 5, 15],  # zero width
        [5, 5, 15, 5],  # zero height
        [15, 15, 5, 5],  # negative width and height (positive w*h!)
        [5, 5, 5, 5],  # a point
        [15, 5, 5, 15],  # negative width
    ],
    dtype=np.float32,
)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("iou_threshold", [0.0, 0.5])
def test_degenerate_boxes_never_suppress_and_are_never_suppressed(mode, iou_threshold):
    normal = np.array([[0, 0, 20, 20], [1, 1, 19, 19]], dtype=np.float32)
    boxes = np.concatenate([DEGENERATE, normal])
    n_deg = len(DEGENERATE)
    # Degenerate boxes ranked both above and below the normal ones.
    for scores in (np.linspace(0.9, 0.1, len(boxes)), np.linspace(0.1, 0.9, len(boxes))):
        scores = scores.astype(np.float32)
        keep = ops.nms(boxes, scores, iou_threshold, mode=mode)
        np.testing.assert_array_equal(keep, nms_reference(boxes, scores, iou_threshold, mode=mode))
        assert set(range(n_deg)) <= set(keep.tolist())  # all degenerate boxes kept
        assert len(set(keep.tolist()) & {n_deg, n_deg + 1}) == 1  # the two normal ones: one suppressed
    assert np.all(box_areas(DEGENERATE) == 0)


def test_degenerate_boxes_many_use_the_grid_path():
    boxes, scores = clustered_boxes(1000, seed=11)
    boxes[::3, 2] = boxes[::3, 0]  # a third get zero width
    boxes[1::7, 3] = boxes[1::7, 1] - 5  # some negative height
    for b, s in [(boxes, scores), with_many_kept(boxes, scores)]:
        keep = ops.nms(b, s, 0.3)
        np.testing.assert_array_equal(keep, nms_reference(b, s, 0.3))
    assert set(range(0, 1000, 3)) <= set(ops.nms(boxes, scores, 0.3).tolist())


def test_empty_input_returns_empty_int64():
    for keep in (
        ops.nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5),
        ops.nms(np.empty((0, 4)), [], 0.5),
        ops.batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), 0.5),
        ops.soft_nms(np.zeros((0, 4)), np.zeros(0)).indices,
    ):
        assert keep.shape == (0,) and keep.dtype == np.int64


# --- grid edge cases (large, elongated, far-apart and identical boxes) ------------------


def with_many_kept(boxes: np.ndarray, scores: np.ndarray, count: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Prepends `count` disjoint 1x1 boxes, ranked first, in a row just left of the boxes'
    extent: all are kept, so the kernel files the following candidates in its grid (it scans
    the kept boxes linearly while at most 256 are kept)."""
    finite = np.isfinite(boxes).all(1) & (np.abs(boxes) < 1e6).all(1)
    x0 = float(boxes[finite, 0].min()) if finite.any() else 0.0
    y0 = float(boxes[finite, 1].min()) if finite.any() else 0.0
    xs = x0 - 2.0 * (np.arange(count) + 1)
    filler = np.stack([xs, np.full(count, y0), xs + 1, np.full(count, y0 + 1)], 1).astype(np.float32)
    return np.concatenate([filler, boxes]), np.concatenate([np.full(count, 2.0, np.float32), scores])


@pytest.mark.parametrize(
    "layout", ["identical", "huge_and_small", "elongated", "outlier_far_away", "tiny_and_huge_coordinates", "grid"]
)
@pytest.mark.parametrize("iou_threshold", [0.0, 0.3, 0.6])
@pytest.mark.parametrize("path", ["linear", "grid"])
def test_grid_layouts_match_reference(layout, iou_threshold, path):
    rng = np.random.default_rng(5)
    n = 600
    boxes, scores = clustered_boxes(n, seed=9)
    if layout == "identical":
        boxes[:] = [10, 10, 50, 50]
    elif layout == "huge_and_small":
        boxes[::10] = [[-1000, -1000, 2000, 2000]] * len(boxes[::10])
        boxes[1::10, 2:] = boxes[1::10, :2] + rng.uniform(200, 600, (len(boxes[1::10]), 2))
    elif layout == "elongated":
        boxes[::2, 2] = boxes[::2, 0] + 600  # long horizontal bars
        boxes[1::4, 3] = boxes[1::4, 1] + 600  # long vertical bars
    elif layout == "outlier_far_away":
        boxes[0] = [1e30, 1e30, 1e30 + 1e25, 1e30 + 1e25]
        boxes[1] = [-3e38, -3e38, 3e38, 3e38]
    elif layout == "tiny_and_huge_coordinates":
        boxes = (boxes * np.float32(1e-30)).astype(np.float32)
        boxes[::5] *= np.float32(1e38)
    elif layout == "grid":
        xs, ys = np.meshgrid(np.arange(25) * 10.0, np.arange(24) * 10.0)
        boxes = np.stack([xs.ravel(), ys.ravel(), xs.ravel() + 15, ys.ravel() + 15], 1).astype(np.float32)
        scores = np.full(len(boxes), 0.5, np.float32)  # all tied
    if path == "grid":
        boxes, scores = with_many_kept(boxes, scores)
    for mode in MODES:
        keep = ops.nms(boxes, scores, iou_threshold, mode=mode)
        np.testing.assert_array_equal(keep, nms_reference(boxes, scores, iou_threshold, mode=mode))
        if path == "grid":
            assert set(range(300)) <= set(keep.tolist())


@pytest.mark.parametrize("iou_threshold", [0.0, 0.2, 0.5, 0.7, 0.9, 0.99, 1.0])
@pytest.mark.parametrize("mode", MODES)
def test_multiscale_sizes_match_reference(iou_threshold, mode):
    # Log-uniform box sides 4..1500 px, as a detector pyramid produces: boxes land on
    # several grid levels, and IoU skips levels by the area bound.
    rng = np.random.default_rng(17)
    n = 2500
    xy = rng.uniform(0, 1500, (n, 2))
    wh = np.exp(rng.uniform(np.log(4), np.log(1500), (n, 1))) * rng.uniform(0.8, 1.25, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    boxes[::50] = boxes[1::50]  # exact duplicates across levels' area bounds
    scores = rng.random(n).astype(np.float32)
    keep = ops.nms(boxes, scores, iou_threshold, mode=mode)
    np.testing.assert_array_equal(keep, nms_reference(boxes, scores, iou_threshold, mode=mode))


@pytest.mark.parametrize("n", [20_000])
def test_large_input_matches_reference_and_invariants_hold(n):
    boxes, scores = clustered_boxes(n, seed=1, frame=4000.0)
    keep = ops.nms(boxes, scores, 0.5)
    np.testing.assert_array_equal(keep, nms_reference(boxes, scores, 0.5))
    small = ops.nms(boxes[:400], scores[:400], 0.5)
    check_greedy_invariants(boxes[:400], scores[:400], small, 0.5)


# --- hypothesis: properties on arbitrary small inputs ------------------------------------

coordinate = st.floats(-50, 150, width=32, allow_nan=False, allow_infinity=False)
score = st.floats(0, 1, width=32) | st.sampled_from([0.5, 0.25])  # ties are common


@st.composite
def box_sets(draw, max_size=40):
    n = draw(st.integers(0, max_size))
    raw = draw(st.lists(st.tuples(coordinate, coordinate, coordinate, coordinate), min_size=n, max_size=n))
    # Mostly proper boxes, some degenerate: order corners unless told not to.
    fix = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    boxes = np.array(
        [(min(a, c), min(b, d), max(a, c), max(b, d)) if ok else (a, b, c, d) for (a, b, c, d), ok in zip(raw, fix)],
        dtype=np.float32,
    ).reshape(n, 4)
    if n and draw(st.booleans()):  # duplicate some rows exactly
        boxes[draw(st.integers(0, n - 1))] = boxes[0]
    scores = np.array(draw(st.lists(score, min_size=n, max_size=n)), dtype=np.float32)
    return boxes, scores


@PROPERTY_SETTINGS
@given(data=box_sets(), iou_threshold=st.floats(0, 1), mode=st.sampled_from(MODES))
def test_property_nms_equals_reference_and_is_greedy(data, iou_threshold, mode):
    boxes, scores = data
    keep = ops.nms(boxes, scores, iou_threshold, mode=mode)
    np.testing.assert_array_equal(keep, nms_reference(boxes, scores, iou_threshold, mode=mode))
    check_greedy_invariants(boxes, scores, keep, iou_threshold, mode)
    assert len(np.unique(keep)) == len(keep)


@PROPERTY_SETTINGS
@given(
    data=box_sets(),
    iou_threshold=st.floats(0, 1),
    seed=st.integers(0, 2**16),
    max_output=st.none() | st.integers(0, 10),
    score_threshold=st.none() | st.floats(0, 1),
)
def test_property_batched_nms_equals_reference(data, iou_threshold, seed, max_output, score_threshold):
    boxes, scores = data
    class_ids = np.random.default_rng(seed).integers(0, 3, len(scores))
    keep = ops.batched_nms(
        boxes, scores, class_ids, iou_threshold, max_output=max_output, score_threshold=score_threshold
    )
    ref = batched_nms_reference(boxes, scores, class_ids, iou_threshold, score_threshold, max_output)
    np.testing.assert_array_equal(keep, ref)


@PROPERTY_SETTINGS
@given(data=box_sets(max_size=25), method=st.sampled_from(["gaussian", "linear"]), sigma=st.floats(0.05, 2.0))
@example(  # a decay of exp(-2**-54), 1.0 in libm, leaves two scores tied: the lower index goes first
    data=(
        np.array([[0, 0, 1, 8], [0, 0, 1, 2**-24], [0, 0, 0, 0]], np.float32),
        np.array([1.0, 0.5, 0.5], np.float32),
    ),
    method="gaussian",
    sigma=1.0,
)
def test_property_soft_nms_equals_reference(data, method, sigma):
    boxes, scores = data
    indices, rescored = ops.soft_nms(boxes, scores, method=method, sigma=sigma)
    ref_indices, ref_scores = soft_nms_reference(boxes, scores, method, sigma)
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_allclose(rescored, ref_scores, rtol=1e-6)


# --- input conversion and validation -----------------------------------------------------


def test_contiguous_float32_is_passed_without_copy():
    boxes, _ = clustered_boxes(10, seed=0)
    assert ops._as_array("boxes", boxes, np.float32, "fiu") is boxes
    assert ops._as_array("boxes", boxes[:, ::-1], np.float32, "fiu").flags.c_contiguous


@pytest.mark.parametrize(
    "boxes,scores",
    [
        ([[0, 0, 10, 10], [1, 1, 11, 11]], [0.9, 0.8]),  # lists of ints
        (np.array([[0, 0, 10, 10], [1, 1, 11, 11]], np.float64), np.array([0.9, 0.8], np.float64)),
        (np.array([[0, 0, 10, 10], [1, 1, 11, 11]], np.int16), np.array([9, 8], np.uint8)),
        (np.asfortranarray(np.array([[0, 0, 10, 10], [1, 1, 11, 11]], np.float32)), (0.9, 0.8)),
        (np.array([[0, 0, 10, 10, 0], [1, 1, 11, 11, 0]], np.float32)[:, :4], np.array([0.9, 0.8], np.float16)),
    ],
)
def test_array_likes_are_converted(boxes, scores):
    np.testing.assert_array_equal(ops.nms(boxes, scores, 0.5), [0])


@pytest.mark.parametrize(
    "boxes,scores,error,match",
    [
        (
            np.zeros(4, np.float32),
            np.zeros(1, np.float32),
            ValueError,
            r"boxes should be a 2-D array .* got 1-D shape \(4,\)",
        ),
        (
            np.zeros((2, 5), np.float32),
            np.zeros(2, np.float32),
            ValueError,
            r"boxes should have shape \(N, 4\), got \(2, 5\)",
        ),
        (np.zeros((2, 4, 1), np.float32), np.zeros(2, np.float32), ValueError, r"got 3-D shape \(2, 4, 1\)"),
        (
            np.zeros((3, 4), np.float32),
            np.zeros(2, np.float32),
            ValueError,
            r"scores should have shape \(N,\) = \(3,\) to match boxes, got \(2,\)",
        ),
        (
            np.zeros((2, 4), np.float32),
            np.zeros((2, 1), np.float32),
            ValueError,
            r"scores should be a 1-D array .* got 2-D",
        ),
        (
            np.array([[0, 0, np.nan, 1]], np.float32),
            [0.5],
            ValueError,
            r"boxes should contain only finite coordinates, got nan at row 0, column 2",
        ),
        (np.array([[0, 0, 1, 1]], np.float32), [np.inf], ValueError, r"scores should be finite, got inf at index 0"),
        (np.array([[0, 0, 1e300, 1]]), [0.5], ValueError, r"boxes should contain only finite coordinates, got inf"),
        (
            np.array([["a", "b", "c", "d"]]),
            [0.5],
            TypeError,
            r"boxes should have a real numeric dtype .* got dtype <U1",
        ),
        (
            np.array([[0, 0, 1, 1]], object),
            [0.5],
            TypeError,
            r"boxes should have a real numeric dtype .* got dtype object",
        ),
        (np.array([[True, False, True, True]]), [0.5], TypeError, r"got dtype bool"),
        (np.array([[0, 0, 1, 1]], np.complex64), [0.5], TypeError, r"got dtype complex64"),
        ([[0, 0, 1], [0, 0, 1, 1]], [0.5, 0.5], TypeError, r"boxes should be an array-like of numbers"),
        ("boxes", [0.5], TypeError, r"got dtype <U5"),
        (None, [0.5], TypeError, r"got dtype object"),
    ],
)
def test_bad_inputs_raise_naming_expected_and_actual(boxes, scores, error, match):
    with pytest.raises(error, match=match):
        ops.nms(boxes, scores, 0.5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"iou_threshold": -0.1}, r"iou_threshold should be in \[0, 1\], got -0.1"),
        ({"iou_threshold": 1.5}, r"iou_threshold should be in \[0, 1\], got 1.5"),
        ({"iou_threshold": float("nan")}, r"iou_threshold should be in \[0, 1\], got nan"),
        ({"score_threshold": 2.0}, r"score_threshold should be in \[0, 1\], got 2"),
        ({"score_threshold": float("-inf")}, r"score_threshold should be in \[0, 1\], got -inf"),
        ({"max_output": -1}, r"max_output should be >= 0 or None, got -1"),
        ({"mode": "iou"}, r"mode should be 'union' or 'min', got 'iou'"),
        ({"device": "tpu"}, r"device should be 'cpu' or 'cuda', got 'tpu'"),
    ],
)
def test_bad_parameters_raise_value_error(kwargs, match):
    args = {"iou_threshold": 0.5, **kwargs}
    boxes, scores = clustered_boxes(3, seed=0)
    with pytest.raises(ValueError, match=match):
        ops.nms(boxes, scores, **args)
    with pytest.raises(ValueError, match=match):
        ops.batched_nms(boxes, scores, [0, 0, 1], **args)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"method": "hard"}, r"method should be 'gaussian' or 'linear', got 'hard'"),
        ({"sigma": 0.0}, r"sigma should be a finite number > 0, got 0"),
        ({"sigma": float("inf")}, r"sigma should be a finite number > 0, got inf"),
        ({"iou_threshold": 1.01}, r"iou_threshold should be in \[0, 1\], got 1.01"),
        ({"score_threshold": -0.5}, r"score_threshold should be in \[0, 1\], got -0.5"),
    ],
)
def test_soft_nms_bad_parameters(kwargs, match):
    boxes, scores = clustered_boxes(3, seed=0)
    with pytest.raises(ValueError, match=match):
        ops.soft_nms(boxes, scores, **kwargs)


@pytest.mark.parametrize(
    "class_ids,error,match",
    [
        (np.zeros(2, np.int64), ValueError, r"class_ids should have shape \(N,\) = \(3,\) to match boxes, got \(2,\)"),
        (np.zeros((3, 1), np.int64), ValueError, r"class_ids should be a 1-D array"),
        (np.zeros(3, np.float32), TypeError, r"class_ids should have an integer dtype, got dtype float32"),
        (["a", "b", "c"], TypeError, r"class_ids should have an integer dtype, got dtype <U1"),
        (np.array([2**63, 0, 0], np.uint64), ValueError, r"class_ids should fit in int64"),
    ],
)
def test_batched_nms_bad_class_ids(class_ids, error, match):
    boxes, scores = clustered_boxes(3, seed=0)
    with pytest.raises(error, match=match):
        ops.batched_nms(boxes, scores, class_ids, 0.5)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (
            lambda b, s: _C.nms(b.astype(np.float64), s, 0.5),
            ValueError,
            r"boxes should have dtype float32, got float64",
        ),
        (
            lambda b, s: _C.nms(b.byteswap().view(b.dtype.newbyteorder()), s, 0.5),
            ValueError,
            r"boxes should have dtype float32, got >f4",
        ),
        (lambda b, s: _C.nms(np.asfortranarray(b), s, 0.5), ValueError, r"boxes should be C-contiguous"),
        (lambda b, s: _C.nms(b[::2], s[::2], 0.5), ValueError, r"boxes should be C-contiguous"),
        (lambda b, s: _C.nms(b.tolist(), s, 0.5), TypeError, r"boxes should be a numpy.ndarray of float32, got list"),
        (lambda b, s: _C.nms(b, None, 0.5), TypeError, r"scores should be a numpy.ndarray of float32, got NoneType"),
        (
            lambda b, s: _C.batched_nms(b, s, np.zeros(len(s), np.int32), 0.5),
            ValueError,
            r"class_ids should have dtype int64, got int32",
        ),
        (
            lambda b, s: _C.batched_nms(b, s, None, 0.5),
            TypeError,
            r"class_ids should be a numpy.ndarray of int64, got NoneType",
        ),
        (
            lambda b, s: _C.soft_nms(b, s.astype(np.float16)),
            ValueError,
            r"scores should have dtype float32, got float16",
        ),
        (lambda b, s: _C.nms(b, s, "0.5"), TypeError, r"incompatible function arguments"),
    ],
)
def test_native_boundary_is_strict(call, error, match):
    boxes, scores = clustered_boxes(4, seed=0)
    with pytest.raises(error, match=match):
        call(boxes, scores)


def test_cuda_request_without_cuda_raises_clearly():
    if lanner.has_cuda():
        pytest.skip("a CUDA device is present")
    boxes, scores = clustered_boxes(10, seed=0)
    with pytest.raises(RuntimeError, match=r"device='cuda' requested, but .*(without CUDA|no CUDA device)"):
        ops.nms(boxes, scores, 0.5, device="cuda")


# --- fuzz: garbage at the C++ boundary must never crash ----------------------------------

GARBAGE_VALUES = np.array([np.nan, np.inf, -np.inf, 3.4e38, -3.4e38, 1e-45, -0.0, 0.0, 1e30], np.float32)


def random_input(rng: np.random.Generator):
    """A random (often invalid) boxes/scores/class_ids triple and thresholds."""
    n = int(rng.choice([0, 1, 2, 3, 7, 33, 130, 300]))
    kind = rng.integers(0, 10)
    boxes = rng.uniform(-100, 300, (n, 4)).astype(np.float32)
    if kind == 0:  # garbage values sprinkled in
        mask = rng.random(boxes.shape) < 0.05
        boxes[mask] = rng.choice(GARBAGE_VALUES, mask.sum())
    elif kind == 1:  # wrong shape
        boxes = rng.uniform(0, 10, tuple(int(d) for d in rng.integers(0, 6, rng.integers(0, 4)))).astype(np.float32)
    elif kind == 2:  # wrong dtype
        boxes = boxes.astype(rng.choice([np.float64, np.int32, np.float16, np.uint8, np.bool_, np.complex64]))
    elif kind == 3:  # huge finite coordinates
        boxes = (boxes * np.float32(1e36)).astype(np.float32)
    elif kind == 4:  # non-contiguous
        boxes = np.asfortranarray(boxes)
    scores = rng.uniform(-1, 2, n).astype(np.float32)
    if rng.random() < 0.1:
        scores = scores[: max(0, n - 1)]
    if rng.random() < 0.05 and len(scores):
        scores[rng.integers(0, len(scores))] = rng.choice(GARBAGE_VALUES)
    if rng.random() < 0.05:
        scores = scores.astype(np.float64)
    class_ids = rng.integers(-3, 3, n if rng.random() > 0.05 else n + 1).astype(np.int64)
    iou = float(rng.choice([0.0, 0.5, 1.0, -0.1, 1.1, np.nan, rng.random()]))
    score_threshold = rng.choice([None, 0.0, 0.5, 1.0, 2.0, -1.0, np.nan])
    max_output = rng.choice([None, 0, 1, 5, -1, 10**6])
    return boxes, scores, class_ids, iou, score_threshold, max_output


def valid_indices(keep: np.ndarray, n: int) -> bool:
    return (
        keep.dtype == np.int64
        and keep.ndim == 1
        and len(np.unique(keep)) == len(keep)
        and np.all((keep >= 0) & (keep < n))
    )


def test_fuzz_native_boundary_10000_inputs():
    rng = np.random.default_rng(20261123)
    errors = (ValueError, TypeError)
    outcomes = {"ok": 0, "error": 0}
    for trial in range(10_000):
        boxes, scores, class_ids, iou, score_threshold, max_output = random_input(rng)
        st_arg = None if score_threshold is None else float(score_threshold)
        mo_arg = None if max_output is None else int(max_output)
        which = trial % 5
        try:
            if which == 0:
                keep = _C.nms(boxes, scores, iou, st_arg, mo_arg, "union", "cpu")
            elif which == 1:
                keep = _C.batched_nms(boxes, scores, class_ids, iou, st_arg, mo_arg, "min", "cpu")
            elif which == 2:
                keep, rescored = _C.soft_nms(boxes, scores, "gaussian" if trial % 2 else "linear", 0.5, iou, 0.1)
                assert rescored.dtype == np.float32 and len(rescored) == len(keep)
            elif which == 3:
                keep = ops.nms(boxes, scores, iou, score_threshold=st_arg, max_output=mo_arg, mode="min")
            else:
                keep = ops.batched_nms(boxes, scores, class_ids, iou, score_threshold=st_arg, max_output=mo_arg)
        except errors:
            outcomes["error"] += 1
            continue
        outcomes["ok"] += 1
        assert valid_indices(keep, len(boxes)), (trial, keep)
        if which in (0, 3) and len(boxes) <= 33:  # cross-check the accepted ones against the oracle
            mode = "union" if which == 0 else "min"
            np.testing.assert_array_equal(keep, nms_reference(boxes, scores, iou, st_arg, mo_arg, mode))
    assert outcomes["ok"] > 1000 and outcomes["error"] > 1000, outcomes


# --- MTCNN (facenet-pytorch) pixel-inclusive convention ---------------------------------


def facenet_nms_numpy(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str) -> np.ndarray:
    """facenet-pytorch 2.6.0 ``models.utils.detect_face.nms_numpy`` (width = x2 - x1 + 1), in float64."""
    x1, y1, x2, y2 = boxes.astype(np.float64).T
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores)
    pick = []
    while order.size > 0:
        i = order[-1]
        pick.append(i)
        idx = order[:-1]
        w = np.maximum(0.0, np.minimum(x2[i], x2[idx]) - np.maximum(x1[i], x1[idx]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[idx]) - np.maximum(y1[i], y1[idx]) + 1)
        inter = w * h
        o = inter / np.minimum(area[i], area[idx]) if method == "Min" else inter / (area[i] + area[idx] - inter)
        order = order[np.where(o <= threshold)]
    return np.asarray(pick, dtype=np.int64)


@pytest.mark.parametrize("method,mode", [("Union", "union"), ("Min", "min")])
@pytest.mark.parametrize("threshold", [0.5, 0.7])
def test_mtcnn_convention_via_plus_one_corners(method, mode, threshold):
    boxes, _ = clustered_boxes(400, seed=21)
    boxes = np.round(boxes)  # MTCNN boxes are integral after rerec/pad
    scores = np.random.default_rng(21).permutation(400).astype(np.float32) / 400  # distinct
    inclusive = boxes + np.array([0, 0, 1, 1], np.float32)
    keep = ops.nms(inclusive, scores, threshold, mode=mode)
    np.testing.assert_array_equal(keep, facenet_nms_numpy(boxes, scores, threshold, method))
