"""The shipped masked-face student's ONNX (sdk/models/mtcnn_masked) against its PyTorch weights
(tests/data/mtcnn_masked_stages.pt, the training checkpoint's R-Net and O-Net)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

WEIGHTS = Path(__file__).resolve().parents[1] / "data" / "mtcnn_masked_stages.pt"


@pytest.mark.parametrize("net,size", [("rnet", 24), ("onet", 48)])
def test_student_onnx_matches_its_torch_weights(net, size):
    from lanner import models
    from lanner.compile.exporters.mtcnn import _build_nets

    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    module = _build_nets()[net]()
    module.load_state_dict({k[len(net) + 1 :]: v for k, v in state.items() if k.startswith(f"{net}.")})
    module.eval()
    crops = np.random.default_rng(0).uniform(-1, 1, (16, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        expected = [t.numpy() for t in module(torch.from_numpy(crops))]
    session = ort.InferenceSession(str(models.onnx_path(f"mtcnn-masked-{net}")), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": crops})
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-5, rtol=1e-4)
    # the student is not the teacher: training moved the weights
    teacher = ort.InferenceSession(str(models.onnx_path(f"mtcnn-{net}")), providers=["CPUExecutionProvider"])
    assert np.abs(teacher.run(None, {"image": crops})[-1] - got[-1]).max() > 1e-3
