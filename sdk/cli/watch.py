"""``lanner watch SOURCE``: faces in a video file, camera or stream: detect, track, identify.

Runs :class:`lanner.FacePipeline` on every frame of ``SOURCE`` (a video file, a camera index or
an RTSP/HTTP URL). Writes an annotated video with track ids (and names, with ``--gallery``) and
per-frame JSON: one JSON document for a file, JSON Lines (one frame per line) for a live source.
Progress and the live frame rate go to stderr.

Outputs are written to a temporary file beside the target and renamed into place when the run
ends, also when a stream stops or the run is interrupted (Ctrl-C): what was written is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .media import ProgressBar, make_folder, move_into_place, temporary_beside

_VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
# BGR colours told apart easily; a track keeps its colour (track_id modulo the palette).
_PALETTE = (
    (0, 255, 0),
    (255, 128, 0),
    (0, 200, 255),
    (255, 0, 255),
    (0, 128, 255),
    (255, 255, 0),
    (128, 0, 255),
    (0, 255, 160),
)
_LOST_COLOR = (128, 128, 128)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watch",
        help="detect, track and identify faces in a video, camera or stream",
        description="Follow faces through a video file, a camera (index) or an RTSP/HTTP stream: "
        "detect sparsely, track in between, keep an id (and a name, with --gallery) "
        "per face.",
    )
    p.add_argument("source", metavar="SOURCE", help="video file, camera index (0, 1, ...) or rtsp:// / http:// URL")
    p.add_argument(
        "--gallery", metavar="G", help="face gallery to name the tracks with (needs lanner's face recognizer)"
    )
    p.add_argument("--out", metavar="F", help="annotated video (.mp4 or .avi)")
    p.add_argument(
        "--json", metavar="F", dest="json_path", help="per-frame tracks: JSON for a file, JSON Lines for a live source"
    )
    p.add_argument(
        "--detect-every",
        default="auto",
        metavar="N|auto",
        type=parse_detect_every,
        help="run the detector every N frames, or 'auto' (when tracks are lost or uncertain; default)",
    )
    p.add_argument("--max-frames", type=int, default=0, metavar="N", help="stop after N frames (0: all)")
    p.add_argument("--min-face-size", type=float, default=20.0, metavar="PX")
    p.add_argument("--threads", type=int, default=2, metavar="N", help="threads of the detector and the trackers")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.set_defaults(func=run)


def parse_detect_every(text: str) -> int | str:
    """Parse ``--detect-every``: ``"auto"`` or an int >= 1.

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1 or 'auto', got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from .. import FaceDetector, FacePipeline
    from ..video import VideoSource

    out = Path(args.out) if args.out else None
    json_path = Path(args.json_path) if args.json_path else None
    if out is not None and out.suffix.lower() not in _VIDEO_FOURCC:
        raise ValueError(f"--out should be a video file ({', '.join(sorted(_VIDEO_FOURCC))}), got {out}")
    if args.max_frames < 0:
        raise ValueError(f"--max-frames should be >= 0, got {args.max_frames}")
    _refuse_overwriting_input(args.source, [p for p in (out, json_path) if p is not None])
    if out is not None and json_path is not None and out.resolve() == json_path.resolve():
        raise ValueError(f"--out and --json name the same file: {out}")
    recognizer, gallery = _load_gallery(args.gallery) if args.gallery else (None, None)

    source = VideoSource(args.source)  # first: a source that cannot be read fails before anything is built
    try:
        detector = FaceDetector(min_face_size=args.min_face_size, num_threads=args.threads)
        pipeline = FacePipeline(detector, recognizer, gallery, detect_every=args.detect_every, num_threads=args.threads)
    except BaseException:
        source.close()
        raise
    video: _AtomicVideo | None = None
    frames_json: _FrameLog | None = None
    total = source.frame_count
    total = min(total, args.max_frames) if total and args.max_frames else (total or args.max_frames or None)
    progress = ProgressBar(source.name, total, live=True) if not args.no_progress else None
    interrupted = False
    start = time.perf_counter()
    track_ids: set[int] = set()
    try:
        video = _AtomicVideo(out, source.fps or 25.0) if out is not None else None
        frames_json = _FrameLog(json_path, source, repr(pipeline)) if json_path is not None else None
        for index, frame in enumerate(source):
            tracks = pipeline.process(frame)
            track_ids.update(t.track_id for t in tracks)
            if frames_json is not None:
                record = {"frame": index, "time": round(time.perf_counter() - start, 4)}
                if source.live:  # frames the source dropped so far: "frame" counts the frames processed
                    record["dropped"] = source.dropped
                frames_json.add({**record, "tracks": [t.to_dict() for t in tracks]})
            if video is not None:
                video.write(draw_tracks(frame, tracks))
            if progress is not None:
                dropped = f", {source.dropped} dropped" if source.dropped else ""
                progress.update(index + 1, note=f"{len(tracks)} face(s){dropped}")
            if args.max_frames and index + 1 >= args.max_frames:
                break
    except KeyboardInterrupt:
        interrupted = True
    except BaseException:
        # an error on a file: nothing half-done under the output names (as detect and track); a live source keeps
        # what it recorded, as an interruption or a dropped stream does
        if not source.live:
            for output in (video, frames_json):
                if output is not None:
                    output.discard()
            video = frames_json = None
        raise
    finally:
        if progress is not None:
            progress.close()
        source.close()
        pipeline.close()
        detector.close()
        kept = [p for p in (video.close() if video else None, frames_json.close() if frames_json else None) if p]
    seconds = time.perf_counter() - start
    print(
        f"{source.name}: {source.frames_read} frames in {seconds:.1f} s ({source.frames_read / max(seconds, 1e-9):.1f}"
        f" fps), {len(track_ids)} face track(s), detector on {pipeline.detections_run} frame(s)"
        + (f", {source.dropped} frame(s) dropped (the pipeline was slower than the source)" if source.live else "")
    )
    for path in kept:
        print(f"wrote {path}")
    if interrupted:
        print(f"lanner watch: interrupted after {source.frames_read} frames; kept what was written", file=sys.stderr)
        return 130
    if source.stop_reason is not None:
        print(
            f"lanner watch: {source.stop_reason} after {source.frames_read} frames; kept what was written",
            file=sys.stderr,
        )
        return 1
    return 0


def draw_tracks(frame: Any, tracks: list) -> Any:
    """A copy of a BGR (or gray) frame with each track's box, id, name and landmarks drawn.

    Args:
        frame: ``HxWx3`` BGR or ``HxW`` gray ``uint8``.
        tracks: :class:`lanner.Track` list from :meth:`lanner.FacePipeline.process`.

    Returns:
        An ``HxWx3`` BGR ``uint8`` image.
    """
    import cv2

    canvas = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame.copy()
    thickness = max(1, round(max(frame.shape[:2]) / 400))
    for t in tracks:
        color = _LOST_COLOR if t.lost else _PALETTE[t.track_id % len(_PALETTE)]
        x0, y0, x1, y1 = (round(v) for v in t.box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), color, thickness)
        label = f"#{t.track_id}" + (f" {t.name} {t.name_score:.2f}" if t.name is not None else "")
        cv2.putText(canvas, label, (x0, max(0, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * thickness, color, thickness)
        if not t.lost:
            for x, y in t.landmarks:
                cv2.circle(canvas, (round(float(x)), round(float(y))), thickness, color, -1)
    return canvas


def _refuse_overwriting_input(source: str, outputs: list[Path]) -> None:
    """Raise if an output path names the input file (by path, or as the same file on disk)."""
    src = Path(source)
    if not src.is_file():
        return
    for out in outputs:
        same = out.resolve() == src.resolve() or (out.exists() and os.path.samefile(out, src))
        if same:
            raise ValueError(f"the output {out} is the input video {source}: choose another output path")


def _load_gallery(path: str) -> tuple[Any, Any]:
    """The recognizer and the gallery that ``--gallery`` needs (face recognition, when installed)."""
    import lanner

    if not (hasattr(lanner, "FaceRecognizer") and hasattr(lanner, "FaceGallery")):
        raise ImportError(
            "--gallery needs lanner.FaceRecognizer and lanner.FaceGallery (face recognition), "
            "which this version of lanner does not have"
        )
    if not Path(path).exists():
        raise FileNotFoundError(f"no such gallery: {path}")
    return lanner.FaceRecognizer(), lanner.FaceGallery.load(path)


def _partial_path(path: Path) -> Path:
    """Where an output is written until it is complete: a new file of this run's own beside it (same suffix: OpenCV
    picks the format from it), made now, so that a folder that cannot take the output fails before any frame."""
    make_folder(path.parent, f"the folder of {path}")
    return temporary_beside(path)


class _AtomicVideo:
    """An annotated video written to a temporary file and renamed into place by :meth:`close`."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self._fps = path, fps
        self._partial = _partial_path(path)
        self._writer: Any = None
        self._size: tuple[int, int] | None = None

    def write(self, image: Any) -> None:
        import cv2

        if self._writer is None:
            self._size = (image.shape[1], image.shape[0])
            fourcc = cv2.VideoWriter_fourcc(*_VIDEO_FOURCC[self.path.suffix.lower()])
            self._writer = cv2.VideoWriter(str(self._partial), fourcc, self._fps, self._size)
            if not self._writer.isOpened():
                raise ValueError(f"OpenCV cannot write the video {self.path}")
        if (image.shape[1], image.shape[0]) != self._size:  # a stream that changed resolution
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)

    def discard(self) -> None:
        """Drop what was written: the output is not created."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._partial.unlink(missing_ok=True)

    def close(self) -> Path | None:
        """Finish the file and move it into place; returns its path (None if nothing was written)."""
        if self._writer is None:
            self._partial.unlink(missing_ok=True)
            return None
        self._writer.release()
        self._writer = None
        move_into_place(self._partial, self.path)
        return self.path


class _FrameLog:
    """Per-frame JSON: JSON Lines streamed to the temporary file for a live source (one frame per
    line, flushed), one JSON document written at the end for a file; renamed into place by :meth:`close`."""

    def __init__(self, path: Path, source: Any, pipeline: str) -> None:
        self.path = path
        self._partial = _partial_path(path)
        self._header = {"source": source.name, "live": source.live, "fps": source.fps, "pipeline": pipeline}
        self._frames: list[dict] = []
        self._lines = None
        if source.live:
            self._lines = open(self._partial, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def add(self, record: dict) -> None:
        if self._lines is not None:
            self._lines.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._lines.flush()
        else:
            self._frames.append(record)

    def discard(self) -> None:
        """Drop what was written: the output is not created."""
        if self._lines is not None:
            self._lines.close()
            self._lines = None
        self._partial.unlink(missing_ok=True)

    def close(self) -> Path:
        """Finish the file and move it into place; returns its path."""
        if self._lines is not None:
            self._lines.close()
        else:
            frames = ",\n".join(json.dumps(f, separators=(",", ":")) for f in self._frames)  # one frame a line
            self._partial.write_text(
                json.dumps(self._header)[:-1] + ', "frames": [\n' + frames + "\n]}\n", encoding="utf-8"
            )
        move_into_place(self._partial, self.path)
        return self.path
