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


def _cpu_has_bf16() -> bool:
    from lanner.backends import ov_backend

    return "BF16" in ov_backend.import_toolchain().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.fixture(scope="module")
def bf16_detector(lanner_cache):
    import lanner

    if not _cpu_has_bf16():
        pytest.skip("this CPU's OpenVINO plugin has no BF16 (needs AVX512-BF16 or AMX)")
    with lanner.FaceDetector(backend="openvino", precision="bf16", num_threads=2) as det:
        yield det


@pytest.mark.parametrize("name", ["astronaut", "messi", "cameraman", "group"])
def test_bf16_stays_within_the_parity_bar(bf16_detector, photos, reference, name):
    import cv2

    if name not in photos:
        pytest.skip(f"{name} needs opencv-doc")
    image = photos[name]
    rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else np.ascontiguousarray(image[:, :, ::-1])
    module, mtcnn = reference
    boxes, scores, landmarks = module.detect(mtcnn, rgb)
    assert bf16_detector._nets[0].manifest.precision == "bf16"
    # bf16 is not bit-exact (8 mantissa bits) but must hold the bar on every photo.
    assert_matches(bf16_detector.detect(image), boxes, scores, landmarks, min_iou=0.9, score_tol=0.02, px=2.0)
