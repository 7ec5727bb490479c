"""Faces per second of the face students on one CPU thread, against the teacher, in one run.

For each compiled student package (made by ``lanner distill face-embedding``: ``OUT/packages/*``)
and the teacher (``dlib-bin``, the reference implementation users run), this times:

* the network alone at batch 1 and batch 64 (median of repeated runs, after warm-up);
* alignment of 64 faces from a low-resolution frame (``lanner.face.align.align_faces``), which the
  SDK does before embedding.

Usage::

    python benchmarks/distill/bench_student_speed.py --run OUT [--run OUT2 ...] --json results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _median_seconds(fn, repeats: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_package(package: Path, size: int, repeats: int) -> dict:
    import lanner

    rng = np.random.default_rng(0)
    out = {}
    with lanner.load(package, num_threads=1) as model:
        for batch in (1, 64):
            x = rng.random((batch, 3, size, size), dtype=np.float32)
            seconds = _median_seconds(lambda: model.run({"image": x}), repeats)
            out[f"faces_per_s_batch{batch}"] = batch / seconds
    return out


def bench_alignment(size: int, repeats: int) -> float:
    from lanner.face.align import align_faces

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    base = np.array([[6.0, 7.0], [12.0, 7.0], [9.0, 10.5], [6.5, 13.5], [11.5, 13.5]], np.float32)  # a 16 px face
    landmarks = np.stack([base + [20 * (i % 14), 25 * (i // 14)] for i in range(64)]).astype(np.float32)
    seconds = _median_seconds(lambda: align_faces(frame, landmarks, size), repeats)
    return 64 / seconds


def bench_teacher(repeats: int) -> float:
    from lanner.distill.teacher import DlibTeacher

    teacher = DlibTeacher()
    chip = np.random.default_rng(0).integers(0, 255, (1, 150, 150, 3), dtype=np.uint8)
    return 1 / _median_seconds(lambda: teacher.describe(chip), max(3, repeats // 20))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="a 'lanner distill' output folder")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = []
    teacher = bench_teacher(args.repeats)
    for run in args.run:
        size = int(next(Path(run).glob("student*-int8.onnx")).name[len("student") : -len("-int8.onnx")])
        for package in sorted((Path(run) / "packages").iterdir()):
            row = {
                "run": Path(run).name,
                "package": package.name,
                "size": size,
                **bench_package(package, size, args.repeats),
            }
            onnx = Path(run) / f"student{size}{'-int8' if 'int8' in package.name else ''}.onnx"
            row["onnx_kb"] = onnx.stat().st_size / 1024 if onnx.is_file() else None
            weights = [p for p in package.iterdir() if p.suffix in (".bin", ".onnx")]
            row["package_weights_kb"] = sum(p.stat().st_size for p in weights) / 1024
            row["speedup_vs_teacher_batch64"] = row["faces_per_s_batch64"] / teacher
            rows.append(row)
            print(json.dumps(row))
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "threads": 1,
            "load_average": os.getloadavg(),
        },
        "teacher_dlib_faces_per_s": teacher,
        "alignment_faces_per_s_16px": bench_alignment(16, args.repeats),
        "students": rows,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "students"}))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
