"""Face detection: :class:`FaceDetector` (compiled MTCNN cascade) and its :class:`Detections`."""
from .detector import Detections, FaceDetector

__all__ = ["FaceDetector", "Detections"]
