"""The compression recipe: the bridge model's small-face recognition in a student ~100x cheaper.

The bridge model (:mod:`lanner.distill.bridge`: dlib's ResNet adapted to small upsampled faces) reads a
150 px chip through a ResNet-29, though a 16 px face carries no more than a 32 px chip holds. This recipe
teaches a :class:`lanner.distill.FaceStudent` reading that 32 px chip to give the bridge's answer, by
*consistent* teaching (Beyer et al., "Knowledge distillation: a good teacher is patient and consistent",
CVPR 2022): student and bridge see the same degraded view of a face, and the target is the bridge's output
on that very view, not the teacher's embedding of the clean photo. A target the student's input determines
is learnable from a few thousand faces; the clean photo's embedding is not (the 16 px students trained that
way reached rank-1 0.22 on unseen people).

* **Views** (made once, cached): a face of the training identities is mirrored or not, shrunk (area) to
  ``W`` px wide (``W`` uniform in ``width_range``, with a bias toward ``width_focus``), colour-jittered,
  degraded (:func:`lanner.distill.degrade.moderate_degradations`: the bridge's training degradations),
  its landmarks jittered, and aligned twice from the same landmarks
  (:meth:`lanner.distill.faces.FaceSampler.views`): into the bridge's 150 px chip and the student's 32 px
  chip. The bridge runs on the first (the registry ONNX, compiled for this CPU).
* **More people**: the faces of the facemask-voc train split (other people than CelebA's, many of them
  masked), found by MTCNN, add ``extra_views`` views: only the bridge's outputs are needed, not identities.
* **Loss**: ``1 - cos(student(x), normalize(bridge(x) - mu))`` (``mu``: the teacher's centre).

The run is one :class:`lanner.distill.training.TrainingTask` of :func:`lanner.distill.training.run_loop`.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .bridge import CHIP_SIZE as BRIDGE_CHIP
from .degrade import moderate_degradations
from .evaluate import identification_metrics
from .faces import FaceSampler, to_tensor_layout
from .student import FaceStudent, StudentConfig
from .training import RunConfig, TrainData, _validation_set, read_checkpoint, run_in_batches, run_loop

__all__ = [
    "CHIP_SIZE",
    "CompressConfig",
    "ViewPool",
    "facemask_faces",
    "make_view_pool",
    "train_compressed",
    "load_compressed",
]

CHIP_SIZE = 32  # px: the student's aligned chip
_POOL_VERSION = 1  # bump when the way views are made changes


@dataclass(frozen=True)
class CompressConfig(RunConfig):
    """Everything that defines a compression run. Immutable (thread-safe); stored in every checkpoint.

    Attributes:
        channels: the student's widths (stem and four depthwise-separable blocks; :class:`StudentConfig`).
        views: views of the training-identity crops in the pool.
        extra_views: views of the extra faces (facemask-voc train split) in the pool.
        width_range: face widths (px) drawn uniformly for views.
        width_focus: ``(low, high, probability)``: with that probability the width comes from ``[low, high]``.
        jitter: crop jitter amplitude (:class:`FaceSampler`).
        colour: colour jitter amplitude (:class:`FaceSampler`).
        steps: optimisation steps.
        batch_size: views per step.
        learning_rate: AdamW peak learning rate.
        warmup_fraction: fraction of ``steps`` spent warming up (then cosine decay to 0).
        weight_decay: AdamW decoupled weight decay.
        validation_identities: training identities held out (never in the pool) to measure rank-1.
        validation_width: face width (px) of the validation probes.
        evaluate_every: steps between validation measurements.
        checkpoint_every: steps between checkpoints.
        seed: run seed (views, batches, initial weights).
    """

    _kind = "compress"

    channels: tuple[int, int, int, int, int] = (32, 64, 128, 256, 512)
    views: int = 120_000
    extra_views: int = 16_000
    width_range: tuple[float, float] = (8.0, 28.0)
    width_focus: tuple[float, float, float] = (12.0, 20.0, 0.5)
    jitter: float = 0.04
    colour: float = 0.2
    steps: int = 6000
    batch_size: int = 256
    learning_rate: float = 3e-3
    warmup_fraction: float = 0.03
    weight_decay: float = 5e-4
    validation_identities: int = 24
    validation_width: float = 16.0
    evaluate_every: int = 1000
    checkpoint_every: int = 500
    seed: int = 0

    def student_config(self) -> StudentConfig:
        """The student's shape."""
        return StudentConfig(size=CHIP_SIZE, channels=tuple(self.channels))

    def pool_key(self) -> str:
        """What the pool depends on (its cache key's config part)."""
        fields = ("views", "extra_views", "width_range", "width_focus", "jitter", "colour", "seed")
        fields += ("validation_identities",)
        return json.dumps({k: getattr(self, k) for k in fields}, sort_keys=True)


@dataclass(frozen=True)
class ViewPool:
    """Degraded student chips and the bridge model's raw descriptors of the same views. Immutable.

    Attributes:
        chips: (N, 32, 32, 3) uint8 RGB student chips.
        descriptors: (N, 128) float32 bridge descriptors of the same views (150 px chips), not centred.
        extra: (N,) bool, views of the extra faces.
    """

    chips: np.ndarray
    descriptors: np.ndarray
    extra: np.ndarray

    def save(self, path: Path) -> None:
        """Write the pool as one ``.npz`` (atomically: a temporary file renamed over ``path``)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.npz")
        np.savez(partial, chips=self.chips, descriptors=self.descriptors, extra=self.extra)
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> ViewPool:
        """Read a pool written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as f:
            return cls(**{k: f[k] for k in cls.__dataclass_fields__})


def facemask_faces(facemask_dir: str | Path, *, min_width: float = 24.0, min_score: float = 0.95):
    """The faces of the facemask-voc train split as 144 px square crops with MTCNN landmarks (extra people).

    MTCNN (``lanner.FaceDetector(model="mtcnn")``) finds the faces; each face at least ``min_width`` px wide
    is cut as a square 1.6x its box's longer side (the celeba-faces folder's geometry) and resized to 144 px.
    The test split (:func:`lanner.distill.facemask.facemask_split`) is never read.

    Returns:
        ``(crops, landmarks, widths)``: (N, 144, 144, 3) uint8 RGB, (N, 5, 2) float32 landmarks and (N,)
        float32 face widths, both in crop pixels.

    Raises:
        FileNotFoundError: no ``images/`` folder.
    """
    import cv2

    from ..face import FaceDetector
    from .facemask import facemask_split

    images = Path(facemask_dir) / "images"
    if not images.is_dir():
        raise FileNotFoundError(f"expected the facemask-voc folder (with images/), got {facemask_dir}")
    crops, landmarks, widths = [], [], []
    with FaceDetector(model="mtcnn", num_threads=1) as detector:
        for path in sorted(images.glob("*.jpg")):
            if facemask_split(path.name) != "train":
                continue
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            faces = detector.detect(image)
            for box, points, score in zip(faces.boxes, faces.landmarks, faces.scores):
                width = float(box[2] - box[0])
                if width < min_width or score < min_score:
                    continue
                scale = 144.0 / (1.6 * max(width, float(box[3] - box[1])))
                cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
                warp = np.array([[scale, 0, 72 - scale * cx], [0, scale, 72 - scale * cy]], np.float32)
                interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
                crop = cv2.warpAffine(image, warp, (144, 144), flags=interpolation, borderValue=0)
                crops.append(crop[:, :, ::-1])
                landmarks.append(points * scale + warp[:, 2])
                widths.append(width * scale)
    if not crops:
        return np.zeros((0, 144, 144, 3), np.uint8), np.zeros((0, 5, 2), np.float32), np.zeros(0, np.float32)
    return np.ascontiguousarray(np.stack(crops)), np.stack(landmarks).astype(np.float32), np.array(widths, np.float32)


def _sampler(config: CompressConfig, crops: np.ndarray, landmarks: np.ndarray, widths: np.ndarray) -> FaceSampler:
    return FaceSampler(
        crops=crops,
        landmarks=landmarks,
        face_widths=widths,
        targets=np.zeros((len(crops), 128), np.float32),  # unused: the targets are the bridge's outputs
        size=CHIP_SIZE,
        width_range=config.width_range,
        degradations=moderate_degradations(config.seed),
        jitter=config.jitter,
        colour=config.colour,
        width_focus=config.width_focus,
    )


def make_view_pool(
    config: CompressConfig,
    sources: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]],
    describe,
    *,
    progress: bool = True,
) -> ViewPool:
    """Make the pool: for each source, ``count`` views cycling over its crops in seeded random order.

    Args:
        config: the run (widths, jitter, colour, seed).
        sources: ``(crops, landmarks, face_widths, indices, count)`` per source: (N, H, W, 3) uint8 RGB crops,
            (N, 5, 2) landmarks and (N,) face widths in crop pixels, the crop indices to use, the views to make.
            Source ``k`` draws its views with sample indices ``k * 10**9 + i`` (disjoint generators).
        describe: ``(M, 3, 150, 150) float32 chips -> (M, 128) float32`` descriptors (the bridge model).
        progress: print a progress line now and then.

    Returns:
        The :class:`ViewPool` (the extra flag set on every source after the first).
    """
    chips, descriptors, extra = [], [], []
    for k, (crops, landmarks, face_widths, indices, count) in enumerate(sources):
        if count == 0:
            continue
        if len(indices) == 0:
            raise ValueError(f"source {k} has no crops to make {count} views of")
        sampler = _sampler(config, crops, landmarks, face_widths)
        rng = np.random.default_rng([config.seed, k, 2])
        order = np.concatenate([rng.permutation(indices) for _ in range(count // len(indices) + 1)])[:count]
        student = np.zeros((count, CHIP_SIZE, CHIP_SIZE, 3), np.uint8)
        values = np.zeros((count, 128), np.float32)
        for start in range(0, count, 64):
            big = []
            for i in range(start, min(count, start + 64)):
                large, small = sampler.views(int(order[i]), k * 10**9 + i, (BRIDGE_CHIP, CHIP_SIZE))
                big.append(large)
                student[i] = small
            values[start : start + len(big)] = describe(to_tensor_layout(np.stack(big)))
            if progress and (start // 64) % 100 == 0:
                print(f"views of source {k}: {start + len(big)}/{count}", file=sys.stderr, flush=True)
        chips.append(student)
        descriptors.append(values)
        extra.append(np.full(count, k > 0))
    return ViewPool(
        chips=np.concatenate(chips),
        descriptors=np.concatenate(descriptors),
        extra=np.concatenate(extra),
    )


def pool_cache_path(cache_dir: Path, config: CompressConfig, data_key: str) -> Path:
    """Where the pool of ``config`` over the data identified by ``data_key`` is cached."""
    key = hashlib.sha256(f"{config.pool_key()}|{data_key}".encode()).hexdigest()[:16]
    return Path(cache_dir) / f"compress-views-v{_POOL_VERSION}-{key}.npz"


class _PoolBatches(torch.utils.data.Dataset):
    """Batch ``step``: pool views drawn by the step's generator, as student chips and centred unit targets."""

    def __init__(self, pool: ViewPool, targets: np.ndarray, config: CompressConfig) -> None:
        self.chips, self.targets, self.config = pool.chips, targets, config

    def __len__(self) -> int:
        return self.config.steps

    def __getitem__(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.config.seed, step, 1])
        idx = rng.integers(0, len(self.chips), self.config.batch_size)
        return to_tensor_layout(self.chips[idx]), self.targets[idx]


class _CompressTask:
    """A small student learns the bridge model's output on the very view it sees."""

    def __init__(self, config: CompressConfig, pool: ViewPool, mu: np.ndarray, data: TrainData | None) -> None:
        self.config = config
        torch.manual_seed(config.seed)
        self.model = FaceStudent(config.student_config()).train()
        centred = pool.descriptors - np.asarray(mu, np.float32)
        targets = (centred / np.linalg.norm(centred, axis=1, keepdims=True)).astype(np.float32)
        self.batches = _PoolBatches(pool, targets, config)
        self.validation = None
        if data is not None:
            sampler = _sampler(config, data.crops, data.landmarks, data.face_widths)
            self.validation = _validation_set(data, sampler, config.validation_width)

    def loss_terms(self, batch) -> dict[str, torch.Tensor]:
        chips, targets = (torch.as_tensor(b) for b in batch)
        return {"cos": (1 - (F.normalize(self.model(chips), dim=1) * targets).sum(dim=1)).mean()}

    def validate(self, step: int) -> dict | None:
        if self.validation is None:
            return None
        gallery, g_labels, probe_chips, p_labels = self.validation
        self.model.eval()
        probes = run_in_batches(self.model, probe_chips).numpy()
        self.model.train()
        return {"rank1": identification_metrics(gallery, g_labels, probes, p_labels).rank1}


def train_compressed(
    config: CompressConfig,
    pool: ViewPool,
    mu: np.ndarray,
    out_dir: str | Path,
    *,
    data: TrainData | None = None,
    resume: bool = True,
    stop_after: int | None = None,
    progress: bool = True,
) -> tuple[FaceStudent, list, float]:
    """Train a student on a view pool (or resume the run in ``out_dir``).

    Args:
        config: the run.
        pool: the views and the bridge's descriptors of them.
        mu: (128,) the teacher's centre.
        out_dir: folder of ``checkpoint.pt`` (created).
        data: the celeba training material whose validation identities are measured (None: no validation).
        resume: continue from ``out_dir/checkpoint.pt`` when it exists (its config must equal ``config``).
        stop_after: stop (with a checkpoint) after this many steps in total.
        progress: print a progress line to stderr.

    Returns:
        ``(model, history, seconds)``: the trained student (eval mode), validation records, training time.

    Raises:
        ValueError: an empty pool, or a checkpoint made by a different config.
    """
    if len(pool.chips) == 0:
        raise ValueError("the view pool is empty")
    task = _CompressTask(config, pool, mu, data)
    history, seconds = run_loop(
        task,
        config=config,
        evaluate_every=config.evaluate_every,
        checkpoint_every=config.checkpoint_every,
        out_dir=out_dir,
        resume=resume,
        stop_after=stop_after,
        workers=0,  # the batches are slices of the in-memory pool: nothing to make ahead
        progress=progress,
        same_config=config.same_as,
    )
    return task.model.eval(), history, seconds


def load_compressed(checkpoint: str | Path) -> tuple[FaceStudent, CompressConfig]:
    """Rebuild a trained student (eval mode) and its config from a compression checkpoint.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a compression checkpoint.
    """
    config, weights = read_checkpoint(checkpoint, CompressConfig)
    model = FaceStudent(config.student_config())
    model.load_state_dict(weights)
    return model.eval(), config
