"""MetaSchedule tuning for the TVM builder (``lanner compile --backend tvm --tune TRIALS``).

The Relax module is prepared as ``tvm.s_tir.meta_schedule.relax_integration.compile_relax``
prepares it (LegalizeOps, FoldConstant, FuseOps, FuseTIR) and its fused TIR functions become
MetaSchedule tasks. Each task's default schedule (what an untuned build runs) is measured
first. Then every batch (16 candidates: evolutionary search, XGBoost cost model) goes to the task
whose current contribution to the model's latency, weight x the faster of its best and its default
schedule, is the largest among the tasks still improving; the choice is re-taken after every
measured batch, so a convolution that is 30x faster after its first batch yields to whatever is
now the largest. A task stops getting batches after ``PATIENCE`` batches in a row that made it
less than ``MIN_GAIN`` faster, or when its search space is exhausted; the tune ends at the trial
count, the time budget, or when no task is improving. On CPUs every trial is timed at 1 thread and
at the target's ``num-cores`` (the count the package runs with by default; a package runs at 1
where that was measured faster) and ranked by the mean of the two. Every trial is measured: here by
a local runner (x86), or on the device through a TVM RPC tracker (``--rpc HOST:PORT --device-key
KEY``; CUDA and Jetson targets need it). On CPUs the default schedules go into the database too:
TVM's default lowering (a trace that only looks up the root block) and rule-made ones
(``tvm_cpu_schedules``: blocks inlined, outer loops parallel), so a task whose trials all measured
slower, or that got none, keeps the fastest of those. The library is then built with the database
applied, by the pipeline of ``compile_relax`` (kept here because ``compile_relax`` cannot pass
``exec_mode``): tuned functions take their best schedule; the rest keep the default (dlight on GPUs,
as an untuned build).

The database is MetaSchedule's JSON database (``database_workload.json``: one line per task,
its structural hash and TIR; ``database_tuning_record.json``: one line per measured
schedule, with the target it was measured on). While tuning it lives in the cache
(``$LANNER_CACHE/tuning/<run>/``), so an interrupted tune keeps its records; a finished tune
copies it into the package's ``tuning/`` folder (checksummed in the manifest like every file)
with ``tuning.json`` (trials, minutes, tasks) and removes the cache copy. ``--tuning-db``
seeds the next tune of the same model for the same target from a package or such a folder;
a database of another model (a workload hash that is not one of this model's tasks) or of
another target is refused. ``--tune 0 --tuning-db DIR`` measures nothing: it builds the
package from the records alone (e.g. the same records with a newer Lanner).

Ctrl-C during a tune stops it after the batch being measured (a second Ctrl-C stops at
once): the records so far stay in the cache folder, whose path :class:`TuningInterrupted`
names, ready for ``--tuning-db``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lanner.backends import tvm_backend
from lanner.benchmarking.remote import check_tracker
from lanner.models import cache_dir
from lanner.names import MANIFEST_FILENAME

from . import tvm_cpu_schedules, tvm_int8
from .artifact import UnsupportedError

__all__ = [
    "TuningRequest",
    "TuningInterrupted",
    "tune_and_compile",
    "count_trials",
    "TUNING_DIR",
    "WORKLOAD_FILE",
    "RECORD_FILE",
]

TUNING_DIR = "tuning"
WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
SUMMARY_FILE = "tuning.json"
# Candidates measured per batch (MetaSchedule's default is 64). With a minutes-long budget on a small CPU,
# 64 per task meant the first round over a model's tasks did not finish in 10 minutes (each batch also
# restarts the builder process); 16 lets every task get measured candidates early and the cost model
# learn from more, smaller rounds.
MAX_TRIALS_PER_ITER = 16
# Evolutionary-search population (default 512): the search runs on the tuning machine's CPU between
# batches; a smaller population leaves more of a time budget to measuring candidates.
POPULATION = 128
# A task stops getting batches after PATIENCE batches in a row that did not make its latency (the faster of
# its best and its default schedule) at least MIN_GAIN faster: the third run's static split spent most of
# R-Net's budget on a convolution whose first batch was already its best (528 more trials, no gain).
PATIENCE = 4
MIN_GAIN = 0.01
# A task no trial has measured yet takes the next batch, before any task's next one, once it holds this share of
# the model's current estimate: a first batch makes a convolution 10-20x faster than its default, a later one a
# few percent. In a bridge tune without this rule two small convolutions never got one (57 and 46 us at their
# default, 3 us tuned) while the three largest took 5-17 batches each (benchmarks/compile, eleventh run).
FIRST_BATCH_SHARE = 0.02
RPC_SESSION_TIMEOUT_S = 120
# Each trial is timed per pool size as the median of MEASURE_REPEATS repeats of at least MEASURE_REPEAT_MS
# (MetaSchedule's default: one mean over at least 100 ms, which took 0.19 s a trial and pool size here,
# a third of a bridge tune's batches): half the time (0.095 s), and one preempted repeat does not move it.
MEASURE_REPEATS = 3
MEASURE_REPEAT_MS = 20
SEED = 0  # search seed (its threads draw from streams forked from it)


@dataclass(frozen=True)
class TuningRequest:
    """What to tune and where to measure.

    Attributes:
        trials: measured candidates in this run, spread over the model's tasks; 0 (with
            ``seed_database`` only) builds from the seed's records without measuring.
        minutes: time budget; tuning stops after the batch that crosses it (None: no limit).
        seed_database: a package with ``tuning/``, or a folder with MetaSchedule's JSON database,
            whose records start this tune (same model and target only).
        rpc: ``HOST:PORT`` of a TVM RPC tracker; trials are measured on a device registered there.
        device_key: the tracker key of the device (required with ``rpc``).
        threads: CPU threads each trial runs with here (TVM's pool; not with ``rpc``), besides 1
            (:func:`measured_thread_counts`); None: the target's ``num-cores``. The search and the builds
            between measurements run on as many threads. The package records it
            and runs with it by default. Fewer than the cores where other work holds some of them: a
            parallel kernel then waits at every barrier for a thread the OS has descheduled, and the
            measurements rank the scheduler's delays instead of the kernels (benchmarks/compile/README.md).

    Raises:
        ValueError: trials < 0, or 0 without ``seed_database``; minutes <= 0; ``rpc`` without
            ``device_key`` or the reverse; threads < 1, or with ``rpc``.
        TypeError: trials or threads not an int.
    """

    trials: int
    minutes: float | None = None
    seed_database: str | None = None
    rpc: str | None = None
    device_key: str | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.trials, int) or isinstance(self.trials, bool):
            raise TypeError(f"trials must be an int, got {type(self.trials).__name__}")
        if self.trials < 0:
            raise ValueError(f"trials must be >= 0, got {self.trials}")
        if self.trials == 0 and self.seed_database is None:
            raise ValueError(
                "trials = 0 builds from a tuning database without measuring: it needs seed_database (--tuning-db)"
            )
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"tuning minutes must be > 0, got {self.minutes}")
        if self.threads is not None:
            if not isinstance(self.threads, int) or isinstance(self.threads, bool):
                raise TypeError(f"tuning threads must be an int, got {type(self.threads).__name__}")
            if self.threads < 1:
                raise ValueError(f"tuning threads must be >= 1, got {self.threads}")
            if self.rpc is not None:
                raise ValueError("tuning threads apply to trials measured here; the RPC device sizes its own pool")
        if (self.rpc is None) != (self.device_key is None):
            raise ValueError(
                f"--rpc and --device-key go together (the tracker and the key of the device to measure on), "
                f"got rpc={self.rpc!r}, device_key={self.device_key!r}"
            )


class TuningInterrupted(KeyboardInterrupt):
    """A tune stopped by Ctrl-C; its records are kept.

    Attributes:
        records_dir: the folder holding the database so far (pass it to ``--tuning-db``).
        trials: trials measured in this run before the interrupt.
    """

    def __init__(self, records_dir: Path, trials: int) -> None:
        super().__init__(
            f"tuning interrupted after {trials} trials; the records so far are in {records_dir}: "
            f"resume with --tuning-db {records_dir}"
        )
        self.records_dir = records_dir
        self.trials = trials


@dataclass
class _Progress:
    """Counts trials, tracks each task's best latency, plans every batch, applies the time budget and Ctrl-C.

    The plan (:meth:`next_task`): each batch goes to the task whose current contribution to the model's
    latency, weight x the faster of its best and default schedule (:meth:`task_ms`), is the largest among
    the tasks still improving, except that a task without a measured trial whose contribution is at least
    :data:`FIRST_BATCH_SHARE` of the model's estimate goes first; it is re-taken after every measured batch
    (:meth:`on_batch`). A task stops getting batches after :data:`PATIENCE` batches in a row without a
    :data:`MIN_GAIN` gain, or when MetaSchedule has nothing left to measure for it (``exhausted``).
    """

    total: int
    weights: list[float]
    names: list[str]
    default_s: list[float | None]
    deadline: float | None
    say: Callable[[str], None]
    started: float = field(default_factory=time.monotonic)
    trials: int = 0
    best_s: dict[int, float] = field(default_factory=dict)
    seeded_s: dict[int, float] = field(default_factory=dict)
    current: int = 0
    exhausted: set[int] = field(default_factory=set)
    stale: dict[int, int] = field(default_factory=dict)
    task_trials: dict[int, int] = field(default_factory=dict)
    history: list[list[Any]] = field(default_factory=list)
    batch_s: list[float] = field(default_factory=list)
    batch_started: float | None = None
    interrupted: bool = False
    out_of_time: bool = False
    failed: int = 0
    first_error: str | None = None

    @property
    def stopping(self) -> bool:
        """A stop was requested: time budget (a batch ended past it, or the next one would) or Ctrl-C."""
        return self.interrupted or self.out_of_time

    def improving(self) -> list[int]:
        """The tasks that may still get batches."""
        return [i for i in range(len(self.weights)) if i not in self.exhausted and self.stale.get(i, 0) < PATIENCE]

    def next_task(self) -> int | None:
        """The task to measure the next batch of, or None to end the tune (stop requested, no task improving)."""
        if self.stopping:
            return None
        now = time.monotonic()
        if (
            self.deadline is not None
            and self.batch_s
            and now + sorted(self.batch_s)[len(self.batch_s) // 2] > self.deadline
        ):
            # the next batch, as long as the median one so far, would end past the budget: stop within it
            self.out_of_time = True
            return None
        candidates = self.improving()
        if not candidates:
            return None
        estimate = self.estimated_ms() or 0.0
        untried = [
            i
            for i in candidates
            if not self.task_trials.get(i)
            and i not in self.seeded_s
            and self.contribution_ms(i) >= FIRST_BATCH_SHARE * estimate
        ]
        self.current = max(untried or candidates, key=lambda i: (self.contribution_ms(i), -i))
        self.batch_started = now
        return self.current

    def on_batch(self, runner_results: list[Any]) -> None:
        """Record a measured batch of the current task and re-take its standing in the plan."""
        i = self.current
        if self.batch_started is not None:
            self.batch_s.append(time.monotonic() - self.batch_started)
        before = self.contribution_ms(i)
        self.trials += len(runner_results)
        self.task_trials[i] = self.task_trials.get(i, 0) + len(runner_results)
        for result in runner_results:
            if result.error_msg is None and result.run_secs:
                seconds = sum(float(s) for s in result.run_secs) / len(result.run_secs)
                self.best_s[i] = min(seconds, self.best_s.get(i, float("inf")))
            else:
                self.failed += 1
                if self.first_error is None:
                    self.first_error = str(result.error_msg).strip().splitlines()[-1][:300]
        gained = self.contribution_ms(i) < before * (1 - MIN_GAIN)
        self.stale[i] = 0 if gained else self.stale.get(i, 0) + 1
        estimate = self.estimated_ms()
        self.history.append([self.names[i], len(runner_results), None if estimate is None else round(estimate, 5)])
        self.out_of_time = self.deadline is not None and time.monotonic() > self.deadline
        self.say(self.line())

    def task_ms(self, i: int) -> float | None:
        """Task ``i``'s latency in the build (ms, weight included): the fastest of its best measured
        schedule, a seed's best and its default schedule, since the database holds them all (CPU targets)."""
        options = [s for s in (self.best_s.get(i), self.seeded_s.get(i), self.default_s[i]) if s is not None]
        return 1e3 * self.weights[i] * min(options) if options else None

    def contribution_ms(self, i: int) -> float:
        """:meth:`task_ms`, with a task never measured counted as the slowest measured one (weight included)."""
        ms = self.task_ms(i)
        if ms is not None:
            return ms
        known = [s for s in (*self.default_s, *self.best_s.values(), *self.seeded_s.values()) if s is not None]
        return 1e3 * self.weights[i] * (max(known) if known else 1.0)

    def estimated_ms(self) -> float | None:
        """Sum over the tasks of weight x latency (the tuner's model-latency estimate)."""
        known = [ms for ms in (self.task_ms(i) for i in range(len(self.weights))) if ms is not None]
        return sum(known) if known else None

    def shares(self) -> list[tuple[int, float]]:
        """(task, share of the model's estimated latency), largest first."""
        cost = [self.contribution_ms(i) for i in range(len(self.weights))]
        total = sum(cost)
        return sorted(((i, c / total) for i, c in enumerate(cost)), key=lambda item: -item[1])

    def plan(self) -> list[dict[str, Any]]:
        """Per task, largest default share first: its shares of the default and of the tuned latency,
        trials, best and default latency, and why it got no more batches."""
        default = dict(_Progress(0, self.weights, self.names, self.default_s, None, self.say).shares())
        tuned = dict(self.shares())
        rows = []
        for i in sorted(range(len(self.weights)), key=lambda i: -default[i]):
            best, fallback = self.best_s.get(i), self.default_s[i]
            if i in self.exhausted:
                stopped = "search space exhausted"
            elif self.stale.get(i, 0) >= PATIENCE:
                stopped = f"no gain in {PATIENCE} batches"
            else:
                stopped = None
            rows.append(
                {
                    "task": self.names[i],
                    "share": round(default[i], 4),
                    "share_tuned": round(tuned[i], 4),
                    "trials": self.task_trials.get(i, 0),
                    "best_ms": None if best is None else round(1e3 * best, 5),
                    "seeded_best_ms": None if i not in self.seeded_s else round(1e3 * self.seeded_s[i], 5),
                    "default_ms": None if fallback is None else round(1e3 * fallback, 5),
                    "stopped": stopped,
                }
            )
        return rows

    def stop_reason(self, trials: int) -> str:
        """Why the tune ended."""
        if self.interrupted:
            return "interrupted"
        if self.out_of_time:
            return "time budget"
        if self.trials >= trials:
            return "trials"
        return "no task improving"

    def line(self) -> str:
        done = min(self.trials, self.total)
        width = 24
        bar = "#" * (width * done // self.total) + "." * (width - width * done // self.total)
        est = self.estimated_ms()
        best = "n/a" if est is None else f"{est:.3f} ms"
        minutes = (time.monotonic() - self.started) / 60
        return (
            f"tvm tune [{bar}] {self.trials}/{self.total} trials, model estimate {best} "
            f"({len(self.best_s)}/{len(self.weights)} tasks measured, {len(self.improving())} improving; "
            f"last batch: {self.names[self.current]}), {minutes:.1f} min"
            + (f"; {self.failed} failed, first: {self.first_error}" if self.failed else "")
        )


def tune_and_compile(
    tc: Any,
    mod: Any,
    target: Any,
    request: TuningRequest,
    target_runnable_here: bool,
    package_dir: Path,
    progress: Callable[[str], None],
    exec_mode: str,
) -> tuple[Any, dict[str, Any]]:
    """Tune ``mod`` for ``target`` and build it with the tuned schedules.

    Args:
        tc: :func:`lanner.backends.tvm_backend.import_compiler`'s namespace.
        mod: the Relax IRModule (fixed shapes).
        target: the ``tvm.target.Target`` the package is built for (tuning uses the same).
        request: trials, budget, seed database, RPC tracker.
        target_runnable_here: True when trials can be measured on this machine without RPC.
        package_dir: the package being built; receives ``tuning/``.
        progress: called with one line per measured batch (the progress bar).
        exec_mode: the Relax VM's ``exec_mode`` for the build (``"compiled"`` or ``"bytecode"``).

    Returns:
        The Relax executable and the tuning summary recorded in the manifest.

    Raises:
        UnsupportedError: a target that cannot run here without ``rpc``.
        ValueError: an unreachable tracker or unknown key; a seed database of another model or target.
        TuningInterrupted: Ctrl-C; the records are kept in the cache.
    """
    ms = tc.meta_schedule
    if request.rpc is None and not target_runnable_here:
        raise UnsupportedError(
            f"tuning for {target.kind.name} target {str(target)!r} measures every trial on the device: pass "
            "--rpc HOST:PORT --device-key KEY (a TVM RPC tracker with the device registered under KEY)"
        )
    if request.rpc is not None:
        check_tracker(request.rpc, request.device_key)
    fused = _prepare(tc, mod, target)
    tasks = [t for t in ms.relax_integration.extract_tasks(fused, target) if not _is_scheduled(t)]
    if not tasks:
        raise UnsupportedError("this model has no operator MetaSchedule can tune")
    records_dir = cache_dir() / TUNING_DIR / f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    records_dir.mkdir(parents=True)
    try:
        previous = _seed(ms, tc.tvm, request.seed_database, records_dir, tasks, target) if request.seed_database else {}
    except ValueError:
        shutil.rmtree(records_dir)
        raise
    database = ms.database.JSONDatabase(
        path_workload=str(records_dir / WORKLOAD_FILE), path_tuning_record=str(records_dir / RECORD_FILE)
    )
    weights = [float(task.weight) for task in tasks]
    cores = int(dict(target.attrs).get("num-cores", 0)) or None  # CPU targets; None on GPUs
    threads = request.threads or cores if request.rpc is None else cores
    state = _Progress(
        total=request.trials,
        weights=weights,
        names=[str(task.task_name) for task in tasks],
        default_s=[None] * len(tasks),
        deadline=None,
        say=progress,
    )
    progress(
        f"tvm tune: {len(tasks)} tasks, no new trials: building from the seed's records"
        if not request.trials
        else f"tvm tune: {len(tasks)} tasks, {request.trials} trials"
        + (f", {request.minutes:g} min budget" if request.minutes else "")
        + (
            f", measured on {request.device_key!r} via tracker {request.rpc}"
            if request.rpc
            else f", measured here at {' and '.join(map(str, measured_thread_counts(threads or 1)))} "
            f"thread{'s' if (threads or 1) > 1 else ''}"
        )
        + (f", seeded with {previous.get('records', 0)} records" if previous else "")
    )
    if request.trials:  # 0: build from the seed's records alone
        # made before the clock starts: the first context registers every tensor intrinsic
        # the search and the builds between measurements use the cores the trials run on
        workers = max(1, threads or 1) if request.rpc is None else len(os.sched_getaffinity(0))
        contexts = _contexts(tc.tvm, ms, tasks, SEED, workers)
        builder = _builder(tc.tvm, ms, workers, link=request.rpc is None)
        if request.rpc is None and threads:
            # Trials run with the threads the package will run with by default (the target's num-cores
            # unless asked otherwise), and with 1: TVM's own default here was half the cores (1 of 2).
            threads = tvm_backend.set_num_threads(threads)
        runner = _runner(tc.tvm, ms, request, measured_thread_counts(threads or 1))
        # the budget counts tuning proper, not TVM's start-up; measuring the default schedules is part of it
        state.started = time.monotonic()
        state.deadline = None if request.minutes is None else state.started + 60 * request.minutes
        try:
            with _sigint_stops(state):
                state.default_s = _measure_defaults(tc.tvm, ms, tasks, target, builder, runner, database)
                state.seeded_s = _seeded_best(ms, database, tasks)
                progress(
                    "tvm tune: default schedules measured; each batch goes to the task with the largest "
                    "weight x latency among those still improving, re-planned after every batch; first: "
                    + ", ".join(f"{state.names[i]} ({100 * share:.0f}%)" for i, share in state.shares()[:4])
                )
                try:
                    ms.tune_tasks(
                        tasks=contexts,
                        task_weights=state.weights,
                        work_dir=str(records_dir),
                        max_trials_global=request.trials,
                        num_trials_per_iter=min(MAX_TRIALS_PER_ITER, request.trials),
                        builder=builder,
                        runner=runner,
                        database=database,
                        cost_model="xgb",
                        measure_callbacks=[
                            *ms.measure_callback.MeasureCallback.create("default"),
                            _callback(tc.tvm, ms, state),
                        ],
                        task_scheduler=_scheduler(tc.tvm, ms, state),
                    )
                except RuntimeError as exc:  # tvm.error.InternalError from MetaSchedule's own search
                    raise UnsupportedError(
                        f"TVM 0.27's MetaSchedule failed while tuning this graph for {target.kind.name}: "
                        f"{str(exc).strip().splitlines()[-1][:200]}; the records so far are in {records_dir}; "
                        "build without --tune (the default schedules) or use another backend"
                    ) from None
        finally:
            # The runner keeps its worker processes; end them here, also when the tune stopped early
            # (left to garbage collection they outlive an interrupted compile).
            pool = getattr(runner, "pool", None)
            if pool is not None:
                pool.shutdown(wait=False)
    if state.interrupted:
        raise TuningInterrupted(records_dir, state.trials)
    minutes = (time.monotonic() - state.started) / 60
    record = (  # how the tune went; a build from the seed alone keeps the seed's record of its tune
        {
            "stopped_by_time_budget": state.out_of_time,
            "tasks_measured": len(state.best_s),
            "task_plan": state.plan(),
            "batches": state.history,
            "stopped_because": state.stop_reason(request.trials),
        }
        if request.trials
        else {key: previous.get(key, default) for key, default in SEED_RECORD.items()}
    )
    summary = {
        "tuner": "tvm.s_tir.meta_schedule (evolutionary search, xgb cost model; each batch of "
        f"{MAX_TRIALS_PER_ITER} to the task with the largest weight x min(best, default) latency, re-planned after "
        f"every batch; a task stops after {PATIENCE} batches in a row that gain under {MIN_GAIN:.0%})",
        # a build from the seed alone keeps the thread count its records were measured with
        "threads": threads if request.trials else previous.get("threads", threads),
        # each trial's run_secs: one time per count, ranked by their mean (records of older tunes: 1 count)
        "timed_at_threads": list(measured_thread_counts(threads or 1))
        if request.trials and not request.rpc
        else previous.get("timed_at_threads"),
        "trials": previous.get("trials", 0) + state.trials,
        "trials_this_run": state.trials,
        "minutes": round(previous.get("minutes", 0.0) + minutes, 3),
        "minutes_this_run": round(minutes, 3),
        "tasks": len(tasks),
        **record,
        "failed_trials": state.failed,
        "first_error": state.first_error,
        "records": _count_lines(records_dir / RECORD_FILE),
        "estimated_latency_ms": state.estimated_ms(),
        "measured_on": f"rpc {request.rpc} key {request.device_key}" if request.rpc else "this machine",
        "seeded_from": previous.get("source"),
        "target": str(target),
    }
    progress("tvm tune: building with the tuned schedules")
    executable = build_relax(tc, mod, target, exec_mode, database)
    tuning_dir = package_dir / TUNING_DIR
    tuning_dir.mkdir()
    for name in (WORKLOAD_FILE, RECORD_FILE):
        shutil.copyfile(records_dir / name, tuning_dir / name)
    (tuning_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(records_dir)
    return executable, summary


def _measure_defaults(
    tvm: Any, ms: Any, tasks: list[Any], target: Any, builder: Any, runner: Any, database: Any
) -> list[float | None]:
    """Each task's latency (seconds) without trials, measured like a trial: the fastest of its default
    schedules.

    On GPUs that is dlight's rules (what an untuned build runs). On CPUs it is TVM's default lowering
    and the rule-made schedules of :func:`lanner.compile.tvm_cpu_schedules.default_candidates`
    (injective blocks inlined, outer loops parallel); every one measured is committed as a record
    (TVM's default as :func:`_default_trace`, the others with theirs), so the build keeps the fastest for a
    task no trial beat or that got none: small element-wise tasks, where a parallel loop's thread
    hand-off costs more than the work, keep a sequential one. A task whose seed database holds such
    records is not measured again: its fastest one stands (a seeded tune's budget goes to trials). None
    where nothing built or ran (the task is then treated as expensive).
    """
    gpu = "gpu" in [str(key) for key in target.keys]
    device_type = target.kind.name if gpu else "cpu"  # (what the task scheduler hands its runner)
    cores = int(dict(target.attrs).get("num-cores", 1) or 1)
    schedules: list[tuple[int, Any]] = []  # (task, schedule or None for TVM's default)
    modules = []
    measured: list[float | None] = [None] * len(tasks)
    for i, task in enumerate(tasks):
        mod = task.dispatched[0]
        if gpu:
            schedules.append((i, None))
            with target:
                modules.append(tvm.s_tir.dlight.ApplyDefaultSchedule(*_dlight_rules(tvm.s_tir.dlight))(mod))
            continue
        measured[i] = _recorded_best(ms, database, mod, trials=False)
        if measured[i] is not None:
            continue
        for sch in [None, *(sch for _name, sch in tvm_cpu_schedules.default_candidates(tvm, mod, cores))]:
            schedules.append((i, sch))
            modules.append(mod if sch is None else sch.mod)
    built = builder.build([ms.builder.BuilderInput(mod, target) for mod in modules])
    ran = [k for k, b in enumerate(built) if b.error_msg is None]
    args = [ms.arg_info.ArgInfo.from_prim_func(tasks[schedules[k][0]].dispatched[0]["main"]) for k in ran]
    futures = runner.run(
        [ms.runner.RunnerInput(str(built[k].artifact_path), device_type, a) for k, a in zip(ran, args)]
    )
    for k, a, future in zip(ran, args, futures):
        i, sch = schedules[k]
        result = future.result()
        ms.utils.remove_build_dir(str(built[k].artifact_path))
        if result.error_msg is not None or not result.run_secs:
            continue
        run_secs = [float(s) for s in result.run_secs]
        seconds = sum(run_secs) / len(run_secs)
        measured[i] = seconds if measured[i] is None else min(measured[i], seconds)
        if not gpu:
            database.commit_tuning_record(
                ms.database.TuningRecord(
                    trace=_default_trace(tvm, tasks[i].dispatched[0]) if sch is None else sch.trace,
                    workload=database.commit_workload(tasks[i].dispatched[0]),
                    run_secs=run_secs,
                    target=target,
                    args_info=a,
                )
            )
    return measured


def _default_trace(tvm: Any, mod: Any) -> Any:
    """The trace that stands for TVM's default lowering of ``mod`` in a database: one instruction that
    changes nothing (looking up the root block). TVM's databases never return a record whose trace is
    empty, so a default committed with an empty trace was never the schedule a build applied, even where
    it was the fastest (the build took the next one: 3.31 us for a 3.19 us default in the tests' small
    network); an empty trace is the fallback for a function without a root block."""
    sch = tvm.s_tir.Schedule(mod)
    try:
        sch.get_sblock("root", func_name="main")
    except RuntimeError:  # (TVM's ScheduleError: no such block)
        return tvm.s_tir.schedule.Trace([], {})
    return sch.trace


def _seeded_best(ms: Any, database: Any, tasks: list[Any]) -> dict[int, float]:
    """Each task's best tuned latency (seconds) among the records a seed database brought (empty
    without one), so that a seeded task counts as fast as it already is when batches are planned."""
    best = {i: _recorded_best(ms, database, task.dispatched[0], trials=True) for i, task in enumerate(tasks)}
    return {i: seconds for i, seconds in best.items() if seconds is not None}


def _recorded_best(ms: Any, database: Any, mod: Any, *, trials: bool) -> float | None:
    """The fastest mean latency (seconds) ``database`` holds for the task ``mod``, among its trials
    (``trials=True``) or its default schedules (records whose trace MetaSchedule did not post-process, as
    in :func:`count_trials`); None where it holds none."""
    if not database.has_workload(mod):
        return None
    for record in database.get_top_k(database.commit_workload(mod), 1 << 20):  # every record, fastest first
        run_secs = [float(x) for x in record.run_secs or []]
        if run_secs and _is_trial([inst.kind.name for inst in record.trace.insts]) == trials:
            return sum(run_secs) / len(run_secs)
    return None


def _scheduler(tvm: Any, ms: Any, state: _Progress) -> Any:
    """MetaSchedule's task scheduler with :meth:`_Progress.next_task` choosing every batch.

    The scheduler's loop sends a batch of the task this returns to the builder and the runner,
    then asks again; before choosing, the batch in flight is joined (its results recorded and
    reported through the measure callbacks), so each choice sees every measurement so far. A
    task MetaSchedule terminated (its search space exhausted) gets no more batches; -1 ends the
    tune (trials, time budget, Ctrl-C, or no task still improving)."""

    @tvm.ir.utils.derived_object
    class _LargestContributionFirst(ms.task_scheduler.PyTaskScheduler):
        def __init__(self) -> None:
            super().__init__()
            self.in_flight: int | None = None

        def next_task_id(self) -> int:
            records = self._outer().tasks_
            if self.in_flight is not None and not records[self.in_flight].is_terminated:
                self.join_running_task(self.in_flight)
            state.exhausted = {i for i, record in enumerate(records) if record.is_terminated}
            task = state.next_task()
            self.in_flight = task
            return -1 if task is None else task

    return _LargestContributionFirst()


def _contexts(tvm: Any, ms: Any, tasks: list[Any], seed: int, num_threads: int = 1) -> list[Any]:
    """One MetaSchedule tuning context per task (evolutionary search from ``seed`` on ``num_threads``
    threads); on CPU targets its design space also applies
    :func:`lanner.compile.tvm_cpu_schedules.rows_first_rule` before the target's own rules.

    Our own contexts, not ``extracted_tasks_to_tune_contexts``: its logging set-up breaks a second tune
    in the same process (TVM 0.27) and prints MetaSchedule's task table at every batch. The first context
    made in a process registers every tensor intrinsic (about a minute on this machine).
    """

    def context(task: Any, rand_state: int, space: Any) -> Any:
        return ms.TuneContext(
            mod=task.dispatched[0],
            target=task.target,
            space_generator=space,
            search_strategy=ms.search_strategy.EvolutionarySearch(population_size=POPULATION),
            task_name=task.task_name,
            rand_state=rand_state,
            num_threads=num_threads,
        )

    rows_first = tvm_cpu_schedules.rows_first_rule(tvm, ms)  # stateless: one for every task
    contexts = []
    for task, rand_state in zip(tasks, ms.utils.fork_seed(seed, n=len(tasks))):
        made = context(task, rand_state, "post-order-apply")
        if "cpu" in [str(key) for key in task.target.keys]:  # the target's own rules, after rows_first
            own = made.space_generator
            space = ms.space_generator.PostOrderApply(
                sch_rules=[rows_first, *own.sch_rules],
                postprocs=list(own.postprocs),
                mutator_probs=dict(own.mutator_probs),
            )
            made = context(task, rand_state, space)
        contexts.append(made.clone())
    return contexts


def _dlight_rules(dl: Any) -> tuple[Any, ...]:
    """dlight's GPU rules for what tuning leaves unscheduled (as ``compile_relax`` applies them)."""
    gpu = dl.gpu
    return (gpu.Matmul(), gpu.GEMV(), gpu.Reduction(), gpu.GeneralReduction(), gpu.Fallback())


def _prepare(tc: Any, mod: Any, target: Any) -> Any:
    """The passes ``compile_relax`` runs before applying a database, so task hashes match it."""
    relax = tc.relax
    gpu = relax.pipeline.BackendDispatcher.is_gpu_target(target)
    passes = tc.tvm.transform.Sequential([relax.transform.LegalizeOps(), *_fusion_passes(tc.tvm, relax, gpu)])
    with target:
        return passes(mod)


def build_relax(tc: Any, mod: Any, target: Any, exec_mode: str, database: Any = None) -> Any:
    """``meta_schedule.relax_integration.compile_relax`` with the VM's ``exec_mode`` (TVM 0.27's
    ``compile_relax`` always builds bytecode): the same passes as :func:`_prepare` so the
    database's workload hashes match, the database applied (when given), :func:`_dlight_rules` for
    what it leaves unscheduled on GPUs, then the target's lowering and finalisation passes. Untuned
    GPU builds go through here too, for the zero pads kept out of fusion (:func:`_pads_apart`)."""
    tvm, relax = tc.tvm, tc.relax
    pipeline = relax.pipeline
    dl = tvm.s_tir.dlight
    is_gpu = pipeline.BackendDispatcher.is_gpu_target(target)

    try:
        lower = [*pipeline.dataflow_lower_passes(target), *pipeline.finalize_passes(target)]
    except (ValueError, AttributeError):  # targets without their own lists (x86 CPU in 0.27): compile_relax's
        transform = relax.transform
        lower = [
            transform.RewriteDataflowReshape(),
            transform.ToNonDataflow(),
            transform.RemovePurityChecking(),
            transform.CallTIRRewrite(),
            transform.StaticPlanBlockMemory(),
            transform.LowerAllocTensor(),
            transform.KillAfterLastUse(),
            transform.LowerRuntimeBuiltin(),
            transform.ComputePrimValue(),
            transform.VMShapeLower(),
            transform.AttachGlobalSymbol(),
        ]
    try:
        dispatch = pipeline.library_dispatch_passes(target)
    except (ValueError, AttributeError):
        dispatch = []

    @tvm.transform.module_pass(opt_level=3)
    def with_database(mod: Any, _ctx: Any) -> Any:
        mod = tvm.transform.Sequential([*dispatch, relax.transform.LegalizeOps(), *_fusion_passes(tvm, relax, is_gpu)])(
            mod
        )
        if database is not None:
            mod = relax.transform.MetaScheduleApplyDatabase()(mod)
        if is_gpu:
            mod = dl.ApplyDefaultSchedule(*_dlight_rules(dl))(mod)
        return tvm.transform.Sequential(lower)(mod)

    with target, database or contextlib.nullcontext(), tvm.transform.PassContext(opt_level=3):
        return relax.build(mod, target=target, relax_pipeline=with_database, exec_mode=exec_mode)


def _fusion_passes(tvm: Any, relax: Any, gpu: bool) -> list[Any]:
    """The passes between legalisation and tuning, shared by task extraction and the build. On GPUs,
    zero pads (``nn.pad``) are kept out of fusion (:func:`_pads_apart`)."""
    return [
        relax.transform.AnnotateTIROpPattern(),
        tvm_int8.declared_op_patterns(tvm),
        *([_pads_apart(tvm)] if gpu else []),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
    ]


OPAQUE = 8  # relax's OpPatternKind kOpaque: FuseOps fuses nothing into or out of such a function


def _pads_apart(tvm: Any) -> Any:
    """Mark the legalised ``nn.pad`` functions (TOPI's ``PadInput`` block) opaque, so that FuseOps leaves
    each one its own kernel. Fused into a convolution's epilogue, a pad writes a larger tensor than the
    convolution computes (dlib's ResNet zero-pads a 3x3 sum to 4x4 for the next residual add), which dlight's
    GPU rules cannot schedule: Matmul asserts ("consumers of the cache-write stage that are not properly
    inlined") and TVM 0.27's CUDA pipeline aborts. Apart, each is a plain copy kernel."""

    @tvm.transform.module_pass(opt_level=0, name="LannerKeepPadsApart")
    def apart(mod: Any, _ctx: Any) -> Any:
        updates = {}
        for gv, func in mod.functions.items():
            if isinstance(func, tvm.tirx.PrimFunc) and '"PadInput"' in func.script(show_meta=False):
                updates[gv] = func.with_attr("op_pattern", OPAQUE)
        for gv, func in updates.items():
            mod[gv] = func
        return mod

    return apart


def _is_scheduled(task: Any) -> bool:
    return bool(task.mod.attrs and task.mod.attrs.get("tirx.is_scheduled", False))


def _runner(tvm: Any, ms: Any, request: TuningRequest, thread_counts: tuple[int, ...]) -> Any:
    if request.rpc is None:
        return _local_runner(tvm, ms, thread_counts)
    host, _, port = request.rpc.rpartition(":")
    config = ms.runner.RPCConfig(
        tracker_host=host,
        tracker_port=int(port),
        tracker_key=request.device_key,
        session_timeout_sec=RPC_SESSION_TIMEOUT_S,
    )
    return ms.runner.RPCRunner(rpc_config=config, max_workers=1)


def measured_thread_counts(threads: int) -> tuple[int, ...]:
    """The pool sizes every trial is timed at here: 1 and ``threads`` (the package's default). A TVM
    package runs at either (``lanner.load`` takes 1 where ``latency_ms.by_threads`` measured it faster), so a
    candidate is ranked by the mean of the two: a kernel of a few microseconds that a parallel loop makes
    slower at 2 threads (the hand-off costs 2-4 us here) loses to a sequential one, and one that gains from
    the second core wins, where 1-thread trials saw neither."""
    return (1,) if threads <= 1 else (1, threads)


def _local_runner(tvm: Any, ms: Any, thread_counts: tuple[int, ...]) -> Any:
    """Candidates measured in this process with MetaSchedule's own argument allocation and
    ``time_evaluator`` (its LocalRunner's steps), once per pool size in ``thread_counts``: the median
    of :data:`MEASURE_REPEATS` repeats of at least :data:`MEASURE_REPEAT_MS` each. The result's ``run_secs``
    hold one time per pool size, and MetaSchedule ranks records by their mean.
    LocalRunner runs them in a worker process that imports TVM first; on a busy 2-core machine that
    start took longer than a whole tuning budget (8 minutes before the first batch was measured),
    leaving 16 trials per model."""
    local = ms.runner.local_runner
    config = ms.runner.EvaluatorConfig(
        number=3, repeat=MEASURE_REPEATS, min_repeat_ms=MEASURE_REPEAT_MS, enable_cpu_cache_flush=False
    )

    @tvm.ir.utils.derived_object
    class _InProcessRunner(ms.runner.PyRunner):
        def run(self, runner_inputs: list[Any]) -> list[Any]:
            futures = []
            for item in runner_inputs:
                costs: list[float] | None = []
                error = None
                try:
                    module = tvm.runtime.load_module(str(item.artifact_path))
                    device = tvm.runtime.device(str(item.device_type), 0)
                    args = local.default_alloc_argument(device, tuple(a.as_json() for a in item.args_info), 1)
                    for threads in thread_counts:
                        tvm_backend.set_num_threads(threads)
                        costs.append(statistics.median(local.default_run_evaluator(module, device, config, args)))
                except (RuntimeError, ValueError, TypeError) as exc:  # a failed trial, not a failed tune
                    costs, error = None, f"run failed: {exc}"
                finally:
                    tvm_backend.set_num_threads(thread_counts[-1])
                futures.append(local.LocalRunnerFuture(res=costs, error_message=error))
            return futures

    return _InProcessRunner()


def _build_candidate(mod: Any, target: Any, link: bool) -> str:
    """MetaSchedule's default build, exported for the runner (the path returned), without its
    ``import tvm.s_tir.tensor_intrin``, which registers every tensor intrinsic of every target (minutes on
    a loaded machine) and which fp32 schedules for our targets do not use. ``link``: a shared library
    linked here (trials measured on this machine: the builder's threads link side by side, where
    MetaSchedule's tar was linked by the runner on loading, one trial after another); otherwise
    MetaSchedule's tar, which the RPC device links (it may be another architecture)."""
    tvm = tvm_backend.import_toolchain()
    mod = tvm.s_tir.transform.RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    library = tvm.driver.build(mod, target=target)
    if not link:
        from tvm.s_tir.meta_schedule.builder.local_builder import default_export

        return default_export(library)
    path = os.path.join(tempfile.mkdtemp(prefix="lanner-trial-"), "trial.so")
    library.export_library(path)
    return path


def _builder(tvm: Any, ms: Any, workers: int, link: bool) -> Any:
    """Candidates built in this process by ``workers`` threads (TVM's lowering, LLVM and the linker run
    without the GIL; ``link``: see :func:`_build_candidate`). MetaSchedule's LocalBuilder starts a fresh
    worker process for every batch, and each one imports TVM first: seconds of CPU per batch, most of a
    batch's cost with small batches on a busy small CPU."""

    def build_one(item: Any) -> Any:
        try:
            return ms.builder.BuilderResult(_build_candidate(item.mod, item.target, link), None)
        except (RuntimeError, ValueError, TypeError) as exc:  # a failed trial, not a failed tune
            return ms.builder.BuilderResult(None, f"build failed: {exc}")

    @tvm.ir.utils.derived_object
    class _InProcessBuilder(ms.builder.PyBuilder):
        def build(self, build_inputs: list[Any]) -> list[Any]:
            items = list(build_inputs)
            if workers <= 1 or len(items) <= 1:
                return [build_one(item) for item in items]
            with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
                return list(pool.map(build_one, items))

    return _InProcessBuilder()


def _callback(tvm: Any, ms: Any, state: _Progress) -> Any:
    @tvm.ir.utils.derived_object
    class _ProgressCallback(ms.measure_callback.PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):  # noqa: ARG002
            state.on_batch(list(runner_results))

    return _ProgressCallback()


class _sigint_stops:  # noqa: N801 -- a context manager used like a function
    """While tuning, the first Ctrl-C asks the tuner to stop after the current batch (records are
    committed per batch); a second one interrupts at once. Only the main thread can own SIGINT."""

    def __init__(self, state: _Progress) -> None:
        self._state = state
        self._previous: Any = None

    def _handler(self, signum, frame) -> None:  # noqa: ARG002
        self._state.interrupted = True
        self._state.say("tvm tune: Ctrl-C: stopping after this batch (Ctrl-C again to stop now)")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> _sigint_stops:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _count_lines(path: Path) -> int:
    with path.open(encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def count_trials(path: Path) -> int:
    """Measured candidates in a MetaSchedule record file: its records less the default schedules that
    each tune commits before searching (TVM's default, :func:`_default_trace`, and the rule-made ones of
    ``tvm_cpu_schedules``), told apart by :func:`_is_trial`.

    Args:
        path: a ``database_tuning_record.json``.

    Returns:
        The number of records whose trace MetaSchedule post-processed.
    """
    with path.open(encoding="utf-8") as f:
        return sum(1 for line in f if line.strip() and _is_trial([inst[0] for inst in json.loads(line)[1][0][0]]))


def _is_trial(instructions: list[str]) -> bool:
    """Whether a record's trace (its instructions' kind names) is a candidate of MetaSchedule's search:
    every candidate passes the postprocessors, which open with ``EnterPostproc``; the default schedules
    a tune commits never do. (Sampling decisions do not tell them apart: the search also replays a
    measured default's trace, with no decision, through the postprocessors.)"""
    return "EnterPostproc" in instructions


# How a seed database's own tune went (its tuning.json), with the value where it recorded none:
# what a build from the seed alone reports instead of its own zero trials.
SEED_RECORD = {
    "task_plan": [],
    "batches": [],
    "stopped_because": "no new trials",
    "stopped_by_time_budget": False,
    "tasks_measured": 0,
}


def _seed(ms: Any, tvm: Any, seed: str, records_dir: Path, tasks: list[Any], target: Any) -> dict[str, Any]:
    """Copy a previous database into ``records_dir`` after checking it is this model's and target's."""
    source = Path(seed)
    folder = source / TUNING_DIR if (source / MANIFEST_FILENAME).is_file() else source
    workloads, records = folder / WORKLOAD_FILE, folder / RECORD_FILE
    if not workloads.is_file() or not records.is_file():
        raise ValueError(
            f"--tuning-db {seed}: expected a package with a {TUNING_DIR}/ folder or a folder with "
            f"{WORKLOAD_FILE} and {RECORD_FILE}, found neither"
        )
    want = str(target)
    with records.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                got = str(tvm.target.Target(json.loads(line)[1][2]))
            except (ValueError, IndexError, TypeError, RuntimeError) as exc:
                raise ValueError(
                    f"--tuning-db {seed}: {RECORD_FILE} line {n} is not a MetaSchedule record: {exc}"
                ) from None
            if got != want:
                raise ValueError(
                    f"--tuning-db {seed} was tuned for target {got!r}, not for this compile's {want!r}: "
                    "records of another target are never applied"
                )
    shutil.copyfile(workloads, records_dir / WORKLOAD_FILE)
    shutil.copyfile(records, records_dir / RECORD_FILE)
    database = ms.database.JSONDatabase(
        path_workload=str(records_dir / WORKLOAD_FILE), path_tuning_record=str(records_dir / RECORD_FILE)
    )
    theirs = _count_lines(records_dir / WORKLOAD_FILE)
    ours = sum(bool(database.has_workload(t.dispatched[0])) for t in tasks)
    if ours < theirs:
        raise ValueError(
            f"--tuning-db {seed} holds another model's tuning: {theirs - ours} of its {theirs} workloads "
            f"(structural hashes) are not tasks of this model ({len(tasks)} tasks); it is not applied"
        )
    summary_path = folder / SUMMARY_FILE
    previous = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    return {
        "source": str(seed),
        "records": _count_lines(records_dir / RECORD_FILE),
        "trials": int(previous.get("trials", count_trials(records_dir / RECORD_FILE))),
        "minutes": float(previous.get("minutes", 0.0)),
        "threads": previous.get("threads"),
        "timed_at_threads": previous.get("timed_at_threads"),
        **{key: previous[key] for key in SEED_RECORD if key in previous},
    }
