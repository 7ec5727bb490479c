"""Degradations: seeded per sample, geometry of face downsampling, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data as skdata

from lanner.distill.degrade import (
    Greyscale,
    JpegCompression,
    MotionBlur,
    default_degradations,
    downsample_face,
)


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return np.ascontiguousarray(skdata.astronaut()[30:130, 160:260])  # her face, 100x100 RGB


def test_same_seed_and_index_repeat_exactly(face):
    a, b = default_degradations(seed=3), default_degradations(seed=3)
    for index in range(20):
        np.testing.assert_array_equal(a(face, a.rng(index)), b(face, b.rng(index)))


def test_other_index_or_seed_differs(face):
    d = default_degradations(seed=3)
    outs = [d(face, d.rng(i)).tobytes() for i in range(10)]
    assert len(set(outs)) == 10
    other = default_degradations(seed=4)
    assert other(face, other.rng(0)).tobytes() != outs[0]


def test_downsample_face_geometry(face):
    landmarks = np.array([[30.0, 40.0], [70.0, 40.0], [50.0, 60.0], [35.0, 80.0], [65.0, 80.0]])
    small, small_lm = downsample_face(face, landmarks, face_width=16, box_width=80)
    assert small.shape == (20, 20, 3)  # 100 px * 16 / 80
    # pixel centres: x' = (x + 0.5) * 0.2 - 0.5
    np.testing.assert_allclose(small_lm, (landmarks + 0.5) * 0.2 - 0.5, atol=1e-5)
    # area interpolation: the mean intensity survives
    assert abs(float(small.mean()) - float(face.mean())) < 1.0


def test_downsample_refuses_bad_input(face):
    lm = np.zeros((5, 2))
    with pytest.raises(ValueError, match=r"should be an \(H, W, 3\) uint8 array, got \(100, 100, 3\) float64"):
        downsample_face(face.astype(np.float64), lm, 16, 80)
    with pytest.raises(ValueError, match="should be > 0"):
        downsample_face(face, lm, 0, 80)
    with pytest.raises(ValueError, match="upsampling is not a degradation"):
        downsample_face(face, lm, 90, 80)
    d = default_degradations()
    with pytest.raises(ValueError, match="got \\(100, 100\\) uint8"):
        d(face[:, :, 0], d.rng(0))


def test_single_steps(face):
    rng = np.random.default_rng(0)
    grey = Greyscale()(face, rng)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    blurred = MotionBlur(length=(4.0, 4.0))(face, rng)
    assert (
        blurred.shape == face.shape
        and np.abs(np.diff(blurred.astype(int), axis=1)).mean() < np.abs(np.diff(face.astype(int), axis=1)).mean()
    )
    jpeg = JpegCompression(quality=(10, 10))(face, rng)
    assert jpeg.shape == face.shape and not np.array_equal(jpeg, face)
