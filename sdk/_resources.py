"""The close / context-manager protocol shared by Lanner's objects that hold native or backend
resources (:class:`~lanner.FaceDetector`, :class:`~lanner.Tracker`, :class:`~lanner.MultiTracker`,
:class:`~lanner.Model`,
:class:`~lanner.FaceRecognizer`, :class:`~lanner.FacePipeline`)."""

from __future__ import annotations

from typing import TypeVar

import numpy as np

__all__ = ["Closeable", "MAX_THREADS", "check_num_threads"]

MAX_THREADS = 256  # num_threads above this is refused (the native ops' bound too)


def check_num_threads(num_threads) -> int | None:
    """``num_threads`` as every object that takes one accepts it: None (the backend's default) or an int
    in [1, 256] (numpy integers too).

    Raises:
        TypeError: not an int (bool included).
        ValueError: outside [1, 256].
    """
    if num_threads is None:
        return None
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)):
        raise TypeError(f"num_threads should be a positive int or None, got {type(num_threads).__name__}")
    if not 1 <= num_threads <= MAX_THREADS:
        raise ValueError(f"num_threads should be a positive int or None, at most {MAX_THREADS}, got {num_threads}")
    return int(num_threads)


_Self = TypeVar("_Self", bound="Closeable")


class Closeable:
    """Mixin: ``close()`` (idempotent), ``closed``, and ``with obj: ...`` closing on exit.

    A subclass implements :meth:`_release` (free its resources; called once, by the first
    ``close()``) and calls :meth:`_ensure_open` at the top of every method that needs the
    resources. ``_closed_message`` is the text of the ``ValueError`` raised on use after close.

    Thread safety: ``close()`` may be called from any thread; a call already running in another
    thread keeps its own reference to the resources and finishes (the subclass serialises its
    calls); calls that start after ``close()`` raise ``ValueError``.
    """

    _closed_message = "this object is closed"
    _closed = False

    def _release(self) -> None:
        """Free the resources (called once, by the first :meth:`close`)."""

    def close(self) -> None:
        """Release the resources. Idempotent; the object is unusable afterwards."""
        if not self._closed:
            self._closed = True
            self._release()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def _ensure_open(self) -> None:
        """Raise ``ValueError(_closed_message)`` after :meth:`close`."""
        if self._closed:
            raise ValueError(self._closed_message)

    def __enter__(self: _Self) -> _Self:
        self._ensure_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
