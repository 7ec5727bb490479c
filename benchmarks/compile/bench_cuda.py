"""TVM on a CUDA GPU: untuned and MetaSchedule-tuned over TVM RPC, against PyTorch eager on the same model.

For each shipped fp32 model, at batch 1 and the shape it is timed at:

* ``tvm`` -- ``lanner.compile.compile_model(target=TARGET, backend="tvm")``: dlight's default GPU
  schedules. With a GPU present the compile holds the package to fidelity on the GPU (against
  ONNX Runtime CPU on the original ONNX) and times it, like a CPU package.
* ``tvm-tuned`` -- the same with ``tuning=TuningRequest(trials, minutes, rpc, device_key)``: every trial
  built here and measured on the GPU through a TVM RPC tracker and server this script starts on
  127.0.0.1 (the path a fleet of boards is tuned through; ``lanner compile --tune N --rpc HOST:PORT``).
* ``torch-eager`` -- the same ONNX converted by onnx2torch, run by PyTorch on the GPU (cuDNN, with
  ``cudnn.benchmark``), the reference a PyTorch user has. ONNX Runtime's CUDA execution provider is timed
  too where ``onnxruntime-gpu`` is installed.

Every row is timed the same way (``lanner.compile.fidelity.measure_latency``: warm-up, then runs for 1 s):
a NumPy array in, NumPy arrays out, host-device copies included.

    python benchmarks/compile/bench_cuda.py [--models rnet,onet,...] [--tune-models rnet,...]
        [--trials 64] [--tune-minutes 1.5] [--target cuda-sm90] [--json results.json]

Needs a CUDA GPU, Apache TVM (``lanner[compile]``), PyTorch with CUDA and onnx2torch.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import lanner
from lanner.compile import TuningRequest, compile_model
from lanner.compile.fidelity import measure_latency

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "support"))
from tvm_rpc import rpc_loopback  # noqa: E402  (the RPC tests' tracker + server on 127.0.0.1)

# name -> (registry model, fixed input shapes)
MODELS = {
    "mtcnn-pnet": ("mtcnn-pnet", {"image": (1, 3, 288, 384)}),  # first pyramid level of a 640x480 frame
    "mtcnn-rnet": ("mtcnn-rnet", {"image": (1, 3, 24, 24)}),
    "mtcnn-onet": ("mtcnn-onet", {"image": (1, 3, 48, 48)}),
    "face-quality": ("face-quality", {"image": (1, 3, 32, 32), "face_width": (1, 1)}),
    "dlib-resnet": ("dlib-resnet", {"image": (1, 3, 150, 150)}),  # the recognition teacher
}


def _feed(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feed = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
    if "face_width" in feed:
        feed["face_width"] = np.full(shapes["face_width"], 40.0, np.float32)
    return feed


def _torch_row(onnx_path: Path, feed: dict[str, np.ndarray], want: list[np.ndarray]) -> dict:
    import onnx
    import torch
    from onnx2torch import convert

    torch.backends.cudnn.benchmark = True
    model = convert(onnx.load(str(onnx_path))).eval().cuda()
    names = list(feed)

    @torch.no_grad()
    def run():
        out = model(*[torch.from_numpy(feed[n]).cuda() for n in names])
        out = out if isinstance(out, (list, tuple)) else [out]
        return [o.cpu().numpy() for o in out]

    got = run()
    err = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
    return {"latency_ms": measure_latency(run), "max_abs_error": err, "torch": torch.__version__}


def _ort_cuda_row(onnx_path: Path, feed: dict[str, np.ndarray]) -> dict | None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return None
    session = ort.InferenceSession(str(onnx_path), providers=["CUDAExecutionProvider"])
    return {"latency_ms": measure_latency(lambda: session.run(None, feed)), "onnxruntime": ort.__version__}


def _package_row(manifest) -> dict:
    row = {"latency_ms": manifest.latency_ms, "fidelity_passed": manifest.fidelity["passed"]}
    row["max_abs_error"] = max(o["max_abs_error"] for o in manifest.fidelity["outputs"].values())
    tuning = manifest.target_info.get("tuning")
    if tuning:
        row["tuning"] = {k: tuning[k] for k in ("trials", "minutes", "tasks", "measured_on") if k in tuning}
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--tune-models", default="mtcnn-rnet,mtcnn-onet,face-quality")
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--tune-minutes", type=float, default=1.5)
    ap.add_argument("--target", default="cuda-sm90")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from lanner.backends.tvm_backend import cuda_device_present

    if not cuda_device_present():
        print("no CUDA device visible to TVM: nothing to measure", file=sys.stderr)
        return 2
    import onnxruntime as ort
    import torch

    results: dict = {
        "machine": {
            "gpu": torch.cuda.get_device_name(0),
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "lanner": lanner.__version__,
        },
        "target": args.target,
        "models": {},
    }
    names = [m for m in args.models.split(",") if m]
    tune = {m for m in args.tune_models.split(",") if m}
    key = "bench-gpu"
    with tempfile.TemporaryDirectory(prefix="bench-cuda-") as tmp, rpc_loopback(key) as address:
        for name in names:
            registry, shapes = MODELS[name]
            onnx_path = lanner.models.onnx_path(registry)
            feed = _feed(shapes)
            want = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, feed)
            rows: dict = {}
            variants = [("tvm", None)]
            if name in tune:
                variants.append(
                    (
                        "tvm-tuned",
                        TuningRequest(trials=args.trials, minutes=args.tune_minutes, rpc=address, device_key=key),
                    )
                )
            for label, tuning in variants:
                started = time.monotonic()
                try:
                    manifest = compile_model(
                        onnx_path,
                        target=args.target,
                        backend="tvm",
                        precision="fp32",
                        input_shapes=shapes,
                        out=Path(tmp) / f"{name}-{label}",
                        tuning=tuning,
                    )
                    rows[label] = {**_package_row(manifest), "compile_s": round(time.monotonic() - started, 1)}
                except Exception as exc:  # a row that fails is recorded, the others go on
                    rows[label] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
                print(name, label, json.dumps(rows[label])[:400], flush=True)
            for label, row in (("torch-eager", _torch_row), ("onnxruntime-cuda", _ort_cuda_row)):
                try:
                    value = row(onnx_path, feed, want) if label == "torch-eager" else row(onnx_path, feed)
                except Exception as exc:
                    value = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
                if value is not None:
                    rows[label] = value
                    print(name, label, json.dumps(value)[:400], flush=True)
            results["models"][name] = rows
    print(f"\n| model | {' | '.join(('tvm', 'tvm-tuned', 'torch-eager'))} | tuned / torch |")
    print("|---|---|---|---|---|")
    for name, rows in results["models"].items():
        ms = {k: rows.get(k, {}).get("latency_ms", {}).get("median") for k in ("tvm", "tvm-tuned", "torch-eager")}
        ratio = ms["tvm-tuned"] / ms["torch-eager"] if ms["tvm-tuned"] and ms["torch-eager"] else None
        cells = [f"{v:.3f} ms" if v else "-" for v in ms.values()]
        print(f"| {name} | {' | '.join(cells)} | {f'{ratio:.2f}x' if ratio else '-'} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
