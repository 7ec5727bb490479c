"""Benchmark lanner.ops.nms against cv2.dnn.NMSBoxes and the NumPy reference, side by side.

Detector-like input: seeded clusters of jittered boxes around objects of 16-200 px in a
1920x1080 frame (about 40 candidates per object, uniform scores), at 1k, 10k and 50k boxes.
All three implementations get the same boxes and must return the same kept indices in the
same order (the script exits non-zero otherwise).

Threshold semantics, matched on purpose: cv2.dnn.NMSBoxes keeps scores strictly greater than
its score_threshold and suppresses when IoU > nms_threshold, like lanner (ONNX semantics). We
pass cv2 score_threshold=0 (all scores are > 0) and lanner score_threshold=None, the same IoU
threshold, eta=1, top_k=0. cv2 takes xywh float64 rectangles; they are built from the same
float32 xyxy boxes, outside the timed region, so its IoU arithmetic (float64) matches ours.

Everything runs on one thread: cv2.setNumThreads(1); lanner's CPU kernel is single-threaded.

Usage:
    python benchmarks/nms/bench_nms.py [--sizes 1000 10000 50000] [--iou 0.5] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

import lanner

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "support"))
from ops_reference import nms_reference  # noqa: E402  (the tests' NumPy oracle, the baseline here)

FRAME_W, FRAME_H = 1920, 1080  # pixels
BOXES_PER_OBJECT = 40  # candidates a dense detector emits around each object


def clustered_boxes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` detector-like xyxy float32 boxes and float32 scores in (0, 1], seeded."""
    rng = np.random.default_rng(seed)
    n_objects = max(4, n // BOXES_PER_OBJECT)
    cx = rng.uniform(0, FRAME_W, n_objects)
    cy = rng.uniform(0, FRAME_H, n_objects)
    size = rng.uniform(16, 200, n_objects)  # object side, px
    obj = rng.integers(0, n_objects, n)
    w = size[obj] * rng.uniform(0.7, 1.3, n)
    h = size[obj] * rng.uniform(0.7, 1.3, n)
    x = cx[obj] + rng.normal(0.0, 0.15, n) * size[obj]
    y = cy[obj] + rng.normal(0.0, 0.15, n) * size[obj]
    boxes = np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=1).astype(np.float32)
    scores = rng.uniform(1e-3, 1.0, n).astype(np.float32)
    return boxes, scores


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, float]]:
    """Median wall-clock and median CPU seconds of each function, run round-robin.

    Interleaving puts every implementation under the same background load, so the ratios
    hold on a busy shared machine even when absolute times drift. CPU time (the process's,
    all three run on one thread) is also reported: it does not count time spent descheduled.
    """
    for fn in fns.values():
        fn()
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in fns}


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--iou", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    cv2.setNumThreads(1)
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(
        f"numpy {np.__version__}, opencv {cv2.__version__}, lanner {lanner.__version__}, "
        f"iou_threshold {args.iou}, median of {args.repeats} interleaved runs, one thread"
    )
    print("CUDA: " + ("timed below (device='cuda')" if lanner.has_cuda() else "not measured (no GPU)"))
    print()
    print(
        "| boxes | kept | lanner.ops.nms | cv2.dnn.NMSBoxes | NumPy reference "
        "| vs cv2 (wall) | vs cv2 (CPU time) | vs NumPy (wall) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    ok = True
    for n in args.sizes:
        boxes, scores = clustered_boxes(n, args.seed + n)
        # xywh in float64 (exact for float32 corners), so cv2's IoU arithmetic equals ours.
        corners = boxes.astype(np.float64)
        xywh = np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], axis=1)
        scores_list = scores.tolist()

        ours = lanner.ops.nms(boxes, scores, args.iou)
        theirs = np.asarray(cv2.dnn.NMSBoxes(xywh, scores_list, 0.0, args.iou), dtype=np.int64).reshape(-1)
        ref = nms_reference(boxes, scores, args.iou)
        same = np.array_equal(ours, theirs) and np.array_equal(ours, ref)
        if not same:
            ok = False
            print(f"MISMATCH at n={n}: lanner {len(ours)}, cv2 {len(theirs)}, reference {len(ref)}", file=sys.stderr)

        t = interleaved_medians(
            {
                "lanner": lambda: lanner.ops.nms(boxes, scores, args.iou),
                "cv2": lambda: cv2.dnn.NMSBoxes(xywh, scores_list, 0.0, args.iou),
                "numpy": lambda: nms_reference(boxes, scores, args.iou),
            },
            args.repeats,
        )
        (t_ours, c_ours), (t_cv2, c_cv2), (t_ref, _) = t["lanner"], t["cv2"], t["numpy"]
        print(
            f"| {n:,} | {len(ours):,} | {t_ours * 1e3:.2f} ms | {t_cv2 * 1e3:.1f} ms | {t_ref * 1e3:.1f} ms "
            f"| {t_cv2 / t_ours:.0f}x | {c_cv2 / c_ours:.0f}x | {t_ref / t_ours:.0f}x |"
        )
    print()
    print("identical kept indices (same order) in all three:", "yes" if ok else "NO")
    if lanner.has_cuda():
        ok = _cuda_table(args) and ok
    return 0 if ok else 1


def _cuda_table(args: argparse.Namespace) -> bool:
    """``device="cuda"`` (the bitmask kernel; host arrays in, kept indices out, copies included) beside
    the CPU kernel, on the same boxes; the kept indices must be identical."""
    print()
    print("| boxes | lanner.ops.nms CPU | lanner.ops.nms CUDA | CUDA vs CPU (wall) |")
    print("|---:|---:|---:|---:|")
    ok = True
    for n in args.sizes:
        boxes, scores = clustered_boxes(n, args.seed + n)
        same = np.array_equal(
            lanner.ops.nms(boxes, scores, args.iou), lanner.ops.nms(boxes, scores, args.iou, device="cuda")
        )
        ok = ok and same
        t = interleaved_medians(
            {
                "cpu": lambda: lanner.ops.nms(boxes, scores, args.iou),
                "cuda": lambda: lanner.ops.nms(boxes, scores, args.iou, device="cuda"),
            },
            args.repeats,
        )
        print(
            f"| {n:,} | {t['cpu'][0] * 1e3:.2f} ms | {t['cuda'][0] * 1e3:.2f} ms | {t['cpu'][0] / t['cuda'][0]:.1f}x |"
            + ("" if same else " MISMATCH")
        )
    print("identical kept indices on CPU and CUDA:", "yes" if ok else "NO")
    return ok


if __name__ == "__main__":
    sys.exit(main())
