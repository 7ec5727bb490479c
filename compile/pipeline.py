"""``compile_model``: build, verify and package a model for a target."""
from __future__ import annotations

import datetime as dt
import importlib
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

import lanner
from lanner.backends import ort_backend
from lanner.manifest import MANIFEST_FILENAME, PRECISIONS, Manifest, TensorSpec
from lanner.targets import Target, get_target

from . import onnx_graph
from .artifact import BuildResult, UnsupportedError
from .calibration import Feed, load_calibration, random_samples
from .fidelity import DEFAULT_THRESHOLDS, FidelityError, FidelityThresholds, compare, failures, measure_latency

__all__ = ["compile_model", "BACKEND_CHOICES", "PRECISION_CHOICES"]

BACKEND_CHOICES = ("auto", "openvino", "onnxruntime", "tvm")
PRECISION_CHOICES = ("auto", *PRECISIONS)
HELD_OUT_MAX = 16  # held-out samples for fidelity (taken from the end of the calibration set)
RANDOM_SAMPLES = 8  # seeded random samples when no calibration set is given
CLASSIFIER_TASKS = ("classification", "classifier", "face-classification")

# backend name -> (module, builder function); imported lazily so TVM loads only when used.
_BUILDERS = {
    "openvino": ("openvino_build", "build_openvino"),
    "onnxruntime": ("onnxruntime_build", "build_onnxruntime"),
    "tvm": ("tvm_build", "build_tvm"),
}

Progress = Callable[[str], None]


def _silent(_: str) -> None:
    pass


def compile_model(
    model: str | os.PathLike[str],
    *,
    target: str = "x86",
    backend: str = "auto",
    precision: str = "auto",
    calib: str | os.PathLike[str] | Sequence[Feed] | None = None,
    out: str | os.PathLike[str],
    input_shapes: Mapping[str, Sequence[int | str | None]] | None = None,
    sample_shapes: Mapping[str, Sequence[int]] | None = None,
    name: str | None = None,
    task: str | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    thresholds: Mapping[str, float | None] | FidelityThresholds | None = None,
    num_threads: int | None = None,
    progress: Progress | None = None,
) -> Manifest:
    """Compile an ONNX model into a verified deployable package.

    Every artifact that can run on this machine is compared with the fp32 reference (ONNX
    Runtime on the original model) on held-out samples and timed at batch 1. With
    ``backend="auto"`` and/or ``precision="auto"`` every buildable candidate is measured and the
    fastest one that passes fidelity is kept; the manifest records each candidate and the reason.

    Default fidelity thresholds (override with ``thresholds``; ``None`` skips a check):

    ========= =========== ============= ========
    precision min cosine  max rel error min top1
    ========= =========== ============= ========
    fp32      0.9999      0.01          0.95
    fp16      0.999       0.05          0.90
    bf16      0.999       0.05          0.90
    int8      0.98        0.25          0.85
    ========= =========== ============= ========

    (top-1 only for ``task="classification"``; relative error = max abs error / max |reference|.)

    Args:
        model: path to an ``.onnx`` file.
        target: a key of ``lanner.targets.TARGETS`` (``x86``, ``cuda``, ``cuda-sm90``, ``jetson-orin-nano`` ...).
        backend: ``openvino``, ``onnxruntime``, ``tvm`` or ``auto``.
        precision: ``fp32``, ``fp16``, ``bf16`` (OpenVINO on BF16 CPUs only), ``int8`` or ``auto``
            (int8 candidates need ``calib``; ``auto`` never tries bf16: request it explicitly).
        calib: calibration data: a folder of images (preprocessed with ``preprocessing``), of
            ``.npy``/``.npz`` arrays, or a list of feeds. The last ``min(16, n // 5)`` samples are
            held out for the fidelity check (with fewer than 5 samples all are reused).
        out: package directory to create (replaced if it already holds a lanner package).
        input_shapes: override input shapes (ints fix an axis, str/None keep it dynamic);
            TVM packages can keep dynamic axes (Relax symbolic shapes).
        sample_shapes: concrete shapes for random fidelity/latency samples when an input has
            dynamic axes other than the leading batch axis (and no ``calib``).
        name: model name for the manifest (default: the file stem).
        task: free-form task name; ``"classification"`` enables top-1 agreement.
        preprocessing: how inputs are made from images (see ``lanner.compile.calibration``).
        thresholds: fidelity threshold overrides, e.g. ``{"min_cosine": 0.99}``.
        num_threads: CPU threads for measurements (recorded; ``lanner.load`` takes its own).
        progress: called with one line per step (the CLI prints them to stderr).

    Returns:
        The written :class:`lanner.Manifest`.

    Raises:
        FileNotFoundError: missing model or calibration folder.
        ValueError: bad arguments (unknown target/backend/precision, int8 without calibration ...).
        UnsupportedError (a ValueError): the backend cannot build this precision for this target
            (with ``auto``: no candidate can be built).
        FidelityError (a ValueError): no candidate passes fidelity; ``.report`` has the numbers.
            With ``auto``, a candidate whose toolchain fails is recorded (status ``error``) and
            skipped; with a single requested candidate the toolchain's error propagates.
        ImportError: a needed toolchain is missing.
    """
    say = progress or _silent
    tgt = get_target(target)
    if backend not in BACKEND_CHOICES:
        raise ValueError(f"backend must be one of {BACKEND_CHOICES}, got {backend!r}")
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {PRECISION_CHOICES}, got {precision!r}")
    if backend != "auto" and backend not in tgt.backends:
        raise UnsupportedError(f"backend {backend!r} cannot build for target {tgt.name!r}; it supports {tgt.backends}")
    model_path = Path(model)
    out_dir = Path(out)
    _check_out_dir(out_dir)

    onnx_model = onnx_graph.read_model(model_path)
    if input_shapes:
        onnx_model = onnx_graph.with_input_shapes(onnx_model, input_shapes)
    inputs, outputs = onnx_graph.io_specs(onnx_model)
    name = name or model_path.stem
    runnable = tgt.runnable_here()[0] and tgt.device == "cpu"

    # Samples: calibration (minus held-out) and held-out for fidelity.
    calibration: list[Feed] | None = None
    if calib is not None:
        samples = load_calibration(calib, inputs, preprocessing)
        held = min(HELD_OUT_MAX, len(samples) // 5)
        if held == 0:
            calibration, held_out = samples, samples
        else:
            calibration, held_out = samples[:-held], samples[-held:]
        say(f"calibration: {len(calibration)} samples, {len(held_out)} held out for fidelity")
    else:
        held_out = random_samples(inputs, RANDOM_SAMPLES, seed=0, sample_shapes=sample_shapes) if runnable else []

    precisions = _precisions(precision, calibration is not None, runnable)
    backends = tgt.backends if backend == "auto" else (backend,)
    if not runnable and backend == "auto":
        backends = backends[:1]
    candidates = [(b, p) for b in backends for p in precisions]

    with tempfile.TemporaryDirectory(prefix="lanner-compile-", dir=out_dir.parent if out_dir.parent.exists() else None) as tmp:
        tmp_dir = Path(tmp)
        source = tmp_dir / "source.onnx"
        onnx_graph.save_model(onnx_model, source)
        reference = _reference_outputs(source, held_out, outputs, num_threads) if held_out and runnable else []
        classifier = (task or "").lower() in CLASSIFIER_TASKS
        base = dict(name=name, task=task, target=tgt.name, inputs=inputs, outputs=outputs,
                    preprocessing=dict(preprocessing) if preprocessing else None)
        results: list[dict[str, Any]] = []
        built: dict[tuple[str, str], tuple[Path, BuildResult]] = {}
        for b, p in candidates:
            say(f"candidate {b}/{p}: building for {tgt.name}")
            cand_dir = tmp_dir / f"{b}-{p}"
            cand_dir.mkdir()
            record: dict[str, Any] = {"backend": b, "precision": p}
            try:
                result = _build(b, source, cand_dir, tgt, p, calibration, say)
            except UnsupportedError as exc:
                if len(candidates) == 1:
                    raise
                record.update(status="unsupported", reason=str(exc))
                say(f"candidate {b}/{p}: unsupported: {exc}")
                results.append(record)
                continue
            except (RuntimeError, OSError, ValueError) as exc:
                # A toolchain failing on one candidate (an operator it cannot import, a crash in
                # quantization ...) must not sink the other candidates of an auto build.
                if len(candidates) == 1:
                    raise
                record.update(status="error", reason=f"{type(exc).__name__}: {str(exc).strip()[:500]}")
                say(f"candidate {b}/{p}: build failed: {record['reason']}")
                results.append(record)
                continue
            # A provisional manifest: lanner.load needs one to measure the candidate.
            _write_manifest(cand_dir, base, b, p, result, tgt, fidelity=None, latency=None,
                            selection={"reason": "requested"})
            if not runnable:
                record.update(status="built", reason=f"target {tgt.name!r} cannot run on this host: not measured")
                results.append(record)
                built[(b, p)] = (cand_dir, result)
                continue
            limits = _thresholds(p, thresholds)
            try:
                fidelity, latency = _measure(cand_dir, held_out, reference, outputs, classifier, num_threads)
            except (RuntimeError, OSError) as exc:
                if len(candidates) == 1:
                    raise
                record.update(status="error", reason=f"running the artifact failed: {type(exc).__name__}: {str(exc).strip()[:500]}")
                say(f"candidate {b}/{p}: {record['reason']}")
                results.append(record)
                continue
            problems = failures(fidelity, limits)
            fidelity = {**fidelity, "thresholds": dict(vars(limits)), "passed": not problems, "failures": problems,
                        "reference": "onnxruntime CPU fp32 on the original ONNX"}
            record.update(fidelity=fidelity, latency_ms=latency)
            if problems:
                record.update(status="failed fidelity", reason="; ".join(problems))
                say(f"candidate {b}/{p}: FAILED fidelity: {'; '.join(problems)}")
            else:
                record.update(status="passed")
                say(f"candidate {b}/{p}: passed fidelity, {latency['median']:.3f} ms median at batch 1")
            results.append(record)
            built[(b, p)] = (cand_dir, result)

        winner = _choose(results, runnable)
        if winner is None:
            report = {"target": tgt.name, "candidates": results}
            lines = [f"  {r['backend']}/{r['precision']}: {r['status']}: {r.get('reason', '')}" for r in results]
            if all(r["status"] == "unsupported" for r in results):
                raise UnsupportedError(f"no candidate can be built for target {tgt.name!r}:\n" + "\n".join(lines))
            raise FidelityError("no candidate passed for target " f"{tgt.name!r}:\n" + "\n".join(lines), report)
        chosen, reason = winner
        say(f"selected {chosen['backend']}/{chosen['precision']}: {reason}")
        cand_dir, result = built[(chosen["backend"], chosen["precision"])]
        requested = backend != "auto" and precision != "auto"
        selection = {"reason": "requested" if requested else reason, "candidates": results}
        # The final manifest: the provisional one plus the measurements and the selection.
        (cand_dir / MANIFEST_FILENAME).unlink()
        final = _write_manifest(cand_dir, base, chosen["backend"], chosen["precision"], result, tgt,
                                fidelity=chosen.get("fidelity"), latency=chosen.get("latency_ms"), selection=selection)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.copytree(cand_dir, out_dir)
    say(f"wrote package {out_dir}")
    return final


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ValueError(f"out {str(out_dir)!r} exists and is not a directory")
        if any(out_dir.iterdir()) and not (out_dir / MANIFEST_FILENAME).is_file():
            raise ValueError(f"out {str(out_dir)!r} is a non-empty directory that is not a lanner package; pick another")


def _precisions(precision: str, have_calib: bool, runnable: bool) -> tuple[str, ...]:
    if precision != "auto":
        return (precision,)
    if not runnable:
        return ("fp32",)  # cannot measure here: keep the reference precision
    return ("fp32", "fp16", "int8") if have_calib else ("fp32", "fp16")


def _thresholds(precision: str, overrides: Mapping[str, float | None] | FidelityThresholds | None) -> FidelityThresholds:
    if isinstance(overrides, FidelityThresholds):
        return overrides
    return DEFAULT_THRESHOLDS[precision].replace(overrides or {})


def _build(backend: str, source: Path, out_dir: Path, target: Target, precision: str,
           calibration: Sequence[Feed] | None, progress: Progress) -> BuildResult:
    module_name, func_name = _BUILDERS[backend]
    module = importlib.import_module(f"{__package__}.{module_name}")
    return getattr(module, func_name)(source, out_dir, target, precision, calibration, progress)


def _reference_outputs(source: Path, samples: Sequence[Feed], outputs: Sequence[TensorSpec],
                       num_threads: int | None) -> list[list[np.ndarray]]:
    session = ort_backend.OnnxRuntimeSession(str(source), [o.name for o in outputs], num_threads=num_threads)
    try:
        return [session.run(feed) for feed in samples]
    finally:
        session.close()


def _measure(package: Path, samples: Sequence[Feed], reference: Sequence[Sequence[np.ndarray]],
             outputs: Sequence[TensorSpec], classifier: bool, num_threads: int | None) -> tuple[dict, dict]:
    """Fidelity and batch-1 latency of a built package, through ``lanner.load`` (the real runtime path)."""
    with lanner.load(package, num_threads=num_threads) as model:
        got = [[model.run(feed)[o.name] for o in outputs] for feed in samples]
        fidelity = compare(reference, got, [o.name for o in outputs], classifier=classifier)
        first = samples[0]
        latency = measure_latency(lambda: model.run(first))
    latency["input_shapes"] = {k: list(v.shape) for k, v in first.items()}
    latency["num_threads"] = num_threads
    return fidelity, latency


def _choose(results: Sequence[Mapping[str, Any]], runnable: bool) -> tuple[Mapping[str, Any], str] | None:
    if not runnable:
        built = [r for r in results if r["status"] == "built"]
        if not built:
            return None
        return built[0], (
            "the target cannot run on this host, so nothing was measured: the first buildable backend in the "
            "target's preference order, at fp32 unless requested (fp16/int8 are never chosen unmeasured)"
        )
    passed = [r for r in results if r["status"] == "passed"]
    if not passed:
        return None
    best = min(passed, key=lambda r: r["latency_ms"]["median"])
    others = ", ".join(
        f"{r['backend']}/{r['precision']} {r['latency_ms']['median']:.3f} ms" for r in passed if r is not best
    )
    reason = f"fastest candidate that passed fidelity: {best['latency_ms']['median']:.3f} ms median at batch 1"
    if others:
        reason += f" (others passing: {others})"
    rejected = [f"{r['backend']}/{r['precision']} {r['status']}" for r in results if r["status"] != "passed"]
    if rejected:
        reason += f"; not eligible: {', '.join(rejected)}"
    return best, reason


def _toolchain(result: BuildResult) -> dict[str, str]:
    versions = {"lanner": lanner.__version__, "python": platform.python_version(), **result.toolchain}
    return versions


def _write_manifest(directory: Path, base: Mapping[str, Any], backend: str, precision: str, result: BuildResult,
                    target: Target, *, fidelity, latency, selection) -> Manifest:
    target_info = {"machine": target.machine, "device": target.device, "cuda_arch": target.cuda_arch,
                   "description": target.description, **result.target_info}
    if result.notes:
        target_info["build_notes"] = dict(result.notes)
    manifest = Manifest(
        **base,
        backend=backend,
        precision=precision,
        artifacts=dict(result.artifacts),
        backend_options=dict(result.backend_options),
        target_info=target_info,
        toolchain=_toolchain(result),
        fidelity=fidelity,
        latency_ms=latency,
        selection=selection,
        created_utc=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        lanner_version=lanner.__version__,
    )
    return manifest.write(directory)

