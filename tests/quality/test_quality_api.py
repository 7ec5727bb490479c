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
