"""Tune the masked-face student's cascade thresholds on the facemask-voc TRAIN split (issue 15).

The student (``mtcnn-masked``) spends its extra time in O-Net: its R-Net passes more candidates
than the teacher's. This script sweeps the P-Net and R-Net face-probability thresholds (and
O-Net's) and reports, for each setting, VOC AP (masked / unmasked, faces >= 10 px, as
``bench_masked.py`` computes it) and the mean number of R-Net and O-Net crops per photo, the
work that differs between settings. Only the **train** split is read: the test split stays for
the one confirmation run of ``bench_masked.py``.

Exact and cheap: every net processes each crop on its own, so its output for a crop can be
recorded once (keyed by the crop's bytes: crops and pyramid levels are deterministic) and replayed
through the real cascade (``lanner.face.cascade.run_cascade``: same crops, NMS, regression). The
first pass runs at the lowest thresholds of the grid; greedy NMS keeps, of the boxes above a
higher threshold of the *same* stage, exactly the boxes it kept before, so raising R-Net's or
O-Net's threshold only replays. A higher P-Net threshold can let R-Net's NMS keep a box it
suppressed before (the suppressor fell out at P-Net): such crops run live. The teacher runs once at
its own thresholds for the reference row.

Usage: python benchmarks/detection/tune_masked.py --data FACEMASK_VOC_FOLDER [--json tune_masked.json]
"""

from __future__ import annotations

import argparse
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_masked import evaluate  # noqa: E402

THREADS = 2
PNET_THRESHOLDS = (0.6, 0.7)
RNET_THRESHOLDS = (0.9, 0.95, 0.97, 0.98, 0.99)
RNET_IOU_THRESHOLDS = (0.5, 0.6, 0.7)  # NMS between R-Net's survivors (the teacher's 0.7)
ONET_THRESHOLDS = (0.7,)  # below the R-Net thresholds swept, O-Net's threshold barely moves AP


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the facemask-voc folder (its train split is read)")
    parser.add_argument("--model", default="mtcnn-masked", help="the student detector to tune")
    parser.add_argument("--json", default=str(HERE / "tune_masked.json"))
    args = parser.parse_args()

    photos = read_facemask(args.data, "train")
    images = [cv2.imread(str(p.image_path)) for p in photos]
    report: dict = {"split": "train", "photos": len(photos), "model": args.model, "settings": []}

    def row(name: str, params: CascadeParams, found, rnet_rows: int, onet_rows: int) -> dict:
        ap = evaluate(photos, found)
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
        }
        print(
            f"{name:13s} {str(params.thresholds):18s} iou {params.rnet_iou_threshold}  "
            f"masked {entry['masked_ap10']:.3f}  unmasked {entry['unmasked_ap10']:.3f}  "
            f"R-Net {entry['rnet_crops_per_photo']:6.1f}  O-Net {entry['onet_crops_per_photo']:5.1f} crops/photo",
            flush=True,
        )
        return entry

    teacher = get_face_detector("mtcnn")
    nets = [RecordedNet(models.open_net(n, num_threads=THREADS)) for n in teacher.nets]
    params = CascadeParams(thresholds=teacher.thresholds, rnet_iou_threshold=teacher.rnet_iou_threshold)
    found = detect_all(images, nets, params)
    report["teacher"] = row("mtcnn", params, found, nets[1].rows, nets[2].rows)

    student = get_face_detector(args.model)
    nets = [RecordedNet(models.open_net(n, num_threads=THREADS)) for n in student.nets]
    lowest = (min(PNET_THRESHOLDS), min(RNET_THRESHOLDS), min(ONET_THRESHOLDS))
    detect_all(images, nets, CascadeParams(thresholds=lowest))  # records what the settings will mostly replay
    grid = itertools.product(RNET_IOU_THRESHOLDS, PNET_THRESHOLDS, RNET_THRESHOLDS, ONET_THRESHOLDS)
    for iou, *thresholds in grid:
        for net in nets:
            net.rows = 0
        params = CascadeParams(thresholds=tuple(thresholds), rnet_iou_threshold=iou)
        found = detect_all(images, nets, params)
        report["settings"].append(row(args.model, params, found, nets[1].rows, nets[2].rows))
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
