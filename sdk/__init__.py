"""Lanner: an edge-deployment SDK for seeing low-quality visual objects.

Runtime imports stay light: heavy backends (OpenVINO, ONNX Runtime, TVM) load
only when a model that needs them is loaded.
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import ops, video
from .face import Detections, FaceDetector, FaceGallery, FaceRecognizer
from .manifest import Manifest, PackageError, TensorSpec
from .ops import has_cuda
from .pipeline import FacePipeline, Track
from .runtime import Model, load
from .tracking import MultiTracker, MultiTrackResult, Tracker, TrackerOptions, TrackResult

__all__ = [
    "__version__",
    "ops",
    "has_cuda",
    "load",
    "Model",
    "Manifest",
    "TensorSpec",
    "PackageError",
    "FaceDetector",
    "Detections",
    "FaceRecognizer",
    "FaceGallery",
    "Tracker",
    "TrackerOptions",
    "TrackResult",
    "MultiTracker",
    "MultiTrackResult",
    "video",
    "FacePipeline",
    "Track",
]
