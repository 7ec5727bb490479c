"""Latency of each backend x precision for small student CNNs, against torch eager fp32.

For each student model: export from torch (dynamic batch), compile for ``x86`` with every
backend x precision (int8 calibrated on image crops from OpenCV's sample images, with 16
held out for fidelity), then time every package that passed fidelity and torch eager fp32
*in the same run*, round-robin (each timing in a fresh process), at batch 1 and batch 8 with
the same thread count.

    .venv/bin/python benchmarks/compile/bench_compile.py [--threads 2] [--rounds 3] [--json out.json]
        [--tune TRIALS --tune-minutes M]   # adds a MetaSchedule-tuned TVM row (tvm/fp32-tuned, batch 1 fixed)

Students (random init, seed 0; fidelity compares artifacts with the fp32 reference, so it
does not need trained weights):

* ``mobileface112``: MobileNetV2-style face classifier at 112x112 (width 0.5, 128-d
  embedding + 2-way face/non-face head), 0.42 M parameters.
* ``tinyface32``: a 32x32 low-resolution student (4 convs), 47 k parameters.

Hook for the face detector: add entries to ``STUDENTS`` (name -> function returning
``(torch module, (C, H, W))`` or ``(module, (C, H, W), output names)``); MTCNN's P/R/O-Net go
here once they land (P-Net at a fixed benchmark size, e.g. 3x532x768).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import lanner
from lanner.compile import FidelityError, TuningRequest, UnsupportedError, compile_model, export_torch
from lanner.compile.fidelity import measure_latency
from lanner.names import BACKENDS

SAMPLE_IMAGES = Path("/usr/share/doc/opencv-doc/examples/data")
IMAGE_NAMES = (
    "messi5.jpg",
    "baboon.jpg",
    "home.jpg",
    "fruits.jpg",
    "building.jpg",
    "lena.jpg",
    "aero1.jpg",
    "butterfly.jpg",
)
BUILDS = [(b, p) for b in BACKENDS for p in ("fp32", "fp16", "int8")]  # bf16: CPUs with BF16 only
PREPROCESSING = {"color": "rgb", "scale": 1 / 255, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "layout": "nchw"}


def mobileface112():
    import torch
    from torch import nn

    def conv_bn(cin, cout, k=3, s=1, groups=1, act=True):
        layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        return layers + ([nn.ReLU6(inplace=True)] if act else [])

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, stride, expand):
            super().__init__()
            hidden = cin * expand
            self.use_res = stride == 1 and cin == cout
            self.body = nn.Sequential(
                *conv_bn(cin, hidden, 1),
                *conv_bn(hidden, hidden, 3, stride, groups=hidden),
                *conv_bn(hidden, cout, 1, act=False),
            )

        def forward(self, x):
            return x + self.body(x) if self.use_res else self.body(x)

    class MobileFace(nn.Module):
        def __init__(self):
            super().__init__()
            cfg = [(16, 1, 1, 1), (24, 2, 2, 4), (32, 2, 2, 4), (64, 2, 2, 4), (96, 1, 1, 4), (128, 2, 2, 4)]
            layers, cin = conv_bn(3, 16, 3, 2), 16
            for cout, n, stride, expand in cfg:
                for i in range(n):
                    layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                    cin = cout
            layers += conv_bn(cin, 256, 1)
            self.features = nn.Sequential(*layers)
            self.embedding = nn.Linear(256, 128)
            self.head = nn.Linear(128, 2)

        def forward(self, x):
            f = self.features(x).mean(dim=(2, 3))
            return self.head(torch.relu(self.embedding(f)))

    torch.manual_seed(0)
    return MobileFace(), (3, 112, 112)


def tinyface32():
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, 1, 1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, 2, 1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 48, 3, 2, 1),
        nn.BatchNorm2d(48),
        nn.ReLU(),
        nn.Conv2d(48, 64, 3, 2, 1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 2),
    )
    return net, (3, 32, 32)


STUDENTS = {"mobileface112": mobileface112, "tinyface32": tinyface32}


def write_crops(folder: Path, size: int, count: int, seed: int = 0) -> None:
    """Random square crops of OpenCV's sample images (real image statistics for calibration)."""
    import cv2

    rng = np.random.default_rng(seed)
    images = [cv2.imread(str(SAMPLE_IMAGES / n)) for n in IMAGE_NAMES if (SAMPLE_IMAGES / n).is_file()]
    images = [im for im in images if im is not None]
    if not images:
        raise FileNotFoundError(f"no sample images in {SAMPLE_IMAGES} (Debian package opencv-doc)")
    for i in range(count):
        im = images[i % len(images)]
        side = int(rng.integers(size, max(size + 1, min(im.shape[:2]))))
        y = int(rng.integers(0, im.shape[0] - side + 1))
        x = int(rng.integers(0, im.shape[1] - side + 1))
        cv2.imwrite(str(folder / f"crop{i:03d}.png"), im[y : y + side, x : x + side])


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


TUNED = "tvm/fp32-tuned"


def bench_student(name: str, threads: int, rounds: int, work: Path, log, tuning: TuningRequest | None = None) -> dict:
    import torch

    torch.set_num_threads(threads)
    spec = STUDENTS[name]()
    net, chw = spec[0].eval(), spec[1]
    output_names = list(spec[2]) if len(spec) > 2 else ["logits"]
    onnx_path = export_torch(
        net,
        torch.randn(1, *chw),
        work / f"{name}.onnx",
        input_names=["image"],
        output_names=output_names,
        dynamic_axes={"image": {0: "batch"}, **{o: {0: "batch"} for o in output_names}},
    )
    calib = work / f"{name}-calib"
    calib.mkdir()
    write_crops(calib, chw[1], 80)
    rows: dict[str, dict] = {}
    packages = {}
    builds = [(b, p, f"{b}/{p}") for b, p in BUILDS] + ([("tvm", "fp32", TUNED)] if tuning else [])
    for backend, precision, key in builds:
        t0 = time.perf_counter()
        tuned = key == TUNED
        try:
            m = compile_model(
                onnx_path,
                target="x86",
                backend=backend,
                precision=precision,
                calib=calib,
                out=work / f"{name}-{key.replace('/', '-')}",
                task="classification",
                preprocessing=PREPROCESSING,
                num_threads=threads,
                # MetaSchedule tunes fixed shapes: the tuned package is batch 1 only
                input_shapes={"image": [1, *chw]} if tuned else None,
                tuning=tuning if tuned else None,
                progress=log if tuned else None,
            )
        except (UnsupportedError, FidelityError) as exc:
            rows[key] = {"status": type(exc).__name__, "reason": str(exc).splitlines()[0][:160]}
            log(f"{name} {key}: {rows[key]['status']}: {rows[key]['reason']}")
            continue
        worst = min(o["cosine_min"] for o in m.fidelity["outputs"].values())
        rows[key] = {
            "status": "ok",
            "compile_s": time.perf_counter() - t0,
            "cosine_min": worst,
            "top1": m.fidelity["top1_agreement"],
            "max_rel_error": max(o["max_rel_error"] for o in m.fidelity["outputs"].values()),
        }
        if tuned:
            summary = m.target_info["tuning"]
            rows[key].update(trials=summary["trials"], tuning_minutes=summary["minutes"])
        packages[key] = work / f"{name}-{key.replace('/', '-')}"
        log(f"{name} {key}: built in {rows[key]['compile_s']:.1f} s, cosine {worst:.5f}")

    timings: dict[str, dict[str, list[float]]] = {
        k: {"b1": [], "b8": [], "b1_min": []} for k in ["torch/fp32", *packages]
    }
    for r in range(rounds):  # round-robin so that drifting machine load hits every variant alike
        for key in timings:
            # One fresh process per measurement: idle worker threads of one runtime (TVM's pool,
            # ORT's spinning intra-op threads, OpenMP) must not steal the cores of another.
            what = ["--time-torch", name] if key == "torch/fp32" else ["--time-package", str(packages[key])]
            out = subprocess.run(
                [sys.executable, __file__, *what, "--threads", str(threads)], capture_output=True, text=True, check=True
            ).stdout
            for k, v in json.loads(out.strip().splitlines()[-1]).items():
                timings[key][k].append(v)
        log(f"{name}: timing round {r + 1}/{rounds} done")
    result = {"input": [1, *chw], "params": sum(p.numel() for p in net.parameters()), "variants": {}}
    eager1 = statistics.median(timings["torch/fp32"]["b1"])
    for key, t in timings.items():
        row = rows.get(key, {"status": "ok"})
        b1 = statistics.median(t["b1"])
        b8 = statistics.median(t["b8"]) if None not in t["b8"] else None
        row.update(batch1_ms=b1, batch8_ms=b8, batch1_min_ms=min(t["b1_min"]), speedup_vs_torch_b1=eager1 / b1)
        result["variants"][key] = row
    for key, row in rows.items():
        result["variants"].setdefault(key, row)
    return result


def markdown(results: dict, machine: str, threads: int) -> str:
    lines = [f"Machine: {machine}, {threads} threads. Batch-1 and batch-8 median latency (ms).", ""]
    for name, res in results.items():
        lines += [
            f"**{name}** (input {res['input']}, {res['params']:,} parameters)",
            "",
            "| variant | batch 1 ms (median) | batch 1 ms (min) | batch 8 ms | vs torch eager (b1) "
            "| min cosine | top-1 agree | note |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        ordered = ["torch/fp32"] + [f"{b}/{p}" for b, p in BUILDS] + [TUNED]
        for key in ordered:
            row = res["variants"].get(key)
            if row is None:
                continue
            if "batch1_ms" in row:
                cos = f"{row['cosine_min']:.5f}" if "cosine_min" in row else "ref"
                top1 = f"{row['top1']:.2f}" if row.get("top1") is not None else "-"
                b8 = "-" if row["batch8_ms"] is None else f"{row['batch8_ms']:.3f}"
                note = f"{row['trials']} trials, {row['tuning_minutes']:.1f} min tuning" if "trials" in row else ""
                lines.append(
                    f"| {key} | {row['batch1_ms']:.3f} | {row['batch1_min_ms']:.3f} | {b8} | "
                    f"{row['speedup_vs_torch_b1']:.2f}x | {cos} | {top1} | {note} |"
                )
            else:
                lines.append(f"| {key} | - | - | - | - | - | - | {row['status']}: {row['reason'][:90]} |")
        lines.append("")
    return "\n".join(lines)


def time_worker(args: argparse.Namespace) -> int:
    """Time one variant at batch 1 and 8 in this (fresh) process; print one JSON line."""
    if args.time_torch:
        import torch

        torch.set_num_threads(args.threads)
        spec = STUDENTS[args.time_torch]()
        net, chw = spec[0].eval(), spec[1]

        def make_run(x):
            t = torch.from_numpy(x)

            def run():
                with torch.inference_mode():
                    net(t)

            return run

        model = None
    else:
        model = lanner.load(args.time_package, num_threads=args.threads)
        chw = tuple(model.inputs[0].shape[1:])

        def make_run(x):
            return lambda: model.run({"image": x})

    rng = np.random.default_rng(1)
    b1 = measure_latency(make_run(rng.standard_normal((1, *chw)).astype(np.float32)), budget_s=1.0)
    fixed_batch = model is not None and model.inputs[0].shape[0] == 1  # a tuned package: batch 1 only
    b8 = (
        None
        if fixed_batch
        else measure_latency(make_run(rng.standard_normal((8, *chw)).astype(np.float32)), budget_s=1.0)
    )
    if model is not None:
        model.close()
    print(json.dumps({"b1": b1["median"], "b8": None if b8 is None else b8["median"], "b1_min": b1["min"]}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--students", nargs="+", default=list(STUDENTS), choices=list(STUDENTS))
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--tune", type=int, metavar="TRIALS", help="add a MetaSchedule-tuned TVM fp32 row")
    parser.add_argument("--tune-minutes", type=float, metavar="M", help="time budget per tuned model")
    parser.add_argument("--time-package", help=argparse.SUPPRESS)  # worker mode (one fresh process per timing)
    parser.add_argument("--time-torch", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time_package or args.time_torch:
        return time_worker(args)

    def log(line: str) -> None:
        print(f"[bench] {line}", file=sys.stderr, flush=True)

    machine = f"{cpu_model()} ({platform.machine()})"
    results = {}
    with tempfile.TemporaryDirectory(prefix="lanner-bench-") as tmp:
        for name in args.students:
            tuning = TuningRequest(args.tune, minutes=args.tune_minutes) if args.tune else None
            results[name] = bench_student(name, args.threads, args.rounds, Path(tmp), log, tuning)
    print(markdown(results, machine, args.threads))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "threads": args.threads, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
