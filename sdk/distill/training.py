"""The one training loop of ``lanner.distill``: a face student learns the teacher's embedding space.

A run is fully described by a :class:`TrainConfig` (stored in every checkpoint). Batches are drawn
from generators seeded by ``(seed, step)`` and each sample's degradations by ``(seed, sample index)``,
and the learning rate is a pure function of the step, so a run resumed from a checkpoint continues
exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from .degrade import default_degradations
from .evaluate import identification_metrics
from .faces import FaceSampler, to_tensor_layout
from .losses import (
    EmbeddingDistillationLoss,
    HintonDistillationLoss,
    QualityRegressionLoss,
    SelectiveDistillation,
    SimilarityPreservingLoss,
)
from .student import FaceStudent, QualityStudent, StudentConfig

__all__ = [
    "TASKS",
    "TrainConfig",
    "TrainData",
    "TrainResult",
    "TrainingTask",
    "run_loop",
    "train",
    "validation_split",
    "load_student",
]

CHECKPOINT = "checkpoint.pt"
# What a run trains: "embedding" distils the teacher's embedding into a FaceStudent from chips degraded on the fly;
# "quality" regresses SDD-FIQA pseudo-labels (lanner.distill.quality) with a QualityStudent from fixed chips.
TASKS = ("embedding", "quality")


def warmup_cosine(step: int, steps: int, learning_rate: float, warmup_fraction: float) -> float:
    """The learning rate of ``step`` (0-based) of a ``steps``-step run: linear warm-up over
    ``warmup_fraction`` of the run, then cosine decay to 0 (every task of :func:`run_loop` uses it)."""
    warmup = max(1, int(warmup_fraction * steps))
    if step < warmup:
        return float(learning_rate * (step + 1) / warmup)
    progress = (step - warmup) / max(1, steps - warmup)
    return float(0.5 * learning_rate * (1 + np.cos(np.pi * min(progress, 1.0))))


def say(message: str) -> None:
    """One line of a run's progress report, on stderr (stdout stays free for results)."""
    print(message, file=sys.stderr, flush=True)


class RunConfig:
    """What every run config of :func:`run_loop` shares (the training, bridge and detection configs are
    frozen dataclasses deriving from it, with ``steps``, ``learning_rate``, ``weight_decay`` and a
    ``warmup_fraction`` field or class attribute): the one learning-rate schedule and the JSON round trip."""

    _kind = "run"  # the word naming the config in errors

    def __post_init__(self) -> None:
        """Check the fields every run has (a run of 0 or -5 steps loaded its data and then reported a missing
        checkpoint)."""
        for name in ("steps", "batch_size"):
            value = getattr(self, name, 1)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{self._kind} config: {name} should be an int >= 1, got {value!r}")
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
            raise ValueError(f"{self._kind} config: learning_rate should be a finite number > 0, got {lr!r}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"{self._kind} config: warmup_fraction should be in [0, 1), got {self.warmup_fraction!r}")
        if not 0 <= self.weight_decay < math.inf:
            raise ValueError(f"{self._kind} config: weight_decay should be finite and >= 0, got {self.weight_decay!r}")
        seed = getattr(self, "seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"{self._kind} config: seed should be an int >= 0, got {seed!r}")

    def learning_rate_at(self, step: int) -> float:
        """Learning rate of ``step`` (0-based): linear warm-up, then cosine decay to 0."""
        return warmup_cosine(step, self.steps, self.learning_rate, self.warmup_fraction)

    def to_json(self) -> str:
        """The config as JSON (what a checkpoint stores)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def same_as(self, stored: str) -> bool:
        """Whether a checkpoint's stored config JSON is this config, field by field (so a checkpoint from before
        a field was added, with that field at its default, still resumes).

        Raises:
            ValueError: the stored config has fields this config does not know.
        """
        return type(self).from_dict(json.loads(stored)) == self

    @classmethod
    def from_dict(cls, values: dict):
        """Inverse of ``dataclasses.asdict`` (lists back to tuples).

        Raises:
            ValueError: unknown fields.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown {cls._kind} config fields {sorted(unknown)}; expected some of {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass(frozen=True)
class TrainConfig(RunConfig):
    """Everything that defines a training run. Immutable (thread-safe); stored in every checkpoint.

    Attributes:
        resolution: student chip side (px).
        width_range: face widths (px) drawn uniformly for training samples.
        channels: student widths (see :class:`StudentConfig`).
        steps: optimisation steps.
        batch_size: samples per step.
        learning_rate: AdamW peak learning rate (linear warm-up, then cosine decay to 0).
        warmup_fraction: fraction of ``steps`` spent warming up.
        weight_decay: AdamW decoupled weight decay.
        cosine_weight: weight of :class:`EmbeddingDistillationLoss` (cosine).
        similarity_weight: weight of :class:`SimilarityPreservingLoss` (Tung & Mori use 3000 on
            intermediate feature maps; 100 here brings it to the cosine term's scale on embeddings).
        hinton_weight: weight of :class:`HintonDistillationLoss` over the training identities' centres.
        hinton_temperature: its temperature.
        keep_cosine, drop_cosine: :class:`SelectiveDistillation` thresholds.
        validation_identities: training identities held out to measure rank-1 while training.
        validation_width: face width (px) of the validation probes.
        evaluate_every: steps between validation measurements.
        checkpoint_every: steps between checkpoints.
        seed: run seed (batches, degradations, initial weights).
        task: one of :data:`TASKS`.
        quality_channels: :class:`QualityStudent` widths (the ``"quality"`` task; ``resolution`` is its chip side).
        quality_hidden: units of the :class:`QualityStudent` head's hidden layer.
    """

    _kind = "training"

    resolution: int = 16
    width_range: tuple[float, float] = (10.0, 32.0)
    channels: tuple[int, int, int, int, int] = (32, 64, 128, 128, 256)
    steps: int = 5000
    batch_size: int = 128
    learning_rate: float = 3e-3
    warmup_fraction: float = 0.03
    weight_decay: float = 1e-4
    cosine_weight: float = 1.0
    similarity_weight: float = 100.0
    hinton_weight: float = 0.1
    hinton_temperature: float = 4.0
    keep_cosine: float = 0.5
    drop_cosine: float = 0.2
    validation_identities: int = 24
    validation_width: float = 16.0
    evaluate_every: int = 500
    checkpoint_every: int = 250
    seed: int = 0
    task: str = "embedding"
    quality_channels: tuple[int, int, int] = (12, 24, 48)
    quality_hidden: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.task not in TASKS:
            raise ValueError(f"task should be one of {TASKS}, got {self.task!r}")

    def build_model(self) -> FaceStudent | QualityStudent:
        """A freshly initialised model of the run's task."""
        if self.task == "quality":
            return QualityStudent(tuple(self.quality_channels), self.quality_hidden)
        return FaceStudent(self.student_config())

    def student_config(self) -> StudentConfig:
        """The student's shape."""
        return StudentConfig(size=self.resolution, channels=tuple(self.channels))


@dataclass(frozen=True)
class TrainData:
    """Training material, independent of where it came from (celeba-faces or a test fixture).

    Immutable fields (thread-safe as long as nobody writes into the arrays).

    Attributes:
        crops: (N, H, W, 3) uint8 RGB crops.
        landmarks: (N, 5, 2) float32 landmarks in crop pixels.
        face_widths: (N,) float32 face widths in crop pixels.
        identities: (N,) identity names.
        targets: (N, 128) float32 unit teacher embeddings of the clean crops.
        train: (N,) bool, crops to train on (never the test identities).
        validation: (N,) bool, held-out training-identity crops for validation (may be all False).
        quality: (N,) float32 quality labels in [0, 1], for the ``"quality"`` task only; there ``crops`` are
            the student's already aligned and degraded (N, S, S, 3) chips, ``face_widths`` the widths of
            the faces they were cut from (the student's second input), and ``landmarks`` and ``targets``
            are not used.
    """

    crops: np.ndarray
    landmarks: np.ndarray
    face_widths: np.ndarray
    identities: np.ndarray
    targets: np.ndarray
    train: np.ndarray
    validation: np.ndarray
    quality: np.ndarray | None = None


@dataclass
class TrainResult:
    """What a run produced. Not thread-safe (holds a torch module).

    Attributes:
        model: the trained student (eval mode).
        config: its configuration.
        history: one dict per validation measurement (step, rank1, loss, seconds).
        seconds: training wall time, summed over the processes of a resumed run.
    """

    model: FaceStudent | QualityStudent
    config: TrainConfig
    history: list = field(default_factory=list)
    seconds: float = 0.0


def validation_split(identities: np.ndarray, excluded: np.ndarray, count: int) -> np.ndarray:
    """Pick ``count`` validation identities among those not ``excluded`` (by sha1 order, so stable).

    Returns:
        (N,) bool mask of the crops of the chosen identities.
    """
    candidates = sorted(set(identities[~excluded]), key=lambda name: hashlib.sha1(f"val:{name}".encode()).hexdigest())
    chosen = set(candidates[:count])
    return np.array([name in chosen for name in identities])


def _sampler(data: TrainData, config: TrainConfig) -> FaceSampler:
    return FaceSampler(
        crops=data.crops,
        landmarks=data.landmarks,
        face_widths=data.face_widths,
        targets=data.targets,
        size=config.resolution,
        width_range=config.width_range,
        degradations=default_degradations(config.seed),
    )


def _validation_set(data: TrainData, sampler: FaceSampler, width: float):
    indices = np.flatnonzero(data.validation)
    if len(indices) == 0:
        return None
    ids = data.identities[indices]
    order = np.lexsort((indices, ids))
    first = np.ones(len(order), bool)
    first[1:] = ids[order][1:] != ids[order][:-1]
    gallery, probes = indices[order[first]], indices[order[~first]]
    chips = to_tensor_layout(np.stack([sampler.probe(int(i), width) for i in probes]))
    return data.targets[gallery], data.identities[gallery], torch.from_numpy(chips), data.identities[probes]


def _draw_batch(config: RunConfig, train_idx: np.ndarray, step: int) -> tuple[np.random.Generator, np.ndarray]:
    """The crops of batch ``step`` (a pure function of the seed and the step) and the step's generator."""
    rng = np.random.default_rng([config.seed, step, 1])
    size = min(config.batch_size, len(train_idx))
    return rng, train_idx[rng.choice(len(train_idx), size=size, replace=False)]


class _Batches(torch.utils.data.Dataset):
    """Batch ``step`` of an embedding or bridge run (for a DataLoader worker): the crops drawn by the
    step's generator, their degraded chips and each chip's teacher target
    (:meth:`FaceSampler.batch_with_targets`: the mirrored face's for a mirrored chip when the sampler has them)."""

    def __init__(self, sampler: FaceSampler, train_idx: np.ndarray, config: RunConfig) -> None:
        self.sampler, self.train_idx, self.config = sampler, train_idx, config

    def __len__(self) -> int:
        return self.config.steps

    def __getitem__(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        _, batch = _draw_batch(self.config, self.train_idx, step)
        return batch, *self.sampler.batch_with_targets(batch, step * self.config.batch_size)


class _QualityBatches(torch.utils.data.Dataset):
    """Batch ``step`` of a quality run: fixed chips (half of them mirrored) and their face widths,
    drawn by the step's generator."""

    def __init__(self, chips: np.ndarray, widths: np.ndarray, train_idx: np.ndarray, config: TrainConfig) -> None:
        self.chips, self.widths, self.train_idx, self.config = chips, widths, train_idx, config

    def __len__(self) -> int:
        return self.config.steps

    def __getitem__(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng, batch = _draw_batch(self.config, self.train_idx, step)
        chips = self.chips[batch]
        mirror = rng.uniform(size=len(batch)) < 0.5
        chips = np.where(mirror[:, None, None, None], chips[:, :, ::-1], chips)
        return batch, to_tensor_layout(chips), self.widths[batch, None].astype(np.float32)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks = [np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(np.float64) for x in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def run_in_batches(model: torch.nn.Module, *inputs: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """``model`` over its inputs, sliced together in batches: eval mode, no gradients, and the model's
    mode put back afterwards.

    Args:
        model: the module.
        inputs: tensors with the same first dimension N (N >= 1), passed to the model positionally.
        batch: rows per call.

    Returns:
        The outputs, concatenated along the first dimension.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = [model(*(x[i : i + batch] for x in inputs)) for i in range(0, len(inputs[0]), batch)]
    finally:
        model.train(was_training)
    return torch.cat(out)


def _save(path: Path, payload: dict) -> None:
    partial = path.with_suffix(".partial")
    torch.save(payload, partial)
    partial.replace(path)


def load_student(checkpoint: str | Path) -> tuple[FaceStudent | QualityStudent, TrainConfig]:
    """Rebuild a trained student (eval mode) and its config from a checkpoint.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a ``lanner.distill`` checkpoint.
    """
    config, weights = read_checkpoint(checkpoint, TrainConfig)
    model = config.build_model()
    model.load_state_dict(weights)
    return model.eval(), config


def read_checkpoint(checkpoint: str | Path, config_type: type) -> tuple:
    """The config (a ``config_type``, a :class:`RunConfig`) and the model weights of a run's checkpoint.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a ``lanner.distill`` checkpoint, or one of another kind of run.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise ValueError(f"{path} is not a lanner.distill checkpoint (expected 'config' and 'model' entries)")
    return config_type.from_dict(json.loads(state["config"])), state["model"]


class TrainingTask(Protocol):
    """What :func:`run_loop` trains: a model, seeded batches and the loss terms of a batch.

    A distillation method plugs in as a task (the face-embedding student below, the detection
    stages of :mod:`lanner.distill.detection`); the loop, its schedule, checkpoints and resume are shared.

    Attributes:
        model: the trainable module (its ``state_dict`` is checkpointed).
        batches: a map-style dataset whose item ``step`` is the batch of that step, a pure
            function of the step (made in DataLoader worker processes).
    """

    model: torch.nn.Module
    batches: torch.utils.data.Dataset

    def loss_terms(self, batch) -> dict[str, torch.Tensor]:
        """The weighted loss terms of one batch (their sum is minimised)."""
        ...

    def validate(self, step: int) -> dict | None:
        """A measurement to record at ``step`` (None: nothing to measure)."""
        ...


@contextlib.contextmanager
def _keep_sigchld_handler(workers: int):
    """Put back the process's SIGCHLD handler after a loop with DataLoader worker processes.

    torch installs a process-wide SIGCHLD handler the first time a DataLoader starts worker
    processes and never removes it; in a process that later runs other children (a
    ``subprocess.run`` after training and OpenVINO inference, as in the test suite) that handler
    crashed the process with SIGSEGV. Restoring the previous handler (and torch's flag, so a later
    loader installs its own again) keeps the training process a good citizen.
    """
    if workers == 0 or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGCHLD)
    try:
        yield
    finally:
        signal.signal(signal.SIGCHLD, previous if previous is not None else signal.SIG_DFL)
        from torch.utils.data._utils import signal_handling

        signal_handling._SIGCHLD_handler_set = False


def run_loop(
    task: TrainingTask,
    *,
    config: RunConfig,
    evaluate_every: int,
    checkpoint_every: int,
    out_dir: str | Path,
    resume: bool = True,
    stop_after: int | None = None,
    workers: int = 1,
    progress: bool = True,
    same_config: Callable[[str], bool] | None = None,
) -> tuple[list, float]:
    """The one training loop of ``lanner.distill``: AdamW over ``task.loss_terms``, resumable.

    Args:
        task: what to train.
        config: the run's configuration: its ``steps`` (the last step), ``learning_rate`` (AdamW's initial
            one, replaced every step by ``config.learning_rate_at``) and ``weight_decay`` (AdamW's
            decoupled one); its JSON is stored in the checkpoint, and a resume must match it.
        evaluate_every: steps between ``task.validate`` calls (and at the last step).
        checkpoint_every: steps between checkpoints (and at the last step).
        out_dir: folder of ``checkpoint.pt`` (created).
        resume: continue from ``out_dir/checkpoint.pt`` when it exists.
        stop_after: stop (with a checkpoint) after this many steps in total; None runs to ``steps``.
        workers: processes making batches ahead of the training step (0: in this process).
        progress: print a progress line to stderr.
        same_config: whether a checkpoint's stored config JSON is this run's (default: equal text).

    Returns:
        ``(history, seconds)``: the validation records and the training time summed over resumed processes.

    Raises:
        ValueError: a checkpoint made by a different config.
    """
    config_json, steps, learning_rate_at = config.to_json(), config.steps, config.learning_rate_at
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = task.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    history: list = []
    step = 0
    earlier_seconds = 0.0  # training time of the processes before a resume
    checkpoint = out_dir / CHECKPOINT
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if not (same_config(state["config"]) if same_config else state["config"] == config_json):
            raise ValueError(f"{checkpoint} was made by another config: expected {config_json}, got {state['config']}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, history = int(state["step"]), json.loads(state["history"])
        earlier_seconds = float(state.get("seconds", 0.0))
    last = steps if stop_after is None else min(stop_after, steps)
    start, started_at = step, time.perf_counter()
    model.train()
    running: dict[str, float] = {}
    # Worker processes make the batches while this one trains (batch k is a pure function of k,
    # so prefetching changes nothing in the result).
    loader = torch.utils.data.DataLoader(
        task.batches,
        batch_size=None,
        sampler=range(step, last),
        num_workers=workers,
        prefetch_factor=4 if workers else None,
        # Workers come from a fork server, never from a fork of this process: by now it may hold
        # OpenVINO/TBB and OpenMP threads (mining, teacher targets), and forking a process with live
        # threads crashed the test suite (SIGSEGV) after a detection-mining test.
        multiprocessing_context="forkserver" if workers else None,
    )

    def save() -> None:
        _save(
            checkpoint,
            {
                "config": config_json,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "history": json.dumps(history),
                "seconds": earlier_seconds + time.perf_counter() - started_at,
            },
        )

    with _keep_sigchld_handler(workers):
        for batch in loader:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step)
            terms = task.loss_terms(batch)
            loss = sum(terms.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            for name, value in terms.items():
                value = float(value.detach())
                running[name] = 0.98 * running.get(name, value) + 0.02 * value
            if step % evaluate_every == 0 or step == steps:
                record = task.validate(step)
                if record is not None:
                    history.append(
                        {"step": step, **record, "loss": dict(running), "seconds": time.perf_counter() - started_at}
                    )
                    if progress:
                        print(f"\nstep {step}: {record}", file=sys.stderr, flush=True)
            if step % checkpoint_every == 0 or step == last:
                save()
            if progress:
                elapsed = time.perf_counter() - started_at
                eta = elapsed / (step - start) * (last - step)
                losses = " ".join(f"{k} {v:.4f}" for k, v in running.items())
                print(
                    f"\r[{step}/{steps}] {losses} lr {learning_rate_at(step - 1):.2e} "
                    f"{(step - start) / elapsed:.2f} steps/s, {eta / 60:.1f} min left",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
    if progress:
        print(file=sys.stderr)
    return history, earlier_seconds + time.perf_counter() - started_at


class _EmbeddingTask:
    """A face student learns the teacher's embedding space (cosine, similarity-preserving, Hinton KD)."""

    def __init__(self, config: TrainConfig, data: TrainData, train_idx: np.ndarray) -> None:
        self.config = config
        torch.manual_seed(config.seed)
        self.model = config.build_model().to(memory_format=torch.channels_last)
        names = np.unique(data.identities[train_idx])
        labels = np.searchsorted(names, data.identities)  # valid for training crops only
        self.targets = torch.from_numpy(data.targets)
        train_labels = torch.from_numpy(labels[train_idx])
        centres = torch.zeros(len(names), self.targets.shape[1]).index_add_(0, train_labels, self.targets[train_idx])
        self.weights = torch.zeros(len(data.targets))
        self.weights[train_idx] = SelectiveDistillation(config.keep_cosine, config.drop_cosine)(
            self.targets[train_idx], train_labels
        )
        self.feature_loss = EmbeddingDistillationLoss("cosine")
        self.similarity_loss = SimilarityPreservingLoss()
        self.hinton_loss = HintonDistillationLoss(centres, temperature=config.hinton_temperature)
        sampler = _sampler(data, config)
        self.validation = _validation_set(data, sampler, config.validation_width)
        self.batches = _Batches(sampler, train_idx, config)

    def loss_terms(self, batch) -> dict[str, torch.Tensor]:
        indices, chips, teacher = batch
        chips = torch.as_tensor(chips).contiguous(memory_format=torch.channels_last)
        config = self.config
        student = self.model(chips)
        teacher, weight = torch.as_tensor(teacher), self.weights[torch.as_tensor(indices)]
        terms = {"cos": config.cosine_weight * self.feature_loss(student, teacher, weight)}
        if config.similarity_weight:
            terms["sp"] = config.similarity_weight * self.similarity_loss(F.normalize(student, dim=1), teacher)
        if config.hinton_weight:
            terms["kd"] = config.hinton_weight * self.hinton_loss(student, teacher, weight)
        return terms

    def validate(self, step: int) -> dict | None:
        if self.validation is None:
            return None
        g, g_labels, probe_chips, p_labels = self.validation
        result = identification_metrics(g, g_labels, run_in_batches(self.model, probe_chips).numpy(), p_labels)
        return {"rank1": result.rank1}


class _QualityTask:
    """A QualityStudent regresses SDD-FIQA pseudo-labels (Huber loss) from fixed degraded chips and face widths."""

    def __init__(self, config: TrainConfig, data: TrainData, train_idx: np.ndarray) -> None:
        torch.manual_seed(config.seed)
        self.model = config.build_model().to(memory_format=torch.channels_last)
        self.data = data
        self.quality = torch.from_numpy(np.asarray(data.quality, np.float32))
        self.loss = QualityRegressionLoss()
        self.val_idx = np.flatnonzero(data.validation)
        self.batches = _QualityBatches(data.crops, np.asarray(data.face_widths, np.float32), train_idx, config)

    def loss_terms(self, batch) -> dict[str, torch.Tensor]:
        indices, chips, widths = batch
        chips = torch.as_tensor(chips).contiguous(memory_format=torch.channels_last)
        predicted = self.model(chips, torch.as_tensor(widths))
        return {"huber": self.loss(predicted, self.quality[torch.as_tensor(indices)])}

    def validate(self, step: int) -> dict | None:
        if len(self.val_idx) == 0:
            return None
        labels = self.data.quality[self.val_idx]
        predicted = predict_quality(self.model, self.data.crops[self.val_idx], self.data.face_widths[self.val_idx])
        return {"spearman": _spearman(predicted, labels), "mae": float(np.abs(predicted - labels).mean())}


def predict_quality(model: QualityStudent, chips: np.ndarray, face_widths: np.ndarray) -> np.ndarray:
    """A quality student's scores (in eval mode, without gradients, in batches of 512; the model's mode is kept).

    Args:
        model: the student.
        chips: (N, S, S, 3) uint8 RGB aligned chips.
        face_widths: (N,) face widths, px.

    Returns:
        (N,) float32 qualities.
    """
    x = torch.from_numpy(to_tensor_layout(chips))
    w = torch.from_numpy(np.asarray(face_widths, np.float32).reshape(-1, 1))
    return run_in_batches(model, x, w)[:, 0].numpy()


def train(
    config: TrainConfig,
    data: TrainData,
    out_dir: str | Path,
    *,
    resume: bool = True,
    stop_after: int | None = None,
    workers: int = 1,
    progress: bool = True,
) -> TrainResult:
    """Train (or resume training) a face student: an embedding student or a quality regressor (``config.task``).

    Args:
        config: the run.
        data: crops, landmarks, teacher targets and the train/validation masks.
        out_dir: folder for ``checkpoint.pt`` (created).
        resume: continue from ``out_dir/checkpoint.pt`` when it exists (its config must equal ``config``).
        stop_after: stop (with a checkpoint) after this many steps in total, as an interruption would;
            ``None`` runs to ``config.steps``.
        workers: processes that make batches ahead of the training step (0: in this process).
        progress: print a progress line to stderr.

    Returns:
        The :class:`TrainResult`.

    Raises:
        ValueError: no training crops, quality task without labels, or a checkpoint made by a different config.
    """
    train_idx = np.flatnonzero(data.train & ~data.validation)
    if len(train_idx) == 0:
        raise ValueError("no training crops: data.train & ~data.validation selects nothing")
    quality_task = config.task == "quality"
    if quality_task and (data.quality is None or data.quality.shape != (len(data.crops),)):
        raise ValueError(
            f"the quality task needs data.quality of shape ({len(data.crops)},), got "
            f"{None if data.quality is None else data.quality.shape}"
        )
    task = (_QualityTask if quality_task else _EmbeddingTask)(config, data, train_idx)

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
    return TrainResult(model=task.model.eval(), config=config, history=history, seconds=seconds)
