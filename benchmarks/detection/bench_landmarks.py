"""Landmarks of the masked-face student against the teacher's (issue 15): what the recognizer aligns by.

Photos: the four parity photos and ``--scenes`` scenes of celeba-faces crops of the *test* identities
(``bench_robustness.scenes``), clean. For every face the teacher finds (min_face_size 20) that a detector finds
again (IoU >= 0.5), the mean distance of its five points to the teacher's, as a percentage of the teacher's box
width; reported per detector: median, 90th percentile, faces over 10%, worst, and the worst distance in px.
Detectors: the teacher's O-Net's landmarks on the student's final boxes (``mtcnn-masked``, its registry entry)
and the student's own O-Net's landmarks (the same cascade with ``landmark_net=None``).

Usage: python benchmarks/detection/bench_landmarks.py --celeba CELEBA_FACES_DIR [--scenes 4] [--json F]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from bench_robustness import HERE, parity_photos, scenes

import lanner
from lanner import models
from lanner.face.cascade import CascadeParams, Workspace, run_cascade
from lanner.models.face_detectors import get_face_detector
from lanner.ops import box_iou

THREADS = 2


def distances(reference, boxes: np.ndarray, landmarks: np.ndarray) -> tuple[list[float], list[float]]:
    """Per matched teacher face: mean point distance as % of the teacher's box width, and the largest in px."""
    if not len(reference) or not len(boxes):
        return [], []
    iou = box_iou(reference.boxes, boxes)
    percent, pixels = [], []
    for i, j in enumerate(iou.argmax(1)):
        if iou[i, j] < 0.5:
            continue
        d = np.linalg.norm(landmarks[j] - reference.landmarks[i], axis=1)
        percent.append(100 * float(d.mean()) / float(reference.boxes[i, 2] - reference.boxes[i, 0]))
        pixels.append(float(d.max()))
    return percent, pixels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--celeba", required=True, help="the celeba-faces folder (test identities are used)")
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--json", default=str(HERE / "results_landmarks.json"))
    args = parser.parse_args()
    images = {**parity_photos.all_photos(), **scenes(Path(args.celeba), args.scenes)}
    with lanner.FaceDetector(model="mtcnn", num_threads=THREADS) as teacher:
        reference = {name: teacher.detect(image) for name, image in images.items()}
    spec = get_face_detector("mtcnn-masked")
    params = CascadeParams(thresholds=spec.thresholds, rnet_iou_threshold=spec.rnet_iou_threshold)
    nets = [models.open_net(n, num_threads=THREADS) for n in spec.nets]
    variants = {
        f"mtcnn-masked, landmarks of {spec.landmark_net}": models.open_net(spec.landmark_net, num_threads=THREADS),
        "mtcnn-masked, its own O-Net's landmarks": None,
    }
    ws = Workspace()
    report: dict = {"faces": sum(len(r) for r in reference.values()), "detectors": {}}
    for variant, landmark_net in variants.items():
        percent, pixels, per_photo = [], [], {}
        for name, image in images.items():
            boxes, _, landmarks = run_cascade(
                image, *nets, params, channel_order="bgr", workspace=ws, num_threads=THREADS, landmark_net=landmark_net
            )
            p, px = distances(reference[name], boxes, landmarks)
            percent += p
            pixels += px
            per_photo[name] = round(max(px), 2) if px else None
        report["detectors"][variant] = {
            "matched": len(percent),
            "median_percent": round(float(np.median(percent)), 2),
            "p90_percent": round(float(np.percentile(percent, 90)), 2),
            "over_10_percent": int(sum(p > 10 for p in percent)),
            "worst_percent": round(max(percent), 2),
            "worst_px_per_photo": per_photo,
        }
    Path(args.json).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
