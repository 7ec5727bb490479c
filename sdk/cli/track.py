"""``lanner track VIDEO --box x,y,w,h``: follow one target through a video.

Writes per-frame boxes, scores (PSR) and lost flags as JSON (``--json``) and/or an
annotated video (``--out``); a progress bar goes to stderr. Outputs are checked before the
video is read and written atomically (:mod:`lanner.cli.media`).
"""

from __future__ import annotations

import argparse
import time

from .media import OutputPaths, check_inputs, non_negative_int, process_video, write_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("track", help="track one target through a video (correlation filter)")
    p.add_argument("video", help="input video file (anything OpenCV can read)")
    p.add_argument("--box", required=True, help="initial box on the first frame: x,y,w,h in pixels")
    p.add_argument("--out", help="write an annotated video here (.mp4 or .avi)")
    p.add_argument("--json", dest="json_path", help="write per-frame results here (.json)")
    p.add_argument("--max-frames", type=non_negative_int, default=0, help="stop after this many frames (0 = all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
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


def run(args: argparse.Namespace) -> int:
    import cv2

    from ..tracking import Tracker

    box = parse_box(args.box)
    (video,) = check_inputs([args.video])
    outputs = OutputPaths([video])
    out = outputs.file(args.out, "video", "--out") if args.out else None
    json_path = outputs.file(args.json_path, "json", "--json") if args.json_path else None
    records: list[dict] = []
    spent = [0.0]  # seconds in Tracker.update

    def draw(img, b, color):  # noqa: ANN001
        x, y, w, h = (int(round(v)) for v in b)
        cv2.rectangle(img, (x, y), (x + w, y + h), color, 2)

    with Tracker() as tracker:

        def step(index, frame):
            if index == 0:
                tracker.init(frame, box)
                records.append({"frame": 0, "box": list(box), "score": None, "lost": False, "recovered": False})
                color, label = (0, 255, 0), None
                shown = box
            else:
                t0 = time.perf_counter()
                r = tracker.update(frame)
                spent[0] += time.perf_counter() - t0
                records.append(
                    {
                        "frame": index,
                        "box": [round(v, 2) for v in r.box],
                        "score": round(r.score, 3),
                        "lost": r.lost,
                        "recovered": r.recovered,
                    }
                )
                color, label, shown = (0, 0, 255) if r.lost else (0, 255, 0), r, r.box
            if out is None:
                return None
            draw(frame, shown, color)
            if label is not None:
                cv2.putText(
                    frame,
                    f"psr {label.score:.1f}{' LOST' if label.lost else ''}",
                    (10, 24),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    0.7,
                    (0, 255, 255),
                    2,
                )
            return frame

        summary = process_video(
            video,
            step,
            out=out,
            progress=not args.no_progress,
            max_frames=args.max_frames,
            rate=lambda done: (done - 1) / spent[0] if spent[0] > 0 else 0.0,
        )
    if json_path is not None:
        write_json(json_path, {"video": str(args.video), "frames": records})
    lost = sum(r["lost"] for r in records)
    fps = (summary.frames - 1) / spent[0] if spent[0] > 0 else 0.0
    print(
        f"tracked {summary.frames} frames, lost in {lost}, {fps:.0f} FPS (update only)"
        + (f"; wrote {out}" if out else "")
        + (f"; wrote {json_path}" if json_path else "")
    )
    return 0
