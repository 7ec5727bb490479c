"""Export: the ONNX student matches torch (ONNX Runtime, atol 1e-5) and follows the student contract."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from lanner.distill import FaceStudent, StudentConfig  # noqa: E402
from lanner.distill.export import export_student  # noqa: E402


@pytest.mark.parametrize("size", [16, 32])
def test_onnx_matches_torch(tmp_path, size):
    torch.manual_seed(0)
    model = FaceStudent(StudentConfig(size=size))
    # Non-trivial BatchNorm statistics, so that folding them into the convolutions is exercised.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(32, 3, size, size))
    model.eval()
    path = export_student(model, tmp_path / "student.onnx")
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["image"] and [o.name for o in graph.output] == ["embedding"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((5, 3, size, size), dtype=np.float32)
    (out,) = session.run(["embedding"], {"image": x})
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert out.shape == (5, 128) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)


def test_export_refuses_other_modules(tmp_path):
    with pytest.raises(TypeError, match="model should be a FaceStudent, got Linear"):
        export_student(torch.nn.Linear(2, 2), tmp_path / "x.onnx")


def test_student_config_is_validated():
    with pytest.raises(ValueError, match="size should be 16 or 32, got 24"):
        StudentConfig(size=24)
