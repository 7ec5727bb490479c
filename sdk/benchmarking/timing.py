"""Latency measurement: warm-up, an adaptive number of timed runs, and order statistics.

Every timed region is bracketed by two reads of a monotonic nanosecond clock
(``time.perf_counter_ns`` unless a fake clock is injected for tests). Input data is
created by the caller before the timed loop, so it is never part of a measurement.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

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
    def from_ns(cls, samples_ns: Sequence[int] | np.ndarray) -> "LatencyStats":
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
