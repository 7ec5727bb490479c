"""The compression run behind ``lanner distill face-compress``: one resumable recipe (:mod:`lanner.distill.compress`).

Steps (each skipped when its output exists): the view pool (the bridge model's outputs on degraded views of
the training identities' crops and of the facemask-voc train split's faces; cached) -> training -> ONNX export
(parity checked against torch) -> int8 QDQ ONNX (fidelity checked by lanner.compile) -> on the VALIDATION
identities, rank-1 of the student, the bridge and the teacher at several probe widths -> the identification
threshold at FAR 1e-3 on the training identities -> ``space.json`` (the registry JSON) and ``report.json``.
The test identities are never read beyond the split.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .bridge import celeba_bridge_material
from .bridge_run import (
    ROUTING_WIDTHS,
    THRESHOLD_PROBE_STRIDE,
    _onnx_descriptors,
    _probe_sampler,
    descriptor_rank1,
    threshold_at_far,
)
from .compress import (
    CHIP_SIZE,
    CompressConfig,
    ViewPool,
    facemask_faces,
    load_compressed,
    make_view_pool,
    pool_cache_path,
    train_compressed,
)
from .evaluate import identification_metrics
from .export import compile_student, export_student
from .faces import to_tensor_layout
from .training import _validation_set, say

__all__ = ["FaceCompressRun", "STUDENT_NAME"]

STUDENT_NAME = "face_student32"
PARITY_ATOL = 1e-4  # torch vs ONNX Runtime fp32, max abs difference of embeddings
CALIBRATION_VIEWS = 300  # pool views (training identities) for int8 calibration; the last 16 check fidelity


@dataclass
class FaceCompressRun:
    """One ``lanner distill face-compress`` run. Not thread-safe (it owns its output folder).

    Attributes:
        data_dir: the celeba-faces folder.
        out_dir: output folder.
        cache_dir: cache folder (teacher targets, the view pool).
        facemask_dir: the facemask-voc folder, for extra faces (None: celeba views only, ``extra_views`` 0).
        steps: training steps (None: the config's default).
        views: celeba views in the pool (None: the config's default).
        channels: student widths (None: the config's default).
        seed: run seed.
        threads: torch and model threads.
        stop_after: end training at this step instead of the config's last.
    """

    data_dir: Path
    out_dir: Path
    cache_dir: Path
    facemask_dir: Path | None = None
    steps: int | None = None
    views: int | None = None
    channels: tuple[int, ...] | None = None
    seed: int = 0
    threads: int = 1
    stop_after: int | None = None

    def config(self) -> CompressConfig:
        """The training config of this run."""
        values: dict = {"seed": self.seed}
        for name in ("steps", "views"):
            if getattr(self, name) is not None:
                values[name] = getattr(self, name)
        if self.channels is not None:
            values["channels"] = tuple(self.channels)
        if self.facemask_dir is None:
            values["extra_views"] = 0
        return CompressConfig(**values)

    def execute(self) -> dict:
        """Run (or resume) every step and return the report.

        Raises:
            FileNotFoundError: a data folder without its files.
            ValueError: an export that misses parity, or a checkpoint of another config.
        """
        from .. import models

        torch.set_num_threads(self.threads)
        config = self.config()  # first: a bad option fails before anything is written
        self.out_dir.mkdir(parents=True, exist_ok=True)
        say("step 1/5: teacher targets of the clean crops (the registry teacher; cached)")
        data, _, mu = celeba_bridge_material(
            self.data_dir, self.cache_dir, config.validation_identities, num_threads=self.threads
        )
        say("step 2/5: the view pool (the bridge model's outputs on degraded views; cached)")
        pool = self._pool(config, data, models.onnx_path("dlib-resnet-lowres"))
        say(f"step 3/5: training {config.steps} steps on {len(pool.chips)} views ({int(pool.extra.sum())} extra)")
        _, history, seconds = train_compressed(
            config, pool, mu, self.out_dir / "train", data=data, stop_after=self.stop_after
        )
        model, _ = load_compressed(self.out_dir / "train" / "checkpoint.pt")
        say("step 4/5: ONNX export (parity with torch) and int8 (fidelity by lanner.compile)")
        onnx_path, parity = self._export(model, pool)
        int8_path = self._int8(onnx_path, pool)
        say("step 5/5: rank-1 on the validation identities, threshold on the training identities")
        validation = self._validation(onnx_path, data, mu)
        space = self._space(int8_path, data)
        (self.out_dir / "space.json").write_text(json.dumps(space, indent=1) + "\n")
        report = {
            "config": asdict(config),
            "train_seconds": seconds,
            "trained_steps": int(torch.load(self.out_dir / "train" / "checkpoint.pt", weights_only=True)["step"]),
            "history": history,
            "pool": {"views": int(len(pool.chips)), "extra_views": int(pool.extra.sum())},
            "export_parity_max_abs": parity,
            "validation": validation,
            "threshold": space,
            "files": {p.name: _sha256(p) for p in (onnx_path, int8_path)},
            "machine": {
                "cpu": platform.processor() or platform.machine(),
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
        }
        (self.out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
        say(f"report written to {self.out_dir / 'report.json'}")
        return report

    def _pool(self, config: CompressConfig, data, bridge_onnx: Path) -> ViewPool:
        """The cached pool, or a new one made with the registry's bridge model compiled for this CPU."""
        from .. import models

        key = hashlib.sha256((self.data_dir / "faces.csv").read_bytes()).hexdigest()[:16]
        key += "|" + _sha256(bridge_onnx)[:16]
        if config.extra_views:  # the photos themselves: MTCNN runs on them only when the pool is made
            photos = hashlib.sha256()
            for photo in sorted((Path(self.facemask_dir) / "images").glob("*.jpg")):
                photos.update(photo.name.encode() + photo.read_bytes())
            key += f"|facemask:{photos.hexdigest()[:16]}"
        path = pool_cache_path(self.cache_dir, config, key)
        if path.is_file():
            return ViewPool.load(path)
        sources = [
            (data.crops, data.landmarks, data.face_widths, np.flatnonzero(data.train & ~data.validation), config.views)
        ]
        if config.extra_views:
            extra = facemask_faces(self.facemask_dir)
            sources.append((*extra, np.arange(len(extra[0])), config.extra_views))
        backend, _ = models.resolve("auto", "fp32")
        bridge = models.open_net("dlib-resnet-lowres", backend, "fp32", num_threads=self.threads)
        try:
            pool = make_view_pool(config, sources, lambda chips: bridge.run({"image": chips})["descriptor"])
        finally:
            bridge.close()
        pool.save(path)
        return pool

    def _export(self, model, pool: ViewPool) -> tuple[Path, float]:
        import onnxruntime as ort

        path = self.out_dir / f"{STUDENT_NAME}.onnx"
        if not path.is_file():
            export_student(model, path)
        chips = to_tensor_layout(pool.chips[:64])
        with torch.no_grad():
            reference = model(torch.from_numpy(chips)).numpy()
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        exported = session.run(None, {"image": chips})[0]
        error = float(np.abs(reference - exported).max())
        if error > PARITY_ATOL:
            raise ValueError(f"ONNX export misses parity with torch: max |diff| {error:.2e} > {PARITY_ATOL}")
        return path, error

    def _int8(self, onnx_path: Path, pool: ViewPool) -> Path:
        """The int8 QDQ ONNX (ONNX Runtime static quantization through lanner.compile, fidelity checked)."""
        path = self.out_dir / f"{STUDENT_NAME}.int8.onnx"
        if path.is_file():
            return path
        package = self.out_dir / "onnxruntime-int8"
        if package.exists():
            shutil.rmtree(package)
        calibration = to_tensor_layout(pool.chips[np.flatnonzero(~pool.extra)[-CALIBRATION_VIEWS:]])
        compile_student(
            onnx_path, package, backend="onnxruntime", precision="int8", calibration=calibration, num_threads=1
        )
        shutil.copyfile(next(package.glob("*.onnx")), path)
        return path

    def _validation(self, onnx_path: Path, data, mu: np.ndarray) -> dict:
        """Rank-1 of the student (fp32), the bridge and the teacher on the validation identities' probes."""
        from ..models import onnx_path as registry_onnx

        references = {name: self._copy(registry_onnx(name)) for name in ("dlib-resnet-lowres", "dlib-resnet")}
        small = _probe_sampler(data, CHIP_SIZE)
        rows = {}
        for width in (12.0, *ROUTING_WIDTHS):
            gallery, g_labels, chips, p_labels = _validation_set(data, small, width)
            embeddings = _onnx_descriptors(onnx_path, chips.numpy())
            row = {"student": identification_metrics(gallery, g_labels, embeddings, p_labels).rank1}
            row.update(descriptor_rank1(data, mu, references, width)[0])
            rows[f"{width:g}"] = row
            say(f"  validation {width:g} px: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
        return {"rank1": rows, "probes": int(len(p_labels))}

    def _copy(self, registry_file: Path) -> Path:
        """A registry ONNX copied into the output folder (its compiled package is kept beside it)."""
        path = self.out_dir / "reference" / registry_file.name
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(registry_file, path)
        return path

    def _space(self, int8_path: Path, data, width: float = 16.0) -> dict:
        """The identification threshold at FAR 1e-3 on the TRAINING identities: the shipped (int8) student's
        probes of 16 px faces against the teacher's embeddings of the clean photos."""
        idx = np.flatnonzero(data.train)
        probe_idx = idx[::THRESHOLD_PROBE_STRIDE]
        sampler = _probe_sampler(data, CHIP_SIZE)
        chips = to_tensor_layout(np.stack([sampler.probe(int(i), width) for i in probe_idx]))
        probes = _onnx_descriptors(int8_path, chips)
        return {
            **threshold_at_far(probes / np.linalg.norm(probes, axis=1, keepdims=True), data, probe_idx, idx),
            "face_width": width,
            "note": "int8 student probes (16 px faces, 32 px chips) against teacher embeddings of clean photos, "
            "training identities of the celeba-faces folder",
        }


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
