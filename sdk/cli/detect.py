"""``lanner detect``: find faces in images and videos, write annotated copies and JSON."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

_VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
_BOX_COLOR = (0, 255, 0)  # BGR
_LANDMARK_COLOR = (0, 0, 255)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="detect faces in images or videos (MTCNN, compiled for this CPU)",
                       description="Detect faces; print a summary, optionally write annotated media and JSON.")
    p.add_argument("inputs", nargs="*", metavar="IMAGE_OR_VIDEO", help="image or video files")
    p.add_argument("--demo", action="store_true", help="run on the bundled demo photo (NASA astronaut portrait)")
    p.add_argument("--out", metavar="PATH", help="annotated output: a file for one input (.jpg/.png, or .mp4 for "
                   "a video), a folder for several")
    p.add_argument("--json", metavar="PATH", help="write detections as JSON")
    p.add_argument("--model", default=None, metavar="NAME",
                   help="face detector (`lanner models list`; default: the registry's default)")
    p.add_argument("--backend", default="auto", choices=("auto", "openvino", "onnxruntime"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"))
    p.add_argument("--min-face-size", type=float, default=20.0, metavar="PX")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads per net")
    p.add_argument("--no-progress", action="store_true", help="no progress bar for videos")
    p.set_defaults(func=run)


def demo_image_path() -> Path:
    """The bundled demo photo (scikit-image's ``astronaut``: Eileen Collins, NASA, public domain)."""
    return Path(__file__).resolve().parent.parent / "face" / "data" / "astronaut.jpg"


def run(args: argparse.Namespace) -> int:
    import cv2

    from ..face import FaceDetector

    inputs = [Path(p) for p in args.inputs]
    if args.demo:
        inputs.insert(0, demo_image_path())
    if not inputs:
        raise ValueError("give at least one IMAGE_OR_VIDEO, or --demo")
    for path in inputs:
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
    out_paths = _output_paths(inputs, args.out)
    records = []
    from ..models.face_detectors import DEFAULT_FACE_DETECTOR

    with FaceDetector(model=args.model or DEFAULT_FACE_DETECTOR, backend=args.backend, precision=args.precision,
                      min_face_size=args.min_face_size, num_threads=args.threads) as detector:
        for path, out in zip(inputs, out_paths):
            if path.suffix.lower() in _VIDEO_SUFFIXES:
                records.append(_detect_video(detector, path, out, not args.no_progress))
            else:
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    raise ValueError(f"cannot read {path} as an image")
                faces = detector.detect(image)
                print(f"{path}: {len(faces)} face(s)" + "".join(
                    f"\n  box=({b[0]:.0f}, {b[1]:.0f}, {b[2]:.0f}, {b[3]:.0f}) score={s:.3f}"
                    for b, s in zip(faces.boxes, faces.scores)))
                if out is not None:
                    _write_image(out, draw(image, faces))
                    print(f"  wrote {out}")
                records.append({"path": str(path), "width": image.shape[1], "height": image.shape[0], **faces.to_dict()})
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"detector": repr(detector), "inputs": records}, indent=1))
        print(f"wrote {args.json}")
    return 0


def draw(image, faces):
    """Return a copy of a BGR image with boxes, scores and landmarks drawn."""
    import cv2

    canvas = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for box, score, points in zip(faces.boxes, faces.scores, faces.landmarks):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), _BOX_COLOR, thickness)
        cv2.putText(canvas, f"{score:.2f}", (x1, max(0, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thickness, _BOX_COLOR, thickness)
        for x, y in points:
            cv2.circle(canvas, (int(round(float(x))), int(round(float(y)))), thickness + 1, _LANDMARK_COLOR, -1)
    return canvas


def _output_paths(inputs: list[Path], out: str | None) -> list[Path | None]:
    if out is None:
        return [None] * len(inputs)
    target = Path(out)
    if len(inputs) == 1 and target.suffix:
        return [target]
    target.mkdir(parents=True, exist_ok=True)
    return [target / (p.stem + "_faces" + (".mp4" if p.suffix.lower() in _VIDEO_SUFFIXES else ".jpg")) for p in inputs]


def _write_image(path: Path, image) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise ValueError(f"cannot write {path}: unsupported image extension {path.suffix!r}")


def _detect_video(detector, path: Path, out: Path | None, progress: bool) -> dict:
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"cannot open {path} as a video")
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    frames = []
    bar = _ProgressBar(path.name, total) if progress else None
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            faces = detector.detect(frame)
            frames.append({"index": len(frames), **faces.to_dict()})
            if out is not None:
                if writer is None:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                             (frame.shape[1], frame.shape[0]))
                    if not writer.isOpened():
                        raise ValueError(f"cannot write video {out}")
                writer.write(draw(frame, faces))
            if bar is not None:
                bar.update(len(frames))
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        if bar is not None:
            bar.close()
    n_faces = sum(len(f["faces"]) for f in frames)
    print(f"{path}: {len(frames)} frames, {n_faces} face detections" + (f"; wrote {out}" if out else ""))
    return {"path": str(path), "fps": fps, "frames": frames}


class _ProgressBar:
    """A one-line progress bar on stderr (frames done / total, rate)."""

    def __init__(self, label: str, total: int | None) -> None:
        import time

        self._label, self._total, self._start, self._clock = label, total, time.perf_counter(), time.perf_counter
        self._last = 0.0

    def update(self, done: int) -> None:
        now = self._clock()
        if now - self._last < 0.1 and done != self._total:
            return
        self._last = now
        rate = done / max(now - self._start, 1e-9)
        if self._total:
            filled = int(30 * done / self._total)
            text = f"\r{self._label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{self._total} {rate:.1f} fps"
        else:
            text = f"\r{self._label} {done} frames {rate:.1f} fps"
        sys.stderr.write(text)
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()
