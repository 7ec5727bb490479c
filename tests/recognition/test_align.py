"""lanner.face.align: 5-point similarity alignment onto TEMPLATE_5PT, area-correct down to 8 px faces."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from align_reference import umeyama  # tests/support

from lanner.face.align import (
    BOX_TEMPLATE_5PT,
    TEMPLATE_5PT,
    align_faces,
    faces_inside,
    landmarks_from_boxes,
    similarity_to_template,
)


def smooth_texture(size: int, seed: int = 0, channels: int = 3, cells: int = 12) -> np.ndarray:
    """A seeded, band-limited texture (random cells x cells grid, cubic-upsampled): interpolation barely changes it."""
    grid = np.random.default_rng(seed).integers(0, 256, (cells, cells, channels)).astype(np.uint8)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC).reshape(size, size, channels)


def similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    return np.array([[c, -s, tx], [s, c, ty]])


def place_face(chip: np.ndarray, m: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Put a chip (template geometry) into an image by chip->image similarity m; returns image and its landmarks."""
    image = cv2.warpAffine(chip, m, (shape[1], shape[0]), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    points = TEMPLATE_5PT.astype(np.float64) * chip.shape[0] - 0.5
    return image.reshape(shape[0], shape[1], -1), (points @ m[:, :2].T + m[:, 2])[None].astype(np.float32)


def test_template_is_a_plausible_frontal_face():
    t = TEMPLATE_5PT
    assert t.shape == (5, 2) and t.dtype == np.float32 and not t.flags.writeable
    assert ((t > 0.1) & (t < 0.9)).all()
    assert abs((t[0, 0] + t[1, 0]) / 2 - 0.5) < 0.01 and abs((t[3, 0] + t[4, 0]) / 2 - 0.5) < 0.01  # symmetric
    assert t[0, 1] < t[2, 1] < t[3, 1]  # eyes above nose above mouth


@pytest.mark.parametrize("scale, angle", [(1.0, 0.0), (1.7, 23.0), (0.8, -35.0)])
def test_known_similarity_aligns_back(scale, angle):
    chip = smooth_texture(128, seed=1)
    m = similarity(scale, angle, 90.0, 60.0)
    image, lms = place_face(chip, m, (400, 380))
    got = align_faces(image, lms, 128)
    assert got.shape == (1, 128, 128, 3) and got.dtype == np.uint8
    err = np.abs(got[0, 8:-8, 8:-8].astype(int) - chip[8:-8, 8:-8])
    assert err.mean() < 2.0, err.mean()
    # The transform itself is exact.
    mat = similarity_to_template(lms, 128)[0]
    mapped = lms[0].astype(np.float64) @ mat[:, :2].T + mat[:, 2]
    np.testing.assert_allclose(mapped, TEMPLATE_5PT * 128 - 0.5, atol=1e-3)


@pytest.mark.parametrize("count", [1, 8, 9, 40])
def test_fit_matches_umeyama_on_noisy_landmarks(count):
    rng = np.random.default_rng(5)
    faces = []
    for _ in range(count):
        m = similarity(rng.uniform(0.05, 3.0), rng.uniform(-60, 60), *rng.uniform(-50, 3000, 2))
        points = TEMPLATE_5PT.astype(np.float64) * 100 - 0.5
        faces.append(points @ m[:, :2].T + m[:, 2] + rng.normal(0, 0.05, (5, 2)) * m[0, 0] * 100)
    landmarks = np.array(faces)
    for size in (8, 32, 150):
        got = similarity_to_template(landmarks, size)
        want = np.array([umeyama(face, TEMPLATE_5PT.astype(np.float64) * size - 0.5) for face in landmarks])
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    one = similarity_to_template(landmarks[-1:].astype(np.float32), 32)  # one face alone: the same fit
    np.testing.assert_allclose(one[0], similarity_to_template(landmarks.astype(np.float32), 32)[-1], atol=1e-9)


@pytest.mark.parametrize("count", [3, 12])
@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda face: np.where(np.arange(10).reshape(5, 2) == 7, np.inf, face), "face 2 has NaN or inf"),
        (lambda face: np.full((5, 2), 30.0), "face 2 has zero size"),
        (lambda face: face + [0, 70], r"face 2 is partly outside the 100x100 image: landmark \d"),
        (lambda face: face - [45, 0], r"face 2 is partly outside the 100x100 image: landmark 0"),
    ],
)
def test_bad_face_among_many_is_named(count, bad, match):
    landmarks = np.repeat(GOOD, count, axis=0)
    landmarks[2] = bad(landmarks[2])
    with pytest.raises(ValueError, match=match):
        align_faces(IMAGE, landmarks, 16)


def test_chip_sizes_share_one_geometry():
    image, lms = place_face(smooth_texture(128, seed=2, cells=6), similarity(1.5, 10.0, 80.0, 40.0), (360, 360))
    big = align_faces(image, lms, 128)[0]
    for size in (16, 32, 64):
        small = align_faces(image, lms, size)[0]
        reference = cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)
        assert np.abs(small.astype(int) - reference).mean() < 2.5, size


def shrink_scene(image: np.ndarray, lms: np.ndarray, face_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Area-downsample a whole scene until the face (MTCNN box width) is face_px wide; landmarks follow."""
    eye_distance = np.linalg.norm(lms[0, 1] - lms[0, 0])
    box_width = eye_distance / (BOX_TEMPLATE_5PT[1, 0] - BOX_TEMPLATE_5PT[0, 0])
    side = int(round(image.shape[1] * face_px / box_width))
    factor = image.shape[1] / side
    small = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
    return small.reshape(side, side, -1), ((lms.astype(np.float64) + 0.5) / factor - 0.5).astype(np.float32)


@pytest.mark.parametrize("face_px", [8, 12])
def test_tiny_faces_align_like_their_high_res_original(face_px):
    """A scene area-downsampled until the face is 8 px wide aligns to the chip of the full-res scene."""
    image, lms = place_face(smooth_texture(128, seed=3, cells=6), similarity(3.0, 15.0, 100.0, 120.0), (640, 640))
    small, small_lms = shrink_scene(image, lms, face_px)
    got = align_faces(small, small_lms, 8)[0].astype(int)
    assert np.abs(got - align_faces(image, lms, 8)[0]).mean() < 3.0


@pytest.mark.parametrize("face_px", [8, 12])
@pytest.mark.parametrize("size", [16, 32])
def test_tiny_faces_land_on_the_template(face_px, size):
    """A blob on the nose of an 8 px face lands on the template's nose in an upsampled chip."""
    yy, xx = np.mgrid[0:128, 0:128]
    nose = TEMPLATE_5PT[2] * 128 - 0.5
    blob = (255 * np.exp(-((xx - nose[0]) ** 2 + (yy - nose[1]) ** 2) / (2 * 6.0**2))).astype(np.uint8)
    image, lms = place_face(blob, similarity(3.0, 25.0, 150.0, 90.0), (640, 640))
    small, small_lms = shrink_scene(image, lms, face_px)
    chip = align_faces(small, small_lms, size)[0, :, :, 0].astype(np.float64)
    centre = np.array([(chip.sum(0) * np.arange(size)).sum(), (chip.sum(1) * np.arange(size)).sum()]) / chip.sum()
    np.testing.assert_allclose((centre + 0.5) / size, TEMPLATE_5PT[2], atol=0.005)  # a half-pixel slip at 16 px is 0.03


def test_small_chips_are_area_correct():
    """A 1-px checkerboard averages to flat grey in a 16 px chip; a plain bilinear warp would alias it."""
    board = ((np.indices((400, 400)).sum(axis=0) % 2) * 255).astype(np.uint8)
    points = TEMPLATE_5PT.astype(np.float64) * 300 + 50  # the face spans ~300 px
    lms = points[None].astype(np.float32)
    chip = align_faces(board, lms, 16)
    assert chip.shape == (1, 16, 16, 1)
    assert abs(chip.mean() - 127.5) < 3 and chip.std() < 4, (chip.mean(), chip.std())
    naive = cv2.warpAffine(board, similarity_to_template(lms, 16)[0], (16, 16), flags=cv2.INTER_LINEAR)
    assert naive.std() > 20  # the test above can fail


def test_huge_faces_are_box_halved_first():
    image, lms = place_face(smooth_texture(128, seed=4, cells=6), similarity(6.0, -8.0, 60.0, 50.0), (900, 900))
    reference = cv2.resize(align_faces(image, lms, 128)[0], (16, 16), interpolation=cv2.INTER_AREA)
    assert np.abs(align_faces(image, lms, 16)[0].astype(int) - reference).mean() < 2.5


@pytest.mark.parametrize("ratio, halvings", [(1.6, 0), (2.5, 1), (3.7, 1), (6.0, 2), (21.0, 4)])  # face / chip
@pytest.mark.parametrize("angle", [0.0, 33.0])
def test_large_faces_keep_the_geometry_on_a_ramp(ratio, halvings, angle):
    """Every filter on the way (halvings, bilinear supersampling, the 2 x 2 average) is symmetric, so on a linear
    ramp each chip pixel is the ramp's value at its centre, but for rounding. A rising and a falling ramp tell the
    two apart: a slip of the grid moves them in opposite directions, rounding (each 2 x 2 average rounds halves
    up) in the same one."""
    yy, xx = np.mgrid[0:1200, 0:1200].astype(np.float64)
    ramp = np.dstack([np.round(0.2 * xx), np.round(0.2 * yy), np.round(255 - 0.2 * xx)]).astype(np.uint8)
    size = 24
    m = similarity(ratio * size, angle, 600.0, 600.0)  # unit chip -> image, centred
    points = TEMPLATE_5PT.astype(np.float64) - 0.5
    lms = (points @ m[:, :2].T + m[:, 2])[None].astype(np.float32)
    chip = align_faces(ramp, lms, size)[0].astype(np.float64)
    to_image = cv2.invertAffineTransform(similarity_to_template(lms, size)[0])
    centres = np.stack(np.meshgrid(np.arange(size), np.arange(size)), axis=-1).astype(np.float64)
    image_xy = centres @ to_image[:, :2].T + to_image[:, 2]
    err = chip - np.dstack([0.2 * image_xy[..., 0], 0.2 * image_xy[..., 1], 255 - 0.2 * image_xy[..., 0]])
    slip = (err[..., 0] - err[..., 2]).mean() / 2 / 0.2 / ratio  # chip px along x (a grid off by half a halved
    assert abs(slip) < 0.1, slip  # pixel would slip 0.25-0.5 chip px; rounding of the quantized ramps moves <= 0.06)
    assert -0.1 < err.mean() < 0.4 * (halvings + 1), err.mean()  # rounding: each 2 x 2 average adds <= 0.5
    assert np.abs(err).max() < 3.0


def test_many_faces_channels_and_border():
    image = smooth_texture(200, seed=5)
    lms = np.stack([TEMPLATE_5PT * 60 + 20, TEMPLATE_5PT * 90 + 100, TEMPLATE_5PT * 300 - 50]).astype(np.float32)
    chips = align_faces(image, lms, 32)
    assert chips.shape == (3, 32, 32, 3)
    assert chips[2, 0, 0].tolist() == [0, 0, 0]  # the chip reaches past the image: black there, as in dlib
    bgra = np.dstack([image, np.full((200, 200), 7, np.uint8)])
    assert align_faces(bgra, lms, 32).shape == (3, 32, 32, 4)
    assert align_faces(image[:, :, 0], lms, 32).shape == (3, 32, 32, 1)
    np.testing.assert_array_equal(align_faces(image[:, :, :1], lms, 32), align_faces(image[:, :, 0], lms, 32))
    assert align_faces(image, np.zeros((0, 5, 2), np.float32), 32).shape == (0, 32, 32, 3)


def test_landmarks_from_boxes():
    boxes = np.array([[10, 20, 110, 140], [0, 0, 8, 8]], np.float32)
    lms = landmarks_from_boxes(boxes)
    assert lms.shape == (2, 5, 2) and lms.dtype == np.float32
    np.testing.assert_allclose(lms[0], BOX_TEMPLATE_5PT * [100, 120] + [10, 20], atol=1e-4)
    assert align_faces(np.zeros((150, 150, 3), np.uint8), lms, 16).shape == (2, 16, 16, 3)


IMAGE = np.zeros((100, 100, 3), np.uint8)
GOOD = (TEMPLATE_5PT * 50 + 20)[None].astype(np.float32)


@pytest.mark.parametrize(
    "image, landmarks, size, error, match",
    [
        (IMAGE, GOOD[0], 16, ValueError, r"shape \(N, 5, 2\), got \(5, 2\)"),
        (IMAGE, GOOD[:, :4], 16, ValueError, r"shape \(N, 5, 2\), got \(1, 4, 2\)"),
        (IMAGE, GOOD.tolist(), 16, TypeError, "landmarks should be a numpy array, got list"),
        (IMAGE, GOOD.astype(str), 16, TypeError, "float or integer array, got dtype <U"),
        (IMAGE, np.where(np.arange(10).reshape(1, 5, 2) == 3, np.nan, GOOD), 16, ValueError, "face 0 has NaN"),
        (IMAGE, GOOD + 60, 16, ValueError, r"face 0 is partly outside the 100x100 image: landmark \d"),
        (IMAGE, GOOD - 40, 16, ValueError, "partly outside"),
        (IMAGE, np.full((1, 5, 2), 40.0, np.float32), 16, ValueError, "face 0 has zero size"),
        (IMAGE.astype(np.float32), GOOD, 16, TypeError, "image should have dtype uint8, got float32"),
        (IMAGE[:, :, :2], GOOD, 16, ValueError, r"C in 1, 3, 4, got shape \(100, 100, 2\)"),
        (IMAGE[:0], np.zeros((0, 5, 2), np.float32), 16, ValueError, "non-empty"),
        ([[0]], GOOD, 16, TypeError, "image should be a numpy array, got list"),
        (IMAGE, GOOD, 7, ValueError, r"size should be in \[8, 1024\] px, got 7"),
        (IMAGE, GOOD, 4096, ValueError, "got 4096"),
        (IMAGE, GOOD, 16.0, TypeError, "size should be an int, got float"),
        (IMAGE, GOOD, True, TypeError, "got bool"),
    ],
)
def test_bad_input_raises(image, landmarks, size, error, match):
    with pytest.raises(error, match=match):
        align_faces(image, landmarks, size)


@pytest.mark.parametrize(
    "boxes, error, match",
    [
        (np.zeros((2, 5), np.float32), ValueError, r"shape \(N, 4\), got \(2, 5\)"),
        (np.array([[10, 10, 10, 30]], np.float32), ValueError, "x2 > x1 and y2 > y1"),
        (np.array([[10, 10, np.inf, 30]], np.float32), ValueError, "finite"),
        ([[0, 0, 1, 1]], TypeError, "numpy array, got list"),
    ],
)
def test_bad_boxes_raise(boxes, error, match):
    with pytest.raises(error, match=match):
        landmarks_from_boxes(boxes)


def test_face_widths_follow_scale_not_roll():
    from lanner.face.align import FACE_WIDTH_IN_CHIP, face_widths

    base = TEMPLATE_5PT.astype(np.float64) * 100 + 50  # a 100 px chip: the face is FACE_WIDTH_IN_CHIP * 100 wide
    rolled = (base - 100) @ similarity(1.0, 30.0, 0, 0)[:, :2].T + 100
    widths = face_widths(np.stack([base, rolled, base * 0.08]).astype(np.float32))
    np.testing.assert_allclose(widths, [FACE_WIDTH_IN_CHIP * 100] * 2 + [FACE_WIDTH_IN_CHIP * 8], rtol=1e-4)


def test_faces_inside_is_what_align_faces_accepts():
    landmarks = np.repeat(GOOD, 5, axis=0)
    landmarks[1, 1, 0] = 99.6  # past the last pixel centre's half-pixel border (99.5)
    landmarks[2, 0, 1] = -0.5  # exactly on the border: accepted
    landmarks[3, 4, 1] = np.nan
    landmarks[4] -= [0, 36.0]  # the eyes above the top
    inside = faces_inside(landmarks, IMAGE.shape)
    assert inside.tolist() == [True, False, True, False, False]
    for i, ok in enumerate(inside):
        if ok:
            align_faces(IMAGE, landmarks[i : i + 1], 16)
        else:
            with pytest.raises(ValueError):
                align_faces(IMAGE, landmarks[i : i + 1], 16)
    assert faces_inside(np.zeros((0, 5, 2), np.float32), (10, 10)).shape == (0,)
    with pytest.raises(TypeError, match="float or integer numpy array, got list"):
        faces_inside(GOOD.tolist(), IMAGE.shape)
    with pytest.raises(ValueError, match=r"shape \(N, 5, 2\), got \(5, 2\)"):
        faces_inside(GOOD[0], IMAGE.shape)
    with pytest.raises(ValueError, match=r"image_shape should be \(H, W\[, C\]\), got \(100,\)"):
        faces_inside(GOOD, (100,))


@pytest.mark.parametrize("face_px", [40, 90])  # supersampling factors 1 < k <= 4: warped as one stack
def test_faces_warped_in_one_stack_match_each_face_alone(face_px):
    image = smooth_texture(300, seed=6)
    lms = np.stack([TEMPLATE_5PT * face_px / 0.773 + offset for offset in (10, 60, 110, 150)]).astype(np.float32)
    together = align_faces(image, lms, 32)
    for i in range(len(lms)):
        np.testing.assert_array_equal(together[i], align_faces(image, lms[i : i + 1], 32)[0])
