"""``lanner track VIDEO --box x,y,w,h``: follow one target through a video.

Writes per-frame boxes, scores (PSR) and lost flags as JSON (``--json``) and/or an
annotated video (``--out``); a progress bar goes to stderr. Video I/O uses OpenCV.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("track", help="track one target through a video (correlation filter)")
    p.add_argument("video", help="input video file (anything OpenCV can read)")
    p.add_argument("--box", required=True, help="initial box on the first frame: x,y,w,h in pixels")
    p.add_argument("--out", help="write an annotated video here (.mp4 or .avi)")
    p.add_argument("--json", dest="json_path", help="write per-frame results here")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0 = all)")
    p.set_defaults(func=run)


def parse_box(text: str) -> tuple[float, float, float, float]:
    """Parse ``"x,y,w,h"``.

    Raises:
        ValueError: not four comma-separated numbers.
    """
    parts = text.split(",")
    if len(parts) != 4:
        raise ValueError(f"--box must be x,y,w,h (4 numbers), got {text!r}")
    try:
        x, y, w, h = (float(v) for v in parts)
    except ValueError:
        raise ValueError(f"--box must be x,y,w,h (4 numbers), got {text!r}") from None
    return x, y, w, h


def _progress(i: int, total: int, fps: float) -> None:
    if total > 0:
        done = min(1.0, i / total)
        bar = "#" * int(30 * done)
        sys.stderr.write(f"\r[{bar:<30}] {i}/{total} frames, {fps:.0f} FPS")
    else:
        sys.stderr.write(f"\r{i} frames, {fps:.0f} FPS")
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    import cv2

    from ..tracking import Tracker

    box = parse_box(args.box)
    if not Path(args.video).is_file():
        raise FileNotFoundError(f"no such video: {args.video}")
    cap = cv2.VideoCapture(args.video)
    if not cap.isOpened():
        raise ValueError(f"OpenCV cannot open {args.video}")
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    if args.max_frames > 0:
        total = min(total, args.max_frames) if total > 0 else args.max_frames
    fps_in = cap.get(cv2.CAP_PROP_FPS) or 25.0
    ok, frame = cap.read()
    if not ok:
        raise ValueError(f"{args.video} has no readable frame")
    tracker = Tracker()
    tracker.init(frame, box)
    writer = None
    if args.out:
        fourcc = cv2.VideoWriter_fourcc(*("mp4v" if args.out.lower().endswith(".mp4") else "MJPG"))
        writer = cv2.VideoWriter(args.out, fourcc, fps_in, (frame.shape[1], frame.shape[0]))
        if not writer.isOpened():
            raise ValueError(f"OpenCV cannot write {args.out}")
    records = [{"frame": 0, "box": list(box), "score": None, "lost": False, "recovered": False}]

    def draw(img, b, color):  # noqa: ANN001
        x, y, w, h = (int(round(v)) for v in b)
        cv2.rectangle(img, (x, y), (x + w, y + h), color, 2)

    if writer is not None:
        draw(frame, box, (0, 255, 0))
        writer.write(frame)
    index, spent = 1, 0.0
    while args.max_frames <= 0 or index < args.max_frames:
        ok, frame = cap.read()
        if not ok:
            break
        t0 = time.perf_counter()
        r = tracker.update(frame)
        spent += time.perf_counter() - t0
        records.append({"frame": index, "box": [round(v, 2) for v in r.box], "score": round(r.score, 3),
                        "lost": r.lost, "recovered": r.recovered})
        if writer is not None:
            draw(frame, r.box, (0, 0, 255) if r.lost else (0, 255, 0))
            cv2.putText(frame, f"psr {r.score:.1f}{' LOST' if r.lost else ''}", (10, 24),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 255), 2)
            writer.write(frame)
        index += 1
        if index % 10 == 0:
            _progress(index, total, (index - 1) / spent if spent > 0 else 0.0)
    _progress(index, total, (index - 1) / spent if spent > 0 else 0.0)
    sys.stderr.write("\n")
    cap.release()
    if writer is not None:
        writer.release()
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"video": args.video, "frames": records}, indent=1))
    lost = sum(r["lost"] for r in records)
    print(f"tracked {index} frames, lost in {lost}, {(index - 1) / spent if spent > 0 else 0:.0f} FPS (update only)")
    return 0
