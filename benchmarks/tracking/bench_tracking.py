"""One-pass evaluation (OTB/UAV123 protocol) of lanner.Tracker against OpenCV KCF,
CSRT and legacy MOSSE on the simulated UAV sequences of uav_sim.py, plus
multi-target throughput and lost/recovery behaviour.

    .venv/bin/python benchmarks/tracking/bench_tracking.py --split report --out benchmarks/tracking

Protocol: each tracker is initialised from the ground truth on frame 0 and scored on
every later frame. Success: IoU > t for t in linspace(0, 1, 21), AUC = mean of the
curve. Precision@20: centre error <= 20 px. Frames whose ground truth is invalid (the
target fully occluded or out of view) count as misses for every tracker. Only
update() is timed, one thread (cv2.setNumThreads(1); Lanner is single-threaded).
When an OpenCV tracker reports failure we score its last successful box.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import uav_sim  # noqa: E402

import lanner  # noqa: E402

THRESHOLDS = np.linspace(0, 1, 21)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (N, 4) xywh boxes, row by row."""
    x0 = np.maximum(a[:, 0], b[:, 0])
    y0 = np.maximum(a[:, 1], b[:, 1])
    x1 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y1 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def centre_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.hypot(a[:, 0] + a[:, 2] / 2 - b[:, 0] - b[:, 2] / 2, a[:, 1] + a[:, 3] / 2 - b[:, 1] - b[:, 3] / 2)


class OpenCVTracker:
    """cv2 tracker adapter: on failure keep (and score) the last successful box."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tracker = {
            "KCF": cv2.TrackerKCF_create,
            "CSRT": cv2.TrackerCSRT_create,
            "MOSSE": cv2.legacy.TrackerMOSSE_create,
        }[name]()
        self.box = None

    def init(self, frame, box) -> None:
        b = tuple(int(round(v)) for v in box)
        self.box = np.array(b, float)
        self.tracker.init(frame, b)

    def update(self, frame):
        ok, box = self.tracker.update(frame)
        if ok:
            self.box = np.array(box, float)
        return self.box, ok


class LannerTracker:
    def __init__(self, options: lanner.TrackerOptions) -> None:
        self.name = "Lanner"
        self.tracker = lanner.Tracker(options)
        self.log = []

    def init(self, frame, box) -> None:
        self.tracker.init(frame, tuple(box))
        self.log = []

    def update(self, frame):
        r = self.tracker.update(frame)
        self.log.append((r.score, r.lost, r.recovered))
        return np.array(r.box, float), not r.lost


def run_tracker(tracker, seq: uav_sim.Sequence):
    """Returns (boxes (N-1, 4) for frames 1.., seconds spent in update())."""
    tracker.init(seq.frames[0], seq.boxes[0])
    out = np.zeros((len(seq.frames) - 1, 4))
    spent = 0.0
    for k, frame in enumerate(seq.frames[1:]):
        t0 = time.perf_counter()
        box, _ = tracker.update(frame)
        spent += time.perf_counter() - t0
        out[k] = box
    return out, spent


def score(pred: np.ndarray, seq: uav_sim.Sequence):
    gt, valid = seq.boxes[1:], seq.valid[1:]
    ious = np.where(valid, iou(pred, gt), 0.0)
    errs = np.where(valid, centre_error(pred, gt), np.inf)
    return ious, errs


def occlusion_report(seq: uav_sim.Sequence, log) -> dict:
    """Lost/recovered behaviour around the longest fully occluded run of `seq`."""
    valid = seq.valid[1:]
    lost = np.array([l for _, l, _ in log])
    rec = np.array([r for _, _, r in log])
    runs, start = [], None
    for i, v in enumerate(valid):
        if not v and start is None:
            start = i
        if v and start is not None:
            runs.append((start, i))
            start = None
    if not runs:
        return {}
    s, e = max(runs, key=lambda r: r[1] - r[0])
    lost_during = bool(lost[s:e].any())
    first_lost = int(np.argmax(lost[s:e])) if lost_during else None
    after = np.flatnonzero(rec[e:])
    return {
        "occluded_frames": int(e - s),
        "flagged_lost": lost_during,
        "frames_to_flag": first_lost,
        "recovered": bool(after.size),
        "frames_to_recover": int(after[0]) if after.size else None,
    }


def multi_target_throughput(
    options: lanner.TrackerOptions, seq: uav_sim.Sequence, counts=(1, 10, 50), frames=40, rounds=3
):
    """Targets x frames per second: MultiTracker (1 thread, all threads) vs N Trackers.

    Each configuration is timed `rounds` times, round-robin (drifting load hits all
    alike), from a fresh init each time; the best round is reported."""
    rng = np.random.default_rng(0)
    H, W = seq.frames[0].shape[:2]
    rows = []
    for n in counts:
        boxes = np.column_stack(
            [rng.uniform(0, W - 40, n), rng.uniform(0, H - 40, n), rng.uniform(8, 40, n), rng.uniform(8, 40, n)]
        )
        boxes[0] = seq.boxes[0]

        def run_multi(threads: int, device: str = "cpu") -> float:
            m = lanner.MultiTracker(
                options=lanner.TrackerOptions(**{**options.__dict__, "num_threads": threads}), device=device
            )
            m.init(seq.frames[0], boxes)
            t0 = time.perf_counter()
            for f in seq.frames[1 : frames + 1]:
                m.update(f)
            return n * frames / (time.perf_counter() - t0)

        def run_singles() -> float:
            singles = [lanner.Tracker(options) for _ in range(n)]
            for t, b in zip(singles, boxes):
                t.init(seq.frames[0], tuple(b))
            t0 = time.perf_counter()
            for f in seq.frames[1 : frames + 1]:
                for t in singles:
                    t.update(f)
            return n * frames / (time.perf_counter() - t0)

        runs = {
            "multi_1thread": lambda: run_multi(1),
            "multi_all_threads": lambda: run_multi(0),
            "n_single_trackers": run_singles,
        }
        if lanner.has_cuda():  # the KCF responses of all targets batched on the GPU, the rest on all threads
            runs["multi_cuda_all_threads"] = lambda: run_multi(0, "cuda")
        res = {"targets": n, **{k: 0.0 for k in runs}}
        for _ in range(rounds):
            for label, fn in runs.items():
                res[label] = max(res[label], fn())
        rows.append(res)
    return rows


def plot(curves: dict, out: Path, split: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, c in curves.items():
        axes[0].plot(THRESHOLDS, c["success"], label=f"{name} [{c['auc']:.3f}]")
        axes[1].plot(np.arange(51), c["precision"], label=f"{name} [{c['p20']:.3f}]")
    axes[0].set(xlabel="IoU threshold", ylabel="success rate", title=f"Success ({split})")
    axes[1].set(xlabel="centre error threshold (px)", ylabel="precision", title=f"Precision ({split})")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left" if ax is axes[0] else "lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"success_precision_{split}.png", dpi=110)
    plt.close(fig)


def machine() -> str:
    try:
        model = next(
            l.split(":", 1)[1].strip()
            for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
            if l.startswith("Model name")
        )
    except StopIteration:
        model = platform.processor()
    load = os.getloadavg()[0]
    return (
        f"{model}, {os.cpu_count()} cores, load avg {load:.1f} at start, Python {platform.python_version()}, "
        f"OpenCV {cv2.__version__}"
    )


def evaluate(
    split: str, options: lanner.TrackerOptions, baselines=("KCF", "CSRT", "MOSSE"), limit: int = 0, verbose: bool = True
):
    cv2.setNumThreads(1)
    specs = uav_sim.make_split(split)
    if limit:
        specs = specs[:limit]
    names = ["Lanner", *baselines]
    ious = {n: [] for n in names}
    errs = {n: [] for n in names}
    secs = {n: 0.0 for n in names}
    frames = 0
    per_seq, occl = [], []
    for spec in specs:
        seq = uav_sim.render_sequence(spec)
        frames += len(seq.frames) - 1
        row = {"sequence": spec.name, "target_px": round(float(seq.boxes[0, 2:].max()), 1)}
        for name in names:
            tr = LannerTracker(options) if name == "Lanner" else OpenCVTracker(name)
            pred, spent = run_tracker(tr, seq)
            i, e = score(pred, seq)
            ious[name].append(i)
            errs[name].append(e)
            secs[name] += spent
            row[name] = round(float((i[:, None] > THRESHOLDS[None]).mean()), 3)
            if name == "Lanner" and spec.full_occlusion:
                occl.append({"sequence": spec.name, **occlusion_report(seq, tr.log)})
        per_seq.append(row)
        if verbose:
            print(json.dumps(row), file=sys.stderr)
    curves = {}
    for name in names:
        i = np.concatenate(ious[name])
        e = np.concatenate(errs[name])
        success = (i[:, None] > THRESHOLDS[None]).mean(0)
        precision = (e[:, None] <= np.arange(51)[None]).mean(0)
        curves[name] = {
            "success": success.tolist(),
            "precision": precision.tolist(),
            "auc": float(success.mean()),
            "p20": float(precision[20]),
            "fps": frames / secs[name],
        }
    return curves, per_seq, occl


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", default="report", choices=sorted(uav_sim.SPLITS))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent))
    ap.add_argument("--limit", type=int, default=0, help="first N sequences only")
    ap.add_argument("--no-multi", action="store_true")
    ap.add_argument("--multi-only", action="store_true", help="only the multi-target throughput (no OpenCV trackers)")
    args = ap.parse_args(argv)
    if args.multi_only:
        seq = uav_sim.render_sequence(uav_sim.make_split(args.split)[-1])
        print(f"machine: {machine()}")
        print(json.dumps(multi_target_throughput(lanner.TrackerOptions(), seq), indent=1))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    options = lanner.TrackerOptions()
    info = machine()
    curves, per_seq, occl = evaluate(args.split, options, limit=args.limit)
    result = {
        "split": args.split,
        "machine": info,
        "options": options.__dict__,
        "curves": curves,
        "per_sequence": per_seq,
        "occlusion": occl,
    }
    if not args.no_multi:
        seq = uav_sim.render_sequence(uav_sim.make_split(args.split)[-1])
        result["multi_target"] = multi_target_throughput(options, seq)
    plot(curves, out, args.split)
    (out / f"results_{args.split}.json").write_text(json.dumps(result, indent=1))
    print(f"machine: {info}")
    print("| tracker | success AUC | precision@20 | FPS (update, 1 thread) |")
    print("|---|---|---|---|")
    for name, c in curves.items():
        print(f"| {name} | {c['auc']:.3f} | {c['p20']:.3f} | {c['fps']:.0f} |")
    if "multi_target" in result:
        print(json.dumps(result["multi_target"], indent=1))
    print(json.dumps(occl, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
