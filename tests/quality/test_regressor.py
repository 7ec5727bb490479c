"""The quality regressor: a tiny seeded run of the one training loop learns the labels; ONNX parity with torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lanner.distill import QualityRegressionLoss, QualityStudent, TrainConfig, TrainData, load_student, train  # noqa: E402
from lanner.distill.faces import to_tensor_layout  # noqa: E402
from lanner.distill.quality_run import QUALITY_INPUT, QUALITY_OUTPUT, export_quality_student  # noqa: E402

TINY = dict(
    task="quality",
    resolution=32,
    quality_channels=(4, 8, 8),
    batch_size=32,
    learning_rate=2e-2,
    evaluate_every=100,
    checkpoint_every=50,
    seed=3,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def blur_data():
    """scikit-image's LFW faces blurred by a known amount; label = 1 - sigma / 3 (sharp faces score high)."""
    import cv2
    from skimage import data as skdata

    faces = (skdata.lfw_subset()[:60] * 255 + 0.5).astype(np.uint8)
    rng = np.random.default_rng(0)
    sigmas = rng.uniform(0.0, 3.0, len(faces))
    chips = []
    for face, sigma in zip(faces, sigmas):
        chip = cv2.resize(face, (32, 32), interpolation=cv2.INTER_LINEAR)
        if sigma > 0.05:
            chip = cv2.GaussianBlur(chip, (0, 0), sigmaX=float(sigma))
        chips.append(np.repeat(chip[..., None], 3, axis=2))
    n = len(chips)
    validation = np.zeros(n, bool)
    validation[48:] = True
    return TrainData(
        crops=np.stack(chips),
        landmarks=np.zeros((n, 5, 2), np.float32),
        face_widths=np.full(n, 32.0, np.float32),
        identities=np.array([f"id{i}" for i in range(n)]),
        targets=np.zeros((n, 0), np.float32),
        train=np.ones(n, bool),
        validation=validation,
        quality=(1 - sigmas / 3).astype(np.float32),
    )


def test_huber_loss_by_hand():
    loss = QualityRegressionLoss(delta=0.1)
    # |0.05| -> 0.5 * 0.05^2 = 0.00125; |0.3| -> 0.1 * (0.3 - 0.05) = 0.025; mean = 0.013125
    value = loss(torch.tensor([[0.55], [0.0]]), torch.tensor([0.5, 0.3]))
    assert float(value) == pytest.approx(0.013125, abs=1e-7)
    with pytest.raises(ValueError, match="delta should be > 0"):
        QualityRegressionLoss(delta=0)


def test_tiny_run_learns_to_rank_blur(blur_data, tmp_path):
    config = TrainConfig(steps=300, **TINY)
    result = train(config, blur_data, tmp_path, workers=0, progress=False)
    assert [h["step"] for h in result.history] == [100, 200, 300]
    assert result.history[-1]["spearman"] > 0.8, result.history
    model, loaded = load_student(tmp_path / "checkpoint.pt")
    assert loaded == config and isinstance(model, QualityStudent)
    # A different config is refused on resume (the checkpoint carries the quality config).
    with pytest.raises(ValueError, match="was made by another config"):
        train(TrainConfig(steps=301, **TINY), blur_data, tmp_path, workers=0, progress=False)


def test_quality_task_needs_labels(blur_data, tmp_path):
    data = TrainData(**{**blur_data.__dict__, "quality": None})
    with pytest.raises(ValueError, match=r"needs data.quality of shape \(60,\), got None"):
        train(TrainConfig(steps=1, **TINY), data, tmp_path, workers=0, progress=False)
    with pytest.raises(ValueError, match="task should be one of"):
        TrainConfig(task="nope")


def test_onnx_parity_with_torch(blur_data, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = QualityStudent()
    # Non-trivial BatchNorm statistics, so that folding them into the export is exercised.
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(to_tensor_layout(blur_data.crops)))
    model.eval()
    with torch.no_grad():  # a head that spreads the outputs (an untrained one gives ~0.53 for every face)
        model.head[2].weight.normal_(0.0, 20.0)
    path = export_quality_student(model, tmp_path / "q.onnx")
    chips = to_tensor_layout(blur_data.crops)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    exported = session.run([QUALITY_OUTPUT], {QUALITY_INPUT: chips})[0]
    with torch.no_grad():
        reference = model(torch.from_numpy(chips)).numpy()
    assert exported.shape == (60, 1)
    np.testing.assert_allclose(exported, reference, atol=1e-5)
    assert np.ptp(reference) > 1e-2  # outputs that differ between faces far more than the tolerance
