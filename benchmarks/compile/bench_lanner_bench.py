"""`lanner bench` on the student CNNs (and the MTCNN face pipeline), against torch eager fp32.

For each student of ``bench_compile.py`` (``tinyface32``, ``mobileface112``): export it to
ONNX with a dynamic batch, write int8 calibration crops, then run

    lanner bench STUDENT.onnx --backends openvino,onnxruntime,tvm --precisions fp32,int8
        --calib CROPS --batch 1,8 --threads T --budget-s S --rounds R
        --factory torch-eager-fp32=THIS_FILE:torch_eager --baseline torch-eager-fp32
        --json/--md/--plot results/bench_STUDENT.*

so torch eager (the default baseline when the model can run in torch) is measured in the
same run, in its own process like every variant. Then ``lanner bench --pipeline face``.

    .venv/bin/python benchmarks/compile/bench_lanner_bench.py [--threads 1] [--budget-s 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


class TorchEager:
    """A student in torch eager fp32 (``torch.inference_mode``), as a bench factory variant."""

    backend, precision, target = "torch-eager", "fp32", "x86"

    def __init__(self, student: str, num_threads: int | None = None) -> None:
        import torch

        sys.path.insert(0, str(HERE))
        from bench_compile import STUDENTS

        if num_threads:
            torch.set_num_threads(num_threads)
        spec = STUDENTS[student]()
        self.net, chw = spec[0].eval(), spec[1]
        self.inputs = [{"name": "image", "shape": ["batch", *chw], "dtype": "float32"}]
        self._torch = torch

    def run(self, feeds: dict[str, np.ndarray]):
        with self._torch.inference_mode():
            return self.net(self._torch.from_numpy(feeds["image"]))


def torch_eager(student: str, num_threads: int | None = None) -> TorchEager:
    """Factory for ``--factory``: the student in torch eager fp32."""
    return TorchEager(student, num_threads)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--budget-s", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--students", default="tinyface32,mobileface112")
    ap.add_argument("--skip-face", action="store_true")
    args = ap.parse_args()

    import torch

    from lanner.cli import main as lanner
    from lanner.compile import export_torch

    sys.path.insert(0, str(HERE))
    from bench_compile import STUDENTS, write_crops

    RESULTS.mkdir(exist_ok=True)
    common = [
        "--threads",
        str(args.threads),
        "--budget-s",
        str(args.budget_s),
        "--warmup",
        "10",
        "--rounds",
        str(args.rounds),
    ]
    tag = f"_t{args.threads}"
    with tempfile.TemporaryDirectory(prefix="lanner-bench-students-") as tmp:
        work = Path(tmp)
        for name in args.students.split(","):
            spec = STUDENTS[name]()
            net, chw = spec[0].eval(), spec[1]
            onnx_path = export_torch(
                net,
                torch.randn(1, *chw),
                work / f"{name}.onnx",
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            )
            calib = work / f"{name}-calib"
            calib.mkdir()
            write_crops(calib, chw[1], 96)
            out = RESULTS / f"bench_{name}{tag}"
            rc = lanner(
                [
                    "bench",
                    str(onnx_path),
                    "--backends",
                    "openvino,onnxruntime,tvm",
                    "--precisions",
                    "fp32,int8",
                    "--calib",
                    str(calib),
                    "--batch",
                    "1,8",
                    *common,
                    "--factory",
                    f"torch-eager-fp32={Path(__file__).resolve()}:torch_eager",
                    "--factory-kwargs",
                    "torch-eager-fp32=" + json.dumps({"student": name}),
                    "--baseline",
                    "torch-eager-fp32",
                    "--json",
                    f"{out}.json",
                    "--md",
                    f"{out}.md",
                    "--plot",
                    f"{out}.png",
                ]
            )
            if rc:
                return rc
    if not args.skip_face:
        out = RESULTS / f"bench_face{tag}"
        return lanner(
            [
                "bench",
                "--pipeline",
                "face",
                "--backends",
                "openvino,onnxruntime",
                "--precisions",
                "fp32",
                *common,
                "--json",
                f"{out}.json",
                "--md",
                f"{out}.md",
                "--plot",
                f"{out}.png",
            ]
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
