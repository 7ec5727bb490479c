"""Plots of a report (matplotlib, Agg backend, imported only here and only when used):
latency distributions per variant (box plots of every timed run, per batch size) and
p50 latency vs fidelity (worst output cosine similarity from the package manifest)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .report import fidelity_score

FIDELITY_FLOOR = 1e-9  # 1 - cosine below this (float rounding) is drawn at the floor of the log axis


def plot_report(report: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a PNG (or any format matplotlib infers from the suffix) for ``report``.

    Raises:
        ImportError: matplotlib is not installed (``pip install matplotlib``).
        ValueError: the report has no successful measurement to plot.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("--plot needs matplotlib, which is not installed: pip install matplotlib") from exc

    series = [
        (f"{v['name']} b{b['batch']}", b, v)
        for v in report["variants"]
        if v["status"] == "ok"
        for b in v["batches"]
        if b["status"] == "ok"
    ]
    if not series:
        raise ValueError("nothing to plot: no variant was measured successfully")
    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(13, max(4.0, 0.45 * len(series) + 2)), gridspec_kw={"width_ratios": [3, 2]}
    )
    labels = [s[0] for s in series]
    ax1.boxplot(
        [s[1]["samples_ms"] for s in series],
        vert=False,
        whis=(1, 99),
        showfliers=True,
        flierprops={"markersize": 2, "alpha": 0.4},
    )
    ax1.set_yticks(range(1, len(labels) + 1), labels)
    ax1.invert_yaxis()
    for i, s in enumerate(series, start=1):
        ax1.plot(s[1]["latency_ms"]["p99_ms"], i, marker="|", color="red", markersize=12)
    lo = min(min(s[1]["samples_ms"]) for s in series)
    hi = max(max(s[1]["samples_ms"]) for s in series)
    if lo > 0 and hi / lo > 20:  # long tails or very different variants: a log axis keeps both readable
        ax1.set_xscale("log")
    ax1.set_xlabel("latency per call (ms); box = p25-p75, whiskers p1-p99, red tick = p99")
    ax1.set_title("latency distribution")
    ax1.grid(axis="x", alpha=0.3)

    plotted = 0
    for v in report["variants"]:  # one point per variant: its smallest measured batch
        ok = [b for b in v.get("batches") or [] if b["status"] == "ok"]
        score = fidelity_score(v.get("fidelity"))
        if v["status"] != "ok" or not ok or score is None:
            continue
        b = min(ok, key=lambda b: b["batch"])
        passed = (v.get("fidelity") or {}).get("passed", True)
        gap = max(1.0 - score, FIDELITY_FLOOR)
        ax2.scatter(b["latency_ms"]["p50_ms"], gap, marker="o" if passed else "x", s=40)
        ax2.annotate(
            f"{v['name']} b{b['batch']}",
            (b["latency_ms"]["p50_ms"], gap),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
            rotation=20,
        )
        plotted += 1
    if plotted:
        ax2.set_xlabel("p50 latency (ms)")
        ax2.set_yscale("log")
        ax2.set_xscale("log")
        ax2.set_ylabel("1 - worst cosine vs fp32 reference (lower = closer)")
        ax2.set_title("latency vs fidelity (x = failed thresholds)")
        ax2.grid(alpha=0.3)
    else:
        ax2.text(0.5, 0.5, "no fidelity in the package manifests", ha="center", va="center")
        ax2.set_axis_off()
    fig.suptitle(f"lanner bench {report.get('created_utc')}: {report['machine'].get('cpu_model')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
