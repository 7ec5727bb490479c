"""Fidelity of a compiled artifact against the fp32 reference, and its latency.

Metrics per output, over held-out samples (flattened per sample, then aggregated):

* ``cosine_min``: the lowest cosine similarity between artifact and reference outputs;
* ``max_abs_error``: the largest absolute difference;
* ``max_rel_error``: ``max_abs_error`` divided by the largest absolute reference value;
* ``top1_agreement`` (classifiers only: ``task="classification"``): the fraction of rows
  whose arg-max over the last axis agrees with the reference.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lanner.timing import Clock, LatencyStats, RunPolicy, measure

__all__ = [
    "FidelityThresholds",
    "DEFAULT_THRESHOLDS",
    "FidelityError",
    "compare",
    "failures",
    "measure_latency",
    "latency_summary",
]


class FidelityError(ValueError):
    """A compiled artifact disagrees with the fp32 reference beyond the thresholds."""

    def __init__(self, message: str, report: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.report = dict(report)


@dataclass(frozen=True)
class FidelityThresholds:
    """Pass/fail limits; ``None`` skips a check.

    Attributes:
        min_cosine: lowest allowed per-sample cosine similarity (every output).
        max_rel_error: highest allowed max-abs error relative to the reference's max |value|.
        min_top1: lowest allowed top-1 agreement (classifiers only).
    """

    min_cosine: float | None = 0.9999
    max_rel_error: float | None = 0.01
    min_top1: float | None = 0.95

    def replace(self, overrides: Mapping[str, float | None]) -> FidelityThresholds:
        """A copy with some fields replaced.

        Raises:
            ValueError: an unknown field name.
        """
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown fidelity thresholds {unknown}; expected some of {sorted(names)}")
        return dataclasses.replace(self, **overrides)


# Defaults per precision (documented in lanner.compile.compile_model): fp32 artifacts differ
# from the reference only by operator order and fused kernels; int8 by quantization noise.
DEFAULT_THRESHOLDS: dict[str, FidelityThresholds] = {
    "fp32": FidelityThresholds(min_cosine=0.9999, max_rel_error=0.01, min_top1=0.95),
    "fp16": FidelityThresholds(min_cosine=0.999, max_rel_error=0.05, min_top1=0.9),
    # bf16 keeps fp32's range but only 8 mantissa bits (~2.4 significant digits), fp16 has 11.
    "bf16": FidelityThresholds(min_cosine=0.999, max_rel_error=0.05, min_top1=0.9),
    "int8": FidelityThresholds(min_cosine=0.98, max_rel_error=0.25, min_top1=0.85),
}


def compare(
    references: Sequence[Sequence[np.ndarray]],
    outputs: Sequence[Sequence[np.ndarray]],
    output_names: Sequence[str],
    *,
    classifier: bool,
) -> dict[str, Any]:
    """Compare artifact outputs with reference outputs.

    Args:
        references: per sample, the reference outputs in output order.
        outputs: per sample, the artifact outputs in the same order.
        output_names: names for the report.
        classifier: also compute top-1 agreement on the first output.

    Returns:
        ``{"samples": n, "outputs": {name: {"cosine_min", "cosine_mean", "max_abs_error",
        "max_rel_error"}}, "top1_agreement": float | None}``.
    """
    per_output: dict[str, Any] = {}
    for k, name in enumerate(output_names):
        cosines, max_abs, ref_max = [], 0.0, 0.0
        for ref_s, out_s in zip(references, outputs):
            ref = np.asarray(ref_s[k], dtype=np.float64).ravel()
            out = np.asarray(out_s[k], dtype=np.float64).ravel()
            if ref.shape != out.shape:
                raise ValueError(f"output {name!r}: artifact gives {out.size} values, reference {ref.size}")
            denom = float(np.linalg.norm(ref) * np.linalg.norm(out))
            cosines.append(float(ref @ out) / denom if denom > 0 else float(np.array_equal(ref, out)))
            max_abs = max(max_abs, float(np.max(np.abs(ref - out), initial=0.0)))
            ref_max = max(ref_max, float(np.max(np.abs(ref), initial=0.0)))
        per_output[name] = {
            "cosine_min": min(cosines),
            "cosine_mean": float(np.mean(cosines)),
            "max_abs_error": max_abs,
            "max_rel_error": max_abs / ref_max if ref_max > 0 else max_abs,
        }
    top1 = None
    if classifier:
        agree = total = 0
        for ref_s, out_s in zip(references, outputs):
            ref_arg = np.asarray(ref_s[0]).reshape(-1, np.asarray(ref_s[0]).shape[-1]).argmax(axis=-1)
            out_arg = np.asarray(out_s[0]).reshape(-1, np.asarray(out_s[0]).shape[-1]).argmax(axis=-1)
            agree += int(np.sum(ref_arg == out_arg))
            total += ref_arg.size
        top1 = agree / total
    return {"samples": len(references), "outputs": per_output, "top1_agreement": top1}


def failures(report: Mapping[str, Any], thresholds: FidelityThresholds) -> list[str]:
    """The human-readable list of threshold violations (empty = pass)."""
    problems = []
    for name, m in report["outputs"].items():
        if thresholds.min_cosine is not None and m["cosine_min"] < thresholds.min_cosine:
            problems.append(f"output {name!r}: cosine similarity {m['cosine_min']:.6f} < {thresholds.min_cosine}")
        if thresholds.max_rel_error is not None and m["max_rel_error"] > thresholds.max_rel_error:
            problems.append(
                f"output {name!r}: max relative error {m['max_rel_error']:.4g} > {thresholds.max_rel_error} "
                f"(max abs error {m['max_abs_error']:.4g})"
            )
    top1 = report.get("top1_agreement")
    if top1 is not None and thresholds.min_top1 is not None and top1 < thresholds.min_top1:
        problems.append(f"top-1 agreement {top1:.3f} < {thresholds.min_top1}")
    return problems


def measure_latency(
    run: Callable[[], Any],
    *,
    warmup: int = 3,
    min_runs: int = 10,
    max_runs: int = 200,
    budget_s: float = 1.0,
    clock: Clock = time.perf_counter_ns,
) -> dict[str, float]:
    """Time ``run()`` with :func:`lanner.timing.measure`: ``warmup`` untimed calls, then as many
    timed calls as fit in ``budget_s`` seconds (estimated from the warm-up), at least
    ``min_runs`` and at most ``max_runs``. The statistics are :class:`lanner.timing.LatencyStats`
    (the percentile definition ``lanner bench`` reports), so a manifest's latency and a bench
    report's agree on the same sample.

    Args:
        run: the call to time.
        warmup, min_runs, max_runs, budget_s: the run policy (see :class:`lanner.timing.RunPolicy`).
        clock: monotonic integer-nanosecond clock (injectable for tests).

    Returns:
        ``{"median": ms, "p90": ms, "min": ms, "runs": n}``.
    """
    policy = RunPolicy(warmup=warmup, budget_s=budget_s, min_runs=min_runs, max_runs=max_runs)
    return latency_summary(measure(run, policy, clock=clock).stats)


def latency_summary(stats: LatencyStats) -> dict[str, float]:
    """The manifest's ``latency_ms`` keys from latency statistics (median is the p50)."""
    return {"median": stats.p50_ms, "p90": stats.p90_ms, "min": stats.min_ms, "runs": stats.n}
