"""The bridge run behind ``lanner distill face-bridge``: one resumable recipe (:mod:`lanner.distill.bridge`).

Steps (each skipped when its output exists): teacher targets (clean and mirrored crops, cached) ->
training -> ONNX export (fp32, parity checked against torch) -> int8 QDQ ONNX (ONNX Runtime static
quantization through lanner.compile, calibrated on small faces of the training identities, fidelity
checked against the fp32 ONNX): the file that ships -> on the VALIDATION identities, rank-1 of the
shipped bridge model, of its fp32 export and of the teacher at several probe widths (the routing width
is the largest at which the bridge is at least as good) -> the identification threshold at FAR 1e-3 on
the training identities -> ``space.json`` (the registry JSON) and ``report.json``. The test identities
are never read beyond the split.
"""

from __future__ import annotations

import json
import platform
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .bridge import (
    BridgeConfig,
    celeba_bridge_material,
    embed_descriptors,
    load_bridge,
    train_bridge,
)
from .evaluate import identification_metrics
from .training import say

__all__ = ["FaceBridgeRun", "ROUTING_WIDTHS", "descriptor_rank1", "threshold_at_far"]

ROUTING_WIDTHS: tuple[float, ...] = (16.0, 20.0, 24.0, 32.0)  # validation probe widths, px
THRESHOLD_PROBE_STRIDE = 3  # every 3rd training-identity crop is a probe for the threshold (all are gallery)
PARITY_MIN_COSINE = 0.9999  # torch fp32 vs the fp32 ONNX (OpenVINO), per face
CALIBRATION_PROBES = 316  # int8 calibration: training-identity faces at random widths; lanner.compile holds out 16
SHIPPED_FILE = "dlib_resnet_lowres.onnx"  # the int8 QDQ file
FP32_FILE = "dlib_resnet_lowres.fp32.onnx"
FAR = 1e-3


@dataclass
class FaceBridgeRun:
    """One ``lanner distill face-bridge`` run. Not thread-safe (it owns its output folder).

    Attributes:
        data_dir: the celeba-faces folder.
        out_dir: output folder.
        cache_dir: teacher-target cache folder.
        steps: training steps (None: the config's default).
        seed: run seed.
        threads: torch threads.
        workers: batch-making processes.
        stop_after: end training at this step instead of the config's last.
    """

    data_dir: Path
    out_dir: Path
    cache_dir: Path
    steps: int | None = None
    seed: int = 0
    threads: int = 1
    workers: int = 1
    stop_after: int | None = None

    def config(self) -> BridgeConfig:
        """The training config of this run."""
        values: dict = {"seed": self.seed}
        if self.steps is not None:
            values["steps"] = self.steps
        return BridgeConfig(**values)

    def execute(self) -> dict:
        """Run (or resume) every step and return the report.

        Raises:
            FileNotFoundError: the data folder holds no faces.csv.
            ValueError: an export that misses parity, or a checkpoint of another config.
        """
        torch.set_num_threads(self.threads)
        config = self.config()  # first: a bad option fails before anything is written
        self.out_dir.mkdir(parents=True, exist_ok=True)
        say("step 1/4: teacher targets of the clean and mirrored crops (the registry teacher; cached)")
        data, mirrored, mu = celeba_bridge_material(
            self.data_dir, self.cache_dir, config.validation_identities, num_threads=self.threads
        )
        train_idx = data.train & ~data.validation
        say(
            f"step 2/4: training {config.steps} steps on {int(train_idx.sum())} crops of "
            f"{len(set(data.identities[train_idx]))} identities"
        )
        _, history, seconds = train_bridge(
            config, data, mirrored, mu, self.out_dir / "train", stop_after=self.stop_after, workers=self.workers
        )
        model, _ = load_bridge(self.out_dir / "train" / "checkpoint.pt")
        say("step 3/4: ONNX export (parity with torch) and int8 (fidelity by lanner.compile)")
        fp32_path, parity = self._export(model, data)
        onnx_path, int8 = self._int8(fp32_path, data, config)
        say("step 4/4: routing width on the validation identities, threshold on the training identities")
        routing = self._routing(onnx_path, fp32_path, data, mu)
        space = self._space(onnx_path, data, mu)
        space.update(
            {
                "max_face_width": routing["max_face_width"],
                "export_parity_min_cosine": parity,
                "int8": int8,
            }
        )
        (self.out_dir / "space.json").write_text(json.dumps(space, indent=1) + "\n")
        report = {
            "config": asdict(config),
            "train_seconds": seconds,
            "trained_steps": int(torch.load(self.out_dir / "train" / "checkpoint.pt", weights_only=True)["step"]),
            "history": history,
            "export_parity_min_cosine": parity,
            "routing": routing,
            "threshold": {k: v for k, v in space.items() if k != "mu"},
            "machine": {
                "cpu": platform.processor() or platform.machine(),
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
        }
        (self.out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
        say(f"report written to {self.out_dir / 'report.json'}")
        return report

    def _export(self, model: torch.nn.Module, data) -> tuple[Path, float]:
        from ..compile.exporters.dlib_resnet import export_dlib_resnet_onnx
        from .bridge import clean_chips

        path = self.out_dir / FP32_FILE
        if not path.is_file():
            export_dlib_resnet_onnx(path, model=model)
        idx = np.flatnonzero(data.validation)[:32]
        chips = clean_chips(data.crops[idx], data.landmarks[idx], mirrored=False)
        reference = embed_descriptors(model, chips)
        exported = _onnx_descriptors(path, chips)
        cosine = float(np.min(np.sum(_unit(reference) * _unit(exported), axis=1)))
        if cosine < PARITY_MIN_COSINE:
            raise ValueError(f"ONNX export misses parity with torch: min cosine {cosine:.6f} < {PARITY_MIN_COSINE}")
        return path, cosine

    def _int8(self, fp32_path: Path, data, config: BridgeConfig) -> tuple[Path, dict]:
        """The int8 QDQ ONNX that ships (ONNX Runtime static quantization through lanner.compile, fidelity
        checked against the fp32 ONNX) and its fidelity record. Calibration: training-identity faces (not the
        validation ones) shrunk to widths drawn from the training range, upsampled into the 150 px chip as the
        bridge sees them."""
        from .export import compile_student
        from .faces import to_tensor_layout

        path, package = self.out_dir / SHIPPED_FILE, self.out_dir / "onnxruntime-int8"
        if not path.is_file():
            rng = np.random.default_rng(config.seed)
            pool = np.flatnonzero(data.train & ~data.validation)
            chosen = rng.choice(pool, size=min(CALIBRATION_PROBES, len(pool)), replace=False)
            sampler = _probe_sampler(data)
            chips = np.stack([sampler.probe(int(i), float(rng.uniform(*config.width_range))) for i in chosen])
            if package.exists():
                shutil.rmtree(package)
            compile_student(
                fp32_path, package, backend="onnxruntime", precision="int8", calibration=to_tensor_layout(chips)
            )
            shutil.copyfile(next(package.glob("*.onnx")), path)
        from .. import Manifest

        fidelity = Manifest.read(package).fidelity
        measured = next(iter(fidelity["outputs"].values()))
        return path, {
            "tool": "onnxruntime.quantization.quantize_static (QDQ, per-channel int8 weights, uint8 activations, "
            "MinMax) through lanner.compile",
            "calibration_faces": CALIBRATION_PROBES,
            "fidelity_vs_fp32_onnx": {
                "samples": fidelity["samples"],
                **{k: round(float(measured[k]), 6) for k in ("cosine_min", "cosine_mean", "max_rel_error")},
            },
        }

    def _routing(self, onnx_path: Path, fp32_path: Path, data, mu: np.ndarray) -> dict:
        """Rank-1 of the shipped (int8) bridge, its fp32 export and the teacher on the validation identities'
        probes at each width."""
        from ..models import onnx_path as registry_onnx

        teacher_onnx = self.out_dir / "teacher.onnx"  # the registry teacher, compiled like the bridge
        if not teacher_onnx.is_file():
            shutil.copyfile(registry_onnx("dlib-resnet"), teacher_onnx)
        rows = {}
        models = {"bridge": onnx_path, "bridge_fp32": fp32_path, "teacher": teacher_onnx}
        for width in ROUTING_WIDTHS:
            row, probes = descriptor_rank1(data, mu, models, width)
            rows[f"{width:g}"] = row
            say(
                f"  validation {width:g} px: bridge {row['bridge']:.3f} (fp32 {row['bridge_fp32']:.3f}), "
                f"teacher {row['teacher']:.3f}"
            )
        better = [w for w in ROUTING_WIDTHS if rows[f"{w:g}"]["bridge"] >= rows[f"{w:g}"]["teacher"]]
        return {
            "rank1": rows,
            "max_face_width": max(better) if better else 0.0,
            "rule": "the largest validation width at which the bridge's rank-1 is at least the teacher's",
            "probes": probes,
        }

    def _space(self, onnx_path: Path, data, mu: np.ndarray, width: float = 16.0) -> dict:
        """The identification threshold at FAR 1e-3 on the TRAINING identities: bridge probes of 16 px faces
        against the teacher's embeddings of the clean photos."""
        from .faces import to_tensor_layout

        idx = np.flatnonzero(data.train)
        probe_idx = idx[::THRESHOLD_PROBE_STRIDE]
        sampler = _probe_sampler(data)
        parts = []
        for start in range(0, len(probe_idx), 128):
            chips = to_tensor_layout(np.stack([sampler.probe(int(i), width) for i in probe_idx[start : start + 128]]))
            parts.append(_onnx_descriptors(onnx_path, chips))
        return {
            "mu": [round(float(v), 7) for v in mu],
            **threshold_at_far(_unit(np.concatenate(parts) - mu), data, probe_idx, idx),
            "face_width": width,
            "note": "bridge probes (16 px faces upsampled into the 150 px chip) against teacher embeddings of "
            "clean photos, training identities of the celeba-faces folder; mu is the teacher's",
        }


def descriptor_rank1(data, mu: np.ndarray, models: dict[str, Path], width: float) -> tuple[dict[str, float], int]:
    """Rank-1 of 150 px descriptor models (name -> ONNX: the teacher's space, centred by ``mu``) on the validation
    identities' probes shrunk to ``width`` px, against the teacher's clean gallery embeddings.

    Returns:
        ``(rank1 per name, number of probes)``.
    """
    from .training import _validation_set

    gallery, g_labels, chips, p_labels = _validation_set(data, _probe_sampler(data), width)
    chips = chips.numpy()
    rank1 = {
        name: identification_metrics(gallery, g_labels, _onnx_descriptors(path, chips) - mu, p_labels).rank1
        for name, path in models.items()
    }
    return rank1, int(len(p_labels))


def threshold_at_far(probes: np.ndarray, data, probe_idx: np.ndarray, idx: np.ndarray) -> dict:
    """The identification threshold at FAR 1e-3: unit ``probes`` of crops ``probe_idx`` against the teacher's
    clean embeddings of crops ``idx`` (``data.targets``); a probe against its own clean photo is not a pair.

    Returns:
        ``threshold``, ``far``, ``impostor_pairs`` and ``tar_at_threshold`` (the genuine pairs above it).
    """
    scores = probes @ data.targets[idx].T
    same = data.identities[probe_idx][:, None] == data.identities[idx][None, :]
    itself = probe_idx[:, None] == idx[None, :]
    impostor, genuine = scores[~same], scores[same & ~itself]
    threshold = float(np.quantile(impostor, 1 - FAR))
    return {
        "threshold": round(threshold, 5),
        "far": FAR,
        "impostor_pairs": int(impostor.size),
        "tar_at_threshold": round(float(np.mean(genuine > threshold)), 4),
    }


def _probe_sampler(data, size: int = 150):
    """The sampler of the routing and threshold probes: ``size`` px chips of the crops shrunk to a given
    face width (``FaceSampler.probe``, no degradation)."""
    from .degrade import moderate_degradations
    from .faces import FaceSampler

    return FaceSampler(
        crops=data.crops,
        landmarks=data.landmarks,
        face_widths=data.face_widths,
        targets=data.targets,
        size=size,
        width_range=(10.0, 24.0),
        degradations=moderate_degradations(0),
    )


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _onnx_descriptors(path: Path, chips: np.ndarray, batch: int = 32) -> np.ndarray:
    """The output of an ONNX model with one ``image`` input (a descriptor or student embedding model) on
    (N, 3, S, S) float32 chips, compiled for this CPU (OpenVINO through lanner.compile, as the SDK runs it:
    an int8 QDQ file on OpenVINO's int8 kernels, checked with the registry's bar for such files; the package
    is kept beside the ONNX)."""
    from .. import load
    from ..compile import compile_model
    from ..compile.onnx_graph import quantization_ops, read_model
    from ..models import QDQ_FIDELITY

    package = path.with_suffix(".openvino-fp32")
    if not (package / "manifest.json").is_file():
        quantized = bool(quantization_ops(read_model(path)))
        compile_model(
            str(path),
            target="x86",
            backend="openvino",
            precision="fp32",
            out=str(package),
            name=path.stem,
            thresholds=QDQ_FIDELITY if quantized else None,
        )
    with load(package, num_threads=torch.get_num_threads()) as model:
        output = model.manifest.outputs[0].name
        return np.concatenate(
            [
                np.asarray(model.run({"image": np.ascontiguousarray(chips[i : i + batch])})[output], np.float32)
                for i in range(0, len(chips), batch)
            ]
        )
