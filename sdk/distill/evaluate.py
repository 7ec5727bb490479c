"""Identification metrics of the cross-quality protocol (issue 14's benchmark), in NumPy.

Gallery: one clean, high-resolution photo per identity, embedded by the teacher. Probes: every
other photo, degraded to a small face, embedded by the model under test. Scores are cosines in the
shared embedding space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["IdentificationResult", "identification_metrics", "gallery_split"]


@dataclass(frozen=True)
class IdentificationResult:
    """Rank-1 identification and verification figures of one probe set. Immutable (thread-safe).

    Attributes:
        rank1: fraction of probes whose best-scoring gallery identity is their own.
        tar_at_far: ``{far: tar}``: true-accept rate of mated probe-gallery pairs at the threshold
            where that fraction of non-mated pairs is (falsely) accepted.
        probes: number of probes.
    """

    rank1: float
    tar_at_far: dict
    probes: int


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def identification_metrics(
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    probes: np.ndarray,
    probe_labels: np.ndarray,
    fars: tuple[float, ...] = (1e-2, 1e-3),
) -> IdentificationResult:
    """Rank-1 and TAR@FAR of probes against a gallery (one or more embeddings per label).

    Args:
        gallery: (G, D) embeddings.
        gallery_labels: (G,) labels.
        probes: (P, D) embeddings, same D.
        probe_labels: (P,) labels, each present in the gallery.
        fars: false-accept rates at which to report the true-accept rate.

    Returns:
        The :class:`IdentificationResult`.

    Raises:
        ValueError: mismatched shapes, or a probe label missing from the gallery.
    """
    gallery, probes = np.asarray(gallery), np.asarray(probes)
    if gallery.ndim != 2 or probes.ndim != 2 or gallery.shape[1] != probes.shape[1]:
        raise ValueError(f"expected (G, D) gallery and (P, D) probes, got {gallery.shape} and {probes.shape}")
    if len(gallery_labels) != len(gallery) or len(probe_labels) != len(probes):
        raise ValueError("one label per embedding expected")
    if not set(np.unique(probe_labels)) <= set(np.unique(gallery_labels)):
        raise ValueError("every probe label should be in the gallery")
    scores = _unit(probes) @ _unit(gallery).T
    names = np.unique(gallery_labels)
    # One score per (probe, identity): the best over that identity's gallery embeddings.
    per_identity = np.stack([scores[:, gallery_labels == n].max(axis=1) for n in names], axis=1)
    mated = probe_labels[:, None] == names[None, :]
    rank1 = float(np.mean(names[per_identity.argmax(axis=1)] == probe_labels))
    genuine, impostor = per_identity[mated], np.sort(per_identity[~mated])[::-1]
    tar = {}
    for far in fars:
        k = int(np.floor(far * len(impostor)))
        threshold = impostor[k] if k < len(impostor) else -np.inf
        tar[far] = float(np.mean(genuine > threshold))
    return IdentificationResult(rank1=rank1, tar_at_far=tar, probes=len(probes))


def gallery_split(files: np.ndarray, identities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The protocol's gallery/probe split: the first photo (by file name) of each identity is its gallery photo.

    Returns:
        ``(gallery_indices, probe_indices)`` into ``files``.
    """
    order = np.lexsort((files, identities))
    first = np.ones(len(order), bool)
    first[1:] = identities[order][1:] != identities[order][:-1]
    return np.sort(order[first]), np.sort(order[~first])
