"""``compile_model``: build, verify and package a model for a target."""

from __future__ import annotations

import datetime as dt
import importlib
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import lanner
from lanner._resources import check_num_threads
from lanner.backends import ort_backend
from lanner.manifest import Manifest, TensorSpec
from lanner.names import AUTO, BACKENDS, MANIFEST_FILENAME, PRECISIONS
from lanner.targets import Target, get_target

from . import onnx_graph
from .artifact import BuildResult, UnsupportedError
from .calibration import Feed, check_preprocessing, load_calibration, random_samples
from .fidelity import DEFAULT_THRESHOLDS, FidelityError, FidelityThresholds, compare, failures, measure_latency

if TYPE_CHECKING:
    from .tvm_tuning import TuningRequest

__all__ = ["compile_model", "BACKEND_CHOICES", "PRECISION_CHOICES"]

BACKEND_CHOICES = (AUTO, *BACKENDS)
PRECISION_CHOICES = (AUTO, *PRECISIONS)
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
    tuning: TuningRequest | None = None,
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
        name: model name for the manifest (default: the file stem): printable, 1-128 chars, no path separators.
        task: free-form task name; ``"classification"`` enables top-1 agreement.
        preprocessing: how inputs are made from images (see ``lanner.compile.calibration``).
        thresholds: fidelity threshold overrides, e.g. ``{"min_cosine": 0.99}``.
        num_threads: CPU threads for measurements (recorded; ``lanner.load`` takes its own).
        progress: called with one line per step (the CLI prints them to stderr).
        tuning: MetaSchedule-tune the TVM candidate (see :mod:`lanner.compile.tvm_tuning`); it then
            competes in ``auto`` like any candidate. With ``precision="auto"`` only TVM fp32 is
            tuned (a database is per precision); request fp16 to tune that.

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
        ImportError: a needed toolchain is missing (with ``backend="auto"``, a backend whose
            toolchain is not installed, e.g. TVM, is skipped with a note instead).
        TuningInterrupted (a KeyboardInterrupt): Ctrl-C while tuning; the records are kept.
    """
    say = progress or _silent
    tgt = _check_request(target, backend, precision)
    num_threads = check_num_threads(num_threads)  # before any session is made with it
    preprocessing = check_preprocessing(preprocessing)
    if name is not None and (
        not isinstance(name, str)
        or not name.strip()
        or len(name) > 128
        or any(c in name for c in "/\\")
        or name in (".", "..")
        or not name.isprintable()
    ):
        raise ValueError(f"name should be a printable model name without path separators, 1-128 chars, got {name!r}")
    if tuning is not None and backend not in (AUTO, "tvm"):
        raise ValueError(f"tuning applies to the tvm backend; got backend {backend!r} (use tvm or auto)")
    out_dir = Path(out)
    _check_out_dir(out_dir)
    runnable = _runnable(tgt, backend)
    work_parent = out_dir.parent if out_dir.parent.exists() else None
    with tempfile.TemporaryDirectory(prefix="lanner-compile-", dir=work_parent) as tmp:
        tmp_dir = Path(tmp)
        source, inputs, outputs = _read_source(Path(model), input_shapes, tmp_dir / "source.onnx")
        calibration, held_out = _samples(calib, inputs, preprocessing, sample_shapes, runnable, say)
        candidates = _candidates(tgt, backend, _precisions(precision, calibration is not None, runnable), runnable)
        if tuning is not None and precision == AUTO:
            candidates = [(b, p) for b, p in candidates if b != "tvm" or p == "fp32"]
        reference = _reference_outputs(source, held_out, outputs, num_threads) if held_out and runnable else []
        base = dict(
            name=name or Path(model).stem,
            task=task,
            target=tgt.name,
            inputs=inputs,
            outputs=outputs,
            preprocessing=dict(preprocessing) if preprocessing else None,
        )
        trial = _Trial(
            source=source,
            target=tgt,
            calibration=calibration,
            held_out=held_out,
            reference=reference,
            outputs=outputs,
            classifier=(task or "").lower() in CLASSIFIER_TASKS,
            thresholds=thresholds,
            num_threads=num_threads,
            base=base,
            runnable=runnable,
            single=len(candidates) == 1,
            say=say,
            tuning=tuning,
        )
        results: list[dict[str, Any]] = []
        built: dict[tuple[str, str], tuple[Path, BuildResult]] = {}
        for b, p in candidates:
            record, result = trial.run(b, p, tmp_dir / f"{b}-{p}")
            results.append(record)
            if result is not None:
                built[(b, p)] = (tmp_dir / f"{b}-{p}", result)
        chosen, reason = _select(results, tgt, runnable)
        say(f"selected {chosen['backend']}/{chosen['precision']}: {reason}")
        cand_dir, result = built[(chosen["backend"], chosen["precision"])]
        requested = backend != AUTO and precision != AUTO
        final = _package(
            cand_dir,
            out_dir,
            base,
            chosen,
            result,
            tgt,
            selection={"reason": "requested" if requested else reason, "candidates": results},
        )
    say(f"wrote package {out_dir}")
    return final


def _check_request(target: str, backend: str, precision: str) -> Target:
    """Step 1: the target, backend and precision named exist and go together."""
    tgt = get_target(target)
    if backend not in BACKEND_CHOICES:
        raise ValueError(f"backend must be one of {BACKEND_CHOICES}, got {backend!r}")
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {PRECISION_CHOICES}, got {precision!r}")
    if backend != AUTO and backend not in tgt.backends:
        raise UnsupportedError(f"backend {backend!r} cannot build for target {tgt.name!r}; it supports {tgt.backends}")
    return tgt


def _read_source(
    model_path: Path, input_shapes: Mapping[str, Sequence[int | str | None]] | None, dest: Path
) -> tuple[Path, tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Step 2: the source model, at ``dest``, with its input/output specs.

    Without ``input_shapes`` the file is used as it is and read by ONNX Runtime (a runtime
    dependency), so compiling for OpenVINO or ONNX Runtime needs no ``onnx`` package; with
    them the graph is edited through ``onnx`` (the ``compile`` extra).
    """
    if not input_shapes:
        inputs, outputs = onnx_graph.read_specs(model_path)
        shutil.copyfile(model_path, dest)
        return dest, inputs, outputs
    onnx_model = onnx_graph.with_input_shapes(onnx_graph.read_model(model_path), input_shapes)
    onnx_graph.save_model(onnx_model, dest)
    inputs, outputs = onnx_graph.io_specs(onnx_model)
    return dest, inputs, outputs


def _samples(
    calib, inputs: Sequence[TensorSpec], preprocessing, sample_shapes, runnable: bool, say: Progress
) -> tuple[list[Feed] | None, list[Feed]]:
    """Step 3: calibration samples (minus the held-out ones) and held-out samples for fidelity."""
    if calib is None:
        held_out = random_samples(inputs, RANDOM_SAMPLES, seed=0, sample_shapes=sample_shapes) if runnable else []
        return None, held_out
    samples = load_calibration(calib, inputs, preprocessing)
    held = min(HELD_OUT_MAX, len(samples) // 5)
    calibration, held_out = (samples, samples) if held == 0 else (samples[:-held], samples[-held:])
    say(f"calibration: {len(calibration)} samples, {len(held_out)} held out for fidelity")
    return calibration, held_out


def _runnable(tgt: Target, backend: str) -> bool:
    """Whether this machine can run (and so measure) ``backend``'s packages for ``tgt``: a CPU target of
    its own architecture, or a CUDA target where the backend's runtime sees a CUDA device (TVM's CUDA
    runtime; for ONNX Runtime, its CUDA execution provider). Elsewhere packages are built unmeasured."""
    if not tgt.runnable_here()[0]:
        return False
    if tgt.device == "cpu":
        return True
    if backend == "onnxruntime":
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    from lanner.backends import tvm_backend

    return tvm_backend.cuda_device_present()


def _candidates(tgt: Target, backend: str, precisions: Sequence[str], runnable: bool) -> list[tuple[str, str]]:
    """Step 4: the (backend, precision) pairs to build."""
    backends = tgt.backends if backend == AUTO else (backend,)
    if not runnable and backend == AUTO:
        backends = backends[:1]
    return [(b, p) for b in backends for p in precisions]


@dataclass
class _Trial:
    """Step 5, per candidate: build, write a provisional manifest, measure fidelity and latency.

    One error handler covers building and measuring: with several candidates a failure is
    recorded (``unsupported``, ``skipped`` for a toolchain that is not installed, ``error``)
    and the others go on; with a single requested candidate it propagates.
    """

    source: Path
    target: Target
    calibration: list[Feed] | None
    held_out: list[Feed]
    reference: list[list[np.ndarray]]
    outputs: tuple[TensorSpec, ...]
    classifier: bool
    thresholds: Mapping[str, float | None] | FidelityThresholds | None
    num_threads: int | None
    base: Mapping[str, Any]
    runnable: bool
    single: bool
    say: Progress
    tuning: TuningRequest | None = None

    def run(self, backend: str, precision: str, cand_dir: Path) -> tuple[dict[str, Any], BuildResult | None]:
        """Build and measure one candidate; returns its record and build result (None when it failed)."""
        record: dict[str, Any] = {"backend": backend, "precision": precision}
        self.say(f"candidate {backend}/{precision}: building for {self.target.name}")
        cand_dir.mkdir()
        try:
            tuning = self.tuning if backend == "tvm" else None
            result = _build(backend, self.source, cand_dir, self.target, precision, self.calibration, self.say, tuning)
            # A provisional manifest: lanner.load needs one to measure the candidate.
            _write_manifest(
                cand_dir,
                self.base,
                backend,
                precision,
                result,
                self.target,
                fidelity=None,
                latency=None,
                selection={"reason": "requested"},
            )
            if not self.runnable:
                record.update(
                    status="built", reason=f"target {self.target.name!r} cannot run on this host: not measured"
                )
                return record, result
            fidelity, latency = _measure(
                cand_dir,
                self.held_out,
                self.reference,
                self.outputs,
                self.classifier,
                self.num_threads,
                thread_sweep=backend == "tvm" and self.target.device == "cpu",
            )
        except (ImportError, RuntimeError, OSError, ValueError) as exc:
            if self.single:
                raise
            record.update(_failure(exc))
            self.say(f"candidate {backend}/{precision}: {record['status']}: {record['reason']}")
            return record, None
        limits = _thresholds(precision, self.thresholds)
        problems = failures(fidelity, limits)
        fidelity = {
            **fidelity,
            "thresholds": dict(vars(limits)),
            "passed": not problems,
            "failures": problems,
            "reference": "onnxruntime CPU fp32 on the original ONNX",
        }
        record.update(fidelity=fidelity, latency_ms=latency)
        if problems:
            record.update(status="failed fidelity", reason="; ".join(problems))
            self.say(f"candidate {backend}/{precision}: FAILED fidelity: {'; '.join(problems)}")
        else:
            record.update(status="passed")
            self.say(f"candidate {backend}/{precision}: passed fidelity, {latency['median']:.3f} ms median at batch 1")
        return record, result


def _failure(exc: BaseException) -> dict[str, str]:
    """How a candidate that raised is recorded (a toolchain failing on one candidate, or missing,
    must not sink the other candidates of an auto build)."""
    if isinstance(exc, UnsupportedError):
        return {"status": "unsupported", "reason": str(exc)}
    if isinstance(exc, ImportError):
        return {"status": "skipped", "reason": f"toolchain not installed: {str(exc).strip()[:500]}"}
    return {"status": "error", "reason": f"{type(exc).__name__}: {str(exc).strip()[:500]}"}


def _select(results: Sequence[Mapping[str, Any]], tgt: Target, runnable: bool) -> tuple[Mapping[str, Any], str]:
    """Step 6: the winner, or the error that explains why there is none."""
    winner = _choose(results, runnable)
    if winner is not None:
        return winner
    report = {"target": tgt.name, "candidates": results}
    lines = [f"  {r['backend']}/{r['precision']}: {r['status']}: {r.get('reason', '')}" for r in results]
    if all(r["status"] in ("unsupported", "skipped") for r in results):
        raise UnsupportedError(f"no candidate can be built for target {tgt.name!r}:\n" + "\n".join(lines))
    raise FidelityError(f"no candidate passed for target {tgt.name!r}:\n" + "\n".join(lines), report)


def _package(
    cand_dir: Path,
    out_dir: Path,
    base: Mapping[str, Any],
    chosen: Mapping[str, Any],
    result: BuildResult,
    tgt: Target,
    *,
    selection: Mapping[str, Any],
) -> Manifest:
    """Step 7: the final manifest (the provisional one plus the measurements and the selection),
    and the package copied to ``out_dir``."""
    (cand_dir / MANIFEST_FILENAME).unlink()
    final = _write_manifest(
        cand_dir,
        base,
        chosen["backend"],
        chosen["precision"],
        result,
        tgt,
        fidelity=chosen.get("fidelity"),
        latency=chosen.get("latency_ms"),
        selection=selection,
    )
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(cand_dir, out_dir)
    return final


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ValueError(f"out {str(out_dir)!r} exists and is not a directory")
        if any(out_dir.iterdir()) and not (out_dir / MANIFEST_FILENAME).is_file():
            raise ValueError(
                f"out {str(out_dir)!r} is a non-empty directory that is not a lanner package; pick another"
            )


def _precisions(precision: str, have_calib: bool, runnable: bool) -> tuple[str, ...]:
    if precision != "auto":
        return (precision,)
    if not runnable:
        return ("fp32",)  # cannot measure here: keep the reference precision
    return ("fp32", "fp16", "int8") if have_calib else ("fp32", "fp16")


def _thresholds(
    precision: str, overrides: Mapping[str, float | None] | FidelityThresholds | None
) -> FidelityThresholds:
    if isinstance(overrides, FidelityThresholds):
        return overrides
    return DEFAULT_THRESHOLDS[precision].replace(overrides or {})


def _build(
    backend: str,
    source: Path,
    out_dir: Path,
    target: Target,
    precision: str,
    calibration: Sequence[Feed] | None,
    progress: Progress,
    tuning: TuningRequest | None = None,
) -> BuildResult:
    module_name, func_name = _BUILDERS[backend]
    module = importlib.import_module(f"{__package__}.{module_name}")
    extra = {} if tuning is None else {"tuning": tuning}
    return getattr(module, func_name)(source, out_dir, target, precision, calibration, progress, **extra)


def _reference_outputs(
    source: Path, samples: Sequence[Feed], outputs: Sequence[TensorSpec], num_threads: int | None
) -> list[list[np.ndarray]]:
    session = ort_backend.OnnxRuntimeSession(str(source), [o.name for o in outputs], num_threads=num_threads)
    try:
        return [session.run(feed) for feed in samples]
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own types; the samples are the caller's choice
        shapes = {name: tuple(a.shape) for name, a in samples[0].items()}
        raise ValueError(
            f"the model does not run on the samples (shapes {shapes}) in the fp32 reference (ONNX Runtime): "
            f"{f'{type(exc).__name__}: {exc}'.splitlines()[0]}; check --sample-shape / --input-shape or the "
            "calibration arrays"
        ) from None
    finally:
        session.close()


def _measure(
    package: Path,
    samples: Sequence[Feed],
    reference: Sequence[Sequence[np.ndarray]],
    outputs: Sequence[TensorSpec],
    classifier: bool,
    num_threads: int | None,
    *,
    thread_sweep: bool = False,
) -> tuple[dict, dict]:
    """Fidelity and batch-1 latency of a built package, through ``lanner.load`` (the real runtime path).

    With ``thread_sweep`` (TVM on a CPU), the latency is also measured with 1, 2, 4 ... threads below the
    measured count and recorded as ``by_threads`` ({threads: median ms}): a TVM package runs with fewer
    threads than it is given where fewer were measured faster here
    (:func:`lanner.backends.tvm_backend.fastest_threads`).
    """
    first = samples[0]
    with lanner.load(package, num_threads=num_threads) as model:
        got = [[model.run(feed)[o.name] for o in outputs] for feed in samples]
        fidelity = compare(reference, got, [o.name for o in outputs], classifier=classifier)
        latency = measure_latency(lambda: model.run(first))
    latency["input_shapes"] = {k: list(v.shape) for k, v in first.items()}
    latency["num_threads"] = num_threads
    if thread_sweep:
        from lanner.backends import tvm_backend

        most = num_threads or tvm_backend.available_cores()
        # the count the measurement above ran with: without num_threads, a tuned package's is its trials'
        ran_with = num_threads or tvm_backend.tuned_threads(Manifest.read(package)) or most
        counts = {most, ran_with} | {1 << k for k in range(most.bit_length()) if 1 << k < most}
        latency["by_threads"] = _by_threads(package, first, sorted(counts))
    return fidelity, latency


# by_threads: each thread count timed in this many rounds, the counts taking turns, each round ~0.2 s
SWEEP_ROUNDS = 5


def _by_threads(package: Path, feed: Feed, counts: Sequence[int]) -> dict[str, float]:
    """{threads: ms}, the median of ``SWEEP_ROUNDS`` round medians per count, the counts interleaved round by
    round: a package runs with fewer threads where fewer were measured faster, for good, so a burst of other
    load must not decide it. Timed one count after the other, a second core busy for a second (this 2-core
    virtual machine has such spells: the same package measures 0.31-0.33 ms at 2 threads in most processes,
    0.60-0.63 in about one in ten) once pinned a tuned mobileface112 package, 0.46 ms at 1 thread and
    0.31-0.33 at 2, to 1 thread."""
    with ExitStack() as stack:
        models = {count: stack.enter_context(lanner.load(package, num_threads=count)) for count in counts}
        rounds: dict[int, list[float]] = {count: [] for count in counts}
        for _ in range(SWEEP_ROUNDS):
            for count, model in models.items():
                rounds[count].append(measure_latency(partial(model.run, feed), budget_s=1.0 / SWEEP_ROUNDS)["median"])
    return {str(count): float(np.median(rounds[count])) for count in counts}


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


def _write_manifest(
    directory: Path,
    base: Mapping[str, Any],
    backend: str,
    precision: str,
    result: BuildResult,
    target: Target,
    *,
    fidelity,
    latency,
    selection,
) -> Manifest:
    target_info = {
        "machine": target.machine,
        "device": target.device,
        "cuda_arch": target.cuda_arch,
        "description": target.description,
        **result.target_info,
    }
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
