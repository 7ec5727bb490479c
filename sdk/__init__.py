"""Lanner: an edge-deployment SDK for seeing low-quality visual objects.

Runtime imports stay light: heavy backends (OpenVINO, ONNX Runtime, TVM) load
only when a model that needs them is loaded.
"""
from __future__ import annotations

__version__ = "0.1.0"

from . import ops
from .ops import has_cuda
from .tracking import MultiTracker, MultiTrackResult, Tracker, TrackerOptions, TrackResult

__all__ = [
    "__version__",
    "ops",
    "has_cuda",
    "Tracker",
    "TrackerOptions",
    "TrackResult",
    "MultiTracker",
    "MultiTrackResult",
]
