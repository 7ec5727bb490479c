"""Tune the masked-face student's cascade settings on TRAINING data only (issue 15).

The student (``mtcnn-masked``) spends its extra time in O-Net (its R-Net passes more candidates
than the teacher's) and, on clean photos, finds boxes the teacher does not (face parts, hair,
clothes next to faces, at O-Net scores of 0.97-0.999). This script sweeps the R-Net threshold, the
NMS overlap between R-Net's survivors and the O-Net threshold, and reports for each setting: VOC AP
on the facemask-voc **train** split (masked / unmasked, faces >= 10 px, as ``bench_masked.py``
computes it), the mean R-Net and O-Net crops per photo (the work that differs between settings),
and on 4 clean scenes of celeba-faces crops of the **training** identities (``bench_robustness``'s
composer) the teacher's faces found and the detections that match none of them. The test split
and the test identities stay for the one confirmation run of ``bench_masked.py`` and
``bench_robustness.py``.

Exact and cheap: every net processes each crop on its own, so its output for a crop can be
recorded once (keyed by the crop's bytes: crops and pyramid levels are deterministic) and replayed
through the real cascade (``lanner.face.cascade.run_cascade``: same crops, NMS, regression). The
first pass runs at the lowest thresholds of the grid; greedy NMS keeps, of the boxes above a
higher threshold of the *same* stage, exactly the boxes it kept before, so a higher R-Net threshold
only replays and a higher O-Net threshold is a filter on the final scores. A different R-Net NMS
overlap can keep a box suppressed before: such crops run live. The teacher runs once at its own
settings for the reference row.

Usage: python benchmarks/detection/tune_masked.py --data FACEMASK_VOC_FOLDER --celeba CELEBA_FACES_FOLDER
       [--json tune_masked.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from lanner import models
from lanner.distill.facemask import read_facemask
from lanner.face.cascade import CascadeParams, Workspace, run_cascade
from lanner.models.face_detectors import get_face_detector
from lanner.ops import box_iou

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_masked import evaluate  # noqa: E402
from bench_robustness import scenes  # noqa: E402

THREADS = 2
PNET_THRESHOLDS = (0.6,)  # 0.7 cost more masked AP than a higher R-Net threshold saving the same time
RNET_THRESHOLDS = (0.3, 0.5, 0.7, 0.9)
RNET_IOU_THRESHOLDS = (0.5, 0.7)  # NMS between R-Net's survivors (the teacher's 0.7)
ONET_THRESHOLDS = (0.5, 0.7, 0.9)  # a post-filter: one run serves all


def _key(x: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(x).view(np.uint8), digest_size=16).digest()


class RecordedNet:
    """A net that records its output for every input row (crops) or input (P-Net levels) and
    replays it when the same input comes again; counts the rows it served."""

    def __init__(self, net) -> None:
        self.net = net
        self.outputs: dict[bytes, dict[str, np.ndarray]] = {}
        self.rows = 0

    def run(self, inputs, *, copy: bool = True):
        x = inputs["image"]
        self.rows += len(x)
        keys = [_key(row) for row in x]
        missing = [i for i, k in enumerate(keys) if k not in self.outputs]
        if missing:
            out = self.net.run({"image": x[missing]}, copy=True)
            for j, i in enumerate(missing):
                self.outputs[keys[i]] = {name: v[j] for name, v in out.items()}
        return {name: np.stack([self.outputs[k][name] for k in keys]) for name in self.outputs[keys[0]]}

    def run_many(self, inputs, *, copy: bool = True):
        results = []
        for feed in inputs:
            k = _key(feed["image"])
            if k not in self.outputs:
                self.outputs[k] = self.net.run(feed, copy=True)
            results.append(self.outputs[k])
        return results


def detect_all(images, nets, params: CascadeParams) -> list[tuple[np.ndarray, np.ndarray]]:
    ws = Workspace()
    return [run_cascade(im, *nets, params, channel_order="bgr", workspace=ws, num_threads=THREADS)[:2] for im in images]


def unmatched(found, reference) -> tuple[int, int]:
    """Detections matching no reference face (IoU < 0.5), and reference faces found, over the scenes."""
    extra = hits = 0
    for (boxes, _), ref in zip(found, reference):
        if not len(ref):
            extra += len(boxes)
        elif len(boxes):
            iou = box_iou(boxes, ref)
            extra += int((iou.max(1) < 0.5).sum())
            hits += int((iou.max(0) >= 0.5).sum())
    return extra, hits


def above(found, threshold: float):
    """Detections scoring above ``threshold`` (exactly what a run at that O-Net threshold keeps)."""
    return [(boxes[scores > threshold], scores[scores > threshold]) for boxes, scores in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the facemask-voc folder (its train split is read)")
    parser.add_argument("--celeba", required=True, help="the celeba-faces folder (scenes of its training identities)")
    parser.add_argument("--model", default="mtcnn-masked", help="the student detector to tune")
    parser.add_argument("--json", default=str(HERE / "tune_masked.json"))
    parser.add_argument("--rnet-thresholds", type=float, nargs="+", default=RNET_THRESHOLDS, help="R-Net grid")
    parser.add_argument("--onet-thresholds", type=float, nargs="+", default=ONET_THRESHOLDS, help="O-Net grid")
    args = parser.parse_args()

    photos = read_facemask(args.data, "train")
    images = [cv2.imread(str(p.image_path)) for p in photos]
    clean = list(scenes(Path(args.celeba), 4, identities="train").values())
    report: dict = {"split": "train", "photos": len(photos), "scenes": len(clean), "model": args.model}

    def row(name: str, params: CascadeParams, found, on_scenes, rnet_rows: int, onet_rows: int) -> dict:
        ap = evaluate(photos, found)
        extra, hits = unmatched(on_scenes, reference)
        entry = {
            "detector": name,
            "thresholds": list(params.thresholds),
            "rnet_iou_threshold": params.rnet_iou_threshold,
            "masked_ap10": ap["masked>=10"]["ap"],
            "unmasked_ap10": ap["unmasked>=10"]["ap"],
            "masked_ap20": ap["masked>=20"]["ap"],
            "unmasked_ap20": ap["unmasked>=20"]["ap"],
            "rnet_crops_per_photo": round(rnet_rows / len(images), 1),
            "onet_crops_per_photo": round(onet_rows / len(images), 1),
            "scene_faces_found": hits,
            "scene_unmatched": extra,
        }
        print(
            f"{name:13s} {str(params.thresholds):19s} iou {params.rnet_iou_threshold}  "
            f"masked {entry['masked_ap10']:.3f}  unmasked {entry['unmasked_ap10']:.3f}  "
            f"R-Net {entry['rnet_crops_per_photo']:6.1f}  O-Net {entry['onet_crops_per_photo']:5.1f} crops/photo  "
            f"scenes: {hits}/{sum(map(len, reference))} found, {extra} unmatched",
            flush=True,
        )
        return entry

    teacher = get_face_detector("mtcnn")
    nets = [RecordedNet(models.open_net(n, num_threads=THREADS)) for n in teacher.nets]
    params = CascadeParams(thresholds=teacher.thresholds, rnet_iou_threshold=teacher.rnet_iou_threshold)
    on_scenes = detect_all(clean, nets, params)
    reference = [boxes for boxes, _ in on_scenes]
    for net in nets:
        net.rows = 0
    found = detect_all(images, nets, params)
    report["teacher"] = row("mtcnn", params, found, on_scenes, nets[1].rows, nets[2].rows)

    student = get_face_detector(args.model)
    nets = [RecordedNet(models.open_net(n, num_threads=THREADS)) for n in student.nets]
    lowest = (min(PNET_THRESHOLDS), min(args.rnet_thresholds), min(args.onet_thresholds))
    detect_all(images, nets, CascadeParams(thresholds=lowest))  # records what the settings will mostly replay
    report["settings"] = []
    for iou, t0, t1 in itertools.product(RNET_IOU_THRESHOLDS, PNET_THRESHOLDS, args.rnet_thresholds):
        params = CascadeParams(thresholds=(t0, t1, min(args.onet_thresholds)), rnet_iou_threshold=iou)
        on_scenes = detect_all(clean, nets, params)
        for net in nets:
            net.rows = 0
        found = detect_all(images, nets, params)
        for t2 in args.onet_thresholds:
            at = dataclasses.replace(params, thresholds=(t0, t1, t2))
            entry = row(args.model, at, above(found, t2), above(on_scenes, t2), nets[1].rows, nets[2].rows)
            report["settings"].append(entry)
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
