"""FaceRecognizer.quality: shapes, range, ordering on real degradations of a real face, bad input as for embed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import lanner
from lanner.face.align import face_widths


def test_quality_of_detections_landmarks_and_boxes(recognizer, astronaut):
    image, faces = astronaut
    q = recognizer.quality(image, faces)
    assert q.shape == (1,) and q.dtype == np.float32 and 0.0 <= q[0] <= 1.0
    np.testing.assert_array_equal(recognizer.quality(image, faces.landmarks), q)
    assert recognizer.quality(image, faces.boxes).shape == (1,)
    assert recognizer.quality(image, np.zeros((0, 5, 2), np.float32)).shape == (0,)


def test_degraded_faces_score_lower(recognizer, astronaut):
    """The same face, shrunk to 12 px, blurred or darkened, scores below the clean photo's face."""
    image, faces = astronaut
    clean = float(recognizer.quality(image, faces)[0])
    width = float(face_widths(faces.landmarks)[0])
    scale = 12.0 / width
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    small_lm = (faces.landmarks + 0.5) * np.array(
        [small.shape[1] / image.shape[1], small.shape[0] / image.shape[0]], np.float32
    ) - 0.5
    blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=width / 12)
    dark = (image * 0.08).astype(np.uint8)
    scores = [
        float(recognizer.quality(im, lm)[0])
        for im, lm in ((small, small_lm), (blurred, faces.landmarks), (dark, faces.landmarks))
    ]
    assert max(scores) < clean - 0.1, (clean, scores)


def test_closed_recognizer_refuses(lanner_cache):
    rec = lanner.FaceRecognizer()
    rec.close()
    with pytest.raises(ValueError, match="closed"):
        landmarks = np.array([[[40, 50], [80, 50], [60, 70], [45, 90], [75, 90]]], np.float32)
        rec.quality(np.zeros((120, 120, 3), np.uint8), landmarks)


def test_quality_batches_keep_each_face_with_its_width(recognizer, astronaut):
    """More faces than one model batch (64): each face keeps its own chip and width across batches."""
    image, faces = astronaut
    small = cv2.resize(image, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    canvas = np.zeros((image.shape[0] + small.shape[0], image.shape[1], 3), np.uint8)
    canvas[: image.shape[0]] = image
    canvas[image.shape[0] :, : small.shape[1]] = small
    small_lm = (faces.landmarks + 0.5) * 0.25 - 0.5 + np.array([0.0, image.shape[0]], np.float32)
    one_large, one_small = recognizer.quality(canvas, faces.landmarks)[0], recognizer.quality(canvas, small_lm)[0]
    assert one_small < one_large - 0.1, (one_small, one_large)
    # 72 faces, large, small, small, ... in one call (a period that 64 does not divide, so a face paired
    # with another face's width in the second batch would show): widths from each face's landmarks.
    q = recognizer.quality(canvas, np.concatenate([faces.landmarks, small_lm, small_lm] * 24))
    np.testing.assert_allclose(q[0::3], one_large, atol=1e-6)
    np.testing.assert_allclose(q[1::3], one_small, atol=1e-6)
    np.testing.assert_allclose(q[2::3], one_small, atol=1e-6)
