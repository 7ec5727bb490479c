"""The bridge recipe: dlib's ResNet itself, fine-tuned to see a small face as it sees the same face large.

Users of a high-resolution recognizer upsample a small face into its 150 px chip; the teacher then
sees a blurred face it was never trained on (issue 14: rank-1 0.878 at full resolution, 0.659 at
16 px). The bridge starts from the teacher's own weights (``build_dlib_resnet``, a trainable port)
and adapts it to such chips with the teacher's *own* high-resolution outputs as targets, in the
spirit of bridge distillation (Shi et al., "Low-resolution face recognition in the wild via
selective knowledge distillation" / "... bridge distillation", IEEE TIP 2019/2020), where a
high-resolution model is first adapted to low-resolution inputs before any compression:

* input: the training crop shrunk (area) to a face ``W`` px wide (``W`` uniform in ``width_range``,
  with a bias toward ``width_focus``), mirrored, moderately degraded (:func:`moderate_degradations`),
  slightly jittered, then aligned exactly as the SDK aligns (:func:`lanner.face.align.align_faces`
  from the scaled landmarks into the 150 px chip: the same upsampling users do);
* target: the frozen teacher's descriptor ``t`` of the *clean* full-resolution chip of the same crop
  (of the mirrored crop when the sample is mirrored), computed once and cached
  (:func:`compute_bridge_targets`);
* loss, on centred unit vectors (dlib's descriptors share a large common component ``mu``, the
  teacher's registry mean): ``1 - cos(normalize(model(x) - mu), normalize(t - mu))``, optionally plus
  similarity-preserving KD.

The run is one :class:`lanner.distill.training.TrainingTask` of the one loop
(:func:`lanner.distill.training.run_loop`): checkpoints, resume and the schedule are shared.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..face.align import align_faces
from .degrade import moderate_degradations
from .evaluate import identification_metrics
from .faces import FaceSampler, load_crops, mirror_landmarks, to_tensor_layout
from .losses import EmbeddingDistillationLoss, SimilarityPreservingLoss
from .teacher import _read_faces_csv, is_test_identity
from .training import (
    RunConfig,
    TrainData,
    _Batches,
    _validation_set,
    read_checkpoint,
    run_in_batches,
    run_loop,
    validation_split,
)

__all__ = [
    "CHIP_SIZE",
    "clean_chips",
    "BridgeConfig",
    "BridgeTargets",
    "teacher_centre",
    "compute_bridge_targets",
    "bridge_training_data",
    "celeba_bridge_material",
    "train_bridge",
    "load_bridge",
    "embed_descriptors",
]

CHIP_SIZE = 150  # px: the teacher's (and the bridge model's) aligned chip
_TARGETS_VERSION = 1  # bump when the way bridge targets are computed changes


@dataclass(frozen=True)
class BridgeConfig(RunConfig):
    """Everything that defines a bridge run. Immutable (thread-safe); stored in every checkpoint.

    Attributes:
        width_range: face widths (px) drawn uniformly for training samples.
        width_focus: ``(low, high, probability)``: with that probability the width comes from ``[low, high]``.
        steps: optimisation steps.
        batch_size: samples per step.
        learning_rate: AdamW peak learning rate (small: the model starts from the teacher's weights).
        trainable_blocks: the stem and this many first residual blocks learn (7: the 32- and 64-channel stages,
            where the input's resolution matters); the deeper, identity-discriminative blocks and the final
            projection keep dlib's weights (fine-tuning all of it on 170 identities overfitted them: validation
            rank-1 at 16 px fell from the teacher's 0.733 to 0.54 after 90 steps at 1e-4).
        warmup_fraction: fraction of ``steps`` spent warming up (then cosine decay to 0).
        weight_decay: AdamW decoupled weight decay.
        similarity_weight: weight of :class:`SimilarityPreservingLoss` (0: cosine feature distillation only).
        jitter: crop jitter amplitude (:class:`FaceSampler`).
        colour: colour jitter amplitude (:class:`FaceSampler`).
        validation_identities: training identities held out to measure rank-1 while training.
        validation_width: face width (px) of the validation probes.
        evaluate_every: steps between validation measurements.
        checkpoint_every: steps between checkpoints.
        seed: run seed (batches and degradations; the initial weights are dlib's).
    """

    _kind = "bridge"

    width_range: tuple[float, float] = (10.0, 24.0)
    width_focus: tuple[float, float, float] = (12.0, 20.0, 0.5)
    steps: int = 240
    batch_size: int = 32
    learning_rate: float = 5e-5
    trainable_blocks: int = 7
    warmup_fraction: float = 0.05
    weight_decay: float = 1e-4
    similarity_weight: float = 0.0
    jitter: float = 0.03
    colour: float = 0.1
    validation_identities: int = 24
    validation_width: float = 16.0
    evaluate_every: int = 120
    checkpoint_every: int = 30
    seed: int = 0


def teacher_centre() -> np.ndarray:
    """The teacher's ``mu`` (128,) float32 from its registry JSON (``sdk/models/dlib_resnet``): the centre
    of issue 14's embedding space, which the bridge model's outputs share."""
    from ..models import face_embedders

    return face_embedders.read_space(face_embedders.FACE_EMBEDDERS[face_embedders.TEACHER])["mu"]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def embed_descriptors(model: torch.nn.Module, chips: np.ndarray | torch.Tensor, batch: int = 32) -> np.ndarray:
    """Run a 150 px descriptor model (eval, no gradients) over (N, 3, 150, 150) float32 chips in batches.

    Returns:
        (N, 128) float32 raw descriptors.
    """
    chips = torch.as_tensor(chips)
    return run_in_batches(model, chips, batch=batch).numpy() if len(chips) else np.zeros((0, 128), np.float32)


@dataclass(frozen=True)
class BridgeTargets:
    """The frozen teacher's descriptors of every clean training-identity crop, as is and mirrored.

    One row per crop of faces.csv; the test identities' rows are NaN (the teacher never runs on them here).
    Immutable (thread-safe).

    Attributes:
        files: (N,) crop paths relative to ``images/``.
        identities: (N,) identity names.
        test: (N,) bool, the issue-14 test identities.
        boxes: (N, 4) float32 MTCNN face boxes in crop pixels.
        landmarks: (N, 5, 2) float32 MTCNN landmarks in crop pixels.
        descriptors: (N, 128) float32 teacher descriptors of the clean chips (aligned by ``align_faces``).
        mirrored: (N, 128) float32 teacher descriptors of the mirrored clean chips.
    """

    files: np.ndarray
    identities: np.ndarray
    test: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    descriptors: np.ndarray
    mirrored: np.ndarray


def _read_faces(data_dir: Path) -> dict:
    rows = _read_faces_csv(data_dir)
    identities = np.array([r["identity"] for r in rows])
    return dict(
        files=np.array([r["file"] for r in rows]),
        identities=identities,
        test=np.array([is_test_identity(i) for i in identities]),
        boxes=np.array([[float(r[f"box_{k}"]) for k in ("x0", "y0", "x1", "y1")] for r in rows], np.float32),
        landmarks=np.array(
            [[[float(r[f"lm{j}_x"]), float(r[f"lm{j}_y"])] for j in range(5)] for r in rows], np.float32
        ),
    )


def clean_chips(crops: np.ndarray, landmarks: np.ndarray, mirrored: bool) -> np.ndarray:
    """The teacher's view of clean crops: (N, 3, 150, 150) float32 chips aligned by ``align_faces``
    (of the left-right mirrored crops when ``mirrored``)."""
    chips = []
    for crop, lm in zip(crops, landmarks):
        if mirrored:
            lm = mirror_landmarks(lm, crop.shape[1])
            crop = np.ascontiguousarray(crop[:, ::-1])
        chips.append(align_faces(crop, np.asarray(lm, np.float32)[None], CHIP_SIZE)[0])
    return to_tensor_layout(np.stack(chips))


def compute_bridge_targets(
    data_dir: str | Path,
    cache_dir: str | Path,
    crops: np.ndarray | None = None,
    *,
    num_threads: int | None = None,
    progress: bool = True,
) -> BridgeTargets:
    """Run the frozen teacher on every clean training-identity crop and its mirror, once (cached).

    The teacher is the registry's ``dlib-resnet`` ONNX (dlib's weights, cosine >= 0.9999 to dlib's own
    descriptors) compiled for this CPU, as :class:`lanner.FaceRecognizer` runs it; chips are aligned by
    :func:`lanner.face.align.align_faces` from the MTCNN landmarks, as the bridge model's inputs are.
    Cached in ``cache_dir`` under a key of faces.csv's checksum.

    Args:
        data_dir: the celeba-faces folder (``faces.csv`` + ``images/``).
        cache_dir: folder for the cached ``.npz`` (created).
        crops: the folder's crops (:func:`load_crops`) when already loaded.
        num_threads: teacher threads (None: the backend's default).
        progress: print a progress line per chunk.

    Returns:
        The :class:`BridgeTargets`.

    Raises:
        FileNotFoundError: ``data_dir`` holds no faces.csv.
    """
    from .. import models
    from ..models import face_embedders

    data_dir, cache_dir = Path(data_dir), Path(cache_dir)
    faces = _read_faces(data_dir)
    key = hashlib.sha256((data_dir / "faces.csv").read_bytes()).hexdigest()[:16]
    cache = cache_dir / f"celeba-faces-bridge-targets-v{_TARGETS_VERSION}-{key}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as f:
            return BridgeTargets(**{k: f[k] for k in BridgeTargets.__dataclass_fields__})
    crops = load_crops(data_dir, faces["files"]) if crops is None else crops
    rows = np.flatnonzero(~faces["test"])
    backend, _ = models.resolve("auto", "fp32")
    teacher = models.open_net(face_embedders.TEACHER, backend, "fp32", num_threads=num_threads)
    out = {}
    try:
        for mirrored in (False, True):
            values = np.full((len(crops), 128), np.nan, np.float32)
            for start in range(0, len(rows), 64):
                chunk = rows[start : start + 64]
                chips = clean_chips(crops[chunk], faces["landmarks"][chunk], mirrored)
                values[chunk] = teacher.run({"image": chips})["descriptor"]
                if progress and (start // 64) % 8 == 0:
                    kind = "mirrored" if mirrored else "clean"
                    print(f"bridge targets ({kind}): {start + len(chunk)}/{len(rows)}", file=sys.stderr, flush=True)
            out["mirrored" if mirrored else "descriptors"] = values
    finally:
        teacher.close()
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".partial.npz")
    np.savez(partial, **faces, **out)
    partial.replace(cache)
    return BridgeTargets(**faces, **out)


def bridge_training_data(
    crops: np.ndarray, targets: BridgeTargets, mu: np.ndarray, validation_identities: int
) -> tuple[TrainData, np.ndarray]:
    """Training material of the bridge: training identities only, some held out for validation.

    Returns:
        ``(data, mirrored_targets)``: a :class:`TrainData` whose ``targets`` are the centred unit
        embeddings ``normalize(t - mu)`` of the clean crops, and the (N, 128) same of the mirrored crops
        (NaN rows for the test identities, which are neither trained on nor validated on).
    """
    data = TrainData(
        crops=crops,
        landmarks=targets.landmarks,
        face_widths=(targets.boxes[:, 2] - targets.boxes[:, 0]).astype(np.float32),
        identities=targets.identities,
        targets=_unit(targets.descriptors - mu),
        train=~targets.test,
        validation=validation_split(targets.identities, targets.test, validation_identities),
    )
    return data, _unit(targets.mirrored - mu)


def celeba_bridge_material(
    data_dir: str | Path, cache_dir: str | Path, validation_identities: int, *, num_threads: int | None = None
) -> tuple[TrainData, np.ndarray, np.ndarray]:
    """The celeba-faces folder read for a run on the teacher's space: its crops, the teacher's targets
    (:func:`compute_bridge_targets`, cached) and :func:`bridge_training_data`.

    Returns:
        ``(data, mirrored_targets, mu)``.

    Raises:
        FileNotFoundError: the folder holds no faces.csv or misses a crop.
    """
    rows = _read_faces_csv(Path(data_dir))
    crops = load_crops(data_dir, np.array([r["file"] for r in rows]))
    targets = compute_bridge_targets(data_dir, cache_dir, crops, num_threads=num_threads)
    mu = teacher_centre()
    data, mirrored = bridge_training_data(crops, targets, mu, validation_identities)
    return data, mirrored, mu


class _BridgeTask:
    """The teacher's port learns to map a small face's upsampled chip onto the clean face's embedding."""

    def __init__(
        self,
        config: BridgeConfig,
        data: TrainData,
        mirrored_targets: np.ndarray,
        mu: np.ndarray,
        train_idx: np.ndarray,
        model: torch.nn.Module,
    ) -> None:
        self.config, self.model = config, model.train()
        self.mu = torch.from_numpy(np.asarray(mu, np.float32))
        self.feature_loss = EmbeddingDistillationLoss("cosine")
        self.similarity_loss = SimilarityPreservingLoss()
        sampler = FaceSampler(
            crops=data.crops,
            landmarks=data.landmarks,
            face_widths=data.face_widths,
            targets=data.targets,
            size=CHIP_SIZE,
            width_range=config.width_range,
            degradations=moderate_degradations(config.seed),
            jitter=config.jitter,
            colour=config.colour,
            mirrored_targets=mirrored_targets,
            width_focus=config.width_focus,
        )
        self.validation = _validation_set(data, sampler, config.validation_width)
        self.batches = _Batches(sampler, train_idx, config)

    def loss_terms(self, batch) -> dict[str, torch.Tensor]:
        _, chips, targets = (torch.as_tensor(b) for b in batch)
        centred = self.model(chips) - self.mu
        terms = {"cos": self.feature_loss(centred, targets)}
        if self.config.similarity_weight:
            terms["sp"] = self.config.similarity_weight * self.similarity_loss(F.normalize(centred, dim=1), targets)
        return terms

    def validate(self, step: int) -> dict | None:
        if self.validation is None:
            return None
        g, g_labels, probe_chips, p_labels = self.validation
        probes = embed_descriptors(self.model, probe_chips) - self.mu.numpy()
        return {"rank1": identification_metrics(g, g_labels, probes, p_labels).rank1}


def train_bridge(
    config: BridgeConfig,
    data: TrainData,
    mirrored_targets: np.ndarray,
    mu: np.ndarray,
    out_dir: str | Path,
    *,
    model: torch.nn.Module | None = None,
    resume: bool = True,
    stop_after: int | None = None,
    workers: int = 1,
    progress: bool = True,
) -> tuple[torch.nn.Module, list, float]:
    """Fine-tune dlib's ResNet (or ``model``) to small faces (or resume the run in ``out_dir``).

    Args:
        config: the run.
        data: crops, landmarks, centred unit targets of the clean crops, train/validation masks.
        mirrored_targets: (N, 128) centred unit targets of the mirrored clean crops.
        mu: (128,) the teacher's centre.
        out_dir: folder of ``checkpoint.pt`` (created).
        model: the starting point (default: ``build_dlib_resnet()``, dlib's weights).
        resume: continue from ``out_dir/checkpoint.pt`` when it exists (its config must equal ``config``).
        stop_after: stop (with a checkpoint) after this many steps in total.
        workers: processes making batches ahead of the training step (0: in this process).
        progress: print a progress line to stderr.

    Returns:
        ``(model, history, seconds)``: the trained model (eval mode), validation records, training time.

    Raises:
        ValueError: no training crops, mismatched target shapes, or a checkpoint made by a different config.
    """
    train_idx = np.flatnonzero(data.train & ~data.validation)
    if len(train_idx) == 0:
        raise ValueError("no training crops: data.train & ~data.validation selects nothing")
    if mirrored_targets.shape != data.targets.shape:
        raise ValueError(f"mirrored_targets should be {data.targets.shape}, got {mirrored_targets.shape}")
    if model is None:
        from ..compile.exporters.dlib_resnet import build_dlib_resnet

        model = build_dlib_resnet()
    _freeze_deep_layers(model, config.trainable_blocks)
    task = _BridgeTask(config, data, mirrored_targets, mu, train_idx, model)
    history, seconds = run_loop(
        task,
        config=config,
        evaluate_every=config.evaluate_every,
        checkpoint_every=config.checkpoint_every,
        out_dir=out_dir,
        resume=resume,
        stop_after=stop_after,
        workers=workers,
        progress=progress,
        same_config=config.same_as,
    )
    return task.model.eval(), history, seconds


def _freeze_deep_layers(model: torch.nn.Module, trainable_blocks: int) -> None:
    """Keep the teacher's weights in every residual block after the first ``trainable_blocks`` and in ``fc``."""
    blocks = list(model.blocks)
    if not 0 <= trainable_blocks <= len(blocks):
        raise ValueError(f"trainable_blocks should be in [0, {len(blocks)}], got {trainable_blocks}")
    for block in blocks[trainable_blocks:]:
        block.requires_grad_(False)
    model.fc.requires_grad_(False)


def load_bridge(checkpoint: str | Path) -> tuple[torch.nn.Module, BridgeConfig]:
    """Rebuild a trained bridge model (eval mode) and its config from a checkpoint.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a bridge checkpoint.
    """
    from ..compile.exporters.dlib_resnet import build_dlib_resnet

    config, weights = read_checkpoint(checkpoint, BridgeConfig)
    model = build_dlib_resnet()
    model.load_state_dict(weights)
    return model.eval(), config
