"""Distillation losses against values computed by hand."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from lanner.distill import (  # noqa: E402
    EmbeddingDistillationLoss,
    HintonDistillationLoss,
    SelectiveDistillation,
    SimilarityPreservingLoss,
)


def test_cosine_feature_loss_is_one_minus_cosine():
    loss = EmbeddingDistillationLoss("cosine")
    # orthogonal -> 1; same direction (any scale) -> 0; mean over the batch -> 0.5
    s = torch.tensor([[0.0, 5.0], [2.0, 0.0]])
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert loss(s, t).item() == pytest.approx(0.5)
    # weights: only the first sample counts
    assert loss(s, t, torch.tensor([1.0, 0.0])).item() == pytest.approx(1.0)


def test_l2_feature_loss_is_squared_distance_of_unit_vectors():
    loss = EmbeddingDistillationLoss("l2")
    s = torch.tensor([[0.0, 3.0]])
    t = torch.tensor([[1.0, 0.0]])
    assert loss(s, t).item() == pytest.approx(2.0)  # |(0, 1) - (1, 0)|^2


def test_feature_loss_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind should be 'cosine' or 'l2', got 'l1'"):
        EmbeddingDistillationLoss("l1")


def test_similarity_preserving_loss_by_hand():
    # Student features orthogonal: G_s = I. Teacher features identical: G_t rows = (1, 1) / sqrt(2).
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    r = 1 / math.sqrt(2)
    expected = (2 * (1 - r) ** 2 + 2 * r**2) / 4
    assert SimilarityPreservingLoss()(s, t).item() == pytest.approx(expected, rel=1e-6)
    assert SimilarityPreservingLoss()(t, t).item() == pytest.approx(0.0, abs=1e-7)


def test_hinton_loss_by_hand():
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = HintonDistillationLoss(centres, temperature=1.0, scale=1.0)
    # teacher logits (1, 0), student logits (0, 1): KL(p || q) = (p1 - p2) * (1 - 0) = tanh(1/2)
    value = loss(torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 0.0]])).item()
    assert value == pytest.approx(math.tanh(0.5), rel=1e-6)
    assert loss(torch.tensor([[3.0, 0.0]]), torch.tensor([[1.0, 0.0]])).item() == pytest.approx(0.0, abs=1e-7)
    # T^2 scaling: T = 2 halves the logits and multiplies by 4
    value_t2 = HintonDistillationLoss(centres, temperature=2.0, scale=1.0)(
        torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 0.0]])
    ).item()
    assert value_t2 == pytest.approx(4 * math.tanh(0.25) * 0.5, rel=1e-6)


def test_selective_weights_by_hand():
    teacher = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    ids = torch.tensor([0, 0, 1])
    # identity 0's centre is normalize(1.6, 0.8) = (2, 1) / sqrt(5): both of its samples have cosine 2 / sqrt(5)
    c = 2 / math.sqrt(5)
    weights = SelectiveDistillation(keep_cosine=0.95, drop_cosine=0.85)(teacher, ids)
    assert weights.tolist() == pytest.approx([(c - 0.85) / 0.1, (c - 0.85) / 0.1, 1.0], rel=1e-5)
    assert SelectiveDistillation(keep_cosine=0.99, drop_cosine=0.95)(teacher, ids).tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="drop_cosine"):
        SelectiveDistillation(keep_cosine=0.2, drop_cosine=0.5)
