"""Face detection benchmark: Lanner's compiled MTCNN vs facenet-pytorch's MTCNN (and OpenCV Haar).

Measures, in one run and on the same photos:
  * parity with facenet-pytorch 2.6.0 MTCNN (same face count, matched IoU, landmark and score gaps);
  * end-to-end ``detect`` time on the 1280x886 group photo and the 548x342 photo, 2 threads,
    each (detector, photo) timing in its own fresh process (so torch's and OpenVINO's thread
    pools never compete), rounds interleaved, median of per-process medians; per-stage times;
    each backend x precision;
  * OpenCV's Haar cascade (frontalface_default) for context;
  * robustness: the fraction of clean-image faces still found under downscaling, blur,
    JPEG quality 20 and a synthetic mask over the lower face.

facenet-pytorch 2.6.0 pins torch<2.3 and numpy<2 and no CPU torchvision wheel exists for our
torch, so it is installed with ``pip install --no-deps facenet-pytorch==2.6.0`` and run with the
small ``torchvision`` stand-in (vectorised pure-torch NMS, ``to_tensor``) and ``requests``
stand-in from tests/support/standins, which this script puts on its own ``sys.path``.
The photos and the reference wrapper are the tests' (tests/support/photos.py, facenet_reference.py).

Usage: python benchmarks/detection/bench_detection.py [--rounds 5] [--reps 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SUPPORT = HERE.parents[1] / "tests" / "support"
sys.path.insert(0, str(SUPPORT))
sys.path.insert(0, str(SUPPORT / "standins"))  # this process only: facenet-pytorch's stand-ins

import cv2  # noqa: E402

import photos as images  # noqa: E402

THREADS = 2
HAAR = Path("/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml")
CONFIGS = [("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "fp16"), ("onnxruntime", "fp32")]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def parity(ours, ref) -> dict:
    boxes, scores, landmarks = ref
    out = {"faces_ref": len(scores), "faces_ours": len(ours)}
    if len(ours) and len(scores):
        m = iou_matrix(ours.boxes, boxes)
        j = m.argmax(1)
        out.update(
            min_iou=float(m.max(1).min()),
            max_landmark_px=float(np.abs(ours.landmarks - landmarks[j]).max()),
            max_score_diff=float(np.abs(ours.scores - scores[j]).max()),
        )
    return out


def to_rgb(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else np.ascontiguousarray(image[:, :, ::-1])


def haar_detect(cascade, image: np.ndarray) -> np.ndarray:
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(20, 20))
    return np.asarray(found, np.float32).reshape(-1, 4)


def degrade(image: np.ndarray, kind: str, faces) -> tuple[np.ndarray, float]:
    """Return the degraded image and the factor mapping its coordinates back to the original."""
    if kind == "downscale x0.5":
        return cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA), 2.0
    if kind == "downscale x0.25":
        return cv2.resize(image, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA), 4.0
    if kind == "gaussian blur s=3":
        return cv2.GaussianBlur(image, (0, 0), 3.0), 1.0
    if kind == "jpeg q=20":
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 20])
        return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), 1.0
    if kind == "mask over lower face":
        out = image.copy()
        color = 200 if image.ndim == 2 else (215, 200, 170)  # light surgical-mask blue-grey (BGR)
        for box, pts in zip(faces.boxes, faces.landmarks):
            x1, y1, x2, y2 = box
            nose_y = pts[2, 1]
            poly = np.array([[x1, nose_y], [x2, nose_y], [x2 - 0.1 * (x2 - x1), y2], [x1 + 0.1 * (x2 - x1), y2]])
            cv2.fillPoly(out, [np.round(poly).astype(np.int32)], color)
        return out, 1.0
    raise ValueError(kind)


DEGRADATIONS = ["downscale x0.5", "downscale x0.25", "gaussian blur s=3", "jpeg q=20", "mask over lower face"]


def found_fraction(clean, degraded_boxes: np.ndarray) -> tuple[int, int]:
    if not len(clean):
        return 0, 0
    m = iou_matrix(clean.boxes, degraded_boxes)
    return int((m.max(1) >= 0.5).sum()) if m.size else 0, len(clean)


SPEED_PHOTOS = ("group", "messi")


def _time_in_fresh_process(detector: str, photo: str, reps: int) -> dict:
    """Run :func:`time_worker` in a new interpreter and return its JSON line."""
    out = subprocess.run(
        [sys.executable, __file__, "--time-worker", detector, photo, "--reps", str(reps)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def time_worker(detector: str, photo: str, reps: int) -> int:
    """Time one detector on one photo in this (fresh) process and print one JSON line.

    Only the one runtime under test lives in the process: torch's intra-op pool (facenet-pytorch)
    and OpenVINO's / ONNX Runtime's threads never compete for the 2 cores, which in one shared
    process inflated facenet-pytorch's times ~10-30x. Two warm-up calls, then ``reps`` timed ones.
    """
    image = getattr(images, photo)()
    if detector == "facenet-pytorch MTCNN":
        import torch

        import facenet_reference

        torch.set_num_threads(THREADS)
        mtcnn = facenet_reference.load_mtcnn(num_threads=THREADS)
        rgb = to_rgb(image)
        run, profile = (lambda: facenet_reference.detect(mtcnn, rgb)), None
    elif detector == "OpenCV Haar (frontalface_default)":
        cv2.setNumThreads(THREADS)
        haar = cv2.CascadeClassifier(str(HAAR))
        run, profile = (lambda: haar_detect(haar, image)), None
    else:
        import lanner

        backend, precision = detector.removeprefix("lanner ").split("/")
        det = lanner.FaceDetector(backend=backend, precision=precision, num_threads=THREADS)
        run, profile = (lambda: det.detect(image)), (lambda: det.profile(image)[1])
    from lanner.timing import RunPolicy, measure

    stats = measure(run, RunPolicy(warmup=2, runs=reps)).stats
    result = {"median_ms": stats.p50_ms, "min_ms": stats.min_ms}
    if profile is not None:
        per = [profile() for _ in range(max(3, reps // 2))]
        result["stages_ms"] = {k: statistics.median(p[k] for p in per) * 1e3 for k in per[0]}
    print(json.dumps(result))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10, help="timed calls per fresh process (after warm-up)")
    parser.add_argument("--rounds", type=int, default=5, help="fresh processes per (detector, photo)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--time-worker", nargs=2, metavar=("DETECTOR", "PHOTO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time_worker:
        return time_worker(*args.time_worker, reps=args.reps)

    import torch

    import lanner

    import facenet_reference

    torch.set_num_threads(THREADS)
    cv2.setNumThreads(THREADS)
    photos = images.all_photos()
    mtcnn = facenet_reference.load_mtcnn(num_threads=THREADS)
    haar = cv2.CascadeClassifier(str(HAAR))
    report: dict = {
        "machine": {
            "cpu": _cpu(),
            "cores": os.cpu_count(),
            "threads": THREADS,
            "python": platform.python_version(),
            "loadavg_start": os.getloadavg(),
        },
        "parity": {},
        "speed": {},
        "robustness": {},
    }

    detectors = {}
    for backend, precision in CONFIGS:
        try:
            detectors[f"{backend}/{precision}"] = lanner.FaceDetector(
                backend=backend, precision=precision, num_threads=THREADS
            )
        except Exception as exc:  # noqa: BLE001 - reported, not fatal: a backend may not build here
            report["speed"][f"{backend}/{precision}"] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"skip {backend}/{precision}: {exc}", file=sys.stderr)
    main_det = detectors["openvino/fp32"]

    # Parity on every photo, for every configuration.
    refs = {name: facenet_reference.detect(mtcnn, to_rgb(im)) for name, im in photos.items()}
    for cfg, det in detectors.items():
        report["parity"][cfg] = {name: parity(det.detect(im), refs[name]) for name, im in photos.items()}

    # Speed: one fresh process per (detector, photo) timing, interleaved rounds (see time_worker).
    runners = ["facenet-pytorch MTCNN", "OpenCV Haar (frontalface_default)", *(f"lanner {cfg}" for cfg in detectors)]
    samples = {(name, key): [] for name in SPEED_PHOTOS for key in runners}
    for r in range(args.rounds):  # round-robin, so that drifting machine load hits every detector alike
        for name in SPEED_PHOTOS:
            for key in runners:
                samples[name, key].append(_time_in_fresh_process(key, name, args.reps))
        report["machine"].setdefault("loadavg_after_each_round", []).append(os.getloadavg())
        print(
            f"[bench] timing round {r + 1}/{args.rounds} done, load {os.getloadavg()[0]:.1f}",
            file=sys.stderr,
            flush=True,
        )
    for name in SPEED_PHOTOS:
        image = photos[name]
        ref_ms = statistics.median(s["median_ms"] for s in samples[name, "facenet-pytorch MTCNN"])
        rows = {}
        for key in runners:
            runs = samples[name, key]
            ms = statistics.median(s["median_ms"] for s in runs)
            rows[key] = {
                "median_ms": round(ms, 2),
                "min_ms": round(min(s["min_ms"] for s in runs), 2),
                "speedup_vs_facenet": round(ref_ms / ms, 2),
                "per_process_medians_ms": [round(s["median_ms"], 2) for s in runs],
            }
            if "stages_ms" in runs[0]:
                rows[key]["stages_ms"] = {
                    st: round(statistics.median(s["stages_ms"][st] for s in runs), 2) for st in runs[0]["stages_ms"]
                }
        rows["OpenCV Haar (frontalface_default)"]["faces"] = len(haar_detect(haar, image))
        report["speed"][f"{name} {image.shape[1]}x{image.shape[0]}"] = rows

    # Robustness (default detector), as the fraction of clean-image faces still found.
    for kind in DEGRADATIONS:
        found = total = 0
        per_photo = {}
        for name, image in photos.items():
            clean = main_det.detect(image)
            degraded, back = degrade(image, kind, clean)
            got = main_det.detect(degraded)
            f, t = found_fraction(clean, got.boxes * back)
            per_photo[name] = f"{f}/{t}"
            found, total = found + f, total + t
        report["robustness"][kind] = {
            "found": found,
            "of": total,
            "fraction": round(found / max(total, 1), 3),
            "per_photo": per_photo,
        }
    report["machine"]["loadavg_end"] = os.getloadavg()
    for det in detectors.values():
        det.close()
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor()


if __name__ == "__main__":
    raise SystemExit(main())
