"""Distillation losses, each a small ``nn.Module`` with its paper and named hyper-parameters.

All take student outputs ``s`` (B, D) and teacher embeddings ``t`` (B, D) (unit norm, the shared
space ``normalize(d - mu)``); an optional per-sample ``weight`` (B,) comes from
:class:`SelectiveDistillation`. Each ``forward`` returns a scalar tensor.

Thread-safety: the modules hold no state that a call changes (only constant buffers), so one
instance may serve several threads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "EmbeddingDistillationLoss",
    "HintonDistillationLoss",
    "SimilarityPreservingLoss",
    "SelectiveDistillation",
    "QualityRegressionLoss",
]


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return values.mean()
    return (values * weight).sum() / weight.sum().clamp_min(1e-12)


class EmbeddingDistillationLoss(nn.Module):
    """Feature distillation: pull the student's embedding onto the teacher's.

    As in the feature-KD of the ICCV 2021 masked face recognition challenge's winning entries
    (Deng et al., "Masked Face Recognition Challenge: The InsightFace Track Report", ICCVW 2021):
    ``cosine``: ``1 - cos(s, t)``; ``l2``: ``||normalize(s) - t||^2`` (= ``2 - 2 cos`` for unit ``t``,
    but with the gradient of a squared distance).

    Args:
        kind: ``"cosine"`` or ``"l2"``.

    Raises:
        ValueError: unknown ``kind``.
    """

    def __init__(self, kind: str = "cosine") -> None:
        super().__init__()
        if kind not in ("cosine", "l2"):
            raise ValueError(f"kind should be 'cosine' or 'l2', got {kind!r}")
        self.kind = kind

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Mean (weighted) loss of student outputs (B, D) against unit teacher embeddings (B, D)."""
        s = F.normalize(student, dim=1)
        if self.kind == "cosine":
            per_sample = 1.0 - (s * teacher).sum(dim=1)
        else:
            per_sample = (s - teacher).pow(2).sum(dim=1)
        return _weighted_mean(per_sample, weight)


class HintonDistillationLoss(nn.Module):
    """Soft-target knowledge distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a
    Neural Network", 2015) over an identity head.

    Both student and teacher logits are ``scale * cos(embedding, centres)`` for fixed identity
    centres (the mean teacher embedding of each training identity): the teacher's own
    nearest-centre classifier is the head, so the student needs no classifier of its own.
    Loss: ``T^2 * KL(softmax(t / T) || softmax(s / T))``.

    Args:
        centres: (C, D) identity centres (normalised here).
        temperature: ``T``, softening both distributions (4 as in Hinton et al.'s MNIST runs).
        scale: logit scale applied to cosines (cosines alone give too flat a softmax).
    """

    def __init__(self, centres: torch.Tensor, temperature: float = 4.0, scale: float = 16.0) -> None:
        super().__init__()
        if temperature <= 0 or scale <= 0:
            raise ValueError(f"temperature and scale should be > 0, got {temperature} and {scale}")
        self.register_buffer("centres", F.normalize(centres.float(), dim=1))
        self.temperature = float(temperature)
        self.scale = float(scale)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Mean (weighted) ``T^2 KL`` of the identity distributions of teacher (B, D) and student (B, D)."""
        t_logits = self.scale * teacher @ self.centres.T / self.temperature
        s_logits = self.scale * F.normalize(student, dim=1) @ self.centres.T / self.temperature
        kl = (F.softmax(t_logits, dim=1) * (F.log_softmax(t_logits, dim=1) - F.log_softmax(s_logits, dim=1))).sum(1)
        return self.temperature**2 * _weighted_mean(kl, weight)


class SimilarityPreservingLoss(nn.Module):
    """Similarity-preserving KD (Tung & Mori, ICCV 2019): the student's batch of pairwise
    similarities should match the teacher's.

    ``G = normalize_rows(F F^T)`` for each of student and teacher features ``F`` (B, D); loss
    ``||G_t - G_s||_F^2 / B^2`` (their Eq. 3-4). Per-sample weights are not used: the loss is a
    property of the batch.
    """

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``||G_t - G_s||_F^2 / B^2`` for student (B, D) and teacher (B, D) features; ``weight`` is ignored."""
        b = student.shape[0]
        g_s = F.normalize(student @ student.T, dim=1)
        g_t = F.normalize(teacher @ teacher.T, dim=1)
        return (g_t - g_s).pow(2).sum() / (b * b)


class SelectiveDistillation(nn.Module):
    """Selective knowledge distillation weights (Ge, Zhao, Li & Luo, "Low-Resolution Face Recognition
    in the Wild via Selective Knowledge Distillation", IEEE TIP 2019).

    SKD distils only the teacher knowledge that is informative: here a sample whose teacher
    embedding lies far from its identity's centre (an outlier: wrong label, extreme pose, occlusion)
    is down-weighted or dropped. Weight = 1 for cosine to the centre >= ``keep_cosine``, 0 below
    ``drop_cosine``, linear in between.

    Args:
        keep_cosine: full weight at or above this cosine to the identity centre.
        drop_cosine: zero weight below this cosine.

    Raises:
        ValueError: ``drop_cosine > keep_cosine``.
    """

    def __init__(self, keep_cosine: float = 0.5, drop_cosine: float = 0.2) -> None:
        super().__init__()
        if drop_cosine > keep_cosine:
            raise ValueError(f"drop_cosine ({drop_cosine}) should not exceed keep_cosine ({keep_cosine})")
        self.keep_cosine = float(keep_cosine)
        self.drop_cosine = float(drop_cosine)

    def forward(self, teacher: torch.Tensor, identities: torch.Tensor) -> torch.Tensor:
        """Per-sample weights (N,) for teacher embeddings (N, D) with integer identity labels (N,).

        The centre of each identity is the normalised mean of its teacher embeddings (including the
        sample itself, as SKD's class centres do).
        """
        n_ids = int(identities.max()) + 1
        sums = torch.zeros(n_ids, teacher.shape[1], dtype=teacher.dtype).index_add_(0, identities, teacher)
        centres = F.normalize(sums, dim=1)
        cosine = (teacher * centres[identities]).sum(dim=1)
        span = max(self.keep_cosine - self.drop_cosine, 1e-12)
        return ((cosine - self.drop_cosine) / span).clamp(0.0, 1.0)


class QualityRegressionLoss(nn.Module):
    """Regression onto SDD-FIQA pseudo-labels (Ou et al., CVPR 2021, who train their regressor with a
    Huber loss on the normalised labels).

    Loss: ``mean(huber(prediction - label, delta))`` for predictions and labels in [0, 1].

    Args:
        delta: where the Huber loss turns from quadratic to linear (label units).

    Raises:
        ValueError: ``delta <= 0``.
    """

    def __init__(self, delta: float = 0.1) -> None:
        super().__init__()
        if delta <= 0:
            raise ValueError(f"delta should be > 0, got {delta}")
        self.delta = float(delta)

    def forward(
        self, prediction: torch.Tensor, label: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        per_sample = F.huber_loss(prediction.reshape(-1), label.reshape(-1), reduction="none", delta=self.delta)
        return _weighted_mean(per_sample, weight)
