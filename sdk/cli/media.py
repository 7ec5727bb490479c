"""Media input and output for the CLI commands (``detect``, ``track``, and the ones to come):
output paths checked before any work, outputs written atomically, one video loop with one
progress bar.

Outputs:

* every output path is checked before anything is read or computed: a file output must end in
  a supported extension (the error lists them), must not be an existing folder, must not be
  the same file as an input (that would truncate the input while it is read), and must not be
  named twice in one run; a missing parent folder is created; a parent that is a file is an
  error;
* every output (image, video, JSON) is written to a temporary file beside its target and
  renamed into place once complete, so an interrupted or failed run never leaves a truncated
  file under the target name, and an existing file is only replaced by a complete one.

Video I/O uses OpenCV.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "VIDEO_OUTPUT_CODECS",
    "is_video",
    "check_inputs",
    "OutputPaths",
    "read_image",
    "write_image",
    "write_json",
    "atomic_path",
    "process_video",
    "VideoSummary",
    "ProgressBar",
    "non_negative_int",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
VIDEO_OUTPUT_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}  # what OpenCV's pip wheels can write
JSON_SUFFIXES = (".json",)
_KIND_SUFFIXES = {
    "image": IMAGE_SUFFIXES,
    "video": tuple(VIDEO_OUTPUT_CODECS),
    "json": JSON_SUFFIXES,
    "markdown": (".md",),
    "plot": (".png", ".svg", ".pdf"),  # matplotlib's savefig picks the format from these
}


def is_video(path: Path) -> bool:
    """True when ``path``'s extension is a video's (else it is read as an image)."""
    return path.suffix.lower() in VIDEO_SUFFIXES


def non_negative_int(text: str) -> int:
    """argparse type: an int >= 0.

    Raises:
        argparse.ArgumentTypeError: not an integer, or negative.
    """
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def check_inputs(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The inputs as paths, each an existing file.

    Raises:
        FileNotFoundError: an input does not exist; ValueError: an input is a folder.
    """
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            raise ValueError(f"input {p} is a folder; expected an image or video file")
        if not p.is_file():
            raise FileNotFoundError(f"no such file: {p}")
        out.append(p)
    return out


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # b does not exist yet
        return a.resolve() == b.resolve()


class OutputPaths:
    """The outputs of one run, checked against the inputs and each other before any work.

    Args:
        inputs: the run's input files (no output may be one of them).
    """

    def __init__(self, inputs: Sequence[Path]) -> None:
        self._inputs = list(inputs)
        self._taken: list[Path] = []

    def file(self, path: str | os.PathLike[str], kind: str, option: str) -> Path:
        """Check a file output and create its missing parent folders.

        Args:
            path: the output path given by the user.
            kind: ``"image"``, ``"video"``, ``"json"``, ``"markdown"`` or ``"plot"``: the extensions it may have.
            option: the option that named it (for messages), e.g. ``"--json"``.

        Returns:
            The path.

        Raises:
            ValueError: an existing folder, an unsupported extension, a parent that is a file,
                the same file as an input, or a path already used by another output.
        """
        target = Path(path)
        suffixes = _KIND_SUFFIXES[kind]
        self._refuse_input(target, option)
        if target.is_dir():
            raise ValueError(
                f"{option} {target} is an existing folder; expected a {kind} file name ending in {' / '.join(suffixes)}"
            )
        if target.suffix.lower() not in suffixes:
            raise ValueError(
                f"{option} {target}: unsupported {kind} extension {target.suffix or '(none)'!r}; "
                f"supported: {' '.join(suffixes)}"
            )
        self._make_folder(target.parent, f"the folder of {option} {target}")
        self._claim(target, option)
        return target

    def folder(self, path: str | os.PathLike[str], option: str) -> Path:
        """Check a folder output and create it (with its parents) when missing.

        Raises:
            ValueError: the path (or a parent) is an existing file.
        """
        target = Path(path)
        self._make_folder(target, f"{option} {target}")
        return target

    def per_input(self, out: str | os.PathLike[str] | None, tag: str, option: str = "--out") -> list[Path | None]:
        """One annotated output per input: ``out`` itself for a single input when it names a file
        (has an extension and is not an existing folder), else ``NAME<tag>.jpg`` (``.mp4`` for a
        video) in the ``out`` folder; all None without ``out``.

        Raises:
            ValueError: as :meth:`file` and :meth:`folder`, or a file name for several inputs.
        """
        if out is None:
            return [None] * len(self._inputs)
        target = Path(out)
        if len(self._inputs) == 1 and target.suffix and not target.is_dir():
            return [self.file(target, "video" if is_video(self._inputs[0]) else "image", option)]
        if target.suffix and not target.is_dir() and len(self._inputs) > 1:
            raise ValueError(
                f"{option} {target} looks like a file name but there are {len(self._inputs)} inputs; "
                "give a folder for several inputs"
            )
        folder = self.folder(target, option)
        return [self.in_folder(folder, p.stem + tag, ".mp4" if is_video(p) else ".jpg", option) for p in self._inputs]

    def in_folder(self, folder: Path, stem: str, suffix: str, option: str) -> Path:
        """``folder/stem + suffix``, or ``stem_2 + suffix``, ``stem_3``... when that name is already an
        output of this run (two inputs with the same name never overwrite each other) or is one of
        the inputs.

        Returns:
            The claimed path.
        """
        n = 1
        while True:
            target = folder / (f"{stem}{suffix}" if n == 1 else f"{stem}_{n}{suffix}")
            if not any(_same_file(target, t) for t in self._taken) and not self._is_input(target):
                self._claim(target, option)
                return target
            n += 1

    def _is_input(self, target: Path) -> bool:
        return any(_same_file(p, target) for p in self._inputs)

    def _refuse_input(self, target: Path, option: str) -> None:
        for p in self._inputs:
            if _same_file(p, target):
                raise ValueError(
                    f"{option} {target} is the input file {p}; writing it would destroy the input "
                    "while it is read: choose another output path"
                )

    def _claim(self, target: Path, option: str) -> None:
        self._refuse_input(target, option)
        for t in self._taken:
            if _same_file(t, target):
                raise ValueError(f"{option} {target} is already another output of this run")
        self._taken.append(target)

    @staticmethod
    def _make_folder(folder: Path, what: str) -> None:
        make_folder(folder, what)


def make_folder(folder: Path, what: str) -> None:
    """Create ``folder`` and its parents, or say which of them is a file (``what`` names the option).

    Raises:
        ValueError: a file stands where a folder should be.
    """
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{what}: {parent} is a file, not a folder")
            break
    folder.mkdir(parents=True, exist_ok=True)


def temporary_beside(target: Path) -> Path:
    """A new empty file beside ``target`` (same extension, so writers pick the same format), its name unique
    to this call: two runs writing the same output never share one (a fixed name let them corrupt it)."""
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".partial{target.suffix}", dir=target.parent)
    os.close(fd)
    return Path(name)


def move_into_place(temp: Path, target: Path) -> None:
    """Rename a finished :func:`temporary_beside` file onto ``target``, with the usual permissions."""
    mask = os.umask(0)  # mkstemp makes the file private
    os.umask(mask)
    os.chmod(temp, 0o666 & ~mask)
    os.replace(temp, target)


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A :func:`temporary_beside` path, renamed onto ``target`` when the block completes, removed when it raises."""
    temp = temporary_beside(target)
    try:
        yield temp
        move_into_place(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def write_image(path: Path, image: np.ndarray) -> None:
    """Write an image atomically.

    Raises:
        ValueError: OpenCV cannot encode it to this extension.
    """
    import cv2

    with atomic_path(path) as temp:
        if not cv2.imwrite(str(temp), image):
            raise ValueError(f"cannot write {path} as an image")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (indented one space)."""
    with atomic_path(path) as temp:
        temp.write_text(json.dumps(data, indent=1))


_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"


def read_image(path: Path) -> tuple[np.ndarray, list[str]]:
    """Read an image as BGR ``uint8``.

    Returns:
        ``(image, warnings)``: warnings name damage that decoding got past, e.g. a truncated
        JPEG (OpenCV decodes the part that is there and fills the rest with gray).

    Raises:
        ValueError: the file cannot be decoded as an image.
    """
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # (imdecode refuses truncated JPEGs that imread decodes)
    if image is None:
        raise ValueError(f"cannot read {path} as an image")
    warnings = []
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(max(0, os.fstat(f.fileno()).st_size - 64))
        tail = f.read()
    if head == _JPEG_START and _JPEG_END not in tail:
        warnings.append("truncated JPEG (no end-of-image marker): the missing part of the image is blank")
    return image, warnings


class ProgressBar:
    """A one-line progress bar on stderr: frames done / total, the rate, and a note.

    Args:
        label: what is being processed (a file name, a stream).
        total: frames expected, or None when unknown (a live stream).
        live: show the rate over the last second (a live source) instead of the run's average.
    """

    def __init__(self, label: str, total: int | None, live: bool = False) -> None:
        self._label, self._total, self._live = label, total, live
        self._start = self._last = time.perf_counter()
        self._window: list[tuple[float, int]] = [(self._start, 0)]  # (time, frames done) over the last second

    def update(self, done: int, rate: float | None = None, note: str = "") -> None:
        """Redraw (at most 10 times a second, and at the end).

        Args:
            done: frames done so far.
            rate: frames per second to show; None: measured (see ``live``).
            note: text after the rate (e.g. "2 face(s), 5 dropped").
        """
        now = time.perf_counter()
        if self._live:
            self._window.append((now, done))
            while len(self._window) > 2 and now - self._window[0][0] > 1.0:
                self._window.pop(0)
        if now - self._last < 0.1 and done != self._total:
            return
        self._last = now
        if rate is None:
            t0, n0 = self._window[0] if self._live else (self._start, 0)
            rate = (done - n0) / max(now - t0, 1e-9)
        if self._total:
            filled = int(30 * min(done, self._total) / self._total)
            text = f"\r{self._label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{self._total} frames, {rate:.1f} fps"
        else:
            text = f"\r{self._label} {done} frames, {rate:.1f} fps"
        sys.stderr.write(text + (f", {note}   " if note else ""))
        sys.stderr.flush()

    def close(self) -> None:
        """End the line."""
        sys.stderr.write("\n")
        sys.stderr.flush()


@dataclass(frozen=True)
class VideoSummary:
    """What :func:`process_video` did.

    Attributes:
        frames: frames processed.
        fps: the input's frame rate (25 when the container does not say).
        width, height: frame size, px.
    """

    frames: int
    fps: float
    width: int
    height: int


# step(index, frame) -> the frame to write to the output video (annotated), or None to write none.
FrameStep = Callable[[int, np.ndarray], "np.ndarray | None"]


def process_video(
    path: Path,
    step: FrameStep,
    *,
    out: Path | None = None,
    progress: bool = True,
    max_frames: int = 0,
    rate: Callable[[int], float | None] | None = None,
) -> VideoSummary:
    """The one video loop of the CLI: read ``path`` frame by frame, call ``step`` on each, write
    what it returns to ``out`` (atomically: the file appears complete or not at all), show a
    progress bar.

    Args:
        path: input video.
        step: called with (frame index, BGR frame); returns the frame to write, or None.
        out: output video (``.mp4`` or ``.avi``, checked by :class:`OutputPaths`), or None.
        progress: show the progress bar on stderr.
        max_frames: stop after this many frames (0 = all).
        rate: frames-per-second shown by the bar, given the frames done (None: wall-clock rate).

    Returns:
        A :class:`VideoSummary`.

    Raises:
        ValueError: the video cannot be opened, has no readable frame, or cannot be written.
    """
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"cannot open {path} as a video")
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) or None
    if max_frames > 0:
        total = min(total, max_frames) if total else max_frames
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    bar = ProgressBar(path.name, total) if progress else None
    writer = None
    done, size = 0, (0, 0)
    with contextlib.ExitStack() as stack:
        stack.callback(capture.release)
        temp = stack.enter_context(atomic_path(out)) if out is not None else None
        try:
            while max_frames <= 0 or done < max_frames:
                ok, frame = capture.read()
                if not ok:
                    break
                size = (frame.shape[1], frame.shape[0])
                annotated = step(done, frame)
                if temp is not None and annotated is not None:
                    if writer is None:
                        codec = cv2.VideoWriter_fourcc(*VIDEO_OUTPUT_CODECS[out.suffix.lower()])
                        writer = cv2.VideoWriter(str(temp), codec, fps, size)
                        if not writer.isOpened():
                            raise ValueError(f"cannot write video {out}")
                    writer.write(annotated)
                done += 1
                if bar is not None:
                    bar.update(done, rate(done) if rate else None)
        finally:
            if writer is not None:
                writer.release()
            if bar is not None:
                bar.close()
        if done == 0:
            raise ValueError(f"{path} has no readable frame")
    return VideoSummary(done, fps, *size)
