"""Where a TVM call's time goes on a small model: kernels, the Relax VM, FFI and array conversion.

Given a TVM package built by ``lanner compile`` (tuned or not) and the ONNX it was built from, this
rebuilds the same model with the Relax VM's bytecode interpreter (``exec_mode="bytecode"``, what
packages used before issue 18; with the package's tuning records when it has them) and times, in
one process, at each thread count:

* ``onnxruntime InferenceSession.run``: the reference, with its own Python call overhead;
* ``bytecode: tensor() + main() + numpy()``: the old Lanner ``TVMSession.run`` path;
* ``bytecode: time_evaluator``: kernels + bytecode interpreter (TVM's own timer, no Python);
* ``compiled: tensor() + main() + numpy()``: the old conversions on the native-code VM;
* ``compiled: staged input + main() + DLPack output``: today's ``TVMSession.run``;
* ``compiled: time_evaluator``: kernels + native-code VM;
* ``lanner.load(PACKAGE).run``: the full public path (input validation included);
* the conversions alone: ``tvm.runtime.tensor(x)``, ``Tensor.numpy()``, ``np.copyto`` into a
  staged tensor's DLPack view, ``np.from_dlpack(out).copy()``.

    .venv/bin/python benchmarks/compile/tvm_overhead.py PACKAGE MODEL.onnx [--threads 1,2]

Run it with background jobs paused (the numbers are microseconds).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import lanner
from lanner.backends import tvm_backend
from lanner.compile import onnx_graph, tvm_tuning
from lanner.manifest import Manifest


def median_us(fn, *, seconds: float = 0.5, warmup: int = 50) -> float:
    for _ in range(warmup):
        fn()
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 100:
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    return float(np.median(times)) / 1e3


def build_bytecode(package: Path, manifest: Manifest, onnx_path: Path, out: Path) -> None:
    """The package's model rebuilt with the bytecode VM (same target, same tuning records)."""
    tc = tvm_backend.import_compiler()
    model = onnx_graph.read_model(onnx_path)
    shapes = {i.name: list(i.shape) for i in manifest.inputs}
    if all(isinstance(d, int) for shape in shapes.values() for d in shape):  # as compile_model(input_shapes=...)
        model = onnx_graph.with_input_shapes(model, shapes)
    mod = tc.from_onnx(model, opset=onnx_graph.opset(model), keep_params_in_input=False)
    target_dict = dict(manifest.target_info["tvm_target"])
    if (package / tvm_tuning.TUNING_DIR).is_dir():
        folder = package / tvm_tuning.TUNING_DIR
        # the target the records were measured for (the build adds num-cores to the package's target)
        target = tc.tvm.target.Target(json.loads((folder / tvm_tuning.SUMMARY_FILE).read_text())["target"])
        database = tc.meta_schedule.database.JSONDatabase(
            path_workload=str(folder / tvm_tuning.WORKLOAD_FILE),
            path_tuning_record=str(folder / tvm_tuning.RECORD_FILE),
        )
        executable = tvm_tuning._build_with_database(tc, database, mod, target, "bytecode")  # noqa: SLF001
    else:
        executable = tc.relax.build(mod, target=tc.tvm.target.Target(target_dict), exec_mode="bytecode")
    executable.export_library(str(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path)
    parser.add_argument("onnx", type=Path)
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args()
    manifest = Manifest.read(args.package)
    if manifest.backend != "tvm":
        parser.error(f"{args.package} is a {manifest.backend} package; expected a tvm one")
    tvm = tvm_backend.import_toolchain()
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    # every input of the package at batch 1 (face-quality has two: the image and the face width)
    feeds = {spec.name: rng.standard_normal([1, *spec.shape[1:]]).astype(spec.dtype) for spec in manifest.inputs}
    xs = list(feeds.values())
    dev = tvm.cpu(0)
    with tempfile.TemporaryDirectory() as tmp:
        bytecode_so = Path(tmp) / "bytecode.so"
        build_bytecode(args.package, manifest, args.onnx, bytecode_so)
        libraries = {"bytecode": str(bytecode_so), "compiled": str(manifest.artifact_path(args.package, "library"))}
        rows: dict[str, dict[int, float]] = {}
        for threads in [int(t) for t in args.threads.split(",")]:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(args.onnx), options, providers=["CPUExecutionProvider"])
            rows.setdefault("onnxruntime InferenceSession.run", {})[threads] = median_us(
                lambda: session.run(None, feeds)
            )
            tvm_backend.set_num_threads(threads)
            for mode, path in libraries.items():
                vm = tvm.relax.VirtualMachine(tvm.runtime.load_module(path), dev)
                main_fn = vm["main"]

                def old_path(main_fn=main_fn):
                    out = main_fn(*[tvm.runtime.tensor(x, dev) for x in xs])
                    return [o.numpy() for o in ([out] if isinstance(out, tvm.runtime.Tensor) else out)]

                rows.setdefault(f"{mode}: tensor() + main() + numpy()", {})[threads] = median_us(old_path)
                staged = [tvm.runtime.tensor(x, dev) for x in xs]
                evaluator = vm.time_evaluator("main", dev, number=200, repeat=5)
                rows.setdefault(f"{mode}: time_evaluator (kernels + VM)", {})[threads] = 1e6 * float(
                    np.median(evaluator(*staged).results)
                )
                if mode == "compiled":
                    views = [np.from_dlpack(t) for t in staged]

                    def new_path(main_fn=main_fn, views=views, staged=staged):
                        for view, x in zip(views, xs):
                            np.copyto(view, x)
                        out = main_fn(*staged)
                        return [
                            np.from_dlpack(o).copy() for o in ([out] if isinstance(out, tvm.runtime.Tensor) else out)
                        ]

                    rows.setdefault("compiled: staged input + main() + DLPack output", {})[threads] = median_us(
                        new_path
                    )
                    out = main_fn(*staged)
                    first = out if isinstance(out, tvm.runtime.Tensor) else out[0]
                    x, view = xs[0], views[0]
                    rows.setdefault("  tvm.runtime.tensor(x)", {})[threads] = median_us(
                        lambda: tvm.runtime.tensor(x, dev)
                    )
                    rows.setdefault("  Tensor.numpy() (first output)", {})[threads] = median_us(first.numpy)
                    rows.setdefault("  np.copyto(staged view, x)", {})[threads] = median_us(lambda: np.copyto(view, x))
                    rows.setdefault("  np.from_dlpack(output).copy()", {})[threads] = median_us(
                        lambda: np.from_dlpack(first).copy()
                    )
            with lanner.load(args.package, num_threads=threads) as model:
                rows.setdefault("lanner.load(PACKAGE).run (full public path)", {})[threads] = median_us(
                    lambda: model.run(feeds)
                )
                tvm_session = model._session  # noqa: SLF001 -- the backend session alone, without Model's checks
                rows.setdefault("  TVMSession.run (no input checks)", {})[threads] = median_us(
                    lambda: tvm_session.run(feeds)
                )
    threads = sorted({t for r in rows.values() for t in r})
    print(
        f"{args.package} ({'tuned' if (args.package / 'tuning').is_dir() else 'untuned'}), "
        f"inputs {[list(x.shape) for x in xs]}, "
        f"{os.cpu_count()} CPUs; median microseconds per call"
    )
    print("| path | " + " | ".join(f"{t} thread{'s' if t > 1 else ''} us" for t in threads) + " |")
    print("|---|" + "---:|" * len(threads))
    for label, values in rows.items():
        print(f"| {label} | " + " | ".join(f"{values[t]:.1f}" for t in threads) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
