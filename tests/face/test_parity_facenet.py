"""Parity with facenet-pytorch 2.6.0's MTCNN on package-shipped photos.

facenet-pytorch 2.6.0 is installed with ``--no-deps`` (its pins conflict with ours) and runs with
small ``torchvision``/``requests`` stand-ins that are importable only while this module's
reference fixture is alive (tests/support/facenet_reference.py). Skipped when torch or
facenet-pytorch is not installed (they are dev/torch extras, never runtime dependencies).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import facenet_reference
from detection_checks import assert_matches

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("facenet_pytorch") is None,
    reason="needs torch and facenet-pytorch (pip install --no-deps facenet-pytorch==2.6.0)",
)


@pytest.fixture(scope="module")
def reference():
    with facenet_reference.standins():
        yield facenet_reference, facenet_reference.load_mtcnn(num_threads=2)


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
    with lanner.FaceDetector(model="mtcnn", backend="openvino", precision="bf16", num_threads=2) as det:
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


@pytest.mark.parametrize(
    "net,shape",
    [("pnet", (1, 3, 67, 45)), ("pnet", (1, 3, 12, 12)), ("rnet", (7, 3, 24, 24)), ("onet", (7, 3, 48, 48))],
)
def test_shipped_onnx_nets_compute_facenet_pytorchs_nets(reference, net, shape):
    """The shipped graphs are facenet-pytorch's nets, rearranged: P-Net's two heads as one
    6-channel convolution (logits, then box regression; the softmax is taken in the candidate
    pass), R-/O-Net's Caffe-order flatten folded into their dense weights."""
    import onnxruntime as ort
    import torch
    from facenet_pytorch.models import mtcnn as facenet_mtcnn

    from lanner import models

    torch_net = getattr(facenet_mtcnn, net.upper()[0] + "Net")().eval()  # loads the wheel's weights
    session = ort.InferenceSession(str(models.onnx_path(f"mtcnn-{net}")), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(len(net) + shape[0] + shape[2]).uniform(-1, 1, shape).astype(np.float32)
    with torch.no_grad():
        want = [t.numpy() for t in torch_net(torch.from_numpy(x))]
    got = session.run(None, {"image": x})
    if net == "pnet":
        (maps,) = got
        logits = maps[:, :2]
        e = np.exp(logits - logits.max(1, keepdims=True))
        got = [maps[:, 2:], e / e.sum(1, keepdims=True)]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=0, atol=5e-6)
