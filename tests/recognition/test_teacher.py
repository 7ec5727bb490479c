"""The shipped teacher (dlib's ResNet as ONNX) against dlib's own implementation, on the same chips."""

from __future__ import annotations

import numpy as np
import pytest

from lanner import models
from lanner.models import face_embedders
from lanner.names import sha256_file

dlib = pytest.importorskip("dlib", reason="dlib (the dlib-bin wheel, 'dev' extra) is the parity reference")


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def dlib_descriptors(teacher_chips) -> np.ndarray:
    from lanner.compile.exporters.dlib_resnet import dlib_model_dir

    net = dlib.face_recognition_model_v1(str(dlib_model_dir() / "dlib_face_recognition_resnet_model_v1.dat"))
    return np.array([np.array(net.compute_face_descriptor(np.ascontiguousarray(c))) for c in teacher_chips], np.float32)


def test_chips_are_real_faces(teacher_chips, dlib_descriptors):
    assert len(teacher_chips) >= 6  # the astronaut and 5 variants, at least (all six detected)
    assert (np.linalg.norm(dlib_descriptors, axis=1) > 0.5).all()


def test_onnx_runtime_matches_dlib(teacher_chips, dlib_descriptors):
    import onnxruntime as ort

    session = ort.InferenceSession(str(models.onnx_path("dlib-resnet")), providers=["CPUExecutionProvider"])
    x = teacher_chips.transpose(0, 3, 1, 2).astype(np.float32) / 255
    descriptors = session.run(["descriptor"], {"image": x})[0]
    assert descriptors.shape == (len(x), 128) and descriptors.dtype == np.float32
    assert cosine(descriptors, dlib_descriptors).min() >= 0.999
    np.testing.assert_allclose(descriptors, dlib_descriptors, atol=2e-3)


def test_recognizer_embeddings_match_dlib(recognizer, teacher_chips, dlib_descriptors):
    """The compiled teacher (OpenVINO here), centred and normalised, against dlib's descriptor in the same space."""
    space = face_embedders.read_space(face_embedders.FACE_EMBEDDERS["dlib-resnet"])
    want = dlib_descriptors - space["mu"]
    got = recognizer.embed_chips(teacher_chips)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert cosine(got, want).min() >= 0.999


def test_torch_port_matches_dlib(teacher_chips, dlib_descriptors):
    torch = pytest.importorskip("torch")
    from lanner.compile.exporters.dlib_resnet import build_dlib_resnet

    model = build_dlib_resnet()
    with torch.no_grad():
        got = model(torch.from_numpy(teacher_chips).permute(0, 3, 1, 2).float() / 255).numpy()
    np.testing.assert_allclose(got, dlib_descriptors, atol=1e-5)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) > 5_000_000  # trainable, all of it


@pytest.mark.slow
def test_export_reproduces_the_shipped_file(tmp_path):
    pytest.importorskip("torch")
    from lanner.compile.exporters.dlib_resnet import export_dlib_resnet_onnx

    out = export_dlib_resnet_onnx(tmp_path / "dlib_resnet.onnx", fp16_weights=True)
    assert sha256_file(out) == models.get_spec("dlib-resnet").sha256


def test_registry_entry_and_space_file():
    spec = models.get_spec("dlib-resnet")
    assert spec.inputs == {"image": ("n", 3, 150, 150)} and spec.outputs == ("descriptor",)
    models.onnx_path("dlib-resnet")  # checksum verified
    embedder = face_embedders.FACE_EMBEDDERS[face_embedders.TEACHER]
    space = face_embedders.read_space(embedder)
    assert space["mu"].shape == (128,) and space["far"] == 1e-3
    assert 0.3 < space["threshold"] < 0.9
    assert space["calibration"]["identities"] >= 150  # training identities only (44 of 238 are test)
    assert face_embedders.routing_table()[-1].model == "dlib-resnet"


def test_read_dlib_weights_rejects_other_files(tmp_path):
    from lanner.compile.exporters.dlib_resnet import dlib_model_dir, read_dlib_weights

    with pytest.raises(ValueError, match="is not dlib's ResNet face recognizer"):
        read_dlib_weights(dlib_model_dir() / "shape_predictor_5_face_landmarks.dat")
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes((dlib_model_dir() / "dlib_face_recognition_resnet_model_v1.dat").read_bytes()[:400_000])
    with pytest.raises(ValueError, match="truncated"):
        read_dlib_weights(truncated)


@pytest.mark.slow
def test_shipped_space_is_reproducible_from_the_training_identities(tmp_path):
    """Recompute mu and the FAR-1e-3 threshold from the celeba-faces folder (set LANNER_CELEBA_FACES)."""
    import os

    data = os.environ.get("LANNER_CELEBA_FACES")
    if not data:
        pytest.skip("set LANNER_CELEBA_FACES to the celeba-faces folder to recompute the embedding space")
    from lanner.compile.exporters.dlib_resnet import calibrate_embedding_space

    shipped = face_embedders.read_space(face_embedders.FACE_EMBEDDERS[face_embedders.TEACHER])
    again = calibrate_embedding_space(data, models.onnx_path("dlib-resnet"))
    np.testing.assert_allclose(np.array(again["mu"], np.float32), shipped["mu"], atol=1e-5)
    assert again["threshold"] == pytest.approx(shipped["threshold"], abs=1e-4)
    assert again["calibration"]["crops"] == shipped["calibration"]["crops"]
