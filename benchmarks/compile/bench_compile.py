"""Latency of each backend x precision for the student CNNs, tuned TVM among them, batch 1 at 1 and 2 threads.

For each student: compile for ``x86`` with every backend x precision, each package built for the
shape it is timed at, batch 1 (int8 calibrated on image crops from OpenCV's sample images, with 16
held out for fidelity; at fp32 a shipped int8 QDQ file is held to ``lanner.models.QDQ_FIDELITY``, the
bar its registry package is built against), optionally a MetaSchedule-tuned TVM package
(``tvm/fp32-tuned`` or, with ``--tune-precision int8``, ``tvm/int8-tuned``), then time every
package that passed fidelity (and torch eager fp32 for the torch-defined students) *in the same
run*: round-robin over rounds and thread counts, each timing in a fresh process.

    .venv/bin/python benchmarks/compile/bench_compile.py [--students ...] [--threads 1,2] [--rounds 5]
        [--tune TRIALS --tune-minutes M] [--tuning-db DIR] [--tune-only] [--phase build|time|profile|all --work DIR]

* ``--tuning-db DIR``: per-student MetaSchedule databases in ``DIR/<student>``: each tuned build
  is seeded from there (``--tune 0`` builds from the records alone) and its database written back.
* ``--tune-only``: build only the tuned package (tuning ahead of a timed run; no timing); with
  ``--work``, the variants already built there are kept, so a re-tune is timed beside them.
* ``--phase build`` compiles into ``--work DIR``; ``--phase time`` times what is there (run it
  with background jobs paused: the builds do not need a quiet machine, the timings do).
* On a CPU with AMX int8 tiles, every OpenVINO package is also timed with oneDNN held to AVX512-VNNI
  (``ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI``; row ``... (AVX512-VNNI)``): OpenVINO's int8 convolutions run on AMX
  there and TVM 0.27's on VNNI (it has no AMX tensor intrinsic). The row is reported beside the verdict, never
  taken as the fastest.
* ``--phase profile`` times each kernel of the tuned TVM packages in ``--work`` one by one (their records
  built again as VM bytecode, whose calls can be instrumented), at each of ``--threads``, and each layer of
  the OpenVINO packages there by its performance counters (on AMX CPUs also held to AVX512-VNNI), with the
  oneDNN kernel that ran it: kernel against kernel.

Students. Torch-defined (random init, seed 0; fidelity compares artifacts with the fp32
reference, so it does not need trained weights), with a torch eager row:

* ``mobileface112``: MobileNetV2-style face classifier at 112x112 (width 0.5, 128-d
  embedding + 2-way face/non-face head), 0.42 M parameters.
* ``tinyface32``: a 32x32 low-resolution student (4 convs), 47 k parameters.

Shipped with Lanner (``lanner.models``, the ONNX in the wheel, trained weights): ``mtcnn-pnet``
at 3x288x384 (the first pyramid level of a 640x480 frame at min_face_size 20), ``mtcnn-rnet``
(24x24), ``mtcnn-onet`` (48x48), ``face-student16`` (16x16), ``face-quality`` (32x32), ``face-student32`` (32x32),
``dlib-resnet-lowres`` (150x150, the bridge model).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
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
# fp16 is refused by OpenVINO/ONNX Runtime on this CPU and untuned TVM fp16 is no contender; bf16: BF16 CPUs only
BUILDS = [(b, p) for b in BACKENDS for p in ("fp32", "int8")]
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
# Shipped students (lanner.models registry name -> the fixed (C, H, W) they are timed at).
SHIPPED = {
    "mtcnn-pnet": (3, 288, 384),
    "mtcnn-rnet": (3, 24, 24),
    "mtcnn-onet": (3, 48, 48),
    "face-student16": (3, 16, 16),
    "face-quality": (3, 32, 32),
    "face-student32": (3, 32, 32),
    "dlib-resnet-lowres": (3, 150, 150),  # the bridge: the default recognizer of faces <= 20 px
}


def write_crops(folder: Path, size_hw: tuple[int, int], count: int, seed: int = 0) -> None:
    """Random crops of OpenCV's sample images with the input's aspect ratio (real image statistics
    for calibration)."""
    import cv2

    rng = np.random.default_rng(seed)
    images = [cv2.imread(str(SAMPLE_IMAGES / n)) for n in IMAGE_NAMES if (SAMPLE_IMAGES / n).is_file()]
    images = [im for im in images if im is not None]
    if not images:
        raise FileNotFoundError(f"no sample images in {SAMPLE_IMAGES} (Debian package opencv-doc)")
    aspect = size_hw[1] / size_hw[0]
    for i in range(count):
        im = images[i % len(images)]
        top = min(im.shape[0], int(im.shape[1] / aspect))
        h = int(rng.integers(min(size_hw[0], top), top + 1))
        w = min(im.shape[1], max(1, round(h * aspect)))
        y = int(rng.integers(0, im.shape[0] - h + 1))
        x = int(rng.integers(0, im.shape[1] - w + 1))
        cv2.imwrite(str(folder / f"crop{i:03d}.png"), im[y : y + h, x : x + w])


def to_arrays(folder: Path, size_hw: tuple[int, int], extra: dict[str, list[int]], seed: int = 0) -> None:
    """Turn the crops in ``folder`` into ``.npz`` samples for a model with inputs beside the image:
    the crop preprocessed as the image, and each extra input drawn from the face widths the
    quality model sees (8-64 px, seeded)."""
    import cv2

    from lanner.compile.calibration import preprocess_image

    rng = np.random.default_rng(seed)
    for crop in sorted(folder.glob("crop*.png")):
        sample = {"image": preprocess_image(cv2.imread(str(crop)), PREPROCESSING, size_hw)}
        sample.update({k: rng.uniform(8, 64, shape).astype(np.float32) for k, shape in extra.items()})
        np.savez(crop.with_suffix(".npz"), **sample)
        crop.unlink()


def has_amx() -> bool:
    """Whether this CPU has AMX int8 tiles (Linux's ``amx_int8`` flag)."""
    try:
        return " amx_int8" in Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


TUNED = "tvm/fp32-tuned"
TUNED_INT8 = "tvm/int8-tuned"  # integer convolutions (VNNI on AVX512-VNNI CPUs), lanner.compile.tvm_int8
TUNED_KEYS = {"fp32": TUNED, "int8": TUNED_INT8}
TORCH = "torch/fp32"
# On CPUs with AMX (Intel Xeon since Sapphire Rapids), OpenVINO's int8 convolutions run on AMX tiles, which TVM
# 0.27's tensor intrinsics do not use (its int8 schedules tensorize with AVX512-VNNI): each OpenVINO package is
# then also timed with oneDNN held to AVX512-VNNI, a row of its own that no verdict takes as "fastest".
VNNI_ONLY = " (AVX512-VNNI)"
ISA_CAP = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"}
OV_PROFILE_ROWS = 20  # the heaviest OpenVINO layers a profile table lists (the JSON has all)
BUILD_FILE = "builds.json"


def student_onnx(name: str, work: Path) -> dict:
    """The student as ONNX: its path, timed (C, H, W), parameter count, its inputs beside the image, the
    fidelity thresholds of its builds (None: lanner.compile's defaults) and whether it has a torch eager row."""
    if name in SHIPPED:
        import onnx

        import lanner.models

        path = lanner.models.onnx_path(name)
        params = sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer)
        chw = SHIPPED[name]
        inputs = lanner.models.get_spec(name).inputs
        # inputs beside the image (face-quality's face_width), at batch 1
        extra = {k: [1, *shape[1:]] for k, shape in inputs.items() if k != "image"}
        # at fp32 (which runs the file's own Q/DQ), an int8 QDQ file is held to the bar its registry package is
        # built against, not to the fp32 bar: another runtime's int8 kernels requantize with other rounding
        thresholds = lanner.models.QDQ_FIDELITY if lanner.models.get_spec(name).quantized else None
        return {
            "onnx": str(path),
            "chw": chw,
            "params": params,
            "thresholds": thresholds,
            "torch": False,
            "extra": extra,
        }
    import torch

    spec = STUDENTS[name]()
    net, chw = spec[0].eval(), spec[1]
    output_names = list(spec[2]) if len(spec) > 2 else ["logits"]
    path = export_torch(
        net,
        torch.randn(1, *chw),
        work / f"{name}.onnx",
        input_names=["image"],
        output_names=output_names,
        dynamic_axes={"image": {0: "batch"}, **{o: {0: "batch"} for o in output_names}},
    )
    params = sum(p.numel() for p in net.parameters())
    return {"onnx": str(path), "chw": chw, "params": params, "thresholds": None, "torch": True, "extra": {}}


def compile_variant(
    student: dict, folder: Path, backend: str, precision: str, out: Path, threads: int, tuning=None, progress=None
) -> lanner.Manifest:
    """``compile_model`` for one variant of ``student`` (:func:`student_onnx`), calibrated on ``folder/calib``."""
    chw = student["chw"]
    return compile_model(
        student["onnx"],
        target="x86",
        backend=backend,
        precision=precision,
        calib=folder / "calib",
        out=out,
        preprocessing={**PREPROCESSING, "size": list(chw[1:])},
        num_threads=threads,
        # every variant is built for the shape it is timed at (batch 1), as MetaSchedule tunes fixed shapes
        input_shapes={"image": [1, *chw], **student["extra"]},
        thresholds=student["thresholds"] if precision == "fp32" else None,
        tuning=tuning,
        progress=progress,
    )


def build_student(
    name: str,
    work: Path,
    threads: int,
    log,
    tune: tuple[int, float | None, int | None] | None,
    tuning_db: Path | None,
    tune_only: bool,
    tune_precision: str = "fp32",
) -> None:
    """Compile every variant of ``name`` into ``work/name`` and record them in ``builds.json``;
    ``tune`` = (trials, minutes, threads) adds the tuned TVM package at ``tune_precision``, seeded
    from ``tuning_db/name`` (fp32) or ``tuning_db/name-int8``. ``tune_only`` builds the tuned
    package alone and keeps the variants already built there."""
    folder = work / name
    tuned_key = TUNED_KEYS[tune_precision]
    db_name = name if tune_precision == "fp32" else f"{name}-{tune_precision}"
    kept: dict[str, dict] = {}
    if tune_only and (folder / BUILD_FILE).is_file():
        kept = json.loads((folder / BUILD_FILE).read_text(encoding="utf-8"))["variants"]
        kept.pop(tuned_key, None)
        shutil.rmtree(folder / tuned_key.replace("/", "-"), ignore_errors=True)
    elif folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    student = student_onnx(name, folder)
    chw = student["chw"]
    calib = folder / "calib"
    if not calib.is_dir():
        calib.mkdir()
        write_crops(calib, chw[1:], 80)
        if student["extra"]:
            to_arrays(calib, chw[1:], student["extra"])
    builds = [] if tune_only else [(b, p, f"{b}/{p}") for b, p in BUILDS]
    tuning = None
    if tune is not None:
        seed = tuning_db / db_name if tuning_db is not None and (tuning_db / db_name).exists() else None
        tuning = TuningRequest(
            tune[0], minutes=tune[1], seed_database=None if seed is None else str(seed), threads=tune[2]
        )
        builds.append(("tvm", tune_precision, tuned_key))
    rows: dict[str, dict] = dict(kept)
    for backend, precision, key in builds:
        t0 = time.perf_counter()
        tuned = key == tuned_key
        out = folder / key.replace("/", "-")
        try:
            m = compile_variant(
                student, folder, backend, precision, out, threads, tuning if tuned else None, log if tuned else None
            )
        except (UnsupportedError, FidelityError) as exc:
            rows[key] = {"status": type(exc).__name__, "reason": str(exc).splitlines()[0][:160]}
            log(f"{name} {key}: {rows[key]['status']}: {rows[key]['reason']}")
            continue
        rows[key] = {
            "status": "ok",
            "package": str(out),
            "compile_s": time.perf_counter() - t0,
            "cosine_min": min(o["cosine_min"] for o in m.fidelity["outputs"].values()),
            "max_rel_error": max(o["max_rel_error"] for o in m.fidelity["outputs"].values()),
        }
        if tuned:
            summary = m.target_info["tuning"]
            rows[key].update(
                trials=summary["trials"],
                tuning_minutes=summary["minutes"],
                tasks=summary["tasks"],
                threads=summary.get("threads"),
                task_plan=summary.get("task_plan", []),
            )
            if tuning_db is not None:
                kept = tuning_db / db_name
                if kept.exists():
                    shutil.rmtree(kept)
                shutil.copytree(out / "tuning", kept)
        log(f"{name} {key}: built in {rows[key]['compile_s']:.1f} s, cosine {rows[key]['cosine_min']:.5f}")
    if student["torch"]:
        rows = {TORCH: {"status": "ok"}, **{k: v for k, v in rows.items() if k != TORCH}}
    info = {"input": [1, *chw], "params": student["params"], "variants": rows}
    (folder / BUILD_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")


def time_student(name: str, work: Path, threads: list[int], rounds: int, log) -> dict:
    """Time every built variant of ``name`` at batch 1 for each thread count, round-robin."""
    result = json.loads((work / name / BUILD_FILE).read_text(encoding="utf-8"))
    timed = [k for k, row in result["variants"].items() if row["status"] == "ok"]
    if has_amx():
        for key in [k for k in timed if k.startswith("openvino/")]:
            row = result["variants"][key]
            result["variants"][key + VNNI_ONLY] = {**row, "isa_cap": ISA_CAP["ONEDNN_MAX_CPU_ISA"]}
            timed.append(key + VNNI_ONLY)
    samples: dict[tuple[str, int], dict[str, list[float]]] = {
        (k, t): {"b1": [], "b1_min": []} for k in timed for t in threads
    }
    for r in range(rounds):  # round-robin so that drifting machine load hits every variant alike
        for t in threads:
            for key in timed:
                # One fresh process per measurement: idle worker threads of one runtime (TVM's pool,
                # ORT's spinning intra-op threads, OpenMP) must not steal the cores of another.
                row = result["variants"][key]
                what = ["--time-torch", name] if key == TORCH else ["--time-package", row["package"]]
                env = {**os.environ, **ISA_CAP} if "isa_cap" in row else None
                out = subprocess.run(
                    [sys.executable, __file__, *what, "--threads", str(t)],
                    capture_output=True,
                    text=True,
                    check=True,
                    env=env,
                ).stdout
                for k, v in json.loads(out.strip().splitlines()[-1]).items():
                    samples[key, t][k].append(v)
        log(f"{name}: timing round {r + 1}/{rounds} done")
    for key in timed:
        row = result["variants"][key]
        row["batch1_ms"] = {str(t): statistics.median(samples[key, t]["b1"]) for t in threads}
        row["batch1_min_ms"] = {str(t): min(samples[key, t]["b1_min"]) for t in threads}
    return result


def markdown(results: dict, machine: str, threads: list[int]) -> str:
    lines = [f"Machine: {machine}. Batch 1, median of the per-round medians (ms); ratio = variant / fastest.", ""]
    for name, res in results.items():
        cols = "".join(f" {t} thread{'s' if t > 1 else ''} ms | vs fastest |" for t in threads)
        lines += [
            f"**{name}** (input {res['input']}, {res['params']:,} parameters)",
            "",
            f"| variant |{cols} min cosine | note |",
            "|---|" + "---:|---:|" * len(threads) + "---:|---|",
        ]
        capped = {k: r for k, r in res["variants"].items() if "batch1_ms" in r and "isa_cap" in r}
        timed = {k: r for k, r in res["variants"].items() if "batch1_ms" in r and k not in capped}
        fastest = {str(t): min(r["batch1_ms"][str(t)] for r in timed.values()) for t in threads}
        for key, row in res["variants"].items():
            label = f"{key} (untuned)" if key in ("tvm/fp32", "tvm/int8") else key
            if key in timed or key in capped:
                cells = "".join(
                    f" {row['batch1_ms'][str(t)]:.3f} | {row['batch1_ms'][str(t)] / fastest[str(t)]:.2f}x |"
                    for t in threads
                )
                cos = f"{row['cosine_min']:.5f}" if "cosine_min" in row else "ref"
                note = (
                    f"{row['trials']} trials over {row['tasks']} tasks, {row['tuning_minutes']:.1f} min tuning"
                    if "trials" in row
                    else ""
                )
                lines.append(f"| {label} |{cells} {cos} | {note} |")
            else:
                lines.append(
                    f"| {label} |" + " - | - |" * len(threads) + f" - | {row['status']}: {row['reason'][:90]} |"
                )
        for precision, tuned_key in TUNED_KEYS.items():
            if tuned_key not in timed:
                continue
            fp32 = {k: r for k, r in timed.items() if k.endswith("/fp32") or k == TUNED}
            # OpenVINO's rows replaced by their AVX512-VNNI timings: the instructions TVM's int8 kernels use
            vnni = {k: r for k, r in timed.items() if k + VNNI_ONLY not in capped} | capped
            pools = [("the fastest other variant", timed), ("the fastest other fp32 variant", fp32)]
            if capped:
                pools.append(("the fastest other variant, OpenVINO held to AVX512-VNNI (no AMX)", vnni))
            for label, pool in pools:
                if precision == "int8" and pool is fp32:
                    continue
                others = {k: r for k, r in pool.items() if k not in TUNED_KEYS.values()}
                verdicts = []
                for t in threads:
                    best = min(r["batch1_ms"][str(t)] for r in others.values())
                    ratio = timed[tuned_key]["batch1_ms"][str(t)] / best
                    verdict = "" if pool is vnni else f" ({'met' if ratio <= 1.5 else 'not met'})"
                    verdicts.append(f"{t} thread{'s' if t > 1 else ''} {ratio:.2f}x{verdict}")
                target = ", for reference (not issue 18's verdict)" if pool is vnni else ", target <= 1.5x"
                lines += ["", f"Tuned TVM {precision} vs {label}{target}: " + "; ".join(verdicts) + "."]
        lines.append("")
    return "\n".join(lines)


def timing_feed(model: lanner.Model) -> dict[str, np.ndarray]:
    """The batch-1 input every timing and profile feeds: a seeded random image; face widths (face-quality's
    second input) in pixels."""
    rng = np.random.default_rng(1)
    return {
        spec.name: (
            rng.standard_normal([1, *spec.shape[1:]])
            if spec.name == "image"
            else rng.uniform(8, 64, [1, *spec.shape[1:]])
        ).astype(np.float32)
        for spec in model.inputs
    }


def profile_student(name: str, work: Path, threads: list[int], log) -> dict:
    """Time each kernel of ``name``'s tuned TVM package(s) in ``work`` at each thread count.

    The package's own tuning records are built again (no trials) as Relax VM bytecode, whose calls
    ``VirtualMachine.set_instrument`` can time one by one (the packages run ``main`` as native code, which
    has no such hook; the kernels are the same). Per thread count: the whole call (median of 200, not
    instrumented) and each call's median over 50 instrumented runs, in microseconds.
    """
    from lanner.backends import tvm_backend
    from lanner.compile import tvm_build

    tvm = tvm_backend.import_toolchain()
    result = json.loads((work / name / BUILD_FILE).read_text(encoding="utf-8"))
    student = student_onnx(name, work / name)
    profiles = {}
    for precision, key in TUNED_KEYS.items():
        row = result["variants"].get(key)
        if row is None or row["status"] != "ok":
            continue
        out = work / name / f"{key.replace('/', '-')}-bytecode"
        shutil.rmtree(out, ignore_errors=True)
        mode, tvm_build.VM_EXEC_MODE = tvm_build.VM_EXEC_MODE, "bytecode"
        try:
            records = TuningRequest(0, seed_database=str(Path(row["package"]) / "tuning"))
            compile_variant(student, work / name, "tvm", precision, out, max(threads), records)
        finally:
            tvm_build.VM_EXEC_MODE = mode
        with lanner.load(str(out)) as model:
            feed = timing_feed(model)
        args = [tvm.runtime.tensor(array) for array in feed.values()]
        profiles[key] = {}
        for t in threads:
            tvm_backend.set_num_threads(t)
            vm = tvm.relax.VirtualMachine(tvm.runtime.load_module(str(out / "model.so")), tvm.cpu())
            whole = measure_latency(lambda vm=vm: vm["main"](*args), budget_s=1.0, max_runs=200)["median"]
            started: dict[str, int] = {}
            spans: dict[str, list[float]] = {}

            def instrument(func, symbol, before, ret, *rest, started=started, spans=spans):
                now = time.perf_counter_ns()
                if before:
                    started[symbol] = now
                else:
                    spans.setdefault(symbol, []).append((now - started[symbol]) / 1e3)
                return 0  # VMInstrumentReturnKind.NO_OP

            vm.set_instrument(instrument)
            for _ in range(50):
                vm["main"](*args)
            kernels = {k: statistics.median(v) for k, v in spans.items()}
            profiles[key][str(t)] = {
                "whole_call_ms": whole,
                "kernels_us": dict(sorted(kernels.items(), key=lambda kv: -kv[1])),
            }
            log(f"{name} {key}: {t} thread{'s' if t > 1 else ''}, whole call {whole:.3f} ms, {len(kernels)} kernels")
    for key, row in result["variants"].items():
        if not key.startswith("openvino/") or row["status"] != "ok":
            continue
        for capped in (False, True) if has_amx() else (False,):
            label = key + (VNNI_ONLY if capped else "")
            profiles[label] = {}
            for t in threads:
                # a fresh process each: oneDNN reads ONEDNN_MAX_CPU_ISA once, when it loads
                stdout = subprocess.run(
                    [sys.executable, __file__, "--profile-openvino", row["package"], "--threads", str(t)],
                    capture_output=True,
                    text=True,
                    check=True,
                    env={**os.environ, **ISA_CAP} if capped else None,
                ).stdout
                profiles[label][str(t)] = json.loads(stdout.strip().splitlines()[-1])
                whole = profiles[label][str(t)]["whole_call_ms"]
                log(f"{name} {label}: {t} thread{'s' if t > 1 else ''}, whole call {whole:.3f} ms")
    return profiles


def profile_openvino_worker(package: str, threads: int) -> int:
    """Each layer of one OpenVINO package timed by its CPU plugin's performance counters, in this (fresh)
    process, compiled as ``lanner.load`` compiles it: the whole call (median of 200, counters off), then each
    executed layer's median over 200 runs (us) and the kernel that ran it (oneDNN's implementation name, e.g.
    ``brgconv_avx512_amx_I8``); one JSON line."""
    from lanner.backends import ov_backend

    with lanner.load(package, num_threads=threads) as model:
        feed = timing_feed(model)
        whole = measure_latency(lambda: model.run(feed), budget_s=1.0, max_runs=200)["median"]
    manifest = lanner.Manifest.read(package)
    core = ov_backend.import_toolchain().Core()
    graph = core.read_model(
        str(manifest.artifact_path(Path(package), "model")), str(manifest.artifact_path(Path(package), "weights"))
    )
    config = ov_backend.compile_options(manifest.backend_options.get("inference_precision"), threads)
    request = core.compile_model(graph, "CPU", {**config, "PERF_COUNT": True}).create_infer_request()
    for _ in range(50):
        request.infer(feed)
    spans: dict[str, list[float]] = {}
    kernels: dict[str, str] = {}
    for _ in range(200):
        request.infer(feed)
        for info in request.profiling_info:
            if info.status == info.Status.EXECUTED:
                spans.setdefault(info.node_name, []).append(info.real_time.total_seconds() * 1e6)
                kernels[info.node_name] = f"{info.node_type}: {info.exec_type}"
    layers = dict(sorted(((k, statistics.median(v)) for k, v in spans.items()), key=lambda kv: -kv[1]))
    print(json.dumps({"whole_call_ms": whole, "layers_us": layers, "kernels": kernels}))
    return 0


def _cells(values) -> str:
    """Markdown table cells, one decimal."""
    return "".join(f" {v:.1f} |" for v in values)


def profile_markdown(profiles: dict, machine: str, threads: list[int]) -> str:
    lines = [
        f"Machine: {machine}. Batch 1. Tuned TVM: a bytecode build of each package's records, us per call, median of "
        f"50. OpenVINO: its performance counters, us per layer, median of 200 (the {OV_PROFILE_ROWS} heaviest).",
        "",
    ]
    for name, by_key in profiles.items():
        for key, by_threads in by_key.items():
            whole = " / ".join(f"{by_threads[str(t)]['whole_call_ms']:.3f}" for t in threads)
            openvino = "layers_us" in by_threads[str(threads[0])]  # its layers, with the kernel that ran each
            per_thread = [by_threads[str(t)]["layers_us" if openvino else "kernels_us"] for t in threads]
            lines += [
                f"**{name} {key}** (whole call {whole} ms at {' / '.join(map(str, threads))} threads)",
                "",
                f"| {'layer (kernel)' if openvino else 'kernel'} |"
                + "".join(f" {t} thread{'s' if t > 1 else ''} us |" for t in threads),
                "|---|" + "---:|" * len(threads),
            ]
            if openvino:  # the heaviest layers, then the rest summed
                kinds = by_threads[str(threads[0])]["kernels"]
                for layer in list(per_thread[0])[:OV_PROFILE_ROWS]:
                    row = _cells(d.get(layer, float("nan")) for d in per_thread)
                    lines.append(f"| `{layer}` ({kinds[layer]}) |{row}")
                others = max(0, len(per_thread[0]) - OV_PROFILE_ROWS)
                rest = _cells(sum(list(d.values())[OV_PROFILE_ROWS:]) for d in per_thread)
                total = _cells(sum(d.values()) for d in per_thread)
                lines += [f"| the other {others} layers |{rest}", f"| all layers |{total}"]
            else:
                for kernel in per_thread[0]:
                    lines.append(f"| `{kernel}` |{_cells(d.get(kernel, float('nan')) for d in per_thread)}")
            lines.append("")
    return "\n".join(lines)


def time_worker(args: argparse.Namespace) -> int:
    """Time one variant at batch 1 in this (fresh) process; print one JSON line."""
    threads = int(args.threads)
    if args.time_torch:
        import torch

        torch.set_num_threads(threads)
        spec = STUDENTS[args.time_torch]()
        net, chw = spec[0].eval(), spec[1]
        x = torch.from_numpy(np.random.default_rng(1).standard_normal((1, *chw)).astype(np.float32))

        def run():
            with torch.inference_mode():
                net(x)

        b1 = measure_latency(run, budget_s=1.0)
    else:
        with lanner.load(args.time_package, num_threads=threads) as model:
            feed = timing_feed(model)
            b1 = measure_latency(lambda: model.run(feed), budget_s=1.0)
    print(json.dumps({"b1": b1["median"], "b1_min": b1["min"]}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="thread counts timed in the same run, e.g. 1,2")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="timings per variant, round-robin; the median counts (5: one spell of load on this VM's second "
        "core, seconds long, can flip a 2-thread verdict read from 3)",
    )
    students = [*STUDENTS, *SHIPPED]
    parser.add_argument("--students", nargs="+", default=students, choices=students)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--tune", type=int, metavar="TRIALS", help="add a MetaSchedule-tuned TVM fp32 row")
    parser.add_argument("--tune-minutes", type=float, metavar="M", help="time budget per tuned model")
    parser.add_argument(
        "--tune-precision", choices=tuple(TUNED_KEYS), default="fp32", help="precision of the tuned TVM package"
    )
    parser.add_argument("--tune-threads", type=int, metavar="N", help="threads each trial runs with (default: cores)")
    parser.add_argument("--tuning-db", type=Path, metavar="DIR", help="per-student tuning databases (seed + result)")
    parser.add_argument(
        "--tune-only",
        action="store_true",
        help="build only the tuned package (keeping the other variants in --work); no timing",
    )
    parser.add_argument(
        "--phase",
        choices=("all", "build", "time", "profile"),
        default="all",
        help="profile: each kernel of the tuned TVM packages in --work timed one by one, and each layer of the "
        "OpenVINO packages (its performance counters)",
    )
    parser.add_argument("--work", type=Path, help="keep the packages here (needed by --phase build/time/profile)")
    parser.add_argument("--time-package", help=argparse.SUPPRESS)  # worker mode (one fresh process per timing)
    parser.add_argument("--time-torch", help=argparse.SUPPRESS)
    parser.add_argument("--profile-openvino", help=argparse.SUPPRESS)  # worker mode of the profile phase
    args = parser.parse_args()
    if args.time_package or args.time_torch:
        return time_worker(args)
    if args.profile_openvino:
        return profile_openvino_worker(args.profile_openvino, int(args.threads))
    threads = [int(t) for t in str(args.threads).split(",")]
    if args.phase != "all" and args.work is None:
        parser.error(f"--phase {args.phase} needs --work DIR (where the packages are kept between phases)")
    if args.tune_only and args.tune is None:
        parser.error("--tune-only needs --tune TRIALS")

    def log(line: str) -> None:
        print(f"[bench] {line}", file=sys.stderr, flush=True)

    machine = f"{cpu_model()} ({platform.machine()})"
    with tempfile.TemporaryDirectory(prefix="lanner-bench-") as tmp:
        work = args.work or Path(tmp)
        if args.phase in ("all", "build"):
            tune = None if args.tune is None else (args.tune, args.tune_minutes, args.tune_threads)
            for name in args.students:
                build_student(name, work, max(threads), log, tune, args.tuning_db, args.tune_only, args.tune_precision)
        if args.phase == "build" or args.tune_only:
            return 0
        if args.phase == "profile":
            profiles = {name: profile_student(name, work, threads, log) for name in args.students}
            print(profile_markdown(profiles, machine, threads))
            if args.json:
                args.json.write_text(
                    json.dumps({"machine": machine, "threads": threads, "profiles": profiles}, indent=2)
                )
            return 0
        results = {name: time_student(name, work, threads, args.rounds, log) for name in args.students}
    print(markdown(results, machine, threads))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "threads": threads, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
