"""The shipped 16 px student: checksum, the student ONNX contract, int8 weights, size, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from lanner import models  # noqa: E402

NAME = "face-student16"


def test_registry_entry_and_checksum():
    spec = models.get_spec(NAME)
    path = models.onnx_path(NAME)  # checks the sha256
    assert spec.inputs == {"image": ("n", 3, 16, 16)} and spec.outputs == ("embedding",)
    space = json.loads((path.parent / "face_student16.json").read_text())
    assert -1.0 <= space["threshold"] <= 1.0 and space["far"] == 1e-3


def test_contract_and_int8_weights():
    path = models.onnx_path(NAME)
    assert path.stat().st_size < 150 * 1024
    model = onnx.load(str(path))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert sum(int(np.prod(t.dims)) for t in int8_weights) > 90_000  # the conv/dense weights are int8
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["embedding"]
    chips = np.random.default_rng(0).random((3, 3, 16, 16), dtype=np.float32)
    (a,) = session.run(["embedding"], {"image": chips})
    (b,) = session.run(["embedding"], {"image": chips[1:2]})
    assert a.shape == (3, 128) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_allclose(a[1:2], b, atol=1e-5)  # batch-independent (no batch statistics)
