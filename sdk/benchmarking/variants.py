"""One variant's measurement: load (cold start), then latency per batch size, peak memory
and per-stage times. Runs in-process; :mod:`lanner.benchmarking.worker` runs it in a fresh
process so that cold start is really cold and memory and thread pools are not shared.

A variant is described by a JSON-ready :class:`VariantJob` so it can cross a process
boundary:

* ``kind="package"``: a compiled package directory, loaded with ``lanner.load``.
* ``kind="factory"``: ``"module:function"`` or ``"/path/file.py:function"`` returning an
  object with ``run(inputs)`` and either ``inputs`` (specs with name/shape/dtype) or
  ``example_inputs(batch, rng)``; it may implement the stage protocol
  (:mod:`lanner.timing`). Used for eager baselines and pipelines.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..timing import OTHER, LatencyStats, RunPolicy, measure
from .machine import current_rss_bytes, peak_rss_bytes, reset_peak_rss
from .report import new_entry

Progress = Callable[[str, int, int], None]
SAMPLE_DECIMALS = 4  # per-call samples kept in the report at 0.1 us (ms with 4 decimals)


@dataclass(frozen=True)
class VariantJob:
    """What to measure for one variant (JSON-ready; see module docstring).

    Attributes:
        name: display name, unique in a report.
        kind: ``"package"`` or ``"factory"``.
        source: package directory or factory spec ``"module:function"``.
        batches: batch sizes to time, each >= 1.
        policy: warm-up and run-count policy, as ``RunPolicy`` fields.
        threads: inference threads (passed to ``lanner.load(num_threads=...)`` or to the
            factory as ``num_threads``); ``None`` leaves the backend default.
        pin: CPU ids for ``os.sched_setaffinity``; ``None`` leaves the affinity alone.
        seed: seed of the random input data.
        factory_kwargs: extra keyword arguments for the factory.
        shapes: overrides for dynamic input dims, ``{input_name: [dims]}`` (batch dim included).
    """

    name: str
    kind: str
    source: str
    batches: tuple[int, ...] = (1,)
    policy: Mapping[str, Any] = field(default_factory=dict)
    threads: int | None = None
    pin: tuple[int, ...] | None = None
    seed: int = 0
    factory_kwargs: Mapping[str, Any] = field(default_factory=dict)
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("package", "factory"):
            raise ValueError(f"variant kind must be 'package' or 'factory', got {self.kind!r}")
        if not self.batches or any(int(b) < 1 for b in self.batches):
            raise ValueError(f"batch sizes must be >= 1, got {list(self.batches)}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (tuples become lists)."""
        d = asdict(self)
        d["policy"] = dict(self.policy)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VariantJob:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["batches"] = tuple(int(b) for b in d.get("batches", (1,)))
        if d.get("pin") is not None:
            d["pin"] = tuple(int(c) for c in d["pin"])
        d["shapes"] = {k: tuple(v) for k, v in (d.get("shapes") or {}).items()}
        return cls(**d)


def _field(obj: Any, name: str, default: Any = None) -> Any:
    """Attribute or mapping item ``name`` of ``obj`` (manifests may be either)."""
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _jsonable(obj: Any) -> Any:
    """Best-effort conversion of manifest parts (dataclasses, paths, NumPy) to JSON types."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "to_dict"):
        return _jsonable(obj.to_dict())
    if hasattr(obj, "__dataclass_fields__"):
        return _jsonable(asdict(obj))
    return str(obj)


def dir_size_bytes(path: str | os.PathLike) -> int:
    """Total size of the regular files under ``path`` (a file's own size for a file)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def package_metadata(package_dir: str | os.PathLike, manifest: Any) -> dict[str, Any]:
    """Report fields taken from a package's manifest: target, backend, precision, fidelity,
    toolchain versions and artifact size."""
    return {
        "target": _jsonable(_field(manifest, "target")),
        "backend": _jsonable(_field(manifest, "backend")),
        "precision": _jsonable(_field(manifest, "precision")),
        "fidelity": _jsonable(_field(manifest, "fidelity")),
        "toolchain": _jsonable(_field(manifest, "toolchain") or _field(manifest, "toolchain_versions")),
        "artifact_bytes": dir_size_bytes(package_dir),
    }


def _dims(shape: Any) -> list[Any]:
    return list(shape) if shape is not None else []


def _is_fixed(d: Any) -> bool:
    return isinstance(d, (int, np.integer)) and int(d) >= 0


def make_inputs(
    specs: Any, batch: int, rng: np.random.Generator, shapes: Mapping[str, tuple[int, ...]] | None = None
) -> dict[str, np.ndarray]:
    """Random inputs for a model's input specs at a batch size.

    Dim 0 is the batch dim: a dynamic one takes ``batch``; a fixed one must equal ``batch``.
    Other dims must be fixed or given in ``shapes``. Floats are standard normal, integers
    uniform in [0, 10), booleans uniform.

    Args:
        specs: sequence of objects/mappings with ``name``, ``shape``, ``dtype``.
        batch: the batch size.
        rng: random generator (seeded by the caller).
        shapes: full shapes overriding the specs, ``{name: dims}``.

    Returns:
        ``{name: array}``.

    Raises:
        ValueError: a fixed batch dim differs from ``batch``, or a non-batch dim is dynamic.
    """
    shapes = shapes or {}
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        name = _field(spec, "name")
        dtype = np.dtype(_field(spec, "dtype") or "float32")
        if name in shapes:
            dims = [int(d) for d in shapes[name]]
        else:
            dims = _dims(_field(spec, "shape"))
            if dims:
                if _is_fixed(dims[0]) and int(dims[0]) != batch:
                    raise ValueError(
                        f"input {name!r} has a fixed batch dim of {int(dims[0])}, cannot run batch {batch} "
                        "(compile with a dynamic or matching batch)"
                    )
                dims[0] = batch
            bad = [i for i, d in enumerate(dims) if not _is_fixed(d)]
            if bad:
                raise ValueError(
                    f"input {name!r} has dynamic dims {bad} in shape {_field(spec, 'shape')}; "
                    f"give them with --shape {name}=D0xD1x..."
                )
            dims = [int(d) for d in dims]
        if dtype.kind == "f":
            arr = rng.standard_normal(dims).astype(dtype)
        elif dtype.kind in "iu":
            arr = rng.integers(0, 10, size=dims).astype(dtype)
        elif dtype.kind == "b":
            arr = rng.integers(0, 2, size=dims).astype(bool)
        else:
            raise ValueError(f"input {name!r}: unsupported dtype {dtype}")
        feeds[name] = arr
    return feeds


def _load_factory(spec: str) -> Callable[..., Any]:
    mod_name, sep, func = spec.rpartition(":")
    if not sep or not mod_name or not func:
        raise ValueError(f"factory must be 'module:function' or 'path.py:function', got {spec!r}")
    if mod_name.endswith(".py"):
        path = Path(mod_name)
        if not path.is_file():
            raise FileNotFoundError(f"factory file not found: {path}")
        mspec = importlib.util.spec_from_file_location(f"_lanner_bench_{path.stem}", path)
        module = importlib.util.module_from_spec(mspec)
        assert mspec.loader is not None
        mspec.loader.exec_module(module)
    else:
        module = importlib.import_module(mod_name)
    try:
        return getattr(module, func)
    except AttributeError:
        raise ValueError(f"factory {spec!r}: {mod_name} has no attribute {func!r}") from None


def _stage_summary(stage_ns: Mapping[str, np.ndarray], total_ns: np.ndarray) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    if not stage_ns:
        return out
    accounted = np.zeros_like(total_ns)
    for name, ns in stage_ns.items():
        accounted += ns
        out[name] = _stage_stats(ns, total_ns)
    out[OTHER] = _stage_stats(np.maximum(total_ns - accounted, 0), total_ns)
    return out


def _stage_stats(ns: np.ndarray, total_ns: np.ndarray) -> dict[str, float]:
    s = LatencyStats.from_ns(ns)
    return {
        "mean_ms": s.mean_ms,
        "p50_ms": s.p50_ms,
        "p90_ms": s.p90_ms,
        "share": float(ns.sum() / max(int(total_ns.sum()), 1)),
    }


def run_variant(job: VariantJob, progress: Progress | None = None) -> dict[str, Any]:
    """Measure one variant in this process.

    Returns:
        The variant's report entry (see the schema in ``benchmarks/compile/BENCH.md``):
        ``status="ok"`` with measurements, or ``status="error"`` with ``error`` text when
        loading or running failed (per-batch failures are recorded per batch).
    """
    entry = new_entry(job.name, job.kind, job.source)
    if job.pin is not None:
        os.sched_setaffinity(0, set(job.pin))
    policy = RunPolicy(**job.policy)
    reset_peak_rss()
    rss0 = current_rss_bytes()
    t0 = time.perf_counter_ns()
    try:
        if job.kind == "package":
            from .. import load  # the package loader (lanner.load)

            model = load(job.source, num_threads=job.threads)
            entry.update(package_metadata(job.source, getattr(model, "manifest", None)))
        else:
            kwargs = dict(job.factory_kwargs)
            if job.threads is not None:
                kwargs.setdefault("num_threads", job.threads)
            model = _load_factory(job.source)(**kwargs)
            for key in ("target", "backend", "precision", "fidelity", "artifact_bytes"):
                entry[key] = _jsonable(getattr(model, key, None))
    except Exception as exc:  # noqa: BLE001 -- one variant failing must not stop the others
        entry.update(status="error", error=f"load failed: {type(exc).__name__}: {exc}")
        return entry
    load_ns = time.perf_counter_ns() - t0
    rng = np.random.default_rng(job.seed)
    run = model.run
    stage_src = model if hasattr(model, "stage_times_ns") else None

    def inputs_for(batch: int) -> Any:
        if hasattr(model, "example_inputs"):
            return model.example_inputs(batch, rng)
        return make_inputs(model.inputs, batch, rng, job.shapes)

    batches: list[dict[str, Any]] = []
    cold: dict[str, Any] | None = None
    for batch in job.batches:
        try:
            feeds = inputs_for(batch)
        except Exception as exc:  # noqa: BLE001
            batches.append({"batch": batch, "status": "error", "error": f"{type(exc).__name__}: {exc}"})
            continue
        try:
            if cold is None:
                t1 = time.perf_counter_ns()
                run(feeds)
                first_ns = time.perf_counter_ns() - t1
                cold = {
                    "load_ms": load_ns / 1e6,
                    "first_run_ms": first_ns / 1e6,
                    "total_ms": (load_ns + first_ns) / 1e6,
                    "batch": batch,
                }
            cb = None if progress is None else (lambda d, n, b=batch: progress(f"batch {b}", d, n))
            m = measure(
                lambda feeds=feeds: run(feeds),
                policy,
                progress=cb,
                stage_times=(lambda: stage_src.stage_times_ns) if stage_src is not None else None,
            )
        except Exception as exc:  # noqa: BLE001
            batches.append({"batch": batch, "status": "error", "error": f"run failed: {type(exc).__name__}: {exc}"})
            continue
        stats = m.stats
        batches.append(
            {
                "batch": batch,
                "status": "ok",
                "runs": stats.n,
                "warmup": int(m.warmup_ns.size),
                "latency_ms": stats.to_dict(),
                "throughput_per_s": batch * 1e3 / stats.mean_ms if stats.mean_ms > 0 else None,
                "samples_ms": [round(v / 1e6, SAMPLE_DECIMALS) for v in m.samples_ns.tolist()],
                "stages": _stage_summary(m.stage_samples_ns, m.samples_ns) or None,
            }
        )
    entry["cold_start"] = cold
    entry["memory"] = {"rss_before_load_bytes": rss0, "peak_rss_bytes": peak_rss_bytes()}
    entry["batches"] = batches
    if not any(b["status"] == "ok" for b in batches):
        entry["status"] = "error"
        entry["error"] = "; ".join(f"batch {b['batch']}: {b['error']}" for b in batches)
    close = getattr(model, "close", None)
    if callable(close):
        close()
    return entry
