"""``lanner.FaceDetector``: the MTCNN face detector, compiled for the host CPU."""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .. import models
from ..models.face_detectors import DEFAULT_FACE_DETECTOR, get_face_detector
from .cascade import STAGES, CascadeParams, Workspace, run_cascade

__all__ = ["FaceDetector", "Detections"]

_CHANNEL_ORDERS = ("bgr", "rgb")


@dataclass(frozen=True)
class Detections:
    """Faces found in one image, by descending score.

    Attributes:
        boxes: (N, 4) float32 ``x1, y1, x2, y2`` in input-image pixels.
        scores: (N,) float32 face probability from O-Net, in [0, 1].
        landmarks: (N, 5, 2) float32 ``x, y`` of left eye, right eye, nose, left and right
            mouth corner (image left/right), in input-image pixels.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def to_dict(self) -> dict:
        """JSON-ready ``{"faces": [{"box": [x1, y1, x2, y2], "score": s, "landmarks": [[x, y] * 5]}]}``."""
        return {
            "faces": [
                {"box": [round(float(v), 2) for v in b], "score": round(float(s), 5),
                 "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in lm]}
                for b, s, lm in zip(self.boxes, self.scores, self.landmarks)
            ]
        }


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


class FaceDetector:
    """MTCNN face detector (P-, R-, O-Net cascade) running compiled nets on the CPU.

    The nets are facenet-pytorch's pretrained MTCNN weights, shipped as ONNX in the wheel and
    compiled for this machine on first use into the user cache (see ``lanner models build``).
    Defaults match facenet-pytorch's ``MTCNN`` so results can be compared box for box.

    Example::

        import cv2, lanner
        with lanner.FaceDetector() as detector:
            faces = detector.detect(cv2.imread("group.jpg"))
            print(faces.boxes, faces.scores)

    Args:
        model: which detector (``lanner.models.face_detectors.FACE_DETECTORS``): ``"mtcnn"``, the
            teacher with exact parity to facenet-pytorch, is the default.
        backend: ``"auto"`` (OpenVINO here, chosen by measurement), ``"openvino"`` or ``"onnxruntime"``.
        precision: ``"auto"`` (fp32), ``"fp32"``, ``"fp16"`` (CPUs with FP16 units) or ``"bf16"``
            (OpenVINO on CPUs with AVX512-BF16/AMX: faster, results within ~2 px of fp32's; see
            benchmarks/detection/README.md).
        min_face_size: smallest face to find, px (> 0). Smaller values search finer pyramids (slower).
        thresholds: P-Net, R-Net, O-Net face-probability thresholds, each in [0, 1].
        scale_factor: ratio between pyramid scales, in (0, 1).
        num_threads: CPU threads per net, and for the pyramid and crop resizing (None: the
            backend's default for the nets, one per core for the resizing).
        channel_order: ``"bgr"`` (OpenCV's convention, default) or ``"rgb"`` for 3/4-channel inputs.

    Raises:
        ValueError: an option is out of range, or ``model`` names no detector (the message lists them).
        TypeError: an option has the wrong type.
    """

    def __init__(
        self,
        *,
        model: str = DEFAULT_FACE_DETECTOR,
        backend: str = "auto",
        precision: str = "auto",
        min_face_size: float = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        scale_factor: float = 0.709,
        num_threads: int | None = None,
        channel_order: str = "bgr",
    ) -> None:
        spec = get_face_detector(model)
        self.model = spec.name
        self.params = _check_params(min_face_size, thresholds, scale_factor)
        if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1):
            raise ValueError(f"num_threads should be a positive int or None, got {num_threads!r}")
        if channel_order not in _CHANNEL_ORDERS:
            raise ValueError(f"channel_order should be one of {_CHANNEL_ORDERS}, got {channel_order!r}")
        self.backend, self.precision = models.resolve(backend, precision)
        self.channel_order = channel_order
        self.num_threads = num_threads
        self._nets = tuple(
            models.open_net(name, self.backend, self.precision, num_threads=num_threads) for name in spec.nets
        )
        self._closed = False
        self._lock = threading.Lock()
        self._workspace = Workspace()  # buffers reused from call to call (guarded by _lock)

    # -- inference ---------------------------------------------------------------------
    def detect(self, image: np.ndarray) -> Detections:
        """Find faces in one image.

        Args:
            image: uint8 array: (H, W, 3) BGR (or RGB with ``channel_order="rgb"``), (H, W)
                grayscale, (H, W, 1), or (H, W, 4) with alpha (dropped).

        Returns:
            :class:`Detections`; empty arrays when there is no face or the image is smaller
            than ``min_face_size``.

        Raises:
            TypeError: image is not a NumPy array.
            ValueError: wrong dtype, rank or channel count; an empty image; a closed detector.
        """
        return self._detect(image, None)

    def profile(self, image: np.ndarray) -> tuple[Detections, dict[str, float]]:
        """Like :meth:`detect`, also returning seconds spent per stage
        (``pyramid, pnet, rnet, onet, nms, other``; ``other`` includes input conversion)."""
        times: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        return self._detect(image, times), times

    def detect_batch(self, images: Iterable[np.ndarray]) -> list[Detections]:
        """:meth:`detect` on each image (sizes may differ); returns one :class:`Detections` per image."""
        return [self.detect(image) for image in images]

    def _detect(self, image: np.ndarray, times: dict[str, float] | None) -> Detections:
        if self._closed:
            raise ValueError("this FaceDetector is closed; create a new one")
        image = _check_image(image)
        with self._lock:  # a compiled net's infer request serves one call at a time
            if self._closed:
                raise ValueError("this FaceDetector is closed; create a new one")
            boxes, scores, landmarks = run_cascade(image, *self._nets, self.params, times,
                                                   channel_order=self.channel_order, workspace=self._workspace,
                                                   num_threads=self.num_threads or 0)
        return Detections(_frozen(boxes), _frozen(scores), _frozen(landmarks))

    # -- resources ---------------------------------------------------------------------
    def close(self) -> None:
        """Release the compiled nets and the reusable buffers. Idempotent."""
        with self._lock:
            self._workspace.clear()
            for net in self._nets:
                close = getattr(net, "close", None)
                if close is not None:
                    close()
            self._nets = ()
            self._closed = True

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        p = self.params
        return (f"FaceDetector(model={self.model!r}, backend={self.backend!r}, precision={self.precision!r}, "
                f"min_face_size={p.min_face_size}, thresholds={p.thresholds}, scale_factor={p.scale_factor})")


def _check_params(min_face_size, thresholds, scale_factor) -> CascadeParams:
    def real(value, name):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} should be a number, got {type(value).__name__}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{name} should be finite, got {value}")
        return value

    min_face_size = real(min_face_size, "min_face_size")
    if min_face_size <= 0:
        raise ValueError(f"min_face_size should be > 0 px, got {min_face_size}")
    scale_factor = real(scale_factor, "scale_factor")
    if not 0 < scale_factor < 1:
        raise ValueError(f"scale_factor should be in (0, 1), got {scale_factor}")
    thresholds = tuple(thresholds)
    if len(thresholds) != 3:
        raise ValueError(f"thresholds should have 3 values (P-, R-, O-Net), got {len(thresholds)}")
    thresholds = tuple(real(t, "thresholds") for t in thresholds)
    if any(not 0 <= t <= 1 for t in thresholds):
        raise ValueError(f"thresholds should be in [0, 1], got {thresholds}")
    return CascadeParams(min_face_size, thresholds, scale_factor)


def _check_image(image: np.ndarray) -> np.ndarray:
    """Validate an input image: uint8 (H, W), (H, W, 1), (H, W, 3) or (H, W, 4). It is read in
    place (views and any strides included): the summed-area table takes the channel order and
    skips alpha, so nothing is copied."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image should be a numpy.ndarray, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"image should have dtype uint8, got {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(f"image should be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image should be non-empty, got shape {image.shape}")
    return image
