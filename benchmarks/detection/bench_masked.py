"""Masked and tiny faces: VOC AP of face detectors on the facemask-voc test split (issue 15).

On the test split (``lanner.distill.facemask.facemask_split``; never trained on), for each
detector: VOC AP at IoU 0.5 (``lanner.distill.average_precision``) per class, ``masked``
(``with_mask`` and ``mask_weared_incorrect``) and ``unmasked`` (``without_mask``), over the
ground-truth faces at least 10 px and at least 20 px wide. Every other ground-truth box (the other
class, or narrower faces) is an ignore region: a detection matching it is neither a true nor a
false positive (VOC's "difficult" boxes, WIDER FACE's small faces). Also the end-to-end ``detect``
time on the same photos (2 threads, one process, detectors interleaved photo by photo, median
of ``--reps`` runs per photo) and the PR curves as a plot.

Usage: python benchmarks/detection/bench_masked.py --data FACEMASK_VOC_FOLDER [--reps 3]
       [--json results_masked.json] [--plot pr_masked.png]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

import lanner
from lanner.distill.average_precision import voc_average_precision
from lanner.distill.facemask import read_facemask

HERE = Path(__file__).resolve().parent
THREADS = 2
MIN_WIDTHS = (10, 20)  # px: ground-truth faces evaluated
# name -> FaceDetector options: the teacher and the student (issue 15, each with its own default thresholds), at
# the default and the smallest size asked for; the student also in bf16 (CPUs whose OpenVINO lists BF16 only).
DETECTORS = {
    "mtcnn@20": {"model": "mtcnn", "min_face_size": 20},
    "mtcnn@10": {"model": "mtcnn", "min_face_size": 10},
    "mtcnn-masked@20": {"model": "mtcnn-masked", "min_face_size": 20},
    "mtcnn-masked@10": {"model": "mtcnn-masked", "min_face_size": 10},
    "mtcnn-masked@20 bf16": {"model": "mtcnn-masked", "min_face_size": 20, "precision": "bf16"},
}


def evaluate(photos, found) -> dict:
    """AP per class and minimum width, from per-photo (boxes, scores)."""
    results = {}
    for cls in ("masked", "unmasked"):
        for min_width in MIN_WIDTHS:
            truth = []
            for photo in photos:
                width = photo.boxes[:, 2] - photo.boxes[:, 0]
                is_class = photo.masked if cls == "masked" else ~photo.masked
                truth.append((photo.boxes, is_class & (width >= min_width)))
            pr = voc_average_precision(found, truth)
            results[f"{cls}>={min_width}"] = {
                "ap": round(pr.average_precision, 4),
                "positives": pr.positives,
                "recall": round(float(pr.recall[-1]) if len(pr.recall) else 0.0, 4),
                "curve": (pr.recall[::5].round(4).tolist(), pr.precision[::5].round(4).tolist()),
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the facemask-voc folder")
    parser.add_argument("--reps", type=int, default=3, help="timed runs per photo and detector (median)")
    parser.add_argument("--json", default=str(HERE / "results_masked.json"))
    parser.add_argument("--plot", default=str(HERE / "pr_masked.png"))
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=list(DETECTORS))
    args = parser.parse_args()

    photos = read_facemask(args.data, "test")
    images = [cv2.imread(str(p.image_path)) for p in photos]
    widths = np.concatenate([p.boxes[:, 2] - p.boxes[:, 0] for p in photos])
    masked = np.concatenate([p.masked for p in photos])
    detectors = {}
    for name in args.detectors:
        try:
            detectors[name] = lanner.FaceDetector(num_threads=THREADS, **DETECTORS[name])
        except ValueError as exc:  # bf16 where this CPU has no BF16 support
            if name == args.detectors[0]:
                raise
            print(f"{name}: skipped ({exc})")
    found = {name: [] for name in detectors}
    times = {name: [] for name in detectors}
    for detector in detectors.values():  # warm-up (first-call allocations)
        detector.detect(images[0])
    for image in images:
        for name, detector in detectors.items():  # interleaved: the machine's load hits every detector alike
            samples = []
            for _ in range(args.reps):
                start = time.perf_counter()
                faces = detector.detect(image)
                samples.append(time.perf_counter() - start)
            found[name].append((faces.boxes, faces.scores))
            times[name].append(statistics.median(samples))
    for detector in detectors.values():
        detector.close()

    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared), {THREADS} threads",
        "photos": len(photos),
        "faces": {
            "all": int(len(widths)),
            "masked": int(masked.sum()),
            "unmasked": int((~masked).sum()),
            "median_width_px": float(np.median(widths)),
            "under_10px": int((widths < 10).sum()),
            "under_20px": int((widths < 20).sum()),
        },
        "detectors": {},
    }
    reference = sum(times[args.detectors[0]])
    for name in detectors:
        total = sum(times[name])
        report["detectors"][name] = {
            "options": DETECTORS[name],
            "thresholds": list(detectors[name].params.thresholds),
            "rnet_iou_threshold": detectors[name].params.rnet_iou_threshold,
            "ap": evaluate(photos, found[name]),
            "seconds_total": round(total, 3),
            "ms_per_photo": round(1000 * total / len(photos), 2),
            f"speed_vs_{args.detectors[0]}": round(reference / total, 3),
        }
    Path(args.json).write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "detectors"}, indent=1))
    for name, entry in report["detectors"].items():
        aps = "  ".join(f"{k} {v['ap']:.3f} (rec {v['recall']:.2f})" for k, v in entry["ap"].items())
        print(f"{name}: {aps}  {entry['ms_per_photo']:.1f} ms/photo")
    plot(report, args.plot)


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 4), sharey=True)
    keys = list(next(iter(report["detectors"].values()))["ap"])
    for ax, key in zip(axes, keys):
        for name, entry in report["detectors"].items():
            recall, precision = entry["ap"][key]["curve"]
            ax.plot(recall, precision, label=f"{name} AP {entry['ap'][key]['ap']:.3f}")
        ax.set_title(f"{key} px (facemask-voc test)")
        ax.set_xlabel("recall")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower left", fontsize=8)
    axes[0].set_ylabel("precision")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    main()
