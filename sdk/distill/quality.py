"""Face image quality labels the SDD-FIQA way, over faces seen at many qualities.

SDD-FIQA (Ou et al., "SDD-FIQA: Unsupervised Face Image Quality Assessment with Similarity
Distribution Distance", CVPR 2021) needs no human ratings: a face's quality is how well the
recognizer separates it from other people. For a sample ``x`` of identity ``c``, take its similarities to
faces of ``c`` (the intra-class distribution ``S_p``) and to faces of other identities (the
inter-class distribution ``S_n``); the pseudo-label is the Wasserstein distance ``W1(S_p, S_n)``,
averaged over ``draws`` random equal-size draws of ``S_n`` (their Eq. 6-8). A small regressor then learns
the label from the image alone.

The cross-quality twist (Lanner's): every training crop is also seen shrunk to a random face width
(8-90 px), blurred, darkened, noisy, JPEG-compressed and mask-occluded (:func:`degrade_face`), and its
similarities are taken against the *clean* photos of every identity (the gallery users enrol), so the labels
span the qualities a camera or a drone delivers, and say how well each would be recognised.

The embeddings are the teacher's (dlib's ResNet as shipped in the registry, ``dlib-resnet``, compiled for this
CPU: the same model and space as :class:`lanner.FaceRecognizer`'s), computed once per sample and cached
(:func:`quality_samples`).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..face.align import align_faces
from .degrade import (
    GaussianBlur,
    JpegCompression,
    LowLight,
    MotionBlur,
    SensorNoise,
    downsample_face,
    occlude_lower_face,
)

__all__ = [
    "QUALITY_CHIP_SIZE",
    "DegradationMix",
    "TRAINING_MIX",
    "BENCHMARK_MIX",
    "degrade_face",
    "wasserstein_1d",
    "sdd_fiqa_labels",
    "QualitySamples",
    "quality_samples",
    "REJECTED_FRACTIONS",
    "error_versus_reject",
    "erc_area",
    "oracle_gain_share",
]

QUALITY_CHIP_SIZE = 32  # px, the quality student's aligned chip
TEACHER_CHIP = 150  # px, the teacher's aligned chip
_SAMPLES_VERSION = 1  # bump when the cached sample layout or the way samples are made changes


@dataclass(frozen=True)
class DegradationMix:
    """How a face is degraded for quality samples: each step with its probability.

    Thread-safe (immutable).

    Attributes:
        width_range: face widths (px), drawn log-uniformly and capped at the crop's own face width.
        blur, motion, low_light, noise, jpeg, mask: probability of each degradation.
    """

    width_range: tuple[float, float]
    blur: float
    motion: float
    low_light: float
    noise: float
    jpeg: float
    mask: float


# Training samples: every degradation of the issue, sizes from 8 px.
TRAINING_MIX = DegradationMix(
    width_range=(8.0, 90.0), blur=0.35, motion=0.2, low_light=0.3, noise=0.3, jpeg=0.4, mask=0.25
)
# The benchmark's probes (issue 16): face widths 20-90 px with blur, low light, mask-like occlusion and JPEG mixed.
BENCHMARK_MIX = DegradationMix(
    width_range=(20.0, 90.0), blur=0.35, motion=0.0, low_light=0.3, noise=0.0, jpeg=0.4, mask=0.25
)

_BLUR = GaussianBlur(sigma=(0.5, 2.5))
_MOTION = MotionBlur(length=(2.0, 6.0))
_LOW_LIGHT = LowLight(gain=(0.12, 0.6), gamma=(1.0, 2.0))
_NOISE = SensorNoise(sigma=(3.0, 15.0))
_JPEG = JpegCompression(quality=(8, 40))


def degrade_face(
    crop: np.ndarray, landmarks: np.ndarray, face_width: float, mix: DegradationMix, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, dict]:
    """One degraded view of a face crop: shrunk to a random width, then degraded as ``mix`` draws.

    Order follows a camera: the scene (mask), distance (area downsampling), optics (blur, motion),
    exposure, sensor noise, compression.

    Args:
        crop: (H, W, 3) uint8 RGB photo.
        landmarks: (5, 2) float landmarks in ``crop`` pixels.
        face_width: the face's width in ``crop`` (px).
        mix: the degradations and their probabilities.
        rng: the sample's generator.

    Returns:
        ``(image, landmarks, applied)``: the degraded image, the landmarks in its pixels, and what was
        applied (``width`` in px and one bool per degradation).
    """
    applied: dict = {}
    image = crop
    applied["mask"] = bool(rng.uniform() < mix.mask)
    if applied["mask"]:
        image = occlude_lower_face(image, landmarks, rng)
    lo, hi = mix.width_range
    width = float(min(np.exp(rng.uniform(np.log(lo), np.log(hi))), face_width))
    applied["width"] = width
    image, small_lm = downsample_face(image, landmarks, width, face_width)
    for name, probability, step in (
        ("blur", mix.blur, _BLUR),
        ("motion", mix.motion, _MOTION),
        ("low_light", mix.low_light, _LOW_LIGHT),
        ("noise", mix.noise, _NOISE),
        ("jpeg", mix.jpeg, _JPEG),
    ):
        applied[name] = bool(rng.uniform() < probability)
        if applied[name]:
            image = step(image, rng)
    return np.ascontiguousarray(image), small_lm, applied


def wasserstein_1d(a: np.ndarray, b: np.ndarray) -> float:
    """The 1-Wasserstein distance between two 1-D empirical distributions (equal weights per value).

    ``W1 = integral |F_a(x) - F_b(x)| dx`` over the merged support; for equal sizes it equals
    ``mean(|sort(a) - sort(b)|)``.

    Args:
        a, b: 1-D arrays of at least one finite value each.

    Returns:
        The distance (>= 0), in the values' units.

    Raises:
        ValueError: an empty or non-finite input.
    """
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.size == 0 or b.size == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(f"expected two non-empty arrays of finite values, got sizes {a.size} and {b.size}")
    values = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), values[:-1], side="right") / a.size
    cdf_b = np.searchsorted(np.sort(b), values[:-1], side="right") / b.size
    return float(np.sum(np.abs(cdf_a - cdf_b) * np.diff(values)))


def sdd_fiqa_labels(
    embeddings: np.ndarray,
    identities: np.ndarray,
    sources: np.ndarray,
    reference: np.ndarray,
    reference_identities: np.ndarray,
    draws: int = 8,
    seed: int = 0,
) -> np.ndarray:
    """SDD-FIQA pseudo-labels: ``W1`` between each sample's intra- and inter-class similarity distributions.

    For sample ``i``: ``S_p`` = cosines to the reference faces of its identity except its own source photo;
    ``S_n`` = cosines to ``len(S_p)`` reference faces of other identities, drawn ``draws`` times at random
    (seeded); the label is the mean of ``W1(S_p, S_n)`` over the draws, signed negative when the
    intra-class similarities are on the whole lower than the inter-class ones (a face that looks more
    like strangers than like its owner; the paper's unsigned distance would call it good).

    Args:
        embeddings: (N, D) unit embeddings of the samples.
        identities: (N,) their identities.
        sources: (N,) index into ``reference`` of each sample's own source photo (-1: none).
        reference: (M, D) unit embeddings of the clean reference photos.
        reference_identities: (M,) their identities.
        draws: random draws of the inter-class set per sample (the paper's ``m``).
        seed: seed of the draws.

    Returns:
        (N,) float32 labels (higher: better recognisable).

    Raises:
        ValueError: mismatched shapes, or a sample whose identity has no other reference photo.
    """
    embeddings, reference = np.asarray(embeddings, np.float32), np.asarray(reference, np.float32)
    if embeddings.ndim != 2 or reference.ndim != 2 or embeddings.shape[1] != reference.shape[1]:
        raise ValueError(
            f"embeddings (N, D) and reference (M, D) should share D, got {embeddings.shape} and {reference.shape}"
        )
    if not len(identities) == len(sources) == len(embeddings) or len(reference_identities) != len(reference):
        raise ValueError(
            f"expected one identity and source per sample ({len(embeddings)}) and one identity per "
            f"reference ({len(reference)}), got {len(identities)}, {len(sources)}, "
            f"{len(reference_identities)}"
        )
    rng = np.random.default_rng(seed)
    similarities = embeddings @ reference.T
    labels = np.zeros(len(embeddings), np.float32)
    for i in range(len(embeddings)):
        own = reference_identities == identities[i]
        own_others = own.copy()
        if sources[i] >= 0:
            own_others[sources[i]] = False
        positives = similarities[i, own_others]
        if positives.size == 0:
            raise ValueError(f"sample {i}: identity {identities[i]!r} has no other reference photo")
        negatives = similarities[i, ~own]
        distances = [
            wasserstein_1d(positives, rng.choice(negatives, size=positives.size, replace=False)) for _ in range(draws)
        ]
        sign = 1.0 if np.median(positives) >= np.median(negatives) else -1.0
        labels[i] = sign * float(np.mean(distances))
    return labels


@dataclass(frozen=True)
class QualitySamples:
    """Degraded views of celeba-faces crops with their teacher embeddings.

    Thread-safe to read (a frozen record of arrays; do not write into the arrays).

    Attributes:
        chips: (N, 32, 32, 3) uint8 RGB quality-student chips (aligned by :func:`align_faces`).
        embeddings: (N, 128) float32 unit teacher embeddings ``normalize(d - mu)`` of the same views (150 px chips).
        centred_norms: (N,) float32 ``||d - mu||`` before normalisation (the "embedding norm" quality heuristic).
        sources: (N,) int index of the source crop (row of the celeba-faces ``faces.csv``).
        identities: (N,) identity of each view.
        widths: (N,) float32 face width of the view, px.
        degradations: (N, 6) bool: mask, blur, motion, low_light, noise, jpeg applied.
    """

    chips: np.ndarray
    embeddings: np.ndarray
    centred_norms: np.ndarray
    sources: np.ndarray
    identities: np.ndarray
    widths: np.ndarray
    degradations: np.ndarray


_DEGRADATION_NAMES = ("mask", "blur", "motion", "low_light", "noise", "jpeg")


def quality_samples(
    crops: np.ndarray,
    landmarks: np.ndarray,
    face_widths: np.ndarray,
    identities: np.ndarray,
    indices: np.ndarray,
    views: int,
    mix: DegradationMix,
    seed: int,
    cache_dir: str | Path,
    num_threads: int = 1,
    progress: bool = True,
) -> QualitySamples:
    """Make ``views`` degraded views of each crop in ``indices`` and embed them with the teacher (cached).

    View ``k`` of crop ``i`` is drawn from ``np.random.default_rng([seed, i, k])``.

    Args:
        crops: (M, H, W, 3) uint8 RGB crops; landmarks: (M, 5, 2); face_widths: (M,); identities: (M,).
        indices: crops to use.
        views: degraded views per crop.
        mix: the degradations.
        seed: the samples' seed.
        cache_dir: folder for the cached ``.npz`` (keyed by every input above).
        num_threads: CPU threads of the teacher (the registry's ``dlib-resnet``, compiled for this machine).
        progress: print progress to stderr.

    Returns:
        The :class:`QualitySamples`.
    """
    indices = np.asarray(indices, np.int64)
    key = hashlib.sha256()
    for part in (crops, landmarks, face_widths, indices):
        key.update(np.ascontiguousarray(part).tobytes())
    key.update(json.dumps([views, mix.__dict__, seed, _SAMPLES_VERSION, QUALITY_CHIP_SIZE]).encode())
    cache = Path(cache_dir) / f"quality-samples-{key.hexdigest()[:16]}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as f:
            return QualitySamples(**{k: f[k] for k in QualitySamples.__dataclass_fields__})
    from .. import models
    from ..models import face_embedders

    spec = face_embedders.FACE_EMBEDDERS[face_embedders.TEACHER]
    mu = face_embedders.read_space(spec)["mu"]
    teacher = models.open_net(spec.model, "openvino", "fp32", num_threads=num_threads)
    chips, embeddings, sources, widths, flags = [], [], [], [], []
    started = time.perf_counter()
    try:
        for n, i in enumerate(indices):
            batch = []
            for k in range(views):
                rng = np.random.default_rng([seed, int(i), k])
                image, lm, applied = degrade_face(crops[i], landmarks[i], float(face_widths[i]), mix, rng)
                chips.append(align_faces(image, lm[None], QUALITY_CHIP_SIZE)[0])
                batch.append(align_faces(image, lm[None], TEACHER_CHIP)[0])
                sources.append(i)
                widths.append(applied["width"])
                flags.append([applied[name] for name in _DEGRADATION_NAMES])
            x = np.ascontiguousarray(np.stack(batch).transpose(0, 3, 1, 2), np.float32) / np.float32(255.0)
            embeddings.append(np.asarray(teacher.run({"image": x})[spec.output], np.float32) - mu)
            if progress and (n + 1) % 50 == 0:
                elapsed = time.perf_counter() - started
                left = elapsed / (n + 1) * (len(indices) - n - 1) / 60
                print(
                    f"\rquality samples: {n + 1}/{len(indices)} crops, {left:.1f} min left",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        teacher.close()
    if progress:
        print(file=sys.stderr)
    centred = np.concatenate(embeddings)
    norms = np.linalg.norm(centred, axis=1)
    samples = QualitySamples(
        chips=np.stack(chips),
        embeddings=(centred / norms[:, None]).astype(np.float32),
        centred_norms=norms.astype(np.float32),
        sources=np.array(sources, np.int64),
        identities=np.asarray(identities)[sources],
        widths=np.array(widths, np.float32),
        degradations=np.array(flags, bool),
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".partial.npz")
    np.savez(partial, **samples.__dict__)
    partial.replace(cache)
    return samples


#: Fractions of probes rejected (lowest quality first) along an error-versus-reject curve: 0-50% in 1% steps.
REJECTED_FRACTIONS = np.round(np.arange(0, 0.501, 0.01), 2)


def error_versus_reject(genuine: np.ndarray, threshold: float, quality: np.ndarray) -> np.ndarray:
    """An error-versus-reject curve (Grother & Tabassi, "Performance of Biometric Quality Measures", 2007).

    Args:
        genuine: (N,) one genuine comparison score per probe.
        threshold: the decision threshold, fixed while probes are rejected (set on impostor scores at an FMR).
        quality: (N,) the probes' qualities (lower: rejected first; ties keep input order).

    Returns:
        (len(REJECTED_FRACTIONS),) FNMR of the kept probes after rejecting each fraction of
        :data:`REJECTED_FRACTIONS`.

    Raises:
        ValueError: empty or mismatched inputs.
    """
    genuine, quality = np.asarray(genuine, np.float64).ravel(), np.asarray(quality, np.float64).ravel()
    if genuine.size == 0 or genuine.shape != quality.shape:
        raise ValueError(f"expected one quality per genuine score (N > 0), got {genuine.size} and {quality.size}")
    fails = (genuine[np.argsort(quality, kind="stable")] < threshold).astype(np.float64)
    return np.array([fails[int(round(r * fails.size)) :].mean() for r in REJECTED_FRACTIONS])


def erc_area(curve: np.ndarray) -> float:
    """Mean FNMR over the rejection range of an :func:`error_versus_reject` curve (trapezoid rule)."""
    return float(np.trapezoid(curve, REJECTED_FRACTIONS) / (REJECTED_FRACTIONS[-1] - REJECTED_FRACTIONS[0]))


def oracle_gain_share(genuine: np.ndarray, impostor: np.ndarray, quality: np.ndarray, fmr: float) -> float:
    """The share of the oracle's error-versus-reject gain a quality achieves (issue 16's score).

    ``(FNMR at 0% - its ERC area) / (FNMR at 0% - the oracle's area)``, the threshold set on ``impostor``
    at ``fmr``; the oracle rejects exactly the probes that fail first (lowest genuine score). 0 for a
    random order, 1 for the oracle.

    Args:
        genuine: (N,) genuine scores, one per probe.
        impostor: (M,) impostor scores.
        quality: (N,) the probes' qualities.
        fmr: false-match rate of the threshold, in (0, 1).

    Returns:
        The share (can be negative: worse than no rejection).

    Raises:
        ValueError: bad inputs, or an FMR whose threshold no probe fails.
    """
    if not 0.0 < fmr < 1.0 or np.asarray(impostor).size == 0:
        raise ValueError(f"expected impostor scores and an FMR in (0, 1), got {np.asarray(impostor).size} and {fmr}")
    threshold = float(np.quantile(impostor, 1.0 - fmr))
    oracle = error_versus_reject(genuine, threshold, genuine)
    if erc_area(oracle) >= oracle[0]:
        raise ValueError(f"no probe fails at FMR {fmr:g} (threshold {threshold:.3f}): the share is undefined")
    return (oracle[0] - erc_area(error_versus_reject(genuine, threshold, quality))) / (oracle[0] - erc_area(oracle))
