"""lanner.benchmarking: latency benchmarks for choosing a backend, precision and device.

The measurement core and the pipeline stage protocol live in :mod:`lanner.timing` (shared
with the compiler and the face detector); here: machine description (:mod:`.machine`),
per-variant runs (:mod:`.variants`, in a fresh process via :mod:`.worker`), orchestration
(:mod:`.runner`), the report schema and renderings (:mod:`.report`), plots (:mod:`.plot`) and TVM RPC (:mod:`.remote`).
The ``lanner bench`` command (``lanner.cli.bench``) is a thin layer over :func:`benchmark`.
"""

from __future__ import annotations

from ..timing import LatencyStats, RunPolicy, StagedPipeline, StageTimer, measure
from .report import (
    SCHEMA_VERSION,
    compare_reports,
    load_report,
    render_markdown,
    render_table,
    save_report,
    validate_report,
)
from .runner import BenchOptions, benchmark
from .variants import VariantJob, run_variant

__all__ = [
    "SCHEMA_VERSION",
    "BenchOptions",
    "benchmark",
    "LatencyStats",
    "RunPolicy",
    "measure",
    "StageTimer",
    "StagedPipeline",
    "VariantJob",
    "run_variant",
    "compare_reports",
    "load_report",
    "save_report",
    "render_table",
    "render_markdown",
    "validate_report",
]
