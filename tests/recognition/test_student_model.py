"""The shipped 32 px student (the bridge model compressed by `lanner distill face-compress`): checksum, its space,
the fast routes, and its oracle: on a real small face it gives the bridge model's answer."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

import lanner
from lanner import models
from lanner.face.align import align_faces, face_widths
from lanner.models import face_embedders

NAME = face_embedders.STUDENT


@pytest.fixture(scope="module")
def small_astronaut(lanner_cache):
    """The bundled astronaut photo shrunk (area) until its face is 16 px wide, and that face's landmarks."""
    from lanner.cli.detect import demo_image_path

    image = cv2.imread(str(demo_image_path()), cv2.IMREAD_COLOR)
    with lanner.FaceDetector(num_threads=2) as detector:
        faces = detector.detect(image)
    landmarks = faces.landmarks[int(np.argmax(faces.scores))]
    scale = 16.0 / float(face_widths(landmarks[None])[0])
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return image, landmarks, small, ((landmarks + 0.5) * scale - 0.5).astype(np.float32)


def test_registry_entry_checksum_and_space():
    spec = models.get_spec(NAME)
    path = models.onnx_path(NAME)  # checks the sha256
    assert spec.inputs == {"image": ("n", 3, 32, 32)} and spec.outputs == ("embedding",)
    assert path.stat().st_size < 400 * 1024  # int8 weights
    entry = face_embedders.FACE_EMBEDDERS[NAME]
    assert not entry.centred and entry.chip_size == 32 and entry.output == "embedding"
    space = face_embedders.read_space(entry)  # checks the JSON's sha256
    assert -1.0 <= space["threshold"] <= 1.0 and space["far"] == 1e-3
    assert (
        space["max_face_width"]
        == entry.max_face_width
        == face_embedders.FACE_EMBEDDERS["dlib-resnet-lowres"].max_face_width
    )
    raw = json.loads((path.parent / "face_student32.json").read_text())
    assert raw["training"]["export_parity_max_abs"] <= 1e-4  # torch vs the fp32 ONNX, measured at export
    assert NAME not in face_embedders.DEFAULT_EMBEDDERS and NAME in face_embedders.FAST_EMBEDDERS


def test_fast_routes_give_small_faces_to_the_student_with_the_bridges_answer(
    lanner_cache, small_astronaut, group_photo, group_faces
):
    image, landmarks, small, small_landmarks = small_astronaut
    rgb_small = np.ascontiguousarray(small[:, :, ::-1])
    with lanner.FaceRecognizer(embedders=face_embedders.FAST_EMBEDDERS, num_threads=2) as fast:
        assert fast.embedders == (NAME, face_embedders.TEACHER)
        tiny = fast.embed(small, small_landmarks[None])[0]
        np.testing.assert_array_equal(
            tiny, fast.embed_chips(align_faces(rgb_small, small_landmarks[None], 32), NAME)[0]
        )
        large = fast.embed(image, landmarks[None])[0]
        others = fast.embed(group_photo, group_faces)  # ~80 px faces: the teacher's
        student_limit, teacher_limit = fast.thresholds(np.array([[0, 0, 16, 18], [0, 0, 90, 100]], np.float32))
    with lanner.FaceRecognizer(num_threads=2) as accurate:
        bridge = accurate.embed(small, small_landmarks[None])[0]
    assert student_limit != teacher_limit  # the student's own calibrated threshold
    # the oracle: what the student was taught, the bridge model's embedding of the same small face
    # (cosine 0.64 when this test was written; two random directions in 128-d: 0 +- 0.09)
    assert float(tiny @ bridge) > 0.5
    # one space: the 16 px face, through the student, is nearer its large self (teacher) than anyone else
    others = others[others @ large < 0.8]  # the group photo holds the astronaut too
    assert len(others) >= 5
    assert float(tiny @ large) > float((others @ tiny).max()) + 0.1


def test_two_embedders_for_the_same_faces_are_refused():
    with pytest.raises(ValueError, match="should serve different face widths"):
        lanner.FaceRecognizer(embedders=(NAME, "dlib-resnet-lowres", face_embedders.TEACHER))
