"""The face-quality run behind ``lanner distill face-quality``: SDD-FIQA labels -> a tiny regressor -> ONNX.

Steps (each cached or resumable): teacher targets of the clean crops (:mod:`.teacher`, shared with
the embedding run) -> degraded views of every training-identity crop embedded by the teacher
(:func:`lanner.distill.quality.quality_samples`) -> SDD-FIQA pseudo-labels against the clean photos ->
training with the one loop (:func:`lanner.distill.train`, task ``"quality"``) -> ONNX export
(parity checked against torch) -> the error-versus-reject score on the validation identities (held-out
training identities, probes degraded like the benchmark's), beside the teacher embedding norm's and the
face width's there: recipes are chosen on it. Test identities are never used (the benchmark's
``benchmarks/quality`` measures on them).
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..face.align import align_faces, face_widths
from ..models import face_embedders, face_quality
from .faces import load_crops, to_tensor_layout
from .quality import (
    BENCHMARK_MIX,
    QUALITY_CHIP_SIZE,
    TRAINING_MIX,
    QualitySamples,
    oracle_gain_share,
    quality_samples,
    sdd_fiqa_labels,
)
from .teacher import compute_face_targets
from .training import TrainConfig, TrainData, load_student, predict_quality, say, train, validation_split

__all__ = [
    "FaceQualityRun",
    "QUALITY_INPUT",
    "QUALITY_WIDTH_INPUT",
    "QUALITY_OUTPUT",
    "export_quality_student",
    "clean_reference",
]

QUALITY_INPUT = "image"  # the shipped model's inputs and output (lanner.models.face_quality)
QUALITY_WIDTH_INPUT = face_quality.WIDTH_INPUT
QUALITY_OUTPUT = face_quality.OUTPUT
# Raw SDD-FIQA distances are divided by this quantile of the training labels, then clipped to [0, 1].
LABEL_QUANTILE = 0.99
PARITY_ATOL = 1e-5  # torch vs ONNX Runtime, max abs difference of qualities
VIEWS_PER_CHUNK = 3  # degraded views per crop made (and cached) together
CHUNK_SEED_STEP = 7919  # chunk c of a run with seed s draws its views with seed s + c * CHUNK_SEED_STEP
VALIDATION_IDENTITIES = 24  # training identities held out for validation
VALIDATION_PROBE_SEED = 4049  # the validation probes' degradations (the benchmark's test probes use 2026)
VALIDATION_PROBE_VIEWS = 4  # degraded views per validation probe photo (more probes: a steadier score)
VALIDATION_FMRS = (1e-2, 1e-3)


def clean_reference(targets) -> np.ndarray:
    """The clean crops' embeddings in the shipped teacher's space: ``normalize(d - mu)`` with the registry's ``mu``.

    Args:
        targets: :class:`lanner.distill.teacher.FaceTargets` (dlib's descriptors of the clean crops).

    Returns:
        (N, 128) float32 unit embeddings, comparable with :meth:`lanner.FaceRecognizer.embed`'s.
    """
    mu = face_embedders.read_space(face_embedders.FACE_EMBEDDERS[face_embedders.TEACHER])["mu"]
    d = targets.descriptors - mu
    return (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)


def export_quality_student(model, path: str | Path) -> Path:
    """Export a :class:`lanner.distill.QualityStudent` to ONNX: ``image`` (N, 3, S, S) RGB in [0, 1] and
    ``face_width`` (N, 1) px -> ``quality`` (N, 1) in [0, 1], dynamic batch axis.

    Returns:
        The written path.
    """
    from ..compile import export_torch

    model = model.eval().to(memory_format=torch.contiguous_format)
    example = (torch.zeros(1, 3, QUALITY_CHIP_SIZE, QUALITY_CHIP_SIZE), torch.full((1, 1), 32.0))
    return export_torch(
        model,
        example,
        path,
        input_names=[QUALITY_INPUT, QUALITY_WIDTH_INPUT],
        output_names=[QUALITY_OUTPUT],
        dynamic_axes={QUALITY_INPUT: {0: "n"}, QUALITY_WIDTH_INPUT: {0: "n"}, QUALITY_OUTPUT: {0: "n"}},
    )


@dataclass
class FaceQualityRun:
    """One ``lanner distill face-quality`` run. Not thread-safe (it owns its output folder).

    Attributes:
        data_dir: the celeba-faces folder.
        out_dir: output folder (``train/checkpoint.pt``, ``face_quality.onnx``, ``report.json``).
        cache_dir: teacher-target and quality-sample cache folder.
        views: degraded views per training crop (plus the clean crop itself).
        steps: training steps.
        seed: run seed (views, label draws, training).
        threads: torch threads.
        channels: :class:`lanner.distill.QualityStudent` widths.
        hidden: units of its head's hidden layer.
    """

    data_dir: Path
    out_dir: Path
    cache_dir: Path
    views: int = 12
    steps: int = 8000
    seed: int = 0
    threads: int = 1
    channels: tuple[int, int, int] = (24, 48, 96)
    hidden: int = 32

    def config(self) -> TrainConfig:
        """The training config of this run."""
        return TrainConfig(
            task="quality",
            resolution=QUALITY_CHIP_SIZE,
            steps=self.steps,
            batch_size=256,
            learning_rate=5e-3,
            weight_decay=1e-4,
            evaluate_every=500,
            checkpoint_every=500,
            seed=self.seed,
            quality_channels=tuple(self.channels),
            quality_hidden=self.hidden,
        )

    def labelled_samples(self) -> dict:
        """Chips and SDD-FIQA labels of the training identities (clean crops and degraded views).

        Returns:
            ``{"chips", "labels", "raw", "identities", "widths", "scale"}``; ``widths`` are the faces' widths
            as :func:`lanner.face.align.face_widths` measures them from the landmarks (as at run time).
        """
        targets = compute_face_targets(self.data_dir, self.cache_dir)
        crops = load_crops(self.data_dir, targets.files)
        train_idx = np.flatnonzero(~targets.test)
        widths = (targets.boxes[:, 2] - targets.boxes[:, 0]).astype(np.float32)
        say(f"step 1/5: {self.views} degraded views of {len(train_idx)} training crops through the teacher (cached)")
        # Views are made (and cached) in chunks of VIEWS_PER_CHUNK, each chunk with its own seed, so that a run
        # with more views reuses the teacher's work of a run with fewer.
        chunks = [
            quality_samples(
                crops,
                targets.landmarks,
                widths,
                targets.identities,
                train_idx,
                min(VIEWS_PER_CHUNK, self.views - start),
                TRAINING_MIX,
                self.seed + CHUNK_SEED_STEP * (start // VIEWS_PER_CHUNK),
                self.cache_dir,
            )
            for start in range(0, self.views, VIEWS_PER_CHUNK)
        ]
        views = QualitySamples(
            **{name: np.concatenate([getattr(c, name) for c in chunks]) for name in QualitySamples.__dataclass_fields__}
        )
        reference = clean_reference(targets)
        clean_chips = np.stack(
            [align_faces(crops[i], targets.landmarks[i][None], QUALITY_CHIP_SIZE)[0] for i in train_idx]
        )
        # Labels of the training identities against the clean training photos only.
        index_in_reference = np.full(len(targets.files), -1)
        index_in_reference[train_idx] = np.arange(len(train_idx))
        sources = np.concatenate([train_idx, views.sources])
        embeddings = np.concatenate([reference[train_idx], views.embeddings])
        identities = targets.identities[sources]
        say(f"step 2/5: SDD-FIQA labels of {len(sources)} samples")
        raw = sdd_fiqa_labels(
            embeddings,
            identities,
            index_in_reference[sources],
            reference[train_idx],
            targets.identities[train_idx],
            seed=self.seed,
        )
        scale = float(np.quantile(raw, LABEL_QUANTILE))
        # A view shrunk from box width b to w has its landmarks scaled by w / b: so has their face width.
        own = face_widths(targets.landmarks)
        shrink = np.concatenate([np.ones(len(train_idx), np.float32), views.widths / widths[views.sources]])
        return {
            "chips": np.concatenate([clean_chips, views.chips]),
            "labels": np.clip(raw / scale, 0, 1),
            "raw": raw,
            "identities": identities,
            "widths": (own[sources] * shrink).astype(np.float32),
            "scale": scale,
        }

    def validation_probes(self) -> dict:
        """The validation identities' error-versus-reject material, made like the benchmark's on the test identities.

        Gallery: the first photo (by file name) of each validation identity, clean; probes: its other photos,
        each degraded ``VALIDATION_PROBE_VIEWS`` times with ``BENCHMARK_MIX`` (seed ``VALIDATION_PROBE_SEED``),
        embedded by the teacher.

        Returns:
            ``{"chips", "widths", "genuine", "impostor", "embedding_norm", "box_width"}``: the probes' 32 px chips
            and landmark face widths, one genuine score per probe, every impostor score, and the two
            heuristics' qualities.
        """
        targets = compute_face_targets(self.data_dir, self.cache_dir)
        crops = load_crops(self.data_dir, targets.files)
        train_idx = np.flatnonzero(~targets.test)
        chosen = train_idx[
            validation_split(targets.identities[train_idx], np.zeros(len(train_idx), bool), VALIDATION_IDENTITIES)
        ]
        ids = targets.identities[chosen]
        order = np.lexsort((targets.files[chosen], ids))
        first = np.ones(len(order), bool)
        first[1:] = ids[order][1:] != ids[order][:-1]
        gallery, probes = chosen[order[first]], chosen[order[~first]]
        box_widths = (targets.boxes[:, 2] - targets.boxes[:, 0]).astype(np.float32)
        samples = quality_samples(
            crops,
            targets.landmarks,
            box_widths,
            targets.identities,
            probes,
            VALIDATION_PROBE_VIEWS,
            BENCHMARK_MIX,
            VALIDATION_PROBE_SEED,
            self.cache_dir,
            progress=False,
        )
        scores = samples.embeddings @ clean_reference(targets)[gallery].T
        same = samples.identities[:, None] == targets.identities[gallery][None, :]
        return {
            "chips": samples.chips,
            "widths": (
                face_widths(targets.landmarks[samples.sources]) * samples.widths / box_widths[samples.sources]
            ).astype(np.float32),
            "genuine": scores[same],
            "impostor": scores[~same],
            "embedding_norm": samples.centred_norms,
            "box_width": samples.widths,
        }

    def validation_erc(self, model) -> dict:
        """Share of the oracle's error-versus-reject gain on the validation identities: the student's and the
        heuristics' (teacher embedding norm, face width), at each of ``VALIDATION_FMRS``.

        Args:
            model: a :class:`lanner.distill.QualityStudent`.

        Returns:
            ``{"fmr 0.01": {"student": share, "teacher embedding norm": share, "face width": share}, ...}``.
        """
        probes = self.validation_probes()
        qualities = {
            "student": predict_quality(model, probes["chips"], probes["widths"]),
            "teacher embedding norm": probes["embedding_norm"],
            "face width": probes["box_width"],
        }
        return {
            f"fmr {fmr:g}": {
                name: oracle_gain_share(probes["genuine"], probes["impostor"], q, fmr) for name, q in qualities.items()
            }
            for fmr in VALIDATION_FMRS
        }

    def execute(self) -> dict:
        """Run every step; write ``face_quality.onnx`` and ``report.json`` into ``out_dir``.

        Returns:
            The report (also written as JSON).
        """
        torch.set_num_threads(self.threads)
        started = time.perf_counter()
        samples = self.labelled_samples()
        label_seconds = time.perf_counter() - started
        ids = samples["identities"]
        validation = validation_split(ids, np.zeros(len(ids), bool), VALIDATION_IDENTITIES)
        n = len(ids)
        data = TrainData(
            crops=samples["chips"],
            landmarks=np.zeros((n, 5, 2), np.float32),
            face_widths=samples["widths"],
            identities=ids,
            targets=np.zeros((n, 0), np.float32),
            train=np.ones(n, bool),
            validation=validation,
            quality=samples["labels"].astype(np.float32),
        )
        config = self.config()
        say(f"step 3/5: training ({config.steps} steps, {int((~validation).sum())} training chips)")
        result = train(config, data, self.out_dir / "train", workers=0)
        model, _ = load_student(self.out_dir / "train" / "checkpoint.pt")
        onnx_path = export_quality_student(model, self.out_dir / "face_quality.onnx")
        say("step 4/5: ONNX export, parity with torch")
        import onnxruntime as ort

        chips = to_tensor_layout(samples["chips"][validation])
        widths = samples["widths"][validation, None]
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        exported = session.run([QUALITY_OUTPUT], {QUALITY_INPUT: chips, QUALITY_WIDTH_INPUT: widths})[0]
        with torch.no_grad():
            reference = model(torch.from_numpy(chips), torch.from_numpy(widths)).numpy()
        parity = float(np.abs(exported - reference).max())
        if parity > PARITY_ATOL:
            raise ValueError(f"ONNX export misses parity with torch: max abs difference {parity:.2e} > {PARITY_ATOL}")
        say("step 5/5: error-versus-reject on the validation identities")
        validation_erc = self.validation_erc(model)
        say(json.dumps(validation_erc))
        report = {
            "config": asdict(config),
            "views_per_crop": self.views,
            "label_scale": samples["scale"],
            "label_quantile": LABEL_QUANTILE,
            "samples": n,
            "validation_samples": int(validation.sum()),
            "label_seconds": label_seconds,
            "train_seconds_this_process": result.seconds,
            "history": result.history,
            "onnx_parity_max_abs": parity,
            "validation_oracle_gain_share": validation_erc,
            "machine": {
                "cpu": platform.processor() or platform.machine(),
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
        }
        (self.out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str))
        say(f"wrote {onnx_path} and {self.out_dir / 'report.json'}")
        return report
