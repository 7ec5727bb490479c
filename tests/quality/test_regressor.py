"""The quality regressor: a tiny seeded run of the one training loop learns labels that need both its
inputs (the chip and the face width); ONNX parity with torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lanner.distill import (  # noqa: E402
    QualityRegressionLoss,
    QualityStudent,
    TrainConfig,
    TrainData,
    load_student,
    train,
)
from lanner.distill.faces import to_tensor_layout  # noqa: E402
from lanner.distill.quality_run import (  # noqa: E402
    QUALITY_INPUT,
    QUALITY_OUTPUT,
    QUALITY_WIDTH_INPUT,
    export_quality_student,
)
from lanner.distill.training import predict_quality  # noqa: E402

TINY = dict(
    task="quality",
    resolution=32,
    quality_channels=(4, 8, 8),
    quality_hidden=6,  # not the default (16): a checkpoint must rebuild the head it was trained with
    batch_size=32,
    learning_rate=2e-2,
    evaluate_every=100,
    checkpoint_every=50,
    seed=3,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def blur_data():
    """scikit-image's LFW faces blurred by a known amount, at known face widths; the label rises with
    sharpness (1 - sigma / 3) and with the log of the width (8 -> 0, 90 px -> 1), half each."""
    import cv2
    from skimage import data as skdata

    faces = (skdata.lfw_subset()[:60] * 255 + 0.5).astype(np.uint8)
    rng = np.random.default_rng(0)
    sigmas = rng.uniform(0.0, 3.0, len(faces))
    widths = np.exp(rng.uniform(np.log(8.0), np.log(90.0), len(faces))).astype(np.float32)
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
        face_widths=widths,
        identities=np.array([f"id{i}" for i in range(n)]),
        targets=np.zeros((n, 0), np.float32),
        train=np.ones(n, bool),
        validation=validation,
        quality=(0.5 * (1 - sigmas / 3) + 0.5 * np.log(widths / 8.0) / np.log(90.0 / 8.0)).astype(np.float32),
    )


def test_huber_loss_by_hand():
    loss = QualityRegressionLoss(delta=0.1)
    # |0.05| -> 0.5 * 0.05^2 = 0.00125; |0.3| -> 0.1 * (0.3 - 0.05) = 0.025; mean = 0.013125
    value = loss(torch.tensor([[0.55], [0.0]]), torch.tensor([0.5, 0.3]))
    assert float(value) == pytest.approx(0.013125, abs=1e-7)
    with pytest.raises(ValueError, match="delta should be > 0"):
        QualityRegressionLoss(delta=0)


def test_tiny_run_learns_blur_and_width(blur_data, tmp_path):
    config = TrainConfig(steps=300, **TINY)
    result = train(config, blur_data, tmp_path, workers=0, progress=False)
    assert [h["step"] for h in result.history] == [100, 200, 300]
    # 12 validation chips: a rank correlation above 0.7 has p ~ 0.01 under no learning (one pass reads 0.80 here).
    assert result.history[-1]["spearman"] > 0.7, result.history
    model, loaded = load_student(tmp_path / "checkpoint.pt")
    assert loaded == config and isinstance(model, QualityStudent)
    assert model.head[0].out_features == 6 and model.features[0].out_channels == 4
    # Both inputs matter: the same chips scored as 8 px faces rank below themselves as 90 px faces.
    chips = blur_data.crops[blur_data.validation]
    small = predict_quality(model, chips, np.full(len(chips), 8.0, np.float32))
    large = predict_quality(model, chips, np.full(len(chips), 90.0, np.float32))
    assert (large > small).all(), (small, large)
    # A different config is refused on resume (the checkpoint carries the quality config).
    with pytest.raises(ValueError, match="was made by another config"):
        train(TrainConfig(steps=301, **TINY), blur_data, tmp_path, workers=0, progress=False)


def test_quality_task_needs_labels(blur_data, tmp_path):
    data = TrainData(**{**blur_data.__dict__, "quality": None})
    with pytest.raises(ValueError, match=r"needs data.quality of shape \(60,\), got None"):
        train(TrainConfig(steps=1, **TINY), data, tmp_path, workers=0, progress=False)
    with pytest.raises(ValueError, match="task should be one of"):
        TrainConfig(task="nope")


@pytest.mark.parametrize("channels, hidden", [((12, 24, 48), 16), ((24, 48, 96), 32)])  # the old and shipped shapes
def test_onnx_parity_with_torch(blur_data, tmp_path, channels, hidden):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = QualityStudent(channels, hidden)
    chips = to_tensor_layout(blur_data.crops)
    # Widths below, inside and above the clamped range [8, 128] px.
    widths = np.geomspace(3.0, 400.0, len(chips)).astype(np.float32)[:, None]
    # Non-trivial BatchNorm statistics, so that folding them into the export is exercised.
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(chips), torch.from_numpy(widths))
    model.eval()
    with torch.no_grad():  # a head that spreads the outputs (an untrained one gives ~0.5 for every face)
        model.head[2].weight.normal_(0.0, 20.0)
    path = export_quality_student(model, tmp_path / "q.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [QUALITY_INPUT, QUALITY_WIDTH_INPUT]
    exported = session.run([QUALITY_OUTPUT], {QUALITY_INPUT: chips, QUALITY_WIDTH_INPUT: widths})[0]
    with torch.no_grad():
        reference = model(torch.from_numpy(chips), torch.from_numpy(widths)).numpy()
    assert exported.shape == (60, 1)
    np.testing.assert_allclose(exported, reference, atol=1e-5)
    assert np.ptp(reference) > 1e-2  # outputs that differ between faces far more than the tolerance
