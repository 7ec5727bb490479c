"""The ``lanner bench`` report: its JSON schema, validation, and renderings (terminal
table with ratios, Markdown table, and the change between two reports).

Schema (``schema_version`` 1). Times are milliseconds, sizes bytes; ``null`` where not
measured. Keys are never removed within a schema version; additions bump nothing, and
readers must ignore unknown keys::

    {
      "schema_version": 1,
      "tool": "lanner bench",
      "created_utc": "2026-11-23T19:00:00Z",
      "command": [str, ...] | null,             # argv of the run
      "options": {backends, precisions, target, batches, threads, pin, runs, budget_s,
                  warmup, isolate, calib, baseline, seed, shapes, rounds},
      "machine": {hostname, os, arch, python, cpu_model, cpu_flags, cpu_key_flags,
                  logical_cores, usable_cores, mem_total_bytes, load_avg,
                  libraries: {dist: version | null}},
      "baseline": str | null,                   # variant name ratios are against
      "remote": null | {"rpc": "HOST:PORT", "device": str},   # --rpc runs; device = package target(s)
      "variants": [{
        "name": str, "kind": "package" | "factory" | "rpc", "source": str,
        "status": "ok" | "error", "error": str | null,
        "target": str | null, "backend": str | null, "precision": str | null,
        "fidelity": dict | null,                # the package manifest's fidelity report
        "toolchain": dict | null,               # manifest toolchain versions
        "artifact_bytes": int | null, "compile_s": float | null,
        "cold_start": {"load_ms", "first_run_ms", "total_ms", "batch"} | null,
        "memory": {"rss_before_load_bytes", "peak_rss_bytes"} | null,
        "batches": [{
          "batch": int, "status": "ok" | "error", "error": str (error only),
          "runs": int, "warmup": int,          # totals over rounds
          "rounds": int (only when options.rounds > 1),
          "latency_ms": {n, mean_ms, std_ms, min_ms, max_ms, p50_ms, p90_ms, p99_ms},
          "throughput_per_s": float,            # batch / mean latency
          "samples_ms": [float, ...],           # every timed run, in order
          "stages": null | {stage: {"mean_ms", "p50_ms", "p90_ms", "share"}}  # incl. "other"
        }, ...]
      }, ...]
    }

Ratios shown in tables are ``speedup = baseline p50 / variant p50`` at the same batch
(> 1 means faster than the baseline).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

_TOP_KEYS = ("schema_version", "tool", "created_utc", "command", "options", "machine", "baseline", "remote", "variants")
_VARIANT_KEYS = (
    "name",
    "kind",
    "source",
    "status",
    "error",
    "target",
    "backend",
    "precision",
    "fidelity",
    "toolchain",
    "artifact_bytes",
    "compile_s",
    "cold_start",
    "memory",
    "batches",
)


def new_entry(name: str, kind: str, source: str | None) -> dict[str, Any]:
    """A variant entry with every schema key: status ``ok``, nothing known or measured yet
    (``None``; no batches). Runs fill it in; one place keeps entries complete.

    Args:
        name: the variant's name.
        kind: ``package``, ``factory`` or ``rpc``.
        source: the package folder, factory spec or model it came from.

    Returns:
        A new dict, keys in schema order.
    """
    entry: dict[str, Any] = dict.fromkeys(_VARIANT_KEYS)
    entry.update(name=name, kind=kind, source=source, status="ok", batches=[])
    return entry


_BATCH_OK_KEYS = ("batch", "status", "runs", "warmup", "latency_ms", "throughput_per_s", "samples_ms", "stages")
_LATENCY_KEYS = ("n", "mean_ms", "std_ms", "min_ms", "max_ms", "p50_ms", "p90_ms", "p99_ms")
_MACHINE_KEYS = ("cpu_model", "cpu_flags", "logical_cores", "usable_cores", "mem_total_bytes", "libraries")


def validate_report(report: Mapping[str, Any]) -> None:
    """Check that ``report`` follows the schema above.

    Raises:
        ValueError: naming the first missing key or wrong type, with its path.
    """

    def need(obj: Any, keys: Sequence[str], where: str) -> None:
        if not isinstance(obj, Mapping):
            raise ValueError(f"{where}: expected an object, got {type(obj).__name__}")
        missing = [k for k in keys if k not in obj]
        if missing:
            raise ValueError(f"{where}: missing keys {missing}")

    need(report, _TOP_KEYS, "report")
    if report["schema_version"] != SCHEMA_VERSION:
        raise ValueError(
            f"report: schema_version {report['schema_version']!r} is not supported (expected {SCHEMA_VERSION})"
        )
    need(report["machine"], _MACHINE_KEYS, "report.machine")
    if not isinstance(report["variants"], list):
        raise ValueError("report.variants: expected a list")
    names = set()
    for i, v in enumerate(report["variants"]):
        where = f"report.variants[{i}]"
        need(v, _VARIANT_KEYS, where)
        if v["status"] not in ("ok", "error"):
            raise ValueError(f"{where}.status: expected 'ok' or 'error', got {v['status']!r}")
        if v["name"] in names:
            raise ValueError(f"{where}.name: duplicate variant name {v['name']!r}")
        names.add(v["name"])
        for j, b in enumerate(v["batches"]):
            bw = f"{where}.batches[{j}]"
            need(b, ("batch", "status"), bw)
            if b["status"] == "ok":
                need(b, _BATCH_OK_KEYS, bw)
                need(b["latency_ms"], _LATENCY_KEYS, bw + ".latency_ms")
                for k in _LATENCY_KEYS[1:]:
                    x = b["latency_ms"][k]
                    if not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0:
                        raise ValueError(f"{bw}.latency_ms.{k}: expected a finite number >= 0, got {x!r}")
                if len(b["samples_ms"]) != b["runs"]:
                    raise ValueError(f"{bw}: {len(b['samples_ms'])} samples for {b['runs']} runs")
    if report["baseline"] is not None and report["baseline"] not in names:
        raise ValueError(f"report.baseline {report['baseline']!r} is not a variant name")


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a report written by ``lanner bench --json``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not JSON, or not a valid report.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such report: {path}")
    try:
        report = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    try:
        validate_report(report)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return report


_NUMBER_LIST = re.compile(r"\[\s*(-?[0-9][-0-9.eE+]*(?:,\s*-?[0-9][-0-9.eE+]*)*)\s*\]")


def save_report(report: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Validate and write a report as indented JSON (lists of numbers on one line)."""
    validate_report(report)
    text = json.dumps(report, indent=1)
    text = _NUMBER_LIST.sub(lambda m: "[" + ",".join(x.strip() for x in m.group(1).split(",")) + "]", text)
    Path(path).write_text(text + "\n")


# -- rendering ----------------------------------------------------------------------------


def fidelity_summary(fidelity: Mapping[str, Any] | None) -> str:
    """One short cell: worst cosine over outputs, plus pass/FAIL when the manifest says.

    Returns ``"-"`` when the manifest has no fidelity report (e.g. built for another target).
    """
    if not fidelity:
        return "-"
    outs = fidelity.get("outputs") or {}
    cos = [o.get("cosine_min") for o in outs.values() if isinstance(o, Mapping) and o.get("cosine_min") is not None]
    text = f"cos {min(cos):.5f}" if cos else ""
    top1 = fidelity.get("top1_agreement")
    if top1 is not None:
        text += f" top1 {top1:.3f}"
    passed = fidelity.get("passed")
    if passed is not None:
        text += " ok" if passed else " FAIL"
    return text.strip() or "-"


def fidelity_score(fidelity: Mapping[str, Any] | None) -> float | None:
    """Worst cosine similarity over outputs (for plots), ``None`` when unknown."""
    if not fidelity:
        return None
    cos = [
        o.get("cosine_min")
        for o in (fidelity.get("outputs") or {}).values()
        if isinstance(o, Mapping) and o.get("cosine_min") is not None
    ]
    return min(cos) if cos else None


def _ok_batch(v: Mapping[str, Any], batch: int) -> Mapping[str, Any] | None:
    for b in v.get("batches") or []:
        if b["batch"] == batch and b["status"] == "ok":
            return b
    return None


def _fmt_ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" if x < 10 else f"{x:.2f}" if x < 100 else f"{x:.1f}"


def _fmt_mb(x: int | None) -> str:
    if x is None:
        return "-"
    mb = x / 2**20
    return f"{mb:.3f}" if mb < 1 else f"{mb:.1f}"


COLUMNS = (
    "variant",
    "batch",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "mean±std ms",
    "min ms",
    "max ms",
    "items/s",
    "speedup",
    "cold ms",
    "peak MB",
    "size MB",
    "fidelity",
)


def table_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """The report as table rows (strings), one per variant and batch, in ``COLUMNS`` order."""
    variants = report["variants"]
    base = next((v for v in variants if v["name"] == report.get("baseline")), None)
    rows = []
    for v in variants:
        if v["status"] != "ok":
            rows.append(
                [v["name"], "-", *(["-"] * (len(COLUMNS) - 4)), _fmt_mb(v.get("artifact_bytes")), "error (below)"]
            )
            continue
        for b in v["batches"]:
            if b["status"] != "ok":
                rows.append([v["name"], str(b["batch"]), *(["-"] * (len(COLUMNS) - 3)), "error (below)"])
                continue
            lat = b["latency_ms"]
            ref = _ok_batch(base, b["batch"]) if base is not None else None
            speed = f"{ref['latency_ms']['p50_ms'] / lat['p50_ms']:.2f}x" if ref and lat["p50_ms"] > 0 else "-"
            if v["name"] == report.get("baseline"):
                speed = "1.00x (base)"
            cold = v.get("cold_start") or {}
            mem = v.get("memory") or {}
            rows.append(
                [
                    v["name"],
                    str(b["batch"]),
                    _fmt_ms(lat["p50_ms"]),
                    _fmt_ms(lat["p90_ms"]),
                    _fmt_ms(lat["p99_ms"]),
                    f"{_fmt_ms(lat['mean_ms'])}±{_fmt_ms(lat['std_ms'])}",
                    _fmt_ms(lat["min_ms"]),
                    _fmt_ms(lat["max_ms"]),
                    f"{b['throughput_per_s']:.1f}" if b.get("throughput_per_s") else "-",
                    speed,
                    _fmt_ms(cold.get("total_ms")),
                    _fmt_mb(mem.get("peak_rss_bytes")),
                    _fmt_mb(v.get("artifact_bytes")),
                    fidelity_summary(v.get("fidelity")),
                ]
            )
    return rows


def error_lines(report: Mapping[str, Any]) -> list[str]:
    """One line per failed variant or batch: ``name [batch N]: message``."""
    out = []
    for v in report["variants"]:
        if v["status"] != "ok":
            out.append(f"{v['name']}: {_one_line(v.get('error'))}")
            continue
        out += [
            f"{v['name']} batch {b['batch']}: {_one_line(b.get('error'))}"
            for b in v.get("batches") or []
            if b["status"] != "ok"
        ]
    return out


def _one_line(text: str | None) -> str:
    return " ".join((text or "unknown error").split())


def stage_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """Per-stage breakdown rows ``[variant, batch, stage, mean ms, p50 ms, share]``."""
    rows = []
    for v in report["variants"]:
        for b in v.get("batches") or []:
            for stage, s in (b.get("stages") or {}).items():
                rows.append(
                    [
                        v["name"],
                        str(b["batch"]),
                        stage,
                        _fmt_ms(s["mean_ms"]),
                        _fmt_ms(s["p50_ms"]),
                        f"{100 * s['share']:.1f}%",
                    ]
                )
    return rows


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def machine_line(report: Mapping[str, Any]) -> str:
    """One line describing where and how the report was measured."""
    m, o = report["machine"], report["options"]
    flags = ",".join(m.get("cpu_key_flags") or [])
    libs = ", ".join(
        f"{k} {v}"
        for k, v in (m.get("libraries") or {}).items()
        if v and k in ("onnxruntime", "openvino", "apache-tvm", "torch")
    )
    runs = f"{o.get('runs')} runs" if o.get("runs") else f"budget {o.get('budget_s')} s/variant"
    if (o.get("rounds") or 1) > 1:
        runs += f" x {o['rounds']} rounds round-robin"
    return (
        f"{m.get('cpu_model')} ({m.get('usable_cores')}/{m.get('logical_cores')} cores, {flags}); "
        f"threads={o.get('threads') or 'default'}, pin={o.get('pin') or 'none'}, {runs}, "
        f"warm-up {o.get('warmup')}; load avg {m.get('load_avg')}; {libs}"
    )


def render_table(report: Mapping[str, Any]) -> str:
    """The terminal table (speedup = baseline p50 / variant p50), stage breakdown, machine line."""
    out = [_grid(COLUMNS, table_rows(report))]
    errors = error_lines(report)
    if errors:
        out += ["", "errors:", *(f"  {e}" for e in errors)]
    st = stage_rows(report)
    if st:
        out += ["", "per-stage breakdown:", _grid(("variant", "batch", "stage", "mean ms", "p50 ms", "share"), st)]
    remote = report.get("remote")
    where = f"remote {remote['rpc']} ({remote.get('device')}); host: " if remote else ""
    out += ["", f"baseline: {report.get('baseline')}; {where}{machine_line(report)}"]
    return "\n".join(out)


def render_markdown(report: Mapping[str, Any]) -> str:
    """A Markdown table (plus stage breakdown and machine line) ready for a README."""

    def md(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
        return [
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows),
        ]

    out = md(COLUMNS, table_rows(report))
    errors = error_lines(report)
    if errors:
        out += ["", *(f"- {e}" for e in errors)]
    st = stage_rows(report)
    if st:
        out += ["", *md(("variant", "batch", "stage", "mean ms", "p50 ms", "share"), st)]
    out += [
        "",
        f"Baseline `{report.get('baseline')}`; speedup = baseline p50 / variant p50. "
        f"Measured {report.get('created_utc')} on {machine_line(report)}.",
    ]
    if report.get("command"):
        out += ["", "Command: `" + " ".join(report["command"]) + "`"]
    return "\n".join(out) + "\n"


# -- compare ------------------------------------------------------------------------------

COMPARE_COLUMNS = (
    "variant",
    "batch",
    "p50 A ms",
    "p50 B ms",
    "change",
    "p99 A ms",
    "p99 B ms",
    "change p99",
    "verdict",
)


def compare_reports(a: Mapping[str, Any], b: Mapping[str, Any], *, threshold: float = 0.05) -> list[dict[str, Any]]:
    """Per (variant, batch) present in both reports, the relative change of p50 and p99.

    Args:
        a: the old report.
        b: the new report.
        threshold: relative p50 change beyond which a row is a regression/improvement.

    Returns:
        Rows ``{"variant", "batch", "p50_a", "p50_b", "p50_change", "p99_a", "p99_b",
        "p99_change", "verdict"}``; ``change = B / A - 1`` (positive = slower);
        ``verdict`` is ``"slower"``, ``"faster"``, ``"same"``, ``"only in A"`` or ``"only in B"``.
    """

    def index(r: Mapping[str, Any]) -> dict[tuple[str, int], Mapping[str, Any]]:
        return {
            (v["name"], bt["batch"]): bt["latency_ms"]
            for v in r["variants"]
            if v["status"] == "ok"
            for bt in v["batches"]
            if bt["status"] == "ok"
        }

    ia, ib = index(a), index(b)
    keys = list(ia) + [k for k in ib if k not in ia]
    rows = []
    for k in keys:
        la, lb = ia.get(k), ib.get(k)
        row: dict[str, Any] = {
            "variant": k[0],
            "batch": k[1],
            "p50_a": la and la["p50_ms"],
            "p50_b": lb and lb["p50_ms"],
            "p99_a": la and la["p99_ms"],
            "p99_b": lb and lb["p99_ms"],
            "p50_change": None,
            "p99_change": None,
        }
        if la is None or lb is None:
            row["verdict"] = "only in B" if la is None else "only in A"
        else:
            row["p50_change"] = lb["p50_ms"] / la["p50_ms"] - 1 if la["p50_ms"] > 0 else None
            row["p99_change"] = lb["p99_ms"] / la["p99_ms"] - 1 if la["p99_ms"] > 0 else None
            c = row["p50_change"] or 0.0
            row["verdict"] = "slower" if c > threshold else "faster" if c < -threshold else "same"
        rows.append(row)
    return rows


def setup_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """What differs between two reports' setups (options, CPU, cores, library versions), as
    ``"key: A -> B"`` strings, so a change in numbers can be told from a change in setup."""
    out = []
    for key in ("threads", "pin", "runs", "budget_s", "warmup", "rounds", "batches", "isolate"):
        va, vb = a["options"].get(key), b["options"].get(key)
        if va != vb:
            out.append(f"{key}: {va} -> {vb}")
    for key in ("cpu_model", "usable_cores", "arch"):
        va, vb = a["machine"].get(key), b["machine"].get(key)
        if va != vb:
            out.append(f"{key}: {va} -> {vb}")
    la, lb = a["machine"].get("libraries") or {}, b["machine"].get("libraries") or {}
    out += [f"{k}: {la.get(k)} -> {lb.get(k)}" for k in sorted(set(la) | set(lb)) if la.get(k) != lb.get(k)]
    if (a.get("remote") or {}).get("rpc") != (b.get("remote") or {}).get("rpc"):
        out.append(f"remote: {(a.get('remote') or {}).get('rpc')} -> {(b.get('remote') or {}).get('rpc')}")
    return out


def render_compare(a: Mapping[str, Any], b: Mapping[str, Any], *, threshold: float = 0.05) -> str:
    """Terminal table of :func:`compare_reports`, with both machines described."""
    pct = lambda c: "-" if c is None else f"{100 * c:+.1f}%"  # noqa: E731
    rows = [
        [
            r["variant"],
            str(r["batch"]),
            _fmt_ms(r["p50_a"]),
            _fmt_ms(r["p50_b"]),
            pct(r["p50_change"]),
            _fmt_ms(r["p99_a"]),
            _fmt_ms(r["p99_b"]),
            pct(r["p99_change"]),
            r["verdict"],
        ]
        for r in compare_reports(a, b, threshold=threshold)
    ]
    diffs = setup_differences(a, b)
    return "\n".join(
        [
            _grid(COMPARE_COLUMNS, rows),
            "",
            f"change = B/A - 1 (positive = slower); verdict threshold ±{100 * threshold:.0f}% on p50",
            *([f"setup differs: {'; '.join(diffs)}"] if diffs else []),
            f"A: {a.get('created_utc')} {machine_line(a)}",
            f"B: {b.get('created_utc')} {machine_line(b)}",
        ]
    )
