"""Video pipeline benchmark: detect every frame vs ``lanner.FacePipeline`` at N = 1, 2, 5, 10 and auto.

Measured side by side in one run on the same decoded frames, interleaved frame by frame (decoding is
not timed; it costs every row the same):

* **real videos** (Debian ``opencv-doc``: Megamind.avi, vtest.avi): the reference is
  ``FaceDetector.detect`` on every frame; recall = the fraction of its faces that a pipeline track
  (not ``lost``) covers with IoU >= 0.5 on the same frame (one-to-one, Hungarian);
* **composed scenes**: faces from the celeba-faces folder (``--data``), pasted with a feathered
  mask onto a face-free photo from opencv-doc and moved along known paths, at face widths down to
  24 px (every third scene with two faces crossing, one hiding the other); recall against the
  ground-truth boxes, and identity switches: a ground-truth face whose
  matching track id differs from the one it last matched, per 100 matched face-frames (as in
  CLEAR-MOT's IDSW).

For every row: FPS (frames / seconds spent in ``detect``/``process``), latency p50/p99 per frame,
recall, precision (the share of non-lost tracks that cover a reference/ground-truth face), frames on
which the detector ran. Detector and trackers use ``--threads`` threads (2).

Usage::

    python benchmarks/pipeline/bench_pipeline.py --data CELEBA_FACES_DIR [--json results.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

import lanner
from lanner.pipeline import match_boxes

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")  # Debian package opencv-doc
REAL_VIDEOS = ("Megamind.avi", "vtest.avi")
SCENE_BACKGROUNDS = ("building.jpg", "home.jpg")  # photos without faces (checked at run time)
SCENE_SIZE = (640, 480)
SCENE_FACE_WIDTHS = (80, 50, 32, 24)  # px, one lane each, top to bottom
MODES = (1, 2, 5, 10, "auto")


@dataclass
class Clip:
    name: str
    frames: list[np.ndarray]
    truth_boxes: list[np.ndarray] | None = None  # per frame (K, 4) xyxy, composed scenes only
    truth_ids: list[np.ndarray] | None = None  # per frame (K,) identity of each box


# -- inputs ----------------------------------------------------------------------------------------


def read_video(path: Path, max_frames: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot read {path} (Debian package opencv-doc)")
    frames = []
    while len(frames) < max_frames:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def load_faces(data: Path) -> dict[str, list[dict]]:
    """faces.csv of the celeba-faces folder, grouped by identity."""
    by_identity: dict[str, list[dict]] = {}
    with open(data / "faces.csv", newline="") as f:
        for row in csv.DictReader(f):
            by_identity.setdefault(row["identity"], []).append(row)
    return by_identity


def compose_scene(data: Path, faces: dict[str, list[dict]], scene: int, n_frames: int, crossing: bool) -> Clip:
    """Faces of ``len(SCENE_FACE_WIDTHS)`` identities (chosen by a hash of the scene number) moving over a
    face-free photo, each in its own lane: across the frame and back at 1.5-4 px per frame, bobbing up and
    down. With ``crossing``, the two largest faces share the top lane, start at opposite sides and pass
    each other (the smaller one in front, hiding the larger one for a few frames, every crossing). The
    ground truth is each crop's face box (faces.csv), scaled and moved with it; a hidden face stays in
    the ground truth (every row misses it alike)."""
    rng = np.random.default_rng(1000 + scene)
    background = cv2.imread(str(OPENCV_DATA / SCENE_BACKGROUNDS[scene % len(SCENE_BACKGROUNDS)]))
    if background is None:
        raise FileNotFoundError(f"{OPENCV_DATA / SCENE_BACKGROUNDS[0]} is missing (Debian package opencv-doc)")
    background = cv2.resize(background, SCENE_SIZE, interpolation=cv2.INTER_AREA)
    identities = sorted(faces, key=lambda k: zlib.crc32(f"{scene}:{k}".encode()))[: len(SCENE_FACE_WIDTHS)]
    sprites = []
    lane_top = 10
    for k, (identity, width) in enumerate(zip(identities, SCENE_FACE_WIDTHS)):
        row = faces[identity][0]
        crop = cv2.imread(str(data / "images" / row["file"]))
        box = np.array([float(row[k]) for k in ("box_x0", "box_y0", "box_x1", "box_y1")])
        scale = width / (box[2] - box[0])
        side = int(round(crop.shape[0] * scale))
        sprite = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        yy, xx = (np.mgrid[0:side, 0:side] + 0.5) / side - 0.5
        alpha = np.clip((0.5 - np.hypot(xx, yy)) / 0.12, 0, 1)[..., None]  # feathered disc, no square edges
        sprite_def = dict(
            identity=identity,
            sprite=sprite,
            alpha=alpha,
            box=box * scale,
            side=side,
            top=lane_top,
            speed=rng.uniform(1.5, 4.0) * rng.choice([-1, 1]),
            x=rng.uniform(0, SCENE_SIZE[0] - side),
            phase=rng.uniform(0, 2 * np.pi),
            bob=min(12.0, 0.15 * side),
        )
        if crossing and k == 1:  # the second face shares the first one's lane, coming the other way
            first = sprites[0]
            sprite_def.update(
                top=first["top"] + (first["side"] - side) / 2, x=SCENE_SIZE[0] - side, speed=-abs(sprite_def["speed"])
            )
            first.update(x=0.0, speed=abs(first["speed"]))
        else:
            lane_top += side + 8
        sprites.append(sprite_def)
    frames, truth_boxes, truth_ids = [], [], []
    for t in range(n_frames):
        frame = background.astype(np.float32)
        boxes = []
        for s in sprites:
            x0 = s["x"] + s["speed"] * t
            span = SCENE_SIZE[0] - s["side"]
            x0 = span - abs((x0 % (2 * span)) - span)  # bounce between the edges
            y0 = s["top"] + s["bob"] * (1 + np.sin(2 * np.pi * t / 60 + s["phase"])) - (s["bob"] if crossing else 0)
            y0 = min(max(y0, 0), SCENE_SIZE[1] - s["side"])
            xi, yi = int(round(x0)), int(round(y0))
            region = frame[yi : yi + s["side"], xi : xi + s["side"]]
            region[:] = region * (1 - s["alpha"]) + s["sprite"] * s["alpha"]
            boxes.append(s["box"] + [xi, yi, xi, yi])
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
        truth_boxes.append(np.array(boxes, np.float32))
        truth_ids.append(np.array([s["identity"] for s in sprites]))
    return Clip(f"composed-{scene}" + ("-crossing" if crossing else ""), frames, truth_boxes, truth_ids)


# -- measuring -------------------------------------------------------------------------------------


def run_interleaved(detector: lanner.FaceDetector, clip: Clip, modes, threads: int):
    """The reference (``detect`` on every frame) and one pipeline per mode, all fed frame by frame in turn
    (the order rotating from frame to frame), so that the load of this shared machine, which drifts over
    seconds, weighs on every row alike. Returns the reference boxes, the per-mode tracks, the per-row
    seconds per frame ``(1 + len(modes), frames)`` and the detector runs per mode."""
    pipelines = [lanner.FacePipeline(detector, detect_every=m, num_threads=threads) for m in modes]
    n_rows = 1 + len(modes)
    times = np.zeros((n_rows, len(clip.frames)))
    ref_boxes: list[np.ndarray] = []
    outputs: list[list] = [[] for _ in modes]
    try:
        for i, frame in enumerate(clip.frames):
            for k in np.roll(np.arange(n_rows), -i):
                t0 = time.perf_counter()
                if k == 0:
                    result = detector.detect(frame)
                else:
                    result = pipelines[k - 1].process(frame)
                times[k, i] = time.perf_counter() - t0
                if k == 0:
                    ref_boxes.append(np.asarray(result.boxes, np.float32).reshape(-1, 4))
                else:
                    outputs[k - 1].append(result)
        detections = [p.detections_run for p in pipelines]
    finally:
        for p in pipelines:
            p.close()
    return ref_boxes, outputs, times, detections


def score(boxes_per_frame: list[np.ndarray], truth: list[np.ndarray], ids_per_frame=None, truth_ids=None) -> dict:
    """Recall/precision of ``boxes_per_frame`` against ``truth`` (IoU >= 0.5, one-to-one per frame) and,
    with ids, identity switches per 100 matched truth-frames."""
    hits = n_truth = n_out = switches = 0
    last_id: dict = {}
    for f, (out, ref) in enumerate(zip(boxes_per_frame, truth)):
        pairs = match_boxes(ref, out, 0.5)
        hits += len(pairs)
        n_truth += len(ref)
        n_out += len(out)
        if ids_per_frame is not None:
            for i, j in pairs:
                who, track = truth_ids[f][i], ids_per_frame[f][j]
                if who in last_id and last_id[who] != track:
                    switches += 1
                last_id[who] = track
    result = {
        "recall": hits / n_truth if n_truth else None,
        "precision": hits / n_out if n_out else None,
        "faces": n_truth,
    }
    if ids_per_frame is not None:
        result["id_switches_per_100"] = 100.0 * switches / hits if hits else None
        result["id_switches"] = switches
    return result


def timing(times: np.ndarray) -> dict:
    return {
        "fps": len(times) / times.sum(),
        "p50_ms": 1e3 * float(np.percentile(times, 50)),
        "p99_ms": 1e3 * float(np.percentile(times, 99)),
    }


def bench_clip(detector, clip: Clip, threads: int, modes) -> list[dict]:
    ref_boxes, outputs, times, detections = run_interleaved(detector, clip, modes, threads)
    # on real videos the reference is its own ground truth (recall 1 by definition)
    truth = clip.truth_boxes if clip.truth_boxes is not None else ref_boxes
    rows = [
        {
            "clip": clip.name,
            "mode": "detect every frame",
            "frames": len(clip.frames),
            **timing(times[0]),
            "detections": len(clip.frames),
            **score(ref_boxes, truth),
        }
    ]
    for k, mode in enumerate(modes):
        boxes = [np.array([t.box for t in out if not t.lost], np.float32).reshape(-1, 4) for out in outputs[k]]
        ids = [[t.track_id for t in out if not t.lost] for out in outputs[k]]
        rows.append(
            {
                "clip": clip.name,
                "mode": f"pipeline N={mode}",
                "frames": len(clip.frames),
                **timing(times[k + 1]),
                "detections": detections[k],
                **score(boxes, truth, ids if clip.truth_ids is not None else None, clip.truth_ids),
            }
        )
    base = rows[0]
    for r in rows:
        r["fps_ratio"] = r["fps"] / base["fps"]
        r["recall_ratio"] = (r["recall"] / base["recall"]) if r["recall"] is not None and base["recall"] else None
    return rows


def markdown(rows: list[dict]) -> str:
    def f(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    lines = [
        "| clip | mode | FPS | vs every frame | p50 ms | p99 ms | recall | vs every frame | precision | "
        "ID switches / 100 | detector runs |",
        "|" + "---|" * 11,
    ]
    for r in rows:
        lines.append(
            f"| {r['clip']} | {r['mode']} | {r['fps']:.1f} | {r['fps_ratio']:.2f}x | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {f(r['recall'], '.3f')} | {f(r['recall_ratio'], '.3f')} | "
            f"{f(r['precision'], '.3f')} | {f(r.get('id_switches_per_100'), '.2f')} | "
            f"{r['detections']}/{r['frames']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="the celeba-faces folder (composed scenes; skipped without it)")
    parser.add_argument("--frames", type=int, default=300, help="frames per real video at most")
    parser.add_argument("--scene-frames", type=int, default=150, help="frames per composed scene")
    parser.add_argument("--scenes", type=int, default=3, help="composed scenes; every third has crossing faces")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    load_at_start = os.getloadavg()

    clips = [Clip(name, read_video(OPENCV_DATA / name, args.frames)) for name in REAL_VIDEOS]
    detector = lanner.FaceDetector(num_threads=args.threads)
    if args.data is not None:
        faces = load_faces(args.data)
        for s in range(args.scenes):
            clips.append(compose_scene(args.data, faces, s, args.scene_frames, crossing=s % 3 == 2))
    for name in SCENE_BACKGROUNDS if args.data is not None else ():
        found = len(detector.detect(cv2.resize(cv2.imread(str(OPENCV_DATA / name)), SCENE_SIZE)))
        print(f"background {name}: {found} face(s) found by the detector (should be 0)")
    detector.detect(clips[0].frames[0])  # warm-up (compiles on first use)
    started = time.time()
    rows = []
    for clip in clips:
        shape = clip.frames[0].shape
        print(f"{clip.name}: {len(clip.frames)} frames {shape[1]}x{shape[0]}", flush=True)
        rows += bench_clip(detector, clip, args.threads, MODES)
    table = markdown(rows)
    print(table)
    meta = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_at_start": load_at_start,
        "seconds": time.time() - started,
        "lanner": lanner.__version__,
        "opencv": cv2.__version__,
        "threads": args.threads,
    }
    print(meta)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()
