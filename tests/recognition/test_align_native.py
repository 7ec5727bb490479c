"""lanner._C.align_transforms (the checks, similarity fits and supersampling factors of align_faces) and
lanner._C.faces_inside (its border rule, without raising) against NumPy oracles: Umeyama's SVD fit, the factor's
formula, and the checks written out in Python."""

from __future__ import annotations

import math

import numpy as np
import pytest
from align_reference import umeyama  # tests/support
from hypothesis import given, settings
from hypothesis import strategies as st

from lanner import _C
from lanner.face.align import MIN_FACE_EXTENT, TEMPLATE_5PT

pytestmark = pytest.mark.native

TEMPLATE = TEMPLATE_5PT.astype(np.float64)


def factor_ref(m: np.ndarray) -> int:
    """The smallest k making the warp onto a k-times chip an upsampling (with align.py's 0.01 slack)."""
    return max(1, math.ceil(1.0 / math.hypot(m[0, 0], m[1, 0]) - 0.01))


def first_problem_ref(points: np.ndarray, shape: tuple[int, int] | None) -> str | None:
    """The message align_transforms gives (its start), or None: finiteness of every face first, then
    zero size, then (with an image) inside."""
    for i, face in enumerate(points):
        if not np.isfinite(face).all():
            return f"landmarks should be finite, face {i} has NaN or inf"
    for i, face in enumerate(points):
        if (np.ptp(face, axis=0) < MIN_FACE_EXTENT).all():
            return f"face {i} has zero size"
    if shape is not None:
        h, w = shape
        for i, face in enumerate(points):
            for j, (x, y) in enumerate(face):
                if not (-0.5 <= x <= w - 0.5 and -0.5 <= y <= h - 0.5):
                    return f"face {i} is partly outside the {w}x{h} image: landmark {j} at ({x:.1f}, {y:.1f})"
    return None


def random_faces(rng: np.random.Generator, count: int) -> np.ndarray:
    faces = []
    for _ in range(count):
        scale, angle = rng.uniform(0.05, 3.0), math.radians(rng.uniform(-60, 60))
        c, s = scale * math.cos(angle), scale * math.sin(angle)
        points = (TEMPLATE * 100 - 0.5) @ np.array([[c, -s], [s, c]]).T + rng.uniform(0, 3000, 2)
        faces.append(points + rng.normal(0, 2.0 * scale, (5, 2)))
    return np.array(faces)


@pytest.mark.parametrize("size", [8, 32, 150])
def test_transforms_match_umeyama_and_the_factor_formula(size):
    landmarks = random_faces(np.random.default_rng(size), 50)
    matrices, factors = _C.align_transforms(landmarks, TEMPLATE, size)
    assert matrices.shape == (50, 2, 3) and matrices.dtype == np.float64
    assert factors.shape == (50,) and factors.dtype == np.int32
    want = np.array([umeyama(face, TEMPLATE * size - 0.5) for face in landmarks])
    np.testing.assert_allclose(matrices, want, rtol=1e-9, atol=1e-9)
    assert factors.tolist() == [factor_ref(m) for m in matrices]
    if size == 32:
        assert factors.min() == 1 and factors.max() > 4  # both ends of the range are exercised


def test_float32_landmarks_fit_as_their_float64_values():
    landmarks = random_faces(np.random.default_rng(1), 9).astype(np.float32)
    got = _C.align_transforms(landmarks, TEMPLATE, 32)[0]
    np.testing.assert_array_equal(got, _C.align_transforms(landmarks.astype(np.float64), TEMPLATE, 32)[0])


def test_no_faces():
    matrices, factors = _C.align_transforms(np.zeros((0, 5, 2)), TEMPLATE, 16, (10, 10))
    assert matrices.shape == (0, 2, 3) and factors.shape == (0,)


GOOD = TEMPLATE * 50 + 20  # a face inside a 100x100 image


@pytest.mark.parametrize(
    "edit, match",
    [
        ({3: np.nan, 1: "zero"}, "landmarks should be finite, face 3 has NaN or inf"),  # finiteness is checked first
        ({1: "zero", 0: "outside"}, "face 1 has zero size: its landmarks should span at least 1.0 px, got 0 x 0 px"),
        (
            {2: "outside"},
            r"face 2 is partly outside the 100x100 image: landmark 0 at \(-9\.0, 35\.2\), expected x in "
            r"\[-0\.5, 99\.5\] and y in \[-0\.5, 99\.5\]",
        ),
    ],
)
def test_checks_name_the_first_failing_face(edit, match):
    landmarks = np.repeat(GOOD[None], 5, axis=0)
    for i, change in edit.items():
        if change == "zero":
            landmarks[i] = 30.0
        elif change == "outside":
            landmarks[i] = GOOD - [45, 0]
        else:
            landmarks[i, 2, 1] = change
    with pytest.raises(ValueError, match=match):
        _C.align_transforms(landmarks, TEMPLATE, 16, (100, 100))


def test_without_an_image_only_values_are_checked():
    far = np.array([GOOD + 1e4])
    assert _C.align_transforms(far, TEMPLATE, 16)[0].shape == (1, 2, 3)
    with pytest.raises(ValueError, match="partly outside the 100x100 image"):
        _C.align_transforms(far, TEMPLATE, 16, (100, 100))


@pytest.mark.parametrize(
    "landmarks, template, size, image_size, match",
    [
        (GOOD[None].astype(np.float16), TEMPLATE, 16, None, "should have dtype float32 or float64, got float16"),
        (GOOD[None].astype(np.int64), TEMPLATE, 16, None, "float32 or float64, got int64"),
        (GOOD, TEMPLATE, 16, None, r"landmarks should have shape \(N, 5, 2\), got \(5, 2\)"),
        (np.zeros((1, 4, 2)), TEMPLATE, 16, None, r"shape \(N, 5, 2\), got \(1, 4, 2\)"),
        (np.zeros(10), TEMPLATE, 16, None, r"shape \(N, 5, 2\), got \(10,\)"),
        (np.repeat(GOOD[None], 4, axis=0)[::2], TEMPLATE, 16, None, "landmarks should be C-contiguous"),
        (GOOD[None], TEMPLATE.astype(np.float32), 16, None, "template should have dtype float64, got float32"),
        (GOOD[None], TEMPLATE[:4], 16, None, r"template should have shape \(5, 2\), got \(4, 2\)"),
        (GOOD[None], np.full((5, 2), np.nan), 16, None, "template should be finite"),
        (GOOD[None], TEMPLATE, 7, None, r"size should be in \[8, 1024\] px, got 7"),
        (GOOD[None], TEMPLATE, 1025, None, "got 1025"),
        (GOOD[None], TEMPLATE, 16, (0, 100), r"image_size should be \(H, W\) of at least 1 px each, got \(0, 100\)"),
    ],
)
def test_bad_arguments_raise(landmarks, template, size, image_size, match):
    with pytest.raises(ValueError, match=match):
        _C.align_transforms(landmarks, template, size, image_size)


def test_non_arrays_raise_type_error():
    with pytest.raises(TypeError):
        _C.align_transforms(GOOD[None].tolist(), TEMPLATE, 16)
    with pytest.raises(TypeError):
        _C.align_transforms(GOOD[None], TEMPLATE, 16, "100x100")


coordinate = st.one_of(
    st.floats(-60, 160),
    st.sampled_from([np.nan, np.inf, -np.inf, -0.5, 99.5, 1e300, -1e300, 5e-324]),
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(st.lists(coordinate, min_size=10, max_size=10), max_size=4),
    st.sampled_from([None, (100, 100), (1, 1), (3, 200)]),
    st.sampled_from([8, 16, 1024]),
)
def test_fuzz_any_landmarks_give_the_oracles_verdict(faces, image_size, size):
    """Any values: the first problem the oracle finds is the error, else finite transforms, factors >= 1."""
    landmarks = np.array(faces, np.float64).reshape(-1, 5, 2)
    problem = first_problem_ref(landmarks, image_size)
    if problem is not None:
        with pytest.raises(ValueError) as error:
            _C.align_transforms(landmarks, TEMPLATE, size, image_size)
        assert str(error.value).startswith(problem)
        return
    matrices, factors = _C.align_transforms(landmarks, TEMPLATE, size, image_size)
    assert matrices.shape == (len(landmarks), 2, 3) and (factors >= 1).all()
    for face, m in zip(landmarks, matrices):
        if np.isfinite(m).all() and np.ptp(face, axis=0).max() < 1e6:  # ordinary values: the oracle's fit
            np.testing.assert_allclose(m, umeyama(face, TEMPLATE * size - 0.5), rtol=1e-7, atol=1e-6)


def inside_ref(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N,) bool: every landmark on or inside the image's border (half a pixel beyond the outer pixel centres)."""
    h, w = shape
    x, y = points[..., 0], points[..., 1]
    return ((x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)).all(axis=1)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(st.lists(coordinate, min_size=10, max_size=10), max_size=4),
    st.sampled_from([(100, 100), (1, 1), (3, 200)]),
    st.sampled_from([np.float32, np.float64]),
)
def test_fuzz_faces_inside_is_the_border_rule_align_transforms_raises_on(faces, image_size, dtype):
    """Any values: faces_inside gives the oracle's verdict (False for NaN), and a face it calls inside passes
    align_transforms's border check (finite, non-zero-size faces only)."""
    with np.errstate(over="ignore"):  # 1e300 as float32 is inf: one more case
        landmarks = np.array(faces, dtype).reshape(-1, 5, 2)
    got = _C.faces_inside(landmarks, image_size)
    assert got.dtype == np.bool_ and got.shape == (len(landmarks),)
    np.testing.assert_array_equal(got, inside_ref(landmarks.astype(np.float64), image_size))
    for face, ok in zip(landmarks, got):
        if first_problem_ref(face[None].astype(np.float64), None) is None:  # finite, not of zero size
            if ok:
                _C.align_transforms(face[None], TEMPLATE, 16, image_size)
            else:
                with pytest.raises(ValueError, match="partly outside"):
                    _C.align_transforms(face[None], TEMPLATE, 16, image_size)


@pytest.mark.parametrize(
    "landmarks, image_size, error, match",
    [
        (GOOD[None].astype(np.int32), (100, 100), ValueError, "float32 or float64, got int32"),
        (GOOD, (100, 100), ValueError, r"landmarks should have shape \(N, 5, 2\), got \(5, 2\)"),
        (np.repeat(GOOD[None], 4, axis=0)[::2], (100, 100), ValueError, "landmarks should be C-contiguous"),
        (GOOD[None], (100, 0), ValueError, r"image_size should be \(H, W\) of at least 1 px each, got \(100, 0\)"),
        (GOOD[None].tolist(), (100, 100), TypeError, "incompatible function arguments"),
        (GOOD[None], "100x100", TypeError, "incompatible function arguments"),
    ],
)
def test_faces_inside_bad_arguments(landmarks, image_size, error, match):
    with pytest.raises(error, match=match):
        _C.faces_inside(landmarks, image_size)
