"""Robustness on clean photos (issue 15): the teacher vs the masked-face student under degradations.

Photos: the four parity photos (tests/support/photos.py: astronaut, messi, cameraman, group) and
scenes composed of celeba-faces crops of the *test* identities (16 crops of 144 px on a 4x4 grid,
each scene 640x640, the crops shrunk to 80-144 px at random, seeded). The reference faces of each
photo are those the teacher finds on the clean photo (min_face_size 20); recall is the fraction of
them found again (IoU >= 0.5, coordinates mapped back) after each degradation, per detector
(and, per photo, the detections on the clean photo that match no teacher face):
downscale x0.5 and x0.25 (area), Gaussian blur sigma 3, JPEG quality 20, low light (gain 0.3,
gamma 1.5), and a synthetic mask (lanner.distill.masks, seeded) on every reference face.

Usage: python benchmarks/detection/bench_robustness.py --celeba CELEBA_FACES_DIR [--scenes 4] [--json F]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import cv2
import numpy as np

import lanner
from lanner.distill.masks import SyntheticMasks
from lanner.distill.teacher import is_test_identity
from lanner.ops import box_iou

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "support"))

import photos as parity_photos  # noqa: E402

DETECTORS = ("mtcnn", "mtcnn-masked")


def scenes(celeba: Path, count: int, identities: str = "test") -> dict[str, np.ndarray]:
    """``count`` 640x640 scenes of 16 celeba-faces crops of the ``"test"`` (or ``"train"``) identities."""
    with (celeba / "faces.csv").open(newline="") as f:
        rows = csv.DictReader(f)
        files = sorted(r["file"] for r in rows if is_test_identity(r["identity"]) == (identities == "test"))
    rng = np.random.default_rng(15)
    out = {}
    for k in range(count):
        canvas = np.full((640, 640, 3), 110, np.uint8)
        for i, name in enumerate(rng.choice(files, 16, replace=False)):
            crop = cv2.imread(str(celeba / "images" / name))
            side = int(rng.integers(80, 145))
            crop = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
            y, x = 160 * (i // 4) + (160 - side) // 2, 160 * (i % 4) + (160 - side) // 2
            canvas[y : y + side, x : x + side] = crop
        out[f"celeba-scene{k}"] = canvas
    return out


def degrade(name: str, image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """The degraded image and the factor mapping its pixels back to the original's."""
    if name.startswith("downscale"):
        s = {"downscale x0.5": 0.5, "downscale x0.25": 0.25}[name]
        size = (max(1, round(image.shape[1] * s)), max(1, round(image.shape[0] * s)))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA), 1 / s
    if name == "gaussian blur s=3":
        return cv2.GaussianBlur(image, (0, 0), 3), 1.0
    if name == "jpeg q=20":
        return cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 20])[1], cv2.IMREAD_UNCHANGED), 1.0
    if name == "low light":
        return np.clip(255.0 * (image / 255.0) ** 1.5 * 0.3 + 0.5, 0, 255).astype(np.uint8), 1.0
    if name == "synthetic mask":
        colour = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        return SyntheticMasks(seed=15)(np.ascontiguousarray(colour), landmarks, 0) if len(landmarks) else colour, 1.0
    return image, 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--celeba", required=True, help="the celeba-faces folder (test identities are used)")
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--json", default=str(HERE / "results_robustness.json"))
    args = parser.parse_args()
    images = {**parity_photos.all_photos(), **scenes(Path(args.celeba), args.scenes)}
    degradations = [
        "clean",
        "downscale x0.5",
        "downscale x0.25",
        "gaussian blur s=3",
        "jpeg q=20",
        "low light",
        "synthetic mask",
    ]
    with lanner.FaceDetector(model="mtcnn", num_threads=2) as teacher:
        reference = {name: teacher.detect(image) for name, image in images.items()}
    report: dict = {"photos": {n: len(r) for n, r in reference.items()}, "recall": {}, "unmatched_clean": {}}
    for model in DETECTORS:
        with lanner.FaceDetector(model=model, num_threads=2) as detector:
            for degradation in degradations:
                found = total = 0
                for name, image in images.items():
                    ref = reference[name]
                    degraded, back = degrade(degradation, image, ref.landmarks)
                    got = detector.detect(degraded)
                    total += len(ref)
                    if degradation == "clean":  # boxes matching no teacher face: the student's extra finds
                        extra = len(got) if not len(ref) else int((box_iou(got.boxes, ref.boxes).max(1) < 0.5).sum())
                        report["unmatched_clean"].setdefault(model, {})[name] = extra
                    if len(ref) and len(got):
                        found += int((box_iou(ref.boxes, got.boxes * back).max(1) >= 0.5).sum())
                report["recall"].setdefault(degradation, {})[model] = [found, total]
    Path(args.json).write_text(json.dumps(report, indent=1))
    print(f"reference faces per photo: {report['photos']}")
    print("| degradation | " + " | ".join(DETECTORS) + " |")
    print("|---|" + "---|" * len(DETECTORS))
    for degradation, row in report["recall"].items():
        cells = " | ".join(f"{f} / {t} = {f / t:.2f}" for f, t in (row[m] for m in DETECTORS))
        print(f"| {degradation} | {cells} |")
    for model, per_photo in report["unmatched_clean"].items():
        print(f"{model}: {sum(per_photo.values())} detections on the clean photos match no teacher face: {per_photo}")


if __name__ == "__main__":
    main()
