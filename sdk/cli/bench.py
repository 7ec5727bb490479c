"""``lanner bench``: latency of compiled packages (or an ONNX model compiled on the fly for
several backends x precisions), side by side, with ratios, memory, size and fidelity.

    lanner bench MODEL.onnx|PACKAGE_DIR... [--backends openvino,tvm,onnxruntime]
                 [--precisions fp32,int8 --calib DIR] [--target x86] [--batch 1,8]
                 [--threads N] [--pin 0,1] [--runs N | --budget-s S] [--baseline NAME]
                 [--json F] [--md F] [--plot F] [--rpc HOST:PORT]
    lanner bench [SOURCES...] --pipeline face [--image IMG]     # MTCNN per-stage breakdown
    lanner bench compare OLD.json NEW.json [--threshold 0.05]
    lanner bench show REPORT.json [--md F] [--plot F]            # re-render a saved report

The default baseline for ratios is the first variant (for an ONNX model: the first
backend x precision; an ONNX graph cannot be run in torch eager without onnx2torch,
which Lanner does not depend on); ``--baseline NAME`` picks another. Progress goes to
stderr, the table to stdout. See benchmarks/compile/BENCH.md for the JSON schema.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..benchmarking.pipelines import PIPELINES
from ..names import BACKENDS


def _csv(kind: type, what: str):
    def parse(text: str):
        try:
            items = tuple(kind(x.strip()) for x in text.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}: expected a comma-separated list, got {text!r}") from None
        if not items:
            raise argparse.ArgumentTypeError(f"{what}: empty list")
        return items

    return parse


def _shape(text: str) -> tuple[str, tuple[int, ...]]:
    name, sep, dims = text.partition("=")
    try:
        parsed = tuple(int(d) for d in dims.lower().split("x"))
    except ValueError:
        parsed = ()
    if not sep or not name or not parsed or min(parsed) < 1:
        raise argparse.ArgumentTypeError(f"--shape expects NAME=D0xD1x... (e.g. image=1x3x112x112), got {text!r}")
    return name, parsed


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark packages / backends x precisions side by side",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "sources",
        nargs="*",
        metavar="MODEL.onnx|PACKAGE_DIR",
        help="ONNX models (compiled on the fly) and/or package directories; or `compare A.json B.json`",
    )
    p.add_argument(
        "--backends",
        type=_csv(str, "--backends"),
        default=None,
        help="backends to compile ONNX models for (default: openvino,onnxruntime,tvm; "
        "for --pipeline: those it supports)",
    )
    p.add_argument(
        "--precisions",
        type=_csv(str, "--precisions"),
        default=("fp32",),
        help="precisions to compile ONNX models at (default: fp32; int8 needs --calib)",
    )
    p.add_argument("--target", default="x86", help="compile target for ONNX models (default: x86)")
    p.add_argument("--calib", help="calibration data for int8 (folder of images or .npy/.npz)")
    p.add_argument("--batch", type=_csv(int, "--batch"), default=(1,), help="batch sizes, e.g. 1,8 (default: 1)")
    p.add_argument(
        "--pipeline",
        choices=tuple(PIPELINES),
        help="also time a pipeline per backend x precision, with a per-stage breakdown "
        "(face: lanner.FaceDetector, MTCNN)",
    )
    p.add_argument("--image", help="input image for --pipeline (default: its bundled sample)")
    p.add_argument(
        "--factory",
        action="append",
        default=[],
        metavar="NAME=MODULE:FUNC",
        help="add a variant built by a Python factory (e.g. a torch eager baseline or a pipeline "
        "implementing the stage protocol); FUNC may also be in a file: NAME=path.py:FUNC",
    )
    p.add_argument(
        "--factory-kwargs",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="keyword arguments for factory NAME, as a JSON object",
    )
    p.add_argument(
        "--shape",
        type=_shape,
        action="append",
        default=[],
        help="full shape for an input with dynamic non-batch dims: NAME=D0xD1x... (repeatable)",
    )
    p.add_argument("--threads", type=int, help="inference threads (default: backend default)")
    p.add_argument("--pin", type=_csv(int, "--pin"), help="CPU ids to pin to (os.sched_setaffinity), e.g. 0,1")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--runs", type=int, help="exact timed runs per variant and batch")
    g.add_argument(
        "--budget-s",
        type=float,
        default=2.0,
        help="time budget per variant and batch; the run count adapts (default: 2 s)",
    )
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up runs (default: 5)")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure all variants N times round-robin and pool the samples (default: 1); "
        "spreads a shared machine's load drift over every variant",
    )
    p.add_argument("--baseline", help="variant name to compute speedups against (default: the first)")
    p.add_argument(
        "--in-process",
        action="store_true",
        help="measure in this process (faster; cold start and memory are then not isolated)",
    )
    p.add_argument("--keep-packages", metavar="DIR", help="keep packages compiled from ONNX here")
    p.add_argument("--rpc", metavar="HOST:PORT", help="run TVM packages on a remote tvm.exec.rpc_server")
    p.add_argument(
        "--rpc-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="keep trying to connect to the RPC server for S seconds (default: 30)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: 0)")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON (schema_version 1)")
    p.add_argument("--md", metavar="FILE", help="write a Markdown table")
    p.add_argument("--plot", metavar="FILE", help="write latency distributions and latency vs fidelity (PNG)")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.05,
        help="compare: relative p50 change that counts as slower/faster (default: 0.05)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


class _ProgressBar:
    """A one-line progress bar on stderr (redrawn in place on a terminal, else silent)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.say_enabled = enabled
        self._last = 0.0

    def say(self, line: str) -> None:
        if self.say_enabled:
            self.clear()
            print(line, file=sys.stderr, flush=True)

    def update(self, variant: str, label: str, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or (done < total and now - self._last < 0.1):
            return
        self._last = now
        width = 30
        filled = int(width * done / max(total, 1))
        sys.stderr.write(f"\r  {variant} {label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}\x1b[K")
        sys.stderr.flush()

    def clear(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _compare(args: argparse.Namespace) -> int:
    from ..benchmarking.report import load_report, render_compare

    if len(args.sources) != 3:
        raise ValueError(f"usage: lanner bench compare OLD.json NEW.json (got {len(args.sources) - 1} files)")
    a, b = load_report(args.sources[1]), load_report(args.sources[2])
    print(render_compare(a, b, threshold=args.threshold))
    return 0


def _factory_jobs(args: argparse.Namespace) -> list:
    import json

    from ..benchmarking import VariantJob

    kwargs: dict[str, dict] = {}
    for item in args.factory_kwargs:
        name, sep, text = item.partition("=")
        try:
            value = json.loads(text) if sep else None
        except json.JSONDecodeError:
            value = None
        if not name or not isinstance(value, dict):
            raise ValueError(f"--factory-kwargs expects NAME={{json object}}, got {item!r}")
        kwargs[name] = value
    jobs = []
    for item in args.factory:
        name, sep, spec = item.partition("=")
        if not sep or not name or ":" not in spec:
            raise ValueError(f"--factory expects NAME=MODULE:FUNC or NAME=path.py:FUNC, got {item!r}")
        jobs.append(VariantJob(name=name, kind="factory", source=spec, factory_kwargs=kwargs.pop(name, {})))
    if kwargs:
        raise ValueError(f"--factory-kwargs for unknown factories {sorted(kwargs)}")
    return jobs


def _show(args: argparse.Namespace) -> int:
    from ..benchmarking.report import load_report, render_table

    if len(args.sources) != 2:
        raise ValueError(
            f"usage: lanner bench show REPORT.json [--md F] [--plot F] (got {len(args.sources) - 1} files)"
        )
    report = load_report(args.sources[1])
    print(render_table(report))
    _write_outputs(report, args)
    return 0


def _check_outputs(args: argparse.Namespace, inputs: list[str]) -> None:
    """Check --json / --md / --plot before any measurement (they were first looked at after the whole run)."""
    from .media import OutputPaths

    paths = OutputPaths([Path(p) for p in inputs if Path(p).is_file()])
    for option, attr, kind in (("--json", "json", "json"), ("--md", "md", "markdown"), ("--plot", "plot", "plot")):
        if getattr(args, attr):
            setattr(args, attr, paths.file(getattr(args, attr), kind, option))


def _write_outputs(report: dict, args: argparse.Namespace) -> None:
    from ..benchmarking.report import render_markdown, save_report
    from .media import atomic_path

    if args.json:
        with atomic_path(args.json) as temp:
            save_report(report, temp)
    if args.md:
        with atomic_path(args.md) as temp:
            temp.write_text(render_markdown(report))
    if args.plot:
        from ..benchmarking.plot import plot_report

        with atomic_path(args.plot) as temp:
            plot_report(report, temp)


def run(args: argparse.Namespace) -> int:
    if args.sources[:1] == ["compare"]:
        return _compare(args)
    _check_outputs(args, args.sources[1:] if args.sources[:1] == ["show"] else args.sources)
    if args.sources[:1] == ["show"]:
        return _show(args)
    from ..benchmarking import BenchOptions, benchmark
    from ..benchmarking.report import render_table
    from ..timing import RunPolicy

    shapes = dict(args.shape)
    bar = _ProgressBar(not args.quiet)
    command = ["lanner", "bench", *sys.argv[2:]] if sys.argv[1:2] == ["bench"] else None
    extra = _factory_jobs(args)
    if args.pipeline:
        from ..benchmarking.runner import pipeline_jobs

        if args.image:  # one clear error before any variant is built (each would record it as its failure)
            from .._paths import existing_file
            from .media import read_image

            read_image(existing_file(args.image, "image file"))

        extra += pipeline_jobs(args.pipeline, args.backends, args.precisions, args.image)
    backends = tuple(args.backends) if args.backends else BACKENDS
    opts = BenchOptions(
        backends=backends,
        precisions=tuple(args.precisions),
        target=args.target,
        batches=tuple(args.batch),
        threads=args.threads,
        pin=args.pin,
        runs=args.runs,
        budget_s=args.budget_s,
        warmup=args.warmup,
        isolate=not args.in_process,
        calib=args.calib,
        baseline=args.baseline,
        seed=args.seed,
        shapes=shapes,
        rounds=args.rounds,
    )
    if args.rpc:
        from ..benchmarking.remote import parse_address, rpc_report

        parse_address(args.rpc)
        opts.validate()
        if extra or any(str(src).endswith(".onnx") for src in args.sources):
            raise ValueError("--rpc measures TVM package directories only (compile with --backend tvm first)")
        if not args.sources:
            raise ValueError("--rpc needs at least one TVM package directory")
        report = rpc_report(
            list(args.sources),
            args.rpc,
            options={**opts.to_dict(), "rpc": args.rpc},
            policy=RunPolicy(warmup=opts.warmup, runs=opts.runs, budget_s=opts.budget_s),
            batches=opts.batches,
            seed=opts.seed,
            shapes=shapes,
            baseline=opts.baseline,
            command=command,
            progress=bar.update,
            connect_timeout_s=args.rpc_timeout,
        )
    else:
        report = benchmark(
            args.sources,
            opts,
            keep_packages=args.keep_packages,
            say=bar.say,
            progress=bar.update,
            command=command,
            extra_jobs=extra,
        )
    bar.clear()
    print(render_table(report))
    _write_outputs(report, args)
    failed = [v["name"] for v in report["variants"] if v["status"] != "ok"]
    return 1 if failed and len(failed) == len(report["variants"]) else 0
