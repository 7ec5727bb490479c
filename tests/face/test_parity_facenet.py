"""Parity with facenet-pytorch 2.6.0's MTCNN on package-shipped photos.

facenet-pytorch runs as /work/shared/ANCHORS.md prescribes: installed with --no-deps, with the
small torchvision stand-in from benchmarks/detection/reference on sys.path. Skipped when torch
or facenet-pytorch is not installed (they are dev/torch extras, never runtime dependencies).
"""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from .conftest import BENCH
from .test_face_detector import assert_matches

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("facenet_pytorch") is None,
    reason="needs torch and facenet-pytorch (pip install --no-deps facenet-pytorch==2.6.0)",
)


@pytest.fixture(scope="module")
def reference():
    sys.path.insert(0, str(BENCH / "reference"))
    import facenet_reference

    return facenet_reference, facenet_reference.load_mtcnn(num_threads=2)


@pytest.mark.parametrize("name", ["astronaut", "messi", "cameraman", "group"])
def test_same_faces_as_facenet_pytorch(detector, photos, reference, name):
    import cv2

    if name not in photos:
        pytest.skip(f"{name} needs opencv-doc")
    image = photos[name]
    rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else np.ascontiguousarray(image[:, :, ::-1])
    module, mtcnn = reference
    boxes, scores, landmarks = module.detect(mtcnn, rgb)
    # The parity bar: same count, IoU >= 0.9, landmarks within 2 px, scores within 0.02.
    assert_matches(detector.detect(image), boxes, scores, landmarks, min_iou=0.9, score_tol=0.02, px=2.0)
