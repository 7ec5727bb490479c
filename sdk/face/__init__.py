"""Faces: detection (:class:`FaceDetector`, :class:`Detections`), alignment (:mod:`lanner.face.align`),
recognition (:class:`FaceRecognizer`) and galleries of known people (:class:`FaceGallery`)."""

from .detector import Detections, FaceDetector
from .gallery import FaceGallery
from .recognizer import FaceRecognizer

__all__ = ["FaceDetector", "Detections", "FaceRecognizer", "FaceGallery"]
