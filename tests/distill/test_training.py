"""The training loop: a tiny seeded run learns, checkpoints carry their config, resume equals an uninterrupted run."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lanner.distill import FaceStudent, TrainConfig, load_student, train  # noqa: E402
from lanner.distill.degrade import default_degradations  # noqa: E402
from lanner.distill.faces import FaceSampler  # noqa: E402

TINY = dict(
    resolution=16,
    width_range=(8.0, 12.0),
    channels=(8, 16, 16, 16, 32),
    batch_size=16,
    learning_rate=1e-2,
    evaluate_every=20,
    checkpoint_every=5,
    validation_identities=4,
    validation_width=10.0,
    seed=7,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _cosine_loss(model: FaceStudent, data, config: TrainConfig) -> float:
    sampler = FaceSampler(
        crops=data.crops,
        landmarks=data.landmarks,
        face_widths=data.face_widths,
        targets=data.targets,
        size=16,
        width_range=config.width_range,
        degradations=default_degradations(123),
    )
    idx = np.flatnonzero(~data.validation)
    with torch.no_grad():
        out = torch.nn.functional.normalize(model.eval()(torch.from_numpy(sampler.batch(idx, 0))), dim=1)
    return float(1 - (out * torch.from_numpy(data.targets[idx])).sum(1).mean())


def test_tiny_run_learns_the_targets(tiny_train_data, tmp_path):
    config = TrainConfig(steps=150, **{**TINY, "learning_rate": 3e-2, "evaluate_every": 50})
    torch.manual_seed(config.seed)
    before = _cosine_loss(FaceStudent(config.student_config()), tiny_train_data, config)
    result = train(config, tiny_train_data, tmp_path, workers=0, progress=False)
    after = _cosine_loss(result.model, tiny_train_data, config)
    assert after < before - 0.1, (before, after)
    assert [h["step"] for h in result.history] == [50, 100, 150]
    assert all(0.0 <= h["rank1"] <= 1.0 for h in result.history)


def test_checkpoint_carries_its_config(tiny_train_data, tmp_path):
    config = TrainConfig(steps=5, **TINY)
    train(config, tiny_train_data, tmp_path, workers=0, progress=False)
    model, loaded = load_student(tmp_path / "checkpoint.pt")
    assert loaded == config
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert json.loads(state["config"])["seed"] == 7 and state["step"] == 5
    with pytest.raises(ValueError, match="was made by another config"):
        train(TrainConfig(steps=6, **TINY), tiny_train_data, tmp_path, workers=0, progress=False)


def test_resume_equals_uninterrupted_run(tiny_train_data, tmp_path):
    config = TrainConfig(steps=20, **TINY)
    whole = train(config, tiny_train_data, tmp_path / "whole", workers=0, progress=False)
    train(config, tiny_train_data, tmp_path / "split", workers=0, progress=False, stop_after=10)
    resumed = train(config, tiny_train_data, tmp_path / "split", workers=0, progress=False)
    for (name, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_batches_made_by_a_worker_process_are_the_same(tiny_train_data, tmp_path):
    config = TrainConfig(steps=6, **TINY)
    inline = train(config, tiny_train_data, tmp_path / "inline", workers=0, progress=False)
    worker = train(config, tiny_train_data, tmp_path / "worker", workers=1, progress=False)
    for (name, a), (_, b) in zip(inline.model.state_dict().items(), worker.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_config_round_trip_and_schedule():
    config = TrainConfig(steps=100, warmup_fraction=0.1, learning_rate=1.0)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.__dict__))) == config
    assert config.learning_rate_at(0) == pytest.approx(0.1)
    assert config.learning_rate_at(9) == pytest.approx(1.0)
    assert config.learning_rate_at(99) < 1e-3
    with pytest.raises(ValueError, match="unknown training config fields \\['nope'\\]"):
        TrainConfig.from_dict({"nope": 1})


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("steps", 0, "steps should be an int >= 1, got 0"),  # loaded the data, then "no checkpoint"
        ("steps", -5, "steps should be an int >= 1"),
        ("steps", 2.5, "steps should be an int >= 1"),
        ("batch_size", 0, "batch_size should be an int >= 1"),
        ("learning_rate", float("nan"), "learning_rate should be a finite number > 0"),
        ("learning_rate", 0.0, "learning_rate should be a finite number > 0"),
        ("warmup_fraction", 1.0, r"warmup_fraction should be in \[0, 1\)"),
        ("weight_decay", -1e-4, "weight_decay should be finite and >= 0"),
        ("seed", -1, "seed should be an int >= 0"),
    ],
)
def test_every_run_config_checks_the_shared_fields(field, value, match):
    from lanner.distill.bridge import BridgeConfig
    from lanner.distill.compress import CompressConfig

    for config in (TrainConfig, BridgeConfig, CompressConfig):
        with pytest.raises(ValueError, match=match):
            config(**{field: value})
