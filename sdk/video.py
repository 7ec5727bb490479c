"""Video sources for the on-camera pipeline: files, camera indices and network streams.

:class:`VideoSource` opens a video file, a camera index (``0``) or an RTSP/HTTP(S) URL through
OpenCV (its FFmpeg backend for files and URLs) and hands out BGR ``uint8`` frames.

Files are read in order, every frame. *Live* sources (cameras, URLs) are read by a background
thread into a bounded :class:`FrameQueue` that drops the **oldest** frame when the consumer
falls behind, so a slow consumer always works on the newest picture instead of lagging further
and further; the number of dropped frames is reported (:attr:`VideoSource.dropped`).

A live source that stops delivering frames (the camera is unplugged, the server closes the
stream, nothing arrives for ``stall_timeout`` seconds) ends the iteration; :attr:`VideoSource.stop_reason`
says why, so callers can report it and keep what they have written.

Example::

    with lanner.video.VideoSource("rtsp://camera.local/stream") as source:
        for frame in source:
            ...
        print(source.frames_read, source.dropped, source.stop_reason)
"""

from __future__ import annotations

import collections
import math
import os
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

from ._paths import existing_file

__all__ = ["Capture", "FrameQueue", "VideoSource", "is_stream_url"]

_STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class Capture(Protocol):
    """What :class:`VideoSource` needs from a capture: the part of ``cv2.VideoCapture`` it uses."""

    def read(self) -> tuple[bool, Any]: ...

    def get(self, prop_id: int) -> float: ...

    def release(self) -> None: ...


def is_stream_url(source: str) -> bool:
    """True if ``source`` names a network stream (``rtsp://``, ``http://``, ...), not a file.

    Args:
        source: a path or URL.

    Returns:
        Whether it starts with a stream scheme (case-insensitive).
    """
    return source.lower().startswith(_STREAM_SCHEMES)


class FrameQueue:
    """A bounded FIFO of frames that drops the oldest frame when full.

    Thread-safety: safe for one producer thread and any number of consumer threads (one lock
    guards the buffer and the counters).

    Args:
        maxsize: frames held at most (>= 1).

    Raises:
        ValueError: ``maxsize`` < 1.
        TypeError: ``maxsize`` is not an int.
    """

    def __init__(self, maxsize: int) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"maxsize should be an int, got {type(maxsize).__name__}")
        if maxsize < 1:
            raise ValueError(f"maxsize should be >= 1, got {maxsize}")
        self._frames: collections.deque = collections.deque()
        self._maxsize = maxsize
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0  #: frames discarded because the queue was full
        self.pushed = 0  #: frames put in

    def put(self, frame: np.ndarray) -> None:
        """Append ``frame``; if the queue is full, discard the oldest frame first (counted in :attr:`dropped`)."""
        with self._cond:
            if len(self._frames) >= self._maxsize:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(frame)
            self.pushed += 1
            self._cond.notify()

    def close(self) -> None:
        """Mark the end of the stream: :meth:`get` returns the frames left, then ``None``."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> np.ndarray | None:
        """The oldest frame held, waiting for one if the queue is empty.

        Args:
            timeout: seconds to wait at most (None: until a frame arrives or the queue is closed).

        Returns:
            A frame, or ``None`` when the queue is closed and empty, or when ``timeout`` passed.
        """
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._frames and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._frames.popleft() if self._frames else None

    def __len__(self) -> int:
        with self._cond:
            return len(self._frames)


def _check_options(queue_size: object, stall_timeout: object) -> None:
    if isinstance(queue_size, bool) or not isinstance(queue_size, int):
        raise TypeError(f"queue_size should be an int, got {type(queue_size).__name__}")
    if queue_size < 1:
        raise ValueError(f"queue_size should be >= 1, got {queue_size}")
    if isinstance(stall_timeout, bool) or not isinstance(stall_timeout, (int, float)):
        raise TypeError(f"stall_timeout should be a number of seconds, got {type(stall_timeout).__name__}")
    # FFmpeg takes the timeout in whole milliseconds as a C int: 0 (below 1 ms) meant "wait forever", and more
    # than 2^31 ms reached OpenCV as an overload error
    if not (math.isfinite(stall_timeout) and _MIN_STALL_S <= stall_timeout <= _MAX_STALL_S):
        raise ValueError(f"stall_timeout should be in [{_MIN_STALL_S:g}, {_MAX_STALL_S:g}] s, got {stall_timeout}")


_MIN_STALL_S = 0.001
_MAX_STALL_S = 2e6  # ~23 days: 2e9 ms still fits a C int
_MAX_CAMERA_INDEX = 2**31 - 1


class VideoSource:
    """Frames from a video file, a camera or a network stream.

    Args:
        source: a video file path, a camera index (``int`` or a string of digits) or a stream
            URL (``rtsp://``, ``http://``, ``https://``, ...).
        queue_size: frames a live source buffers at most before dropping the oldest (>= 1).
            Small is right for live analytics: the consumer sees the newest frames.
        stall_timeout: a live source that delivers no frame for this many seconds counts as
            stopped (0.001 to 2e6 s).

    Raises:
        TypeError: ``source`` is not a str, path or int.
        FileNotFoundError: a file path that does not exist.
        ValueError: OpenCV cannot open the source, or it has no readable first frame;
            bad ``queue_size`` / ``stall_timeout``.

    Thread-safety: one consumer thread iterates a source (the live reader thread is internal).
    """

    def __init__(
        self, source: str | os.PathLike[str] | int, *, queue_size: int = 4, stall_timeout: float = 10.0
    ) -> None:
        import cv2

        _check_options(queue_size, stall_timeout)
        if isinstance(source, bool) or not isinstance(source, (str, os.PathLike, int)):
            raise TypeError(f"source should be a file path, camera index or stream URL, got {type(source).__name__}")
        if isinstance(source, os.PathLike):
            source = os.fspath(source)
        if source == "":
            raise ValueError("source is empty; expected a file path, camera index or stream URL")
        if isinstance(source, str) and source.isascii() and source.lstrip("-").isdigit():  # "²" is a digit too
            source = int(source)
        if isinstance(source, int):
            name, live = f"camera {source}", True
            if not 0 <= source <= _MAX_CAMERA_INDEX:
                raise ValueError(f"camera index should be in [0, {_MAX_CAMERA_INDEX}], got {source}")
            capture = cv2.VideoCapture(source)
        elif is_stream_url(source):
            name, live = source, True
            timeout_ms = int(1000 * stall_timeout)
            # FFmpeg gives up on an unreachable server or a silent stream after stall_timeout, not its default 30 s
            capture = cv2.VideoCapture(
                source,
                cv2.CAP_FFMPEG,
                [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms],
            )
        else:
            name, live = source, False
            existing_file(source, "video file")
            capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            capture.release()
            raise ValueError(
                f"cannot open {name} as a video source (OpenCV could not open it: not a video, "
                "unreachable, or a format this OpenCV build cannot read)"
            )
        self._init(capture, name=name, live=live, queue_size=queue_size, stall_timeout=stall_timeout)

    @classmethod
    def from_capture(
        cls, capture: Capture, *, name: str, live: bool, queue_size: int = 4, stall_timeout: float = 10.0
    ) -> VideoSource:
        """Wrap an already open capture (a ``cv2.VideoCapture`` on a GStreamer pipeline, say).

        Args:
            capture: an object with ``read() -> (ok, frame)``, ``get(prop)`` and ``release()``.
            name: how messages name the source.
            live: read it on a background thread through a dropping queue (see the class).
            queue_size: as for the constructor.
            stall_timeout: as for the constructor.

        Returns:
            The :class:`VideoSource`; it releases ``capture`` when closed.

        Raises:
            TypeError: ``capture`` lacks ``read``/``get``/``release``.
            ValueError: no readable first frame; bad ``queue_size`` / ``stall_timeout``.
        """
        for method in ("read", "get", "release"):
            if not callable(getattr(capture, method, None)):
                raise TypeError(
                    f"capture should have a {method}() method like cv2.VideoCapture, got {type(capture).__name__}"
                )
        _check_options(queue_size, stall_timeout)
        self = cls.__new__(cls)
        self._init(capture, name=name, live=live, queue_size=queue_size, stall_timeout=stall_timeout)
        return self

    def _init(self, capture: Capture, *, name: str, live: bool, queue_size: int, stall_timeout: float) -> None:
        import cv2

        self.name = name
        self.live = live
        self._capture = capture
        self._stall_timeout = float(stall_timeout)
        self._queue = FrameQueue(queue_size)
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps: float | None = fps if 0 < fps < 1000 else None  #: nominal frame rate, when the source says
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if not live else 0
        self.frame_count: int | None = count if count > 0 else None  #: frames in a file (OpenCV's estimate)
        self.frames_read = 0  #: frames handed to the consumer
        self.stop_reason: str | None = None  #: why a source ended early (None: normal end of a file, or open)
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        ok, first = self._read_capture()
        if not ok:
            capture.release()
            raise ValueError(f"{name} delivered no readable frame")
        self._first: np.ndarray | None = first
        if live:
            self._reader = threading.Thread(target=self._read_live, name=f"lanner-video-{name}", daemon=True)
            self._reader.start()

    # -- reading ---------------------------------------------------------------------------
    def _read_capture(self) -> tuple[bool, np.ndarray | None]:
        try:
            ok, frame = self._capture.read()
        except Exception as exc:  # noqa: BLE001 - a capture backend failing mid-stream is a stop, not a crash
            self.stop_reason = f"reading failed: {exc}"
            return False, None
        if not ok or frame is None:
            return False, None
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim not in (2, 3) or frame.size == 0:
            self.stop_reason = (
                f"the capture returned a frame that is not a uint8 image: "
                f"{type(frame).__name__} {getattr(frame, 'dtype', '')} {getattr(frame, 'shape', '')}"
            )
            return False, None
        return True, frame

    def _read_live(self) -> None:
        try:
            while not self._stop.is_set():
                ok, frame = self._read_capture()
                if not ok:
                    if self.stop_reason is None and not self._stop.is_set():
                        self.stop_reason = f"the stream {self.name} stopped (no more frames)"
                    break
                self._queue.put(frame)
        finally:
            self._queue.close()

    def read(self) -> np.ndarray | None:
        """The next frame (a live source: the oldest one buffered), or ``None`` at the end.

        Returns:
            An ``HxWx3`` BGR (or ``HxW`` gray) ``uint8`` frame, or ``None`` when the file ended
            or the stream stopped (then :attr:`stop_reason` says why).
        """
        if self._first is not None:
            frame, self._first = self._first, None
        elif self._capture is None:
            return None
        elif self.live:
            frame = self._queue.get(timeout=self._stall_timeout)
            if frame is None and self.stop_reason is None and not self._queue_closed():
                self.stop_reason = f"the stream {self.name} stalled: no frame for {self._stall_timeout:g} s"
        else:
            ok, frame = self._read_capture()
            if not ok:
                frame = None
        if frame is not None:
            self.frames_read += 1
        return frame

    def _queue_closed(self) -> bool:
        return self._reader is None or not self._reader.is_alive()

    @property
    def dropped(self) -> int:
        """Frames a live source discarded because the consumer was slower than the source (0 for files)."""
        return self._queue.dropped

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    # -- resources ---------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the reader thread and release the capture. Idempotent."""
        self._stop.set()
        if self._reader is not None:
            self._reader.join(timeout=self._stall_timeout)
            self._reader = None
        if self._capture is not None:
            self._capture.release()
            self._capture = None
        self._first = None

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VideoSource({self.name!r}, live={self.live}, frames_read={self.frames_read}, dropped={self.dropped})"
