"""Orchestration: turn models/packages into variants, compile ONNX on the fly, run each
variant (in a fresh process by default), and assemble the report."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..names import BACKENDS, MANIFEST_FILENAME, PRECISIONS
from ..timing import LatencyStats
from .machine import machine_info
from .report import SCHEMA_VERSION, new_entry, validate_report
from .variants import VariantJob, dir_size_bytes, run_variant

WORKER_TIMEOUT_S = 1800  # one variant; a hung backend must not hang the whole run

Say = Callable[[str], None]
Progress = Callable[[str, str, int, int], None]  # (variant, label, done, total)


@dataclass(frozen=True)
class BenchOptions:
    """Options of one ``lanner bench`` run (recorded verbatim in the report).

    Attributes:
        backends: backends to compile ONNX inputs for (ignored for packages).
        precisions: precisions to compile ONNX inputs at (ignored for packages).
        target: compile target for ONNX inputs (a key of ``lanner.targets.TARGETS``).
        batches: batch sizes to time.
        threads: inference threads (``None`` = backend default).
        pin: CPU ids to pin the measuring process to (``None`` = no pinning).
        runs: exact timed runs per batch, or ``None`` to adapt to ``budget_s``.
        budget_s: time budget per variant and batch when ``runs`` is ``None``.
        warmup: untimed runs before timing.
        isolate: run each variant in a fresh process (true cold start, own memory).
        calib: calibration data for int8 compiles.
        baseline: name of the variant ratios are computed against (``None`` = first).
        seed: seed of the random inputs.
        shapes: full shapes for inputs with dynamic non-batch dims.
        rounds: measure all variants this many times round-robin and pool the samples
            (each round gets the full ``runs``/``budget_s``).
    """

    backends: tuple[str, ...] = BACKENDS
    precisions: tuple[str, ...] = ("fp32",)
    target: str = "x86"
    batches: tuple[int, ...] = (1,)
    threads: int | None = None
    pin: tuple[int, ...] | None = None
    runs: int | None = None
    budget_s: float = 2.0
    warmup: int = 5
    isolate: bool = True
    calib: str | None = None
    baseline: str | None = None
    seed: int = 0
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    rounds: int = 1

    def validate(self) -> None:
        """Check the options before any work is done.

        Raises:
            ValueError: unknown backend/precision/target, bad counts or CPU ids, int8
                requested without calibration data.
            FileNotFoundError: the calibration path does not exist.
        """
        bad = [b for b in self.backends if b not in BACKENDS]
        if bad or not self.backends:
            raise ValueError(f"unknown backend {', '.join(bad) or '(none)'}; expected some of {', '.join(BACKENDS)}")
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad or not self.precisions:
            raise ValueError(
                f"unknown precision {', '.join(bad) or '(none)'}; expected some of {', '.join(PRECISIONS)}"
            )
        from ..targets import get_target

        get_target(self.target)  # raises ValueError naming the known targets
        if not self.batches or any(b < 1 for b in self.batches):
            raise ValueError(f"batch sizes must be >= 1, got {list(self.batches)}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        if self.runs is not None and self.runs < 1:
            raise ValueError(f"--runs must be >= 1, got {self.runs}")
        if not self.budget_s > 0:
            raise ValueError(f"--budget-s must be > 0, got {self.budget_s}")
        if self.warmup < 0:
            raise ValueError(f"--warmup must be >= 0, got {self.warmup}")
        if self.rounds < 1:
            raise ValueError(f"--rounds must be >= 1, got {self.rounds}")
        if self.pin is not None:
            usable = os.sched_getaffinity(0)
            missing = sorted(set(self.pin) - usable)
            if missing or not self.pin:
                raise ValueError(f"--pin CPUs {missing or '(none)'} are not usable here; usable CPUs: {sorted(usable)}")
        if self.calib is not None and not Path(self.calib).exists():
            raise FileNotFoundError(f"calibration data not found: {self.calib}")

    def policy(self) -> dict[str, Any]:
        return {"warmup": self.warmup, "runs": self.runs, "budget_s": self.budget_s}

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return json.loads(json.dumps(d))


@dataclass(frozen=True)
class Planned:
    """A variant to run, with what is known before running it."""

    job: VariantJob
    compile_s: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _is_onnx(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".onnx"


def plan_variants(sources: Sequence[str], opts: BenchOptions, work_dir: Path, say: Say) -> list[Planned]:
    """Resolve command-line sources into variants, compiling ONNX models on the fly.

    Packages become one variant each (named after their directory); each ONNX model
    becomes ``backend-precision`` variants (prefixed with the model stem when several
    sources are given). A variant that fails to compile is kept, marked as an error.

    Raises:
        FileNotFoundError: a source does not exist.
        ValueError: a source is neither a package directory nor an ``.onnx`` file, or
            int8 is requested for an ONNX model without calibration data.
    """
    planned: list[Planned] = []
    for src in sources:
        p = Path(src)
        if not p.exists():
            raise FileNotFoundError(f"no such model or package: {src}")
        if p.is_dir():
            if not (p / MANIFEST_FILENAME).is_file():
                raise ValueError(
                    f"{src} is a directory without {MANIFEST_FILENAME}; expected a package from `lanner compile`"
                )
            _check_runnable_here(p)
            planned.append(Planned(VariantJob(name=p.resolve().name, kind="package", source=str(p))))
        elif _is_onnx(p):
            if "int8" in opts.precisions and opts.calib is None:
                raise ValueError("int8 needs calibration data: pass --calib DIR (images or .npy/.npz arrays)")
            from ..targets import get_target

            ok, _ = get_target(opts.target).runnable_here()
            if not ok:
                raise ValueError(
                    f"--target {opts.target} packages cannot run on this machine; build them with "
                    f"`lanner compile MODEL.onnx --target {opts.target} --backend tvm` and measure "
                    "them on the device with --rpc HOST:PORT"
                )
            planned.extend(_compile_variants(p, opts, work_dir, say, prefix=_prefix(p, sources)))
        else:
            raise ValueError(f"{src}: expected an .onnx file or a package directory")
    names = [pl.job.name for pl in planned]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"variant names must be unique, got duplicates {dup}; rename the package directories")
    return planned


def _prefix(model: Path, sources: Sequence[str]) -> str:
    return model.stem if len(sources) > 1 else ""


def expected_names(sources: Sequence[str], opts: BenchOptions) -> list[str]:
    """Variant names :func:`plan_variants` will produce, known before compiling anything."""
    names = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            names.append(p.resolve().name)
        else:
            pre = _prefix(p, sources)
            names += [f"{pre + '-' if pre else ''}{b}-{q}" for b in opts.backends for q in opts.precisions]
    return names


def _check_runnable_here(package_dir: Path) -> None:
    """Refuse, before measuring anything, a package built for another machine.

    Raises:
        PackageError (a ValueError): malformed manifest or a target this host cannot run.
    """
    from ..manifest import Manifest, PackageError
    from ..targets import get_target

    manifest = Manifest.read(package_dir)
    try:
        target = get_target(manifest.target)
    except ValueError as exc:
        raise PackageError(f"{package_dir}: manifest names {exc}") from None
    ok, reason = target.runnable_here()
    if not ok:
        raise PackageError(f"{package_dir}: {reason} (to measure on that device, use --rpc HOST:PORT)")


def _compile_variants(model: Path, opts: BenchOptions, work_dir: Path, say: Say, prefix: str) -> list[Planned]:
    from lanner.compile import compile_model  # the compile pipeline (needs the compile extra)

    out: list[Planned] = []
    for backend in opts.backends:
        for precision in opts.precisions:
            name = f"{prefix + '-' if prefix else ''}{backend}-{precision}"  # keep in sync with expected_names
            pkg = work_dir / name
            say(f"compiling {model.name} -> {name} for {opts.target}")
            t0 = time.perf_counter()
            try:
                compile_model(
                    model,
                    target=opts.target,
                    backend=backend,
                    precision=precision,
                    calib=opts.calib,
                    out=pkg,
                    num_threads=opts.threads,
                )
            except (ValueError, ImportError, RuntimeError) as exc:  # unsupported, fidelity, toolchain
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                say(f"  {name}: compile failed: {msg}")
                out.append(
                    Planned(
                        VariantJob(name=name, kind="package", source=str(pkg)),
                        error=f"compile failed: {type(exc).__name__}: {msg}",
                        extra={"backend": backend, "precision": precision, "target": opts.target},
                    )
                )
                continue
            out.append(
                Planned(VariantJob(name=name, kind="package", source=str(pkg)), compile_s=time.perf_counter() - t0)
            )
    return out


def pipeline_jobs(
    pipeline: str, backends: Sequence[str] | None, precisions: Sequence[str], image: str | None = None
) -> list[VariantJob]:
    """Variants ``<pipeline>-<backend>-<precision>`` of a named pipeline (see ``PIPELINES``).

    Args:
        pipeline: a key of :data:`lanner.benchmarking.pipelines.PIPELINES` (``"face"``).
        backends: backends to run it with (``None``: all it supports).
        precisions: precisions to run it at.
        image: input image for image pipelines (default: the pipeline's sample).

    Raises:
        ValueError: unknown pipeline, or a backend it does not support.
    """
    from .pipelines import PIPELINES

    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r}; known: {', '.join(PIPELINES)}")
    spec, supported = PIPELINES[pipeline]
    backends = tuple(backends) if backends else supported
    bad = [b for b in backends if b not in supported]
    if bad:
        raise ValueError(f"pipeline {pipeline!r} runs on {', '.join(supported)}, not {', '.join(bad)}")
    if image is not None and not Path(image).is_file():
        raise FileNotFoundError(f"no such image: {image}")
    return [
        VariantJob(
            name=f"{pipeline}-{b}-{p}",
            kind="factory",
            source=spec,
            factory_kwargs={"backend": b, "precision": p, **({"image": image} if image else {})},
        )
        for b in backends
        for p in precisions
    ]


def run_job(job: VariantJob, isolate: bool, on_progress: Callable[[str, int, int], None] | None) -> dict[str, Any]:
    """Run one variant, in a fresh worker process when ``isolate``.

    Returns:
        The variant's report entry (``status="error"`` when the worker crashed).
    """
    if not isolate:
        return run_variant(job, on_progress)
    cmd = [sys.executable, "-m", "lanner.benchmarking.worker"]
    with (
        tempfile.TemporaryFile("w+") as err,
        subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True) as proc,
    ):
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(job.to_dict()))
        proc.stdin.close()
        entry = None
        deadline = time.monotonic() + WORKER_TIMEOUT_S
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            if msg.get("event") == "progress" and on_progress is not None:
                on_progress(msg["label"], msg["done"], msg["total"])
            elif msg.get("event") == "result":
                entry = msg["entry"]
            if time.monotonic() > deadline:
                proc.kill()
                break
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        if entry is None:
            err.seek(0)
            tail = err.read().strip().splitlines()[-3:]
            return {
                "name": job.name,
                "kind": job.kind,
                "source": job.source,
                "status": "error",
                "error": f"worker exited with code {rc}: {' | '.join(tail) or 'no output'}",
            }
        return entry


def benchmark(
    sources: Sequence[str],
    opts: BenchOptions,
    *,
    keep_packages: str | None = None,
    say: Say | None = None,
    progress: Progress | None = None,
    extra_jobs: Sequence[VariantJob] = (),
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Benchmark models/packages and return the report (a JSON-ready dict).

    Args:
        sources: ``.onnx`` files (compiled for ``opts.backends`` x ``opts.precisions``) and
            package directories.
        opts: the run's options; validated first.
        keep_packages: directory to keep packages compiled on the fly (default: a temp dir).
        say: receives one line per step (compiles, variants).
        progress: receives ``(variant, label, done, total)`` while timing.
        extra_jobs: more variants, e.g. a ``factory`` baseline (torch eager) or a pipeline.
        command: the command line to record.

    Returns:
        The report; see ``SCHEMA`` in :mod:`lanner.benchmarking.report`.

    Raises:
        ValueError, FileNotFoundError: bad options or sources (before anything runs).
    """
    say = say or (lambda _: None)
    opts.validate()
    # Compilers may narrow this process's CPU affinity (TVM pins the thread that sizes its
    # pool); workers inherit it. Snapshot the mask now, restore it after compiling, and give
    # every variant the same mask explicitly so all of them run on the same CPUs.
    affinity = tuple(sorted(os.sched_getaffinity(0)))
    machine = machine_info()
    pin = opts.pin if opts.pin is not None else affinity
    if not sources and not extra_jobs:
        raise ValueError("nothing to benchmark: give an .onnx model or package directories")
    if opts.baseline is not None:  # fail before spending minutes compiling
        names = expected_names(sources, opts) + [j.name for j in extra_jobs]
        if opts.baseline not in names:
            raise ValueError(f"--baseline {opts.baseline!r} is not a variant; variants: {names}")
    with tempfile.TemporaryDirectory(prefix="lanner-bench-") as tmp:
        work = Path(keep_packages) if keep_packages else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        planned = plan_variants(sources, opts, work, say)
        os.sched_setaffinity(0, affinity)
        planned += [Planned(j) for j in extra_jobs]
        if opts.baseline is not None and opts.baseline not in [p.job.name for p in planned]:
            raise ValueError(
                f"--baseline {opts.baseline!r} is not a variant; variants: {[p.job.name for p in planned]}"
            )
        jobs = []
        for pl in planned:
            jobs.append(
                replace(
                    pl.job,
                    batches=tuple(opts.batches),
                    policy=opts.policy(),
                    threads=opts.threads,
                    pin=pin,
                    seed=opts.seed,
                    shapes=dict(opts.shapes),
                )
                if pl.job.kind == "package"
                else replace(
                    pl.job,
                    policy=opts.policy(),
                    threads=pl.job.threads or opts.threads,
                    pin=pin,
                    batches=tuple(opts.batches) if pl.job.batches == (1,) else pl.job.batches,
                )
            )
        # Round-robin: every variant once per round, so slow drift of a shared machine's load
        # spreads over all variants instead of penalising whichever ran during a busy spell.
        per_variant: list[list[dict[str, Any]]] = [[] for _ in planned]
        for r in range(opts.rounds):
            for i, (pl, job) in enumerate(zip(planned, jobs)):
                if pl.error is not None:
                    if r == 0:
                        per_variant[i].append(
                            {
                                "name": job.name,
                                "kind": job.kind,
                                "source": job.source,
                                "status": "error",
                                "error": pl.error,
                                **pl.extra,
                            }
                        )
                    continue
                rnd = f" round {r + 1}/{opts.rounds}" if opts.rounds > 1 else ""
                say(f"[{i + 1}/{len(planned)}] {job.name}{rnd}")
                cb = None if progress is None else (lambda label, d, n, name=job.name: progress(name, label, d, n))
                per_variant[i].append(run_job(job, opts.isolate, cb))
                if not opts.isolate:
                    os.sched_setaffinity(0, affinity)
        entries = []
        for pl, job, runs in zip(planned, jobs, per_variant):
            entry = merge_rounds(runs)
            entry["compile_s"] = pl.compile_s
            if entry.get("artifact_bytes") is None and job.kind == "package" and Path(job.source).exists():
                entry["artifact_bytes"] = dir_size_bytes(job.source)
            entries.append(_complete_entry(entry))
    ok = [e["name"] for e in entries if e["status"] == "ok"]
    baseline = opts.baseline or (ok[0] if ok else (entries[0]["name"] if entries else None))
    report = {
        "schema_version": SCHEMA_VERSION,
        "tool": "lanner bench",
        "created_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": list(command) if command is not None else None,
        "options": {**opts.to_dict(), "isolate": opts.isolate},
        "machine": machine,
        "baseline": baseline,
        "remote": None,
        "variants": entries,
    }
    validate_report(report)
    return report


def merge_rounds(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pool the entries of one variant measured in several rounds.

    Timed samples are concatenated (in round order) and the statistics recomputed; cold
    start takes the median over rounds of each field; peak memory the maximum; per-stage
    summaries take the run-weighted mean of ``mean_ms``/``share`` and the median over rounds
    of ``p50_ms``/``p90_ms``. A batch or variant that failed in any round is reported failed.
    """
    if len(rounds) == 1:
        return dict(rounds[0])
    failed = [e for e in rounds if e["status"] != "ok"]
    if failed:
        return dict(failed[0])
    merged = dict(rounds[0])
    batches = []
    for j, first in enumerate(rounds[0]["batches"]):
        parts = [e["batches"][j] for e in rounds]
        bad = [b for b in parts if b["status"] != "ok"]
        if bad:
            batches.append(dict(bad[0]))
            continue
        samples = [x for b in parts for x in b["samples_ms"]]
        stats = LatencyStats.from_ns(np.asarray(samples) * 1e6)
        stages = None
        if first.get("stages"):
            w = np.asarray([b["runs"] for b in parts], dtype=np.float64)
            stages = {}
            for name in first["stages"]:
                vals = [b["stages"][name] for b in parts]
                stages[name] = {
                    "mean_ms": float(np.average([v["mean_ms"] for v in vals], weights=w)),
                    "p50_ms": float(np.median([v["p50_ms"] for v in vals])),
                    "p90_ms": float(np.median([v["p90_ms"] for v in vals])),
                    "share": float(np.average([v["share"] for v in vals], weights=w)),
                }
        batches.append(
            {
                **first,
                "runs": stats.n,
                "warmup": sum(b["warmup"] for b in parts),
                "latency_ms": stats.to_dict(),
                "samples_ms": samples,
                "stages": stages,
                "rounds": len(parts),
                "throughput_per_s": first["batch"] * 1e3 / stats.mean_ms if stats.mean_ms > 0 else None,
            }
        )
    merged["batches"] = batches
    colds = [e["cold_start"] for e in rounds if e.get("cold_start")]
    if colds:
        merged["cold_start"] = {
            k: (float(np.median([c[k] for c in colds])) if k != "batch" else colds[0][k]) for k in colds[0]
        }
    peaks = [e["memory"]["peak_rss_bytes"] for e in rounds if e.get("memory")]
    if peaks:
        merged["memory"] = {**rounds[0]["memory"], "peak_rss_bytes": max(peaks)}
    return merged


def _complete_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """Fill absent optional keys with ``None``/``[]`` so every entry has every schema key."""
    return {**new_entry(entry["name"], "package", None), **entry}
