"""``lanner enroll`` and ``lanner identify``: face recognition against a gallery file.

Both detect faces with :class:`lanner.FaceDetector`, align and embed them with
:class:`lanner.FaceRecognizer`; ``enroll`` adds the largest face of each photo to a
:class:`lanner.FaceGallery` under one name, ``identify`` names every face it finds. On a video,
``identify`` follows each face across frames and names the track from its best-quality frames
(:meth:`lanner.FaceRecognizer.quality`), embedding only those (``--best-frames``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .._paths import existing_folder
from ..ops import box_iou
from .media import OutputPaths, check_inputs, is_video, process_video, read_image, write_image, write_json

_KNOWN_COLOR = (0, 200, 0)  # BGR
_UNKNOWN_COLOR = (0, 0, 255)


def add_parser(sub: argparse._SubParsersAction) -> None:
    enroll = sub.add_parser(
        "enroll",
        help="add a person's face to a gallery file",
        description="Detect the largest face of each photo and add it to the gallery under "
        "NAME (the gallery file is created if missing).",
    )
    enroll.add_argument("name", metavar="NAME")
    enroll.add_argument("images", nargs="+", metavar="IMAGE", help="photos of that person")
    enroll.add_argument("--gallery", required=True, metavar="G", help="gallery file (.npz)")
    enroll.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="COS",
        help="for a new gallery: similarity below which a face is unknown "
        "(default: the teacher's, calibrated at FAR 1e-3)",
    )
    enroll.set_defaults(func=run_enroll)

    identify = sub.add_parser(
        "identify",
        help="name the faces in images or videos from a gallery",
        description="Detect, align, embed and identify every face; print the names, "
        "optionally write annotated media and JSON.",
    )
    identify.add_argument("inputs", nargs="+", metavar="IMAGE_OR_VIDEO")
    identify.add_argument("--gallery", required=True, metavar="G", help="gallery file made by `lanner enroll`")
    identify.add_argument(
        "--out",
        metavar="PATH",
        help="annotated output: a file for one input (.jpg/.png, or .mp4 for a video), a folder for several",
    )
    identify.add_argument("--json", metavar="PATH", help="write faces, names and similarities as JSON")
    identify.add_argument("--min-face-size", type=float, default=20.0, metavar="PX")
    identify.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads per net")
    identify.add_argument("--no-progress", action="store_true", help="no progress bar for videos")
    identify.add_argument(
        "--fast",
        action="store_true",
        help="faces up to 20 px by the 32 px student instead of the bridge model: ~29x faster per face, "
        "less accurate (lanner.models.face_embedders.FAST_EMBEDDERS)",
    )
    identify.add_argument(
        "--best-frames",
        type=int,
        default=3,
        metavar="K",
        help="videos: follow each face across frames and identify the track from its K "
        "best-quality frames, quality-weighted (lanner.FaceRecognizer.quality); 0: embed "
        "and identify every face of every frame",
    )
    identify.set_defaults(func=run_identify)


def _read_image(path: Path) -> np.ndarray:
    image, warnings = read_image(path)
    for w in warnings:
        print(f"lanner: warning: {path}: {w}", file=sys.stderr)
    return image


def run_enroll(args: argparse.Namespace) -> int:
    from ..face import FaceDetector, FaceGallery, FaceRecognizer
    from ..face.align import faces_inside

    gallery_path = Path(args.gallery)
    images = [_read_image(p) for p in check_inputs(args.images)]
    if gallery_path.exists():
        gallery = FaceGallery.load(gallery_path)
        if args.threshold is not None and args.threshold != gallery.threshold:
            raise ValueError(
                f"--threshold {args.threshold} differs from the existing gallery's {gallery.threshold}; "
                "the threshold is set when a gallery is created"
            )
    else:
        existing_folder(gallery_path.parent, "folder for --gallery")  # checked before any face is embedded
        gallery = FaceGallery(threshold=args.threshold)
    enrolled = 0
    with FaceDetector() as detector, FaceRecognizer() as recognizer:
        for path, image in zip(args.images, images):
            faces = detector.detect(image)
            whole = faces_inside(faces.landmarks, image.shape)  # a face cut by the photo's edge is no reference
            if not whole.any():
                print(f"{path}: no {'whole ' if len(faces) else ''}face found, skipped")
                continue
            widths = faces.boxes[:, 2] - faces.boxes[:, 0]
            largest = int(np.argmax(np.where(whole, widths, -np.inf)))
            embedding = recognizer.embed(image, faces.landmarks[largest : largest + 1])
            gallery.add(args.name, embedding)
            enrolled += 1
            note = f" (the largest of {len(faces)} faces)" if len(faces) > 1 else ""
            print(f"{path}: enrolled a {widths[largest]:.0f} px face{note}")
    if enrolled == 0:
        raise ValueError(f"no face found in {len(images)} image(s): nothing enrolled for {args.name!r}")
    gallery.save(gallery_path)
    print(f"wrote {gallery_path}: {len(gallery.names)} people, {len(gallery)} faces")
    return 0


def run_identify(args: argparse.Namespace) -> int:
    from ..face import FaceDetector, FaceGallery, FaceRecognizer
    from ..face.align import faces_inside
    from ..models.face_embedders import FAST_EMBEDDERS

    gallery = FaceGallery.load(args.gallery)
    if args.best_frames < 0:
        raise ValueError(f"--best-frames should be >= 0, got {args.best_frames}")
    inputs = check_inputs(args.inputs)
    outputs = OutputPaths(inputs)
    out_paths = outputs.per_input(args.out, "_names")
    json_path = outputs.file(args.json, "json", "--json") if args.json else None
    records = []
    with (
        FaceDetector(min_face_size=args.min_face_size, num_threads=args.threads) as detector,
        FaceRecognizer(embedders=FAST_EMBEDDERS if args.fast else None, num_threads=args.threads) as recognizer,
    ):

        def name_faces(image):
            """Detect and name the faces of one image; a face cut by the image's edge (a landmark outside it)
            cannot be aligned: it is reported as "unknown" with no similarity (NaN)."""
            faces = detector.detect(image)
            inside = np.flatnonzero(faces_inside(faces.landmarks, image.shape))
            landmarks = faces.landmarks[inside]
            thresholds = recognizer.thresholds(landmarks, base=gallery.threshold)
            names, scores = _identify_some(gallery, len(faces), inside, recognizer.embed(image, landmarks), thresholds)
            return faces, names, scores

        for path, out in zip(inputs, out_paths):
            if is_video(path) and args.best_frames:
                records.append(
                    _identify_video_tracks(
                        detector, recognizer, gallery, path, out, not args.no_progress, args.best_frames
                    )
                )
                continue
            if is_video(path):
                records.append(_identify_video(name_faces, path, out, not args.no_progress))
                continue
            image = _read_image(path)
            faces, names, scores = name_faces(image)
            print(
                f"{path}: {len(faces)} face(s)"
                + "".join(
                    f"\n  {n} ({s:.2f}) box=({b[0]:.0f}, {b[1]:.0f}, {b[2]:.0f}, {b[3]:.0f})"
                    for n, s, b in zip(names, scores, faces.boxes)
                )
            )
            if out is not None:
                write_image(out, draw_names(image, faces, names, scores))
                print(f"  wrote {out}")
            records.append(
                {
                    "path": str(path),
                    "width": image.shape[1],
                    "height": image.shape[0],
                    "faces": _face_records(faces, names, scores),
                }
            )
    if json_path is not None:
        write_json(
            json_path,
            {
                "gallery": str(args.gallery),
                "threshold": gallery.threshold,
                "recognizer": repr(recognizer),
                "inputs": records,
            },
        )
        print(f"wrote {json_path}")
    return 0


def _identify_some(
    gallery, count: int, index: np.ndarray, embeddings: np.ndarray, thresholds: np.ndarray
) -> tuple[list, np.ndarray]:
    """Names and similarities of ``count`` faces of which only those at ``index`` could be embedded (their
    ``embeddings`` and ``thresholds``); the others are "unknown" with a NaN similarity."""
    names, scores = ["unknown"] * count, np.full(count, np.nan, np.float32)
    if len(index):
        found, scores[index] = gallery.identify(embeddings, thresholds=thresholds)
        for i, name in zip(index.tolist(), found):
            names[i] = name
    return names, scores


def _face_records(faces, names, scores) -> list[dict]:
    """JSON records of the faces with their names and similarities (null: a face that was not embedded)."""
    return [
        {**face, "name": name, "similarity": json_number(score)}
        for face, name, score in zip(faces.to_dict()["faces"], names, scores)
    ]


def json_number(value: float) -> float | None:
    """``value`` to 4 decimals for JSON; None for NaN (a face that was not scored)."""
    return round(float(value), 4) if np.isfinite(value) else None


def draw_names(image: np.ndarray, faces, names, scores) -> np.ndarray:
    """A copy of a BGR image with each face's box and ``name similarity`` drawn (unknown faces in red)."""
    import cv2

    canvas = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for box, name, score in zip(faces.boxes, names, scores):
        color = _UNKNOWN_COLOR if name == "unknown" else _KNOWN_COLOR
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        cv2.putText(
            canvas,
            f"{name} {score:.2f}" if np.isfinite(score) else name,
            (x1, max(10, y1 - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * thickness,
            color,
            thickness,
        )
    return canvas


def _identify_video(name_faces, path: Path, out: Path | None, progress: bool) -> dict:
    frames: list[dict] = []

    def step(index, frame):
        faces, names, scores = name_faces(frame)
        frames.append({"index": index, "faces": _face_records(faces, names, scores)})
        return draw_names(frame, faces, names, scores) if out is not None else None

    video = process_video(path, step, out=out, progress=progress)
    known = sorted({f["name"] for fr in frames for f in fr["faces"]} - {"unknown"})
    print(
        f"{path}: {video.frames} frames, {sum(len(f['faces']) for f in frames)} faces; known: "
        f"{', '.join(known) or 'none'}" + (f"; wrote {out}" if out else "")
    )
    return {"path": str(path), "fps": video.fps, "frames": frames}


TRACK_IOU = 0.3  # a face continues a track when its box overlaps the track's last box by this IoU
TRACK_GAP = 5  # frames a track may miss before it ends


def _identify_video_tracks(
    detector, recognizer, gallery, path: Path, out: Path | None, progress: bool, keep: int
) -> dict:
    """Identify each face track of a video from its ``keep`` best-quality frames.

    Pass 1 detects the faces of every frame, scores their quality (a tiny model, ~1000x cheaper than an
    embedding) and links them into tracks by box overlap with the previous frames. Pass 2 re-reads the
    video and embeds only each track's ``keep`` best faces; their quality-weighted mean embedding names
    the whole track. Every face record carries its ``track`` and ``quality``.
    """
    from ..pipeline import whole_face_qualities

    detections, tracks, last = [], [], []  # per frame: (faces, track ids, qualities); per track: faces (frame, face)

    def link(index, frame):
        faces = detector.detect(frame)
        quality = whole_face_qualities(recognizer.quality, frame, faces)  # NaN: cut by the edge, never embedded
        ids = np.full(len(faces), -1)
        alive = [t for t in range(len(tracks)) if index - last[t][0] <= TRACK_GAP]
        if len(faces) and alive:
            overlap = box_iou(faces.boxes, np.stack([last[t][1] for t in alive]))
            for f, a in sorted(np.argwhere(overlap >= TRACK_IOU), key=lambda fa: -overlap[fa[0], fa[1]]):
                if ids[f] < 0 and alive[a] not in ids:
                    ids[f] = alive[a]
        for f in range(len(faces)):
            if ids[f] < 0:
                ids[f] = len(tracks)
                tracks.append([])
                last.append(None)
            tracks[ids[f]].append((index, f))
            last[ids[f]] = (index, faces.boxes[f])
        detections.append((faces, ids, quality))

    video = process_video(path, link, progress=progress)
    chosen: dict[int, list] = {}
    for t, members in enumerate(tracks):
        usable = [m for m in members if np.isfinite(detections[m[0]][2][m[1]])]
        ranked = sorted(usable, key=lambda m: -detections[m[0]][2][m[1]])[:keep]
        for frame_index, f in ranked:
            chosen.setdefault(frame_index, []).append((t, f))
    sums = np.zeros((len(tracks), 128), np.float32)
    # each track's threshold: the same quality-weighted mean of its faces' own (their embedders' thresholds)
    limits, weights = np.zeros(len(tracks)), np.zeros(len(tracks))
    calls = 0

    def embed_best(index, frame):
        nonlocal calls
        for t, f in chosen.get(index, []):
            faces, _, quality = detections[index]
            weight = max(float(quality[f]), 1e-3)
            landmarks = faces.landmarks[f : f + 1]
            sums[t] += weight * recognizer.embed(frame, landmarks)[0]
            limits[t] += weight * recognizer.thresholds(landmarks, base=gallery.threshold)[0]
            weights[t] += weight
            calls += 1

    if chosen:
        process_video(path, embed_best, progress=False, max_frames=max(chosen) + 1)
    # a track seen only cut by the frame's edge has no embedded face: "unknown", no similarity
    seen = np.flatnonzero(weights > 0)
    names, scores = _identify_some(
        gallery,
        len(tracks),
        seen,
        sums[seen] / np.linalg.norm(sums[seen], axis=1, keepdims=True),
        limits[seen] / weights[seen],
    )
    if out is not None:

        def draw_track_names(index, frame):
            faces, ids, _ = detections[index]
            return draw_names(frame, faces, [names[t] for t in ids], [scores[t] for t in ids])

        process_video(path, draw_track_names, out=out, progress=False, max_frames=len(detections))
    frames = []
    for index, (faces, ids, quality) in enumerate(detections):
        records = _face_records(faces, [names[t] for t in ids], [scores[t] for t in ids])
        for record, t, q in zip(records, ids, quality):
            record.update(track=int(t), quality=json_number(q))
        frames.append({"index": index, "faces": records})
    known = sorted(set(names) - {"unknown"})
    n_faces = sum(len(d[0]) for d in detections)
    print(
        f"{path}: {len(detections)} frames, {n_faces} faces in {len(tracks)} tracks, {calls} embedded "
        f"(best {keep} per track); known: {', '.join(known) or 'none'}" + (f"; wrote {out}" if out else "")
    )
    return {"path": str(path), "fps": video.fps, "frames": frames, "tracks": len(tracks), "recognizer_calls": calls}
