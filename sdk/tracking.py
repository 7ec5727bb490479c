"""Correlation-filter tracking of small, blurred, low-resolution targets.

The tracker is a kernelized correlation filter (KCF, Henriques et al. TPAMI 2015) on
HOG + grayscale cell features, with a small multi-scale search, a peak-to-sidelobe
ratio (PSR) confidence every frame, a confidence-scaled learning rate and a
lost/re-detection state machine. The work happens in C++ (``lanner._C``, FFTW3).

Example::

    tracker = lanner.Tracker()
    tracker.init(first_frame, (x, y, w, h))
    for frame in frames:
        result = tracker.update(frame)   # TrackResult(box, score, lost, recovered)

Frames are ``HxWx3`` BGR ``uint8`` (OpenCV convention) or ``HxW`` ``uint8`` gray.
Boxes are ``(x, y, w, h)`` in pixels, ``(x, y)`` the top-left corner.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _C
from ._resources import Closeable
from .ops import has_cuda

__all__ = ["TrackerOptions", "TrackResult", "MultiTrackResult", "Tracker", "MultiTracker"]


@dataclass(frozen=True)
class TrackerOptions:
    """Options of :class:`Tracker` and :class:`MultiTracker` (validated on creation).

    Attributes:
        padding: search window = target size x (1 + padding). Larger follows faster
            motion, at more clutter. Range [0.5, 6].
        cell_size: HOG cell side in template pixels; 0 picks it from the target
            size (2 below 24 px, else 4). Range 0 or [1, 8].
        min_grid: the feature grid (geometric-mean side, in cells) is at least this:
            tiny targets (down to 8 px) are upsampled to it. Range [8, 128].
        max_grid: ... and at most this: large targets are downsampled (bounds the cost).
        window_power: the feature window is Hann^power; above 1 it weighs the
            target over its background (cheap spatial regularisation); [0.25, 8].
        kernel: ``"gaussian"`` (KCF) or ``"linear"`` (multi-channel DCF) correlation.
        kernel_sigma: Gaussian kernel bandwidth, feature units; > 0.
        lambda_: ridge regularisation of the filter; > 0.
        output_sigma_factor: std of the Gaussian training label, as a fraction of the
            target's size (in cells); (0, 1].
        learning_rate: model update rate at full confidence; (0, 1].
        num_scales: scales searched per frame (odd, 1 = no scale estimation); [1, 15].
        scale_step: ratio between neighbouring scales; (1, 1.5].
        scale_penalty: response multiplier for a changed scale (1 = no preference); (0, 1].
        lost_psr: a frame whose PSR is below this always counts as a miss.
        miss_ratio: a frame whose PSR is below ``miss_ratio`` x the running mean PSR
            of confident frames (capped at 2 x ``good_psr``; it starts at ``good_psr``)
            is a miss too: a miss changes neither the scale nor the model; [0, 1).
        peak_ratio: a frame whose response peak is below ``peak_ratio`` x the running
            mean peak of confident frames is a miss too (0 disables this cue); [0, 1).
        good_psr: the full learning rate applies at or above this PSR; down to the
            miss threshold the rate falls linearly to 0.
        recover_psr: a lost target is re-acquired when a window scores at least this
            (>= ``lost_psr``: hysteresis) ...
        recover_ratio: ... and at least ``recover_ratio`` x the (capped) mean PSR; [0, 2] ...
        recover_peak_ratio: ... and its response peak at least ``recover_peak_ratio`` x
            the running mean peak (clutter gives sharp but weak peaks); 0 = off; [0, 2].
        snapshot_ratio: a confident frame whose PSR is at least ``snapshot_ratio`` x the
            (capped) mean PSR saves the model; when ``lost`` is raised the saved model
            replaces the current one, so what was learned from a partly occluded target
            just before does not steer the re-detection; 0 = off; [0, 4].
        miss_motion: on a miss, the fraction of the response peak's displacement the
            box follows (1 = follow, 0 = hold); [0, 1].
        lost_patience: consecutive misses before ``lost`` is raised; from then the
            model is frozen and 9 windows (the last one and 8 around it) are searched.
        redetect_spread: offset of those 8 windows, in window sizes; [0, 4].
        redetect_radius: search farther while lost: rings of windows at
            ``redetect_spread`` steps out to this many window sizes, 8 windows per frame
            in turn (the cost per frame does not grow); 0 = the 8 neighbours; [0, 8].
        num_threads: :class:`MultiTracker` worker threads; 0 = all cores.
    """

    padding: float = 2.5
    cell_size: int = 0
    min_grid: int = 24
    max_grid: int = 32
    window_power: float = 1.0
    kernel: str = "gaussian"
    kernel_sigma: float = 0.5
    lambda_: float = 1e-4
    output_sigma_factor: float = 0.1
    learning_rate: float = 0.02
    num_scales: int = 3
    scale_step: float = 1.05
    scale_penalty: float = 0.985
    lost_psr: float = 4.0
    miss_ratio: float = 0.45
    peak_ratio: float = 0.4
    good_psr: float = 10.0
    recover_psr: float = 6.0
    recover_ratio: float = 0.6
    recover_peak_ratio: float = 0.6
    snapshot_ratio: float = 1.0
    miss_motion: float = 1.0
    lost_patience: int = 3
    redetect_spread: float = 0.6
    redetect_radius: float = 0.0
    num_threads: int = 0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int):
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                    raise TypeError(f"TrackerOptions.{f.name} must be an int, got {type(value).__name__}")
                if not -(2**31) <= value < 2**31:  # the native field is a 32-bit int (pybind's message was opaque)
                    raise ValueError(f"TrackerOptions.{f.name} must fit a 32-bit int, got {value}")
            elif f.type in ("float", float):
                if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                    raise TypeError(f"TrackerOptions.{f.name} must be a number, got {type(value).__name__}")
                if not math.isfinite(float(value)):
                    raise ValueError(f"TrackerOptions.{f.name} must be finite, got {value}")
            elif not isinstance(value, str):
                raise TypeError(f"TrackerOptions.{f.name} must be a str, got {type(value).__name__}")
        self.to_params().validate()  # the C++ checks are the single source of the ranges

    def to_params(self) -> Any:
        """Return the native ``lanner._C.TrackerParams`` for these options."""
        params = _C.TrackerParams()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            setattr(params, f.name, value if isinstance(value, str) else type(getattr(params, f.name))(value))
        return params


@dataclass(frozen=True)
class TrackResult:
    """One frame of one target.

    Thread-safe: immutable (frozen; plain Python values).

    Attributes:
        box: ``(x, y, w, h)`` float pixels, top-left corner and size: the best
            estimate, also while ``lost`` (then the last confident box).
        score: confidence, the peak-to-sidelobe ratio of the correlation response
            (roughly: > 10 sure, < ``lost_psr`` a miss).
        lost: the target has been missed for ``lost_patience`` frames; the model is
            frozen and a wider area is searched.
        recovered: this frame re-acquired a lost target.
    """

    box: tuple[float, float, float, float]
    score: float
    lost: bool
    recovered: bool = False


@dataclass(frozen=True)
class MultiTrackResult:
    """One frame of N targets (struct of arrays, in :meth:`MultiTracker.init` order).

    Thread-safe: immutable (frozen, and :meth:`MultiTracker.update` returns read-only arrays).

    Attributes:
        boxes: ``(N, 4)`` float32 ``(x, y, w, h)`` pixels.
        scores: ``(N,)`` float32 peak-to-sidelobe ratios.
        lost: ``(N,)`` bool.
        recovered: ``(N,)`` bool, True where a lost target was re-acquired this frame.
    """

    boxes: np.ndarray
    scores: np.ndarray
    lost: np.ndarray
    recovered: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __getitem__(self, i: int) -> TrackResult:
        x, y, w, h = (float(v) for v in self.boxes[i])
        return TrackResult((x, y, w, h), float(self.scores[i]), bool(self.lost[i]), bool(self.recovered[i]))


def _check_frame(frame: Any) -> np.ndarray:
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"frame must be a numpy.ndarray, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must have dtype uint8, got {frame.dtype}")
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3)):
        raise ValueError(f"frame must be HxW (gray) or HxWx3 (BGR), got shape {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"frame must not be empty, got shape {frame.shape}")
    return frame


def _check_box(box: Any) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"box must be 4 numbers (x, y, w, h), got {box!r}") from None
    if len(values) != 4:
        raise ValueError(f"box must be (x, y, w, h), got {len(values)} values")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"box values must be finite, got {values}")
    if not (values[2] >= 1 and values[3] >= 1):
        raise ValueError(f"box width and height must be >= 1 px, got w={values[2]} h={values[3]}")
    return values  # type: ignore[return-value]


def _resolve_options(options: TrackerOptions | None, kwargs: dict[str, Any]) -> TrackerOptions:
    """The options of a tracker given either as a TrackerOptions or as its fields by keyword."""
    if options is not None and kwargs:
        raise ValueError("pass either options=TrackerOptions(...) or keyword options, not both")
    if options is None:
        return TrackerOptions(**kwargs)
    if not isinstance(options, TrackerOptions):
        raise TypeError(f"options must be a TrackerOptions, got {type(options).__name__}")
    return options


class _NativeTracker(Closeable):
    """What Tracker and MultiTracker share: the native object, released by close()."""

    _native: Any = None

    def _native_or_closed(self) -> Any:
        native = self._native  # read once: a close() in another thread cannot pull it away mid-call
        if native is None:
            raise ValueError(self._closed_message)
        return native

    def _release(self) -> None:
        self._native = None


class Tracker(_NativeTracker):
    """Single-target correlation-filter tracker.

    Thread safety: a Tracker may be shared between threads; calls on it are serialised (one
    ``init``/``update`` at a time, the others wait with the GIL released). Frames from several
    threads interleave in whatever order the threads arrive, so one video per Tracker is the
    useful pattern; trackers of different videos run in parallel.

    Args:
        options: a :class:`TrackerOptions`; or give its fields as keywords.
        **kwargs: fields of :class:`TrackerOptions` (not together with ``options``).

    Raises:
        ValueError, TypeError: invalid options.
    """

    def __init__(self, options: TrackerOptions | None = None, **kwargs: Any) -> None:
        self.options = _resolve_options(options, kwargs)
        self._native: Any = _C.CorrelationTracker(self.options.to_params())

    _closed_message = "the tracker is closed; create a new Tracker"

    def init(self, frame: np.ndarray, box: tuple[float, float, float, float]) -> None:
        """Start tracking ``box`` in ``frame`` (again, if called a second time).

        Args:
            frame: ``HxWx3`` BGR or ``HxW`` gray, ``uint8``.
            box: ``(x, y, w, h)`` pixels, w and h >= 1; must overlap the frame.

        Raises:
            TypeError: frame is not a NumPy array.
            ValueError: bad frame, empty/zero-size box, a box fully outside the frame, or a
                closed tracker.
        """
        native = self._native_or_closed()
        native.init(_check_frame(frame), list(_check_box(box)))

    def update(self, frame: np.ndarray) -> TrackResult:
        """Track the target into ``frame``.

        Args:
            frame: same size and kind of frame as given to :meth:`init`.

        Returns:
            The :class:`TrackResult` of this frame.

        Raises:
            TypeError: frame is not a NumPy array.
            ValueError: called before :meth:`init` or after :meth:`close`, a bad frame, or a
                frame whose size differs from the one at :meth:`init`.
        """
        native = self._native_or_closed()
        box, score, lost, recovered = native.update(_check_frame(frame))
        return TrackResult(tuple(float(v) for v in box), float(score), bool(lost), bool(recovered))  # type: ignore[arg-type]


class MultiTracker(_NativeTracker):
    """N targets tracked in one call: the frame is converted to gray once and the
    targets are spread over ``options.num_threads`` threads. Each target behaves
    exactly like its own :class:`Tracker` with the same options.

    Thread safety: as :class:`Tracker`: may be shared, calls are serialised.

    With ``device="cuda"`` the detection step of all tracked targets (their search
    windows at every scale) runs as one batched cuFFT computation per frame and grid
    size on the GPU; features, peaks, model updates and the re-detection of lost
    targets stay on the CPU. Results agree with ``device="cpu"`` to float rounding, not
    bit for bit.

    Args:
        options: a :class:`TrackerOptions`; or give its fields as keywords.
        device: ``"cpu"`` or ``"cuda"`` (needs a build with cuFFT, see ``lanner info``,
            and a usable CUDA device).
        **kwargs: fields of :class:`TrackerOptions`.

    Raises:
        ValueError, TypeError: invalid options or an unknown device.
        RuntimeError: ``device="cuda"`` where it cannot run (no cuFFT in the build, or no usable
            CUDA device), as :func:`lanner.ops.nms` raises for ``device="cuda"``.
    """

    def __init__(self, options: TrackerOptions | None = None, *, device: str = "cpu", **kwargs: Any) -> None:
        self.options = _resolve_options(options, kwargs)
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if device == "cuda":
            if not _C.built_with_cufft:
                raise RuntimeError(
                    "device='cuda' needs lanner built with cuFFT (nvcc and `pip install nvidia-cufft` "
                    "before building; `lanner info` shows the build)"
                )
            if not has_cuda():
                raise RuntimeError("device='cuda' needs a usable CUDA device; none was found")
        self.device = device
        self._native: Any = _C.MultiCorrelationTracker(self.options.to_params(), device)

    _closed_message = "the tracker is closed; create a new MultiTracker"

    def __len__(self) -> int:
        native = self._native
        return 0 if native is None else len(native)

    def init(self, frame: np.ndarray, boxes: np.ndarray) -> None:
        """Start tracking every row of ``boxes`` in ``frame`` (replaces earlier targets).

        Args:
            frame: ``HxWx3`` BGR or ``HxW`` gray, ``uint8``.
            boxes: ``(N, 4)`` ``(x, y, w, h)`` pixels, 1 <= N <= 4096.

        Raises:
            TypeError: frame is not a NumPy array, or boxes are not numbers.
            ValueError: bad frame, any bad box (the message names it), or a closed tracker.
        """
        native = self._native_or_closed()
        try:
            arr = np.asarray(boxes, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"boxes must be an (N, 4) array of numbers, got {type(boxes).__name__}") from None
        if arr.ndim != 2 or arr.shape[1] != 4 or arr.shape[0] == 0:
            raise ValueError(f"boxes must have shape (N, 4) with N >= 1, got {arr.shape}")
        for row in arr:
            _check_box(row)
        native.init(_check_frame(frame), np.ascontiguousarray(arr))

    def update(self, frame: np.ndarray) -> MultiTrackResult:
        """Track every target into ``frame``.

        Returns:
            A :class:`MultiTrackResult` with ``(N, 4)`` boxes and ``(N,)`` scores/flags.

        Raises:
            TypeError: frame is not a NumPy array.
            ValueError: called before :meth:`init` or after :meth:`close`, bad frame, or a
                changed frame size.
        """
        native = self._native_or_closed()
        arrays = native.update(_check_frame(frame))
        for a in arrays:
            a.flags.writeable = False
        return MultiTrackResult(*arrays)
