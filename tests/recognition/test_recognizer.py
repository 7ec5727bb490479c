"""lanner.FaceRecognizer: faces of real photos -> unit embeddings, routed by face size; bad input."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

import lanner
from lanner.face.align import face_widths
from lanner.models import face_embedders


def test_import_lanner_does_not_import_torch():
    import subprocess

    code = "import sys, lanner; lanner.FaceRecognizer, lanner.FaceGallery; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_embed_detections_landmarks_and_boxes(recognizer, group_photo, group_faces):
    n = len(group_faces)
    assert n >= 8
    from_detections = recognizer.embed(group_photo, group_faces)
    from_landmarks = recognizer.embed(group_photo, group_faces.landmarks)
    from_boxes = recognizer.embed(group_photo, group_faces.boxes)
    for e in (from_detections, from_landmarks, from_boxes):
        assert e.shape == (n, 128) and e.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(from_detections, from_landmarks)
    same = (from_landmarks * from_boxes).sum(1)
    assert np.median(same) > 0.7  # box-only alignment is coarser, but the same face
    # different people are further apart than a face and its box-aligned self
    others = from_landmarks @ from_landmarks.T
    assert np.median(others[~np.eye(n, dtype=bool)]) < np.median(same) - 0.3


def test_rgb_grey_and_bgra_inputs(lanner_cache, group_photo, group_faces, recognizer):
    bgr = recognizer.embed(group_photo, group_faces.landmarks[:2])
    with lanner.FaceRecognizer(channel_order="rgb") as rgb_recognizer:
        rgb = rgb_recognizer.embed(np.ascontiguousarray(group_photo[:, :, ::-1]), group_faces.landmarks[:2])
    np.testing.assert_allclose(rgb, bgr, atol=1e-6)
    bgra = np.dstack([group_photo, np.zeros(group_photo.shape[:2], np.uint8)])
    np.testing.assert_allclose(recognizer.embed(bgra, group_faces.landmarks[:2]), bgr, atol=1e-6)
    import cv2

    grey_photo = cv2.cvtColor(group_photo, cv2.COLOR_BGR2GRAY)
    grey = recognizer.embed(grey_photo, group_faces.landmarks[:2])
    assert ((grey * bgr).sum(1) > 0.8).all()
    # a grey face is embedded exactly as the same grey in three channels, from (H, W) and (H, W, 1) alike
    grey3 = recognizer.embed(cv2.cvtColor(grey_photo, cv2.COLOR_GRAY2BGR), group_faces.landmarks[:2])
    np.testing.assert_array_equal(grey, grey3)
    np.testing.assert_array_equal(recognizer.embed(grey_photo[:, :, None], group_faces.landmarks[:2]), grey)
    # quality reads the same RGB chips whatever the input's channel layout
    q = recognizer.quality(group_photo, group_faces.landmarks[:2])
    np.testing.assert_array_equal(recognizer.quality(bgra, group_faces.landmarks[:2]), q)


def test_no_faces(recognizer, group_photo):
    assert recognizer.embed(group_photo, np.zeros((0, 5, 2), np.float32)).shape == (0, 128)
    assert recognizer.embed(group_photo, np.zeros((0, 4), np.float32)).shape == (0, 128)


def test_routing_table_picks_the_smallest_model_that_covers_a_face(recognizer):
    teacher = face_embedders.FACE_EMBEDDERS[face_embedders.TEACHER]
    assert recognizer.embedders[-1] == face_embedders.TEACHER
    assert recognizer.route(np.array([40.0, 4000.0])) == [face_embedders.TEACHER] * 2  # large faces
    assert recognizer.route(np.array([5.0])) == [recognizer.embedders[0]]  # the smallest faces: the first route
    routed = lanner.FaceRecognizer.__new__(lanner.FaceRecognizer)
    routed._routes = [
        dataclasses.replace(teacher, model="student-16", max_face_width=20.0),
        dataclasses.replace(teacher, model="student-32", max_face_width=36.0),
        teacher,
    ]
    assert routed.route(np.array([8.0, 20.0, 20.5, 36.0, 90.0])) == [
        "student-16",
        "student-16",
        "student-32",
        "student-32",
        face_embedders.TEACHER,
    ]


def test_thresholds_are_each_routed_embedders_own_moved_by_the_base(recognizer):
    spaces = {name: face_embedders.read_space(face_embedders.FACE_EMBEDDERS[name]) for name in recognizer.embedders}
    boxes = np.array([[0, 0, 12, 14], [0, 0, 200, 220]], np.float32)  # a 12 px face and a 200 px face
    small, large = recognizer.route(boxes[:, 2] - boxes[:, 0])
    own = np.array([spaces[small]["threshold"], spaces[large]["threshold"]])
    assert large == face_embedders.TEACHER and recognizer.threshold == pytest.approx(own[1])
    np.testing.assert_allclose(recognizer.thresholds(boxes), own)
    np.testing.assert_allclose(recognizer.thresholds(boxes, base=own[1] + 0.05), own + 0.05)  # one offset for all
    assert recognizer.thresholds(boxes, base=1.0).max() == 1.0  # clipped to a cosine similarity
    assert recognizer.thresholds(np.zeros((0, 4), np.float32)).shape == (0,)
    for bad, error, match in (
        (float("nan"), ValueError, r"base should be a cosine similarity in \[-1, 1\], got nan"),  # NaN was returned
        (5.0, ValueError, r"base should be a cosine similarity in \[-1, 1\], got 5.0"),  # clipped to 1
        ("0.5", TypeError, "base should be a number, got str"),
        (True, TypeError, "base should be a number, got bool"),
    ):
        with pytest.raises(error, match=match):
            recognizer.thresholds(boxes, base=bad)
    if small != large:  # a student is routed: its threshold is not the teacher's
        assert own[0] != own[1]


def test_face_widths_route_like_mtcnn_boxes(group_faces):
    widths = face_widths(group_faces.landmarks)
    box_widths = group_faces.boxes[:, 2] - group_faces.boxes[:, 0]
    assert np.median(np.abs(widths / box_widths - 1)) < 0.2


def test_embed_chips_checks_shape(recognizer):
    with pytest.raises(ValueError, match=r"shape \(N, 150, 150, 3\) for dlib-resnet, got \(1, 32, 32, 3\)"):
        recognizer.embed_chips(np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        recognizer.embed_chips(np.zeros((1, 150, 150, 3), np.float32))
    with pytest.raises(ValueError, match="embedder should be one of"):
        recognizer.embed_chips(np.zeros((1, 150, 150, 3), np.uint8), "nope")
    with pytest.raises(ValueError, match="embedder should be one of .* got ''"):  # was the teacher
        recognizer.embed_chips(np.zeros((1, 150, 150, 3), np.uint8), "")
    assert recognizer.embed_chips(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)  # was numpy's error


def test_route_refuses_widths_it_cannot_place(recognizer):
    for widths in (np.array([np.nan]), np.array([-3.0]), np.array([np.inf])):
        with pytest.raises(ValueError, match="widths should be finite and >= 0 px"):  # NaN was an IndexError
            recognizer.route(widths)
    with pytest.raises(ValueError, match=r"widths should have shape \(N,\)"):
        recognizer.route(np.ones((2, 2)))


IMAGE = np.zeros((120, 120, 3), np.uint8)
LANDMARKS = np.array([[[40, 50], [80, 50], [60, 70], [45, 90], [75, 90]]], np.float32)


@pytest.mark.parametrize(
    "image, faces, error, match",
    [
        (IMAGE, [[1, 2, 3, 4]], TypeError, "faces should be Detections, .* got list"),
        (IMAGE, np.zeros((1, 3), np.float32), ValueError, r"got shape \(1, 3\)"),
        (IMAGE, np.zeros((1, 4, 2), np.float32), ValueError, r"\(N, 5, 2\), got \(1, 4, 2\)"),
        (IMAGE, np.where(np.arange(10).reshape(1, 5, 2) == 0, np.nan, LANDMARKS), ValueError, "NaN"),
        (IMAGE, LANDMARKS + 100, ValueError, "partly outside"),
        (IMAGE, np.full((1, 5, 2), 50, np.float32), ValueError, "zero size"),
        (IMAGE, np.array([[50, 50, 50, 80]], np.float32), ValueError, "x2 > x1"),
        (IMAGE.astype(np.float32), LANDMARKS, TypeError, "dtype uint8, got float32"),
        (IMAGE[:, :, :2], LANDMARKS, ValueError, r"got shape \(120, 120, 2\)"),
        (IMAGE.tolist(), LANDMARKS, TypeError, "numpy array, got list"),
    ],
)
@pytest.mark.parametrize("method", ["embed", "quality"])  # quality() takes faces as embed() does
def test_bad_input_raises(recognizer, method, image, faces, error, match):
    with pytest.raises(error, match=match):
        getattr(recognizer, method)(image, faces)


def test_bad_options_and_closed(lanner_cache):
    with pytest.raises(ValueError, match="embedders should be names from"):
        lanner.FaceRecognizer(embedders=("nope",))
    with pytest.raises(TypeError, match="embedders should be a tuple or list of registry names, got one string"):
        lanner.FaceRecognizer(embedders="dlib-resnet")  # was taken apart into characters
    with pytest.raises(ValueError, match="num_threads should be a positive int or None, at most 256, got 0"):
        lanner.FaceRecognizer(num_threads=0)
    with pytest.raises(TypeError, match="num_threads should be a positive int or None, got float"):
        lanner.FaceRecognizer(num_threads=2.0)
    with pytest.raises(ValueError, match="channel_order"):
        lanner.FaceRecognizer(channel_order="bgra")
    rec = lanner.FaceRecognizer()
    rec.close()
    with pytest.raises(ValueError, match="closed"):
        rec.embed(IMAGE, LANDMARKS)
    none = np.zeros((0, 5, 2), np.float32)
    for call in (lambda: rec.embed(IMAGE, none), lambda: rec.quality(IMAGE, none), lambda: rec.thresholds(none)):
        with pytest.raises(ValueError, match="closed"):  # zero faces answered after close()
            call()
