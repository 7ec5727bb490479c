"""``lanner detect``: find faces in images and videos, write annotated copies and JSON.

Outputs are checked before any work and written atomically (:mod:`lanner.cli.media`). With
several inputs, ``--out`` is a folder and each input gets ``NAME_faces.jpg`` (``.mp4`` for a
video); two inputs with the same name get ``NAME_faces.jpg`` and ``NAME_faces_2.jpg``. An
input that cannot be read or processed is reported on stderr and skipped; the JSON then lists
it under ``"failed"`` and the command exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..models.face_detectors import DEFAULT_FACE_DETECTOR
from ..names import AUTO, FACE_BACKENDS, FACE_PRECISIONS
from .media import OutputPaths, check_inputs, is_video, process_video, read_image, write_image, write_json

_BOX_COLOR = (0, 255, 0)  # BGR
_LANDMARK_COLOR = (0, 0, 255)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="detect faces in images or videos (MTCNN, compiled for this CPU)",
        description="Detect faces; print a summary, optionally write annotated media and JSON.",
    )
    p.add_argument("inputs", nargs="*", metavar="IMAGE_OR_VIDEO", help="image or video files")
    p.add_argument("--demo", action="store_true", help="run on the bundled demo photo (NASA astronaut portrait)")
    p.add_argument(
        "--out",
        metavar="PATH",
        help="annotated output: a file for one input (.jpg/.png, or .mp4/.avi "
        "for a video), a folder for several (NAME_faces.jpg each; NAME_faces_2.jpg for a repeated name)",
    )
    p.add_argument("--json", metavar="PATH", help="write detections as JSON (.json)")
    p.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help="face detector (`lanner models list`; default: the registry's default)",
    )
    p.add_argument("--backend", default="auto", choices=(AUTO, *FACE_BACKENDS))
    p.add_argument("--precision", default="auto", choices=(AUTO, *FACE_PRECISIONS))
    p.add_argument("--min-face-size", type=float, default=20.0, metavar="PX")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads per net")
    p.add_argument("--no-progress", action="store_true", help="no progress bar for videos")
    p.add_argument(
        "--quality",
        action="store_true",
        help="add each face's quality in [0, 1] (lanner.FaceRecognizer.quality) to the JSON",
    )
    p.set_defaults(func=run)


def demo_image_path() -> Path:
    """The bundled demo photo (scikit-image's ``astronaut``: Eileen Collins, NASA, public domain)."""
    return Path(__file__).resolve().parent.parent / "face" / "data" / "astronaut.jpg"


def run(args: argparse.Namespace) -> int:
    from ..face import FaceDetector, FaceRecognizer

    inputs = check_inputs(args.inputs)
    if args.demo:
        inputs.insert(0, demo_image_path())
    if not inputs:
        raise ValueError("give at least one IMAGE_OR_VIDEO, or --demo")
    outputs = OutputPaths(inputs)
    out_paths = outputs.per_input(args.out, "_faces")
    json_path = outputs.file(args.json, "json", "--json") if args.json else None
    records: list[dict] = []
    scorer = FaceRecognizer(num_threads=args.threads) if args.quality else None
    failed: list[dict] = []
    with FaceDetector(
        model=args.model or DEFAULT_FACE_DETECTOR,
        backend=args.backend,
        precision=args.precision,
        min_face_size=args.min_face_size,
        num_threads=args.threads,
    ) as detector:
        for path, out in zip(inputs, out_paths):
            try:
                if is_video(path):
                    records.append(_detect_video(detector, path, out, not args.no_progress, scorer))
                else:
                    records.append(_detect_image(detector, path, out, scorer))
            except (ValueError, TypeError, OSError) as exc:
                print(f"lanner detect: error: {path}: {exc}", file=sys.stderr)
                failed.append({"path": str(path), "error": str(exc)})
        summary = repr(detector)
    if scorer is not None:
        scorer.close()
    if json_path is not None:
        write_json(json_path, {"detector": summary, "inputs": records, "failed": failed})
        print(f"wrote {json_path}")
    if failed:
        print(f"lanner detect: {len(failed)} of {len(inputs)} input(s) failed", file=sys.stderr)
        return 1
    return 0


def _detect_image(detector, path: Path, out: Path | None, scorer=None) -> dict:
    image, warnings = read_image(path)
    for w in warnings:
        print(f"lanner detect: warning: {path}: {w}", file=sys.stderr)
    faces = detector.detect(image)
    print(
        f"{path}: {len(faces)} face(s)"
        + "".join(
            f"\n  box=({b[0]:.0f}, {b[1]:.0f}, {b[2]:.0f}, {b[3]:.0f}) score={s:.3f}"
            for b, s in zip(faces.boxes, faces.scores)
        )
    )
    if out is not None:
        write_image(out, draw(image, faces))
        print(f"  wrote {out}")
    record = {"path": str(path), "width": image.shape[1], "height": image.shape[0], **_faces_dict(image, faces, scorer)}
    if warnings:
        record["warnings"] = warnings
    return record


def draw(image, faces):
    """Return a copy of a BGR image with boxes, scores and landmarks drawn."""
    import cv2

    canvas = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for box, score, points in zip(faces.boxes, faces.scores, faces.landmarks):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), _BOX_COLOR, thickness)
        cv2.putText(
            canvas,
            f"{score:.2f}",
            (x1, max(0, y1 - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * thickness,
            _BOX_COLOR,
            thickness,
        )
        for x, y in points:
            cv2.circle(canvas, (int(round(float(x))), int(round(float(y)))), thickness + 1, _LANDMARK_COLOR, -1)
    return canvas


def _faces_dict(image, faces, scorer) -> dict:
    """``faces.to_dict()``, with each face's ``quality`` when ``scorer`` (a FaceRecognizer) is given."""
    record = faces.to_dict()
    if scorer is not None:
        from ..pipeline import whole_face_qualities
        from .recognition import json_number

        # a face cut by the image's edge (a landmark outside it) cannot be aligned: its quality is null
        for face, quality in zip(record["faces"], whole_face_qualities(scorer.quality, image, faces)):
            face["quality"] = json_number(quality)
    return record


def _detect_video(detector, path: Path, out: Path | None, progress: bool, scorer=None) -> dict:
    frames: list[dict] = []

    def step(index, frame):
        faces = detector.detect(frame)
        frames.append({"index": index, **_faces_dict(frame, faces, scorer)})
        return draw(frame, faces) if out is not None else None

    video = process_video(path, step, out=out, progress=progress)
    n_faces = sum(len(f["faces"]) for f in frames)
    print(f"{path}: {video.frames} frames, {n_faces} face detections" + (f"; wrote {out}" if out else ""))
    return {"path": str(path), "fps": video.fps, "frames": frames}
