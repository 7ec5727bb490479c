"""``lanner compile``: build a verified deployable package from an ONNX model."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..names import AUTO, BACKENDS, PRECISIONS
    from ..targets import TARGETS

    p = sub.add_parser(
        "compile",
        help="quantize/compile an ONNX model into a package for a target",
        description="Build the model for a target, check fidelity against the fp32 ONNX Runtime reference, "
        "measure latency, and write a package directory with manifest.json. "
        "Needs the compile extra: pip install 'lanner[compile]'.",
    )
    p.add_argument("model", help="path to the .onnx model")
    p.add_argument("--target", default="x86", choices=sorted(TARGETS), help="deployment target (default: x86)")
    p.add_argument(
        "--backend",
        default=AUTO,
        choices=(AUTO, *BACKENDS),
        help="backend, or auto: every one the target supports and is installed, fastest passing kept",
    )
    p.add_argument("--precision", default=AUTO, choices=(AUTO, *PRECISIONS))
    p.add_argument(
        "--calib",
        metavar="DIR",
        help="calibration folder: images or .npy/.npz arrays (needed for int8 of a float model)",
    )
    p.add_argument("--out", required=True, metavar="PACKAGE_DIR", help="package directory to write")
    p.add_argument("--name", help="model name (default: the file stem)")
    p.add_argument("--task", help='task, e.g. "classification" (enables top-1 agreement)')
    p.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME=D0,D1,...",
        help="override an input shape; use ? or a name for dynamic axes (repeatable)",
    )
    p.add_argument(
        "--sample-shape",
        action="append",
        default=[],
        metavar="NAME=D0,D1,...",
        help="concrete shape for random fidelity samples of an input with dynamic axes",
    )
    p.add_argument(
        "--preprocessing",
        metavar="JSON",
        help='preprocessing dict, e.g. \'{"size": [112, 112], "mean": [0.5,0.5,0.5], "std": [0.5,0.5,0.5]}\'',
    )
    p.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fidelity threshold override: min_cosine, max_rel_error, min_top1 (VALUE none disables)",
    )
    p.add_argument("--threads", type=int, help="CPU threads for the measurements")
    tune = p.add_argument_group("TVM tuning (MetaSchedule)")
    tune.add_argument(
        "--tune",
        type=int,
        metavar="TRIALS",
        help="tune the TVM candidate: measured trials (0 with --tuning-db: build from its records alone)",
    )
    tune.add_argument("--tune-minutes", type=float, metavar="M", help="time budget of the tune (stops after the batch)")
    tune.add_argument(
        "--tuning-db",
        metavar="DIR",
        help="seed the tune with a previous package's tuning/ (or a database folder) of the same model and target",
    )
    tune.add_argument(
        "--tune-threads",
        type=int,
        metavar="N",
        help="CPU threads each trial runs with here, besides 1 (default: the target's cores); "
        "the search and the builds between trials use them too; the package defaults to them",
    )
    tune.add_argument("--rpc", metavar="HOST:PORT", help="TVM RPC tracker: measure the trials on a remote device")
    tune.add_argument("--device-key", metavar="KEY", help="the device's key at the --rpc tracker")
    p.set_defaults(func=run)


def _shape(text: str, *, allow_dynamic: bool) -> tuple[str, tuple]:
    name, sep, dims = text.partition("=")
    if not sep or not name or not dims:
        raise ValueError(f"shape must look like NAME=1,3,112,112, got {text!r}")
    shape = []
    for d in dims.split(","):
        d = d.strip()
        if d.isdigit() and int(d) >= 1:
            shape.append(int(d))
        elif allow_dynamic and (d == "?" or d.isidentifier()):
            shape.append(None if d == "?" else d)
        else:
            what = "a size >= 1, ? or a name" if allow_dynamic else "a size >= 1"
            raise ValueError(f"bad dimension {d!r} in {text!r}: each should be {what}")
    return name, tuple(shape)


def _threshold(text: str) -> tuple[str, float | None]:
    name, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"threshold must look like NAME=VALUE, got {text!r}")
    return name, None if value.lower() == "none" else float(value)


def _tuning(args: argparse.Namespace):
    given = [
        f for f in ("tune_minutes", "tuning_db", "rpc", "device_key", "tune_threads") if getattr(args, f) is not None
    ]
    if args.tune is None:
        if given:
            flags = ", ".join("--" + f.replace("_", "-") for f in given)
            raise ValueError(f"{flags} only apply when tuning: add --tune TRIALS")
        return None
    from lanner.compile.tvm_tuning import TuningRequest

    return TuningRequest(
        trials=args.tune,
        minutes=args.tune_minutes,
        seed_database=args.tuning_db,
        rpc=args.rpc,
        device_key=args.device_key,
        threads=args.tune_threads,
    )


def run(args: argparse.Namespace) -> int:
    try:
        from lanner.compile import compile_model
        from lanner.compile.tvm_tuning import TuningInterrupted
    except ImportError as exc:
        raise ImportError(f"lanner compile needs the compile extra (pip install 'lanner[compile]'): {exc}") from exc
    try:
        return _compile(args, compile_model)
    except TuningInterrupted as exc:
        print(f"lanner compile: {exc}", file=sys.stderr)
        return 130


def _compile(args: argparse.Namespace, compile_model) -> int:
    manifest = compile_model(
        args.model,
        target=args.target,
        backend=args.backend,
        precision=args.precision,
        calib=args.calib,
        out=args.out,
        name=args.name,
        task=args.task,
        input_shapes=dict(_shape(s, allow_dynamic=True) for s in args.input_shape) or None,
        sample_shapes=dict(_shape(s, allow_dynamic=False) for s in args.sample_shape) or None,
        preprocessing=json.loads(args.preprocessing) if args.preprocessing else None,
        thresholds=dict(_threshold(t) for t in args.threshold) or None,
        num_threads=args.threads,
        progress=_progress,
        tuning=_tuning(args),
    )
    latency = manifest.latency_ms["median"] if manifest.latency_ms else None
    print(
        f"{args.out}: {manifest.backend}/{manifest.precision} for {manifest.target}"
        + (f", {latency:.3f} ms median at batch 1" if latency is not None else ", not measured on this host")
    )
    return 0


def _progress(line: str) -> None:
    print(f"[lanner compile] {line}", file=sys.stderr, flush=True)
