"""The compression recipe: one view seen at two chip sizes, a seeded view pool, a tiny run that learns and resumes."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lanner.distill.compress import (  # noqa: E402
    CHIP_SIZE,
    CompressConfig,
    ViewPool,
    load_compressed,
    make_view_pool,
    train_compressed,
)
from lanner.distill.degrade import moderate_degradations  # noqa: E402
from lanner.distill.faces import FaceSampler  # noqa: E402
from lanner.distill.student import FaceStudent  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

TINY = CompressConfig(
    channels=(8, 16, 16, 16, 32),
    views=48,
    extra_views=16,
    width_range=(6.0, 10.0),
    width_focus=(7.0, 9.0, 0.5),
    steps=40,
    batch_size=16,
    learning_rate=1e-2,
    evaluate_every=20,
    checkpoint_every=10,
    validation_identities=4,
    validation_width=8.0,
    seed=5,
)
_PROJECTION = np.random.default_rng(0).standard_normal((3 * 15 * 15, 128)).astype(np.float32)


def describe(chips: np.ndarray) -> np.ndarray:
    """A stand-in bridge: a fixed random projection of the 150 px chip pooled to 15x15 (a function of the view)."""
    pooled = chips.reshape(len(chips), 3, 15, 10, 15, 10).mean(axis=(3, 5)).reshape(len(chips), -1)
    return (pooled - 0.5) @ _PROJECTION


def _sources(data, config):
    train = np.flatnonzero(data.train & ~data.validation)
    extra = np.flatnonzero(data.validation)[:2]  # any other faces: here two held-out crops
    return [
        (data.crops, data.landmarks, data.face_widths, train, config.views),
        (data.crops, data.landmarks, data.face_widths, extra, config.extra_views),
    ]


def test_views_are_one_view_at_several_sizes(tiny_train_data):
    data = tiny_train_data
    sampler = FaceSampler(
        crops=data.crops,
        landmarks=data.landmarks,
        face_widths=data.face_widths,
        targets=data.targets,
        size=CHIP_SIZE,
        width_range=(6.0, 10.0),
        degradations=moderate_degradations(3),
    )
    for sample_index in range(6):
        large, small = sampler.views(2, sample_index, (150, CHIP_SIZE))
        assert large.shape == (150, 150, 3) and small.shape == (CHIP_SIZE, CHIP_SIZE, 3)
        assert np.array_equal(small, sampler.sample(2, sample_index))  # the same draws as a training sample
        down = cv2.resize(large, (CHIP_SIZE, CHIP_SIZE), interpolation=cv2.INTER_AREA).astype(float)
        assert np.abs(down - small).mean() < 12  # the same face, framed the same way


def test_view_pool_is_seeded_and_marks_the_extra_views(tiny_train_data, tmp_path):
    pool = make_view_pool(TINY, _sources(tiny_train_data, TINY), describe, progress=False)
    assert pool.chips.shape == (64, CHIP_SIZE, CHIP_SIZE, 3) and pool.chips.dtype == np.uint8
    assert pool.descriptors.shape == (64, 128) and pool.descriptors.dtype == np.float32
    assert pool.extra.tolist() == [False] * 48 + [True] * 16
    again = make_view_pool(TINY, _sources(tiny_train_data, TINY), describe, progress=False)
    assert np.array_equal(pool.chips, again.chips) and np.array_equal(pool.descriptors, again.descriptors)
    other = make_view_pool(dataclasses.replace(TINY, seed=6), _sources(tiny_train_data, TINY), describe, progress=False)
    assert not np.array_equal(pool.chips, other.chips)
    pool.save(tmp_path / "pool.npz")
    loaded = ViewPool.load(tmp_path / "pool.npz")
    assert all(np.array_equal(getattr(pool, f), getattr(loaded, f)) for f in ("chips", "descriptors", "extra"))
    assert not list(tmp_path.glob("*.partial*"))


def test_view_pool_refuses_a_source_without_crops(tiny_train_data):
    data = tiny_train_data
    sources = [(data.crops, data.landmarks, data.face_widths, np.zeros(0, int), 4)]
    with pytest.raises(ValueError, match="source 0 has no crops"):
        make_view_pool(TINY, sources, describe, progress=False)


def _cosine_loss(model, pool: ViewPool) -> float:
    targets = torch.nn.functional.normalize(torch.from_numpy(pool.descriptors), dim=1)
    chips = torch.from_numpy(pool.chips.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    with torch.no_grad():
        out = torch.nn.functional.normalize(model.eval()(chips), dim=1)
    return float(1 - (out * targets).sum(1).mean())


def test_tiny_run_learns_the_bridge_outputs_and_resumes(tiny_train_data, tmp_path):
    pool = make_view_pool(TINY, _sources(tiny_train_data, TINY), describe, progress=False)
    mu = np.zeros(128, np.float32)
    torch.manual_seed(TINY.seed)
    before = _cosine_loss(FaceStudent(TINY.student_config()), pool)
    model, history, _ = train_compressed(TINY, pool, mu, tmp_path / "whole", data=tiny_train_data, progress=False)
    assert _cosine_loss(model, pool) < before - 0.1
    assert [h["step"] for h in history] == [20, 40] and all(0 <= h["rank1"] <= 1 for h in history)
    train_compressed(TINY, pool, mu, tmp_path / "split", progress=False, stop_after=10)
    resumed, _, _ = train_compressed(TINY, pool, mu, tmp_path / "split", progress=False)
    for (name, a), (_, b) in zip(model.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    loaded, config = load_compressed(tmp_path / "whole" / "checkpoint.pt")
    assert config == TINY and all(
        torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values())
    )
    with pytest.raises(ValueError, match="was made by another config"):
        train_compressed(dataclasses.replace(TINY, steps=41), pool, mu, tmp_path / "whole", progress=False)


def test_load_compressed_rejects_other_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_compressed(tmp_path / "missing.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a lanner.distill checkpoint"):
        load_compressed(tmp_path / "other.pt")


def test_empty_pool_is_refused(tmp_path):
    empty = ViewPool(np.zeros((0, 32, 32, 3), np.uint8), np.zeros((0, 128), np.float32), np.zeros(0, bool))
    with pytest.raises(ValueError, match="the view pool is empty"):
        train_compressed(TINY, empty, np.zeros(128, np.float32), tmp_path, progress=False)
