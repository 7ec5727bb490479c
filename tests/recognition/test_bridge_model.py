"""The shipped bridge model (dlib's ResNet fine-tuned for small faces): checksum, its space, and routing:
small faces go to it, large ones to the teacher, in one embedding space."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

import lanner
from lanner import models
from lanner.face.align import align_faces, face_widths
from lanner.models import face_embedders

NAME = "dlib-resnet-lowres"


@pytest.fixture(scope="module")
def astronaut_face(lanner_cache):
    """The bundled astronaut photo (BGR) and its face's landmarks."""
    from lanner.cli.detect import demo_image_path

    image = cv2.imread(str(demo_image_path()), cv2.IMREAD_COLOR)
    with lanner.FaceDetector(num_threads=2) as detector:
        faces = detector.detect(image)
    return image, faces.landmarks[int(np.argmax(faces.scores))]


def test_registry_entry_checksum_and_space():
    spec = models.get_spec(NAME)
    path = models.onnx_path(NAME)  # checks the sha256
    assert spec.inputs == {"image": ("n", 3, 150, 150)} and spec.outputs == ("descriptor",)
    entry = face_embedders.FACE_EMBEDDERS[NAME]
    assert entry.centred and entry.chip_size == 150 and entry.output == "descriptor"
    space = face_embedders.read_space(entry)  # checks the JSON's sha256
    teacher = face_embedders.read_space(face_embedders.FACE_EMBEDDERS[face_embedders.TEACHER])
    np.testing.assert_array_equal(space["mu"], teacher["mu"])  # the teacher's space, the teacher's centre
    assert -1.0 <= space["threshold"] <= 1.0 and space["far"] == 1e-3
    assert space["max_face_width"] == entry.max_face_width
    assert space["export_parity_min_cosine"] >= 0.9999  # torch vs the fp32 ONNX, measured at export
    # the shipped file is its int8 QDQ graph: half the fp16-stored fp32 file, as accurate on validation faces
    assert spec.quantized and path.stat().st_size < 7 * 2**20
    assert space["int8"]["fidelity_vs_fp32_onnx"]["cosine_min"] >= 0.99
    raw = json.loads((path.parent / "dlib_resnet_lowres.json").read_text())
    assert raw["routing"]["rule"].startswith("the largest validation width")
    for width, row in raw["routing"]["rank1"].items():
        assert row["bridge"] >= row["bridge_fp32"] - 0.01, width


def test_int8_bridge_on_openvino_gives_onnxruntimes_answer_on_a_real_face(lanner_cache, astronaut_face):
    """The oracle of the shipped QDQ file: ONNX Runtime's int8 kernels on the same graph, against the package
    FaceRecognizer runs (OpenVINO's int8 kernels), on a real face shrunk to 16 px."""
    ort = pytest.importorskip("onnxruntime")
    image, landmarks = astronaut_face
    scale = 16.0 / float(face_widths(landmarks[None])[0])
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    small_landmarks = ((landmarks + 0.5) * scale - 0.5).astype(np.float32)
    chips = align_faces(np.ascontiguousarray(small[:, :, ::-1]), small_landmarks[None], 150)
    with lanner.FaceRecognizer(num_threads=2) as recognizer:
        got = recognizer.embed_chips(chips, NAME)[0]
    manifest = lanner.Manifest.read(models.package_dir(NAME, "auto", "fp32"))
    assert manifest.fidelity["thresholds"]["min_cosine"] == models.QDQ_FIDELITY["min_cosine"]
    session = ort.InferenceSession(str(models.onnx_path(NAME)), providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(chips.transpose(0, 3, 1, 2), np.float32) / np.float32(255)
    mu = face_embedders.read_space(face_embedders.FACE_EMBEDDERS[NAME])["mu"]
    want = session.run(None, {"image": x})[0][0] - mu
    # centring by mu (the embedding is about half the descriptor's length) doubles the engines' rounding
    # difference: 0.9968 when this test was written, against ~0.9994 between the raw descriptors
    assert float(got @ (want / np.linalg.norm(want))) > 0.99


def test_small_faces_go_to_the_bridge_and_large_ones_to_the_teacher(lanner_cache, astronaut_face):
    image, landmarks = astronaut_face
    limit = face_embedders.FACE_EMBEDDERS[NAME].max_face_width
    width = float(face_widths(landmarks[None])[0])
    assert width > limit  # the photo's face is large: the teacher's
    scale = 16.0 / width
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    small_landmarks = ((landmarks + 0.5) * scale - 0.5).astype(np.float32)
    with lanner.FaceRecognizer(num_threads=2) as recognizer:
        assert recognizer.embedders == (NAME, face_embedders.TEACHER)
        assert (
            recognizer.route(np.array([8.0, 16.0, limit, limit + 0.5, width]))
            == [NAME] * 3 + [face_embedders.TEACHER] * 2
        )
        large = recognizer.embed(image, landmarks[None])
        tiny = recognizer.embed(small, small_landmarks[None])
        rgb_small = np.ascontiguousarray(small[:, :, ::-1])
        by_bridge = recognizer.embed_chips(align_faces(rgb_small, small_landmarks[None], 150), NAME)
        by_teacher = recognizer.embed_chips(align_faces(rgb_small, small_landmarks[None], 150))
        np.testing.assert_array_equal(tiny, by_bridge)
        np.testing.assert_array_equal(
            large, recognizer.embed_chips(align_faces(np.ascontiguousarray(image[:, :, ::-1]), landmarks[None], 150))
        )
    assert float((by_bridge * by_teacher).sum()) < 0.9999  # a different model did embed the small face
    # one space: the 16 px face, through the bridge, still matches its large self
    assert float((tiny * large).sum()) > 0.5
