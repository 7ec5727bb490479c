"""Lanner's one way to time code: warm-up, an adaptive number of timed runs, order statistics
with one percentile definition, and per-stage timing of a pipeline.

Every timed region is bracketed by two reads of a monotonic nanosecond clock
(``time.perf_counter_ns`` unless a fake clock is injected for tests). Input data is
created by the caller before the timed loop, so it is never part of a measurement.
The compile pipeline's manifest latency, ``lanner bench``'s report, the face detector's
stage times and ``lanner models build --select`` all go through this module, so their
numbers agree for the same sample.

The stage protocol, which pipelines implement so that ``lanner bench`` can break their
latency down (preprocessing, each network, NMS/post-processing, other): a pipeline opts in
by exposing, after each call, the time its stages took *in that call*::

    class MyPipeline:
        def __init__(self):
            self.timer = StageTimer()

        @property
        def stage_times_ns(self) -> Mapping[str, int]:
            return self.timer.last

        def run(self, image):
            with self.timer.run():                  # starts a fresh record for this call
                with self.timer.stage("preprocess"):
                    x = prepare(image)
                with self.timer.stage("pnet"):
                    y = pnet(x)
                with self.timer.stage("nms"):
                    return nms(y)

Rules the benchmark relies on:

* ``stage_times_ns`` maps a stage name to integer nanoseconds spent in it during the most
  recent call only (a stage entered twice in one call, e.g. one network per pyramid scale,
  accumulates); stage names are free text, listed in first-seen order.
* Stages must not overlap; the benchmark reports ``other = total - sum(stages)`` (glue
  code, Python overhead), so a pipeline need not time everything.
* Reading ``stage_times_ns`` happens outside the timed region, and the timer itself costs
  two ``perf_counter_ns`` calls per stage (~100 ns).

Objects without ``stage_times_ns`` are timed as one block.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

Clock = Callable[[], int]
"""A zero-argument callable returning monotonic time in integer nanoseconds."""

#: Percentiles reported for every latency distribution (in percent).
PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0)


@dataclass(frozen=True)
class RunPolicy:
    """How many runs to time.

    Attributes:
        warmup: untimed runs before measuring (caches, lazy allocation, JIT, thread pools).
        runs: exact number of timed runs; ``None`` means "as many as fit in ``budget_s``".
        budget_s: time budget in seconds for the timed runs when ``runs`` is ``None``. The
            count is ``clamp(budget_s / estimated_latency, min_runs, max_runs)``, where the
            estimate is the median of the warm-up runs.
        min_runs: lower bound on the adaptive count (p99 needs ~100 to mean anything).
        max_runs: upper bound on the adaptive count.
    """

    warmup: int = 5
    runs: int | None = None
    budget_s: float = 2.0
    min_runs: int = 10
    max_runs: int = 10_000

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.runs is not None and self.runs < 1:
            raise ValueError(f"runs must be >= 1, got {self.runs}")
        if not (self.budget_s > 0 and math.isfinite(self.budget_s)):
            raise ValueError(f"budget_s must be a positive number of seconds, got {self.budget_s}")
        if not 1 <= self.min_runs <= self.max_runs:
            raise ValueError(f"need 1 <= min_runs <= max_runs, got {self.min_runs} and {self.max_runs}")

    def run_count(self, estimate_ns: float) -> int:
        """Number of timed runs for a call that takes about ``estimate_ns`` nanoseconds.

        Args:
            estimate_ns: estimated latency of one call (ns); non-positive means unknown/instant.

        Returns:
            ``runs`` when fixed, else the budget divided by the estimate, clamped to
            ``[min_runs, max_runs]``.
        """
        if self.runs is not None:
            return self.runs
        if estimate_ns <= 0:
            return self.max_runs
        fit = int(self.budget_s * 1e9 // estimate_ns)
        return max(self.min_runs, min(self.max_runs, fit))


@dataclass(frozen=True)
class LatencyStats:
    """Summary of a latency sample, all times in milliseconds.

    Percentiles use linear interpolation between order statistics (NumPy's default
    ``method="linear"``, Hyndman & Fan type 7): with sorted sample ``x[0..n-1]`` the
    p-th percentile is ``x[h] + (h - floor(h)) * (x[floor(h)+1] - x[floor(h)])`` where
    ``h = (n - 1) * p / 100``. ``std`` is the sample standard deviation (ddof=1; 0 for n=1).
    """

    n: int
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @classmethod
    def from_ns(cls, samples_ns: Sequence[int] | np.ndarray) -> LatencyStats:
        """Summarise per-run latencies given in nanoseconds.

        Args:
            samples_ns: one latency per timed run, integer or float nanoseconds, length >= 1.

        Returns:
            The statistics in milliseconds.

        Raises:
            ValueError: if the sample is empty or holds a negative or non-finite value.
        """
        x = np.asarray(samples_ns, dtype=np.float64)
        if x.ndim != 1 or x.size == 0:
            raise ValueError(f"need a non-empty 1-D sample of latencies, got shape {x.shape}")
        if not np.all(np.isfinite(x)) or np.any(x < 0):
            raise ValueError("latencies must be finite and non-negative")
        ms = x / 1e6
        p50, p90, p99 = np.percentile(ms, PERCENTILES)
        return cls(
            n=int(ms.size),
            mean_ms=float(ms.mean()),
            std_ms=float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
            min_ms=float(ms.min()),
            max_ms=float(ms.max()),
            p50_ms=float(p50),
            p90_ms=float(p90),
            p99_ms=float(p99),
        )

    def to_dict(self) -> dict[str, float | int]:
        """The statistics as a JSON-ready dict (keys as in the report schema)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Measurement:
    """Raw result of :func:`measure`.

    Attributes:
        samples_ns: int64 array ``(n,)``, latency of each timed run in nanoseconds.
        warmup_ns: int64 array ``(warmup,)``, latency of each warm-up run.
        stage_samples_ns: per pipeline stage, an int64 array ``(n,)`` aligned with
            ``samples_ns`` (empty when the callable reports no stages).
    """

    samples_ns: np.ndarray
    warmup_ns: np.ndarray
    stage_samples_ns: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def stats(self) -> LatencyStats:
        """Latency statistics of the timed runs."""
        return LatencyStats.from_ns(self.samples_ns)


def measure(
    fn: Callable[[], object],
    policy: RunPolicy,
    *,
    clock: Clock = time.perf_counter_ns,
    stage_times: Callable[[], Mapping[str, int]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Measurement:
    """Time ``fn()`` after warm-up, for a fixed count or an adaptive count of runs.

    Args:
        fn: the call to time, with its inputs already bound (no data creation inside).
        policy: warm-up and run-count policy.
        clock: monotonic integer-nanosecond clock; injectable for tests.
        stage_times: called after each timed run; returns that run's per-stage times in ns
            (the pipeline stage protocol, see :mod:`lanner.benchmarking.stages`).
        progress: called as ``progress(done, total)`` after each timed run.

    Returns:
        The raw :class:`Measurement`.
    """
    warm = np.empty(policy.warmup, dtype=np.int64)
    for i in range(policy.warmup):
        t0 = clock()
        fn()
        warm[i] = clock() - t0
    if policy.runs is None and policy.warmup == 0:
        # No warm-up to estimate from: time one extra (discarded) call to size the run.
        t0 = clock()
        fn()
        estimate = float(clock() - t0)
    else:
        estimate = float(np.median(warm)) if warm.size else 0.0
    n = policy.run_count(estimate)
    samples = np.empty(n, dtype=np.int64)
    stages: dict[str, np.ndarray] = {}
    for i in range(n):
        t0 = clock()
        fn()
        samples[i] = clock() - t0
        if stage_times is not None:
            for name, ns in stage_times().items():
                if name not in stages:
                    stages[name] = np.zeros(n, dtype=np.int64)
                stages[name][i] = int(ns)
        if progress is not None:
            progress(i + 1, n)
    return Measurement(samples_ns=samples, warmup_ns=warm, stage_samples_ns=stages)


def time_once(fn: Callable[[], object], *, clock: Clock = time.perf_counter_ns) -> tuple[object, int]:
    """Call ``fn()`` once and return ``(result, elapsed_ns)``."""
    t0 = clock()
    out = fn()
    return out, clock() - t0


#: Name of the derived remainder stage in reports.
OTHER = "other"


@runtime_checkable
class StagedPipeline(Protocol):
    """Anything with a ``stage_times_ns`` mapping describing its last call."""

    @property
    def stage_times_ns(self) -> Mapping[str, int]: ...


class StageTimer:
    """Accumulates per-stage wall time (``time.perf_counter_ns``) for one call at a time.

    ``last`` holds the stage times of the most recently *finished* call (a call is
    bracketed by :meth:`run`); stages timed outside :meth:`run` accumulate into the
    current record until the next :meth:`run` starts.

    Thread safety: not thread-safe; one timer per pipeline call in flight (``run_cascade``
    makes one per call). ``RunPolicy``, ``LatencyStats`` and ``Measurement`` are frozen
    and safe to share.
    """

    def __init__(self) -> None:
        self._current: dict[str, int] = {}
        self._running = False
        self.last: dict[str, int] = {}

    @contextmanager
    def run(self) -> Iterator[None]:
        """Bracket one pipeline call: starts a fresh record, publishes it as ``last``."""
        self._current, self._running = {}, True
        try:
            yield
        finally:
            self._running = False
            self.last = self._current

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the ``with`` block and add it to stage ``name`` of the current call.

        Args:
            name: the stage name (e.g. ``"preprocess"``, ``"pnet"``, ``"nms"``).

        Raises:
            ValueError: if ``name`` is empty or is the reserved ``"other"``.
        """
        if not name or name == OTHER:
            raise ValueError(f"stage name must be non-empty and not {OTHER!r}, got {name!r}")
        t0 = time.perf_counter_ns()
        try:
            yield
        finally:
            self._current[name] = self._current.get(name, 0) + time.perf_counter_ns() - t0
            if not self._running:
                self.last = self._current
