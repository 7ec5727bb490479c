"""``lanner.FaceDetector``: the MTCNN face detector, compiled for the host CPU."""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .. import models
from .._resources import Closeable, check_num_threads
from ..models.face_detectors import DEFAULT_FACE_DETECTOR, get_face_detector
from .cascade import STAGES, CascadeParams, Workspace, pyramid_scales, run_cascade

__all__ = ["FaceDetector", "Detections"]

_CHANNEL_ORDERS = ("bgr", "rgb")
# The cascade's working memory per call, measured on 1.5-12 MP photos (peak RSS, OpenVINO fp32):
# about 16 bytes per image pixel (summed-area table, image) and 110 bytes per pyramid pixel
# (pyramid, canvas, P-Net activations and maps).
_BYTES_PER_IMAGE_PIXEL = 16
_BYTES_PER_PYRAMID_PIXEL = 110
DEFAULT_MAX_MEMORY_MB = 4096
MAX_MEMORY_ENV = "LANNER_MAX_MEMORY_MB"


@dataclass(frozen=True)
class Detections:
    """Faces found in one image, by descending score.

    Thread-safe: immutable (frozen, and :meth:`FaceDetector.detect` returns read-only arrays).

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
                {
                    "box": [round(float(v), 2) for v in b],
                    "score": round(float(s), 5),
                    "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in lm],
                }
                for b, s, lm in zip(self.boxes, self.scores, self.landmarks)
            ]
        }


MIN_FACE_SIZE_FLOOR = 1.0  # px: a smaller face has no pixel to find
MAX_SCALE_FACTOR = 0.99  # pyramid steps of at least 1%


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def estimate_cascade_memory_mb(
    height: int, width: int, min_face_size: float = 20.0, scale_factor: float = 0.709
) -> float:
    """Working memory of one :meth:`FaceDetector.detect` call on an image of this size, in MiB.

    An estimate (within ~20% of the measured peak on 1.5-12 MP photos): the image pyramid
    grows as (12 / min_face_size)^2 x the image's pixels, so a small ``min_face_size`` on a
    large photo needs the most.

    Args:
        height, width: image size, px.
        min_face_size: as :class:`FaceDetector`'s.
        scale_factor: as :class:`FaceDetector`'s.

    Returns:
        Estimated MiB.

    Raises:
        TypeError, ValueError: ``min_face_size`` or ``scale_factor`` as :class:`FaceDetector` refuses them.
    """
    min_face_size, scale_factor = _check_pyramid(min_face_size, scale_factor)
    pyramid = sum(int(height * s) * int(width * s) for s in pyramid_scales(height, width, min_face_size, scale_factor))
    return (_BYTES_PER_IMAGE_PIXEL * height * width + _BYTES_PER_PYRAMID_PIXEL * pyramid) / 2**20


class FaceDetector(Closeable):
    """MTCNN face detector (P-, R-, O-Net cascade) running compiled nets on the CPU.

    The nets are facenet-pytorch's pretrained MTCNN weights, shipped as ONNX in the wheel and
    compiled for this machine on first use into the user cache (see ``lanner models build``).
    Defaults match facenet-pytorch's ``MTCNN`` so results can be compared box for box.

    Thread safety: a FaceDetector may be shared between threads; ``detect`` calls are
    serialised (one image at a time per detector; the compiled nets run multi-threaded
    themselves). For parallel images, use one detector per thread.

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
        min_face_size: smallest face to find, px (>= 1). Smaller values search finer pyramids (slower).
        thresholds: P-Net, R-Net, O-Net face-probability thresholds, each in [0, 1]. None: the
            detector's own (``FaceDetectorSpec.thresholds``; the teacher's are facenet-pytorch's
            (0.6, 0.7, 0.7)).
        scale_factor: ratio between pyramid scales, in (0, 0.99].
        num_threads: CPU threads per net, and for the pyramid and crop resizing, 1 to 256 (None:
            the backend's default for the nets, one per core for the resizing).
        channel_order: ``"bgr"`` (OpenCV's convention, default) or ``"rgb"`` for 3/4-channel inputs.
        max_memory_mb: refuse an image whose cascade would need more working memory than this
            (:func:`estimate_cascade_memory_mb`), with a ValueError, instead of exhausting the
            machine's memory. None: ``$LANNER_MAX_MEMORY_MB``, else 4096.

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
        thresholds: tuple[float, float, float] | None = None,
        scale_factor: float = 0.709,
        num_threads: int | None = None,
        channel_order: str = "bgr",
        max_memory_mb: float | None = None,
    ) -> None:
        spec = get_face_detector(model)
        self.model = spec.name
        self.params = dataclasses.replace(
            _check_params(min_face_size, spec.thresholds if thresholds is None else thresholds, scale_factor),
            rnet_iou_threshold=spec.rnet_iou_threshold,
        )
        num_threads = check_num_threads(num_threads)
        if channel_order not in _CHANNEL_ORDERS:
            raise ValueError(f"channel_order should be one of {_CHANNEL_ORDERS}, got {channel_order!r}")
        self.max_memory_mb = _check_memory_limit(max_memory_mb)
        self.backend, self.precision = models.resolve(backend, precision)
        self.channel_order = channel_order
        self.num_threads = num_threads
        self._nets = tuple(
            models.open_net(name, self.backend, self.precision, num_threads=num_threads) for name in spec.nets
        )
        self._landmark_net = (
            models.open_net(spec.landmark_net, self.backend, self.precision, num_threads=num_threads)
            if spec.landmark_net is not None
            else None
        )
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
            ValueError: wrong dtype, rank or channel count; an empty image; an image whose
                cascade would need more than ``max_memory_mb``; a closed detector.
        """
        return self._detect(image, None)

    def profile(self, image: np.ndarray) -> tuple[Detections, dict[str, float]]:
        """Like :meth:`detect`, also returning seconds spent per stage
        (``pyramid, pnet, rnet, onet, nms, other``; ``other`` includes input conversion)."""
        times: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        return self._detect(image, times), times

    def detect_batch(self, images: Iterable[np.ndarray]) -> list[Detections]:
        """:meth:`detect` on each image (sizes may differ).

        Args:
            images: a list (or any iterable) of images as :meth:`detect` takes them.

        Returns:
            One :class:`Detections` per image, in order.

        Raises:
            TypeError: ``images`` is a single NumPy array (wrap one image in a list: an
                (N, H, W, C) stack is not taken either, as its rows would pass for images).
            ValueError, TypeError: as :meth:`detect`, for any image.
        """
        if isinstance(images, np.ndarray):
            raise TypeError(
                f"detect_batch takes a list of images, got one numpy.ndarray of shape {images.shape}; "
                "use detect(image) for one image, or detect_batch([image, ...])"
            )
        return [self.detect(image) for image in images]

    _closed_message = "this FaceDetector is closed; create a new one"

    def _detect(self, image: np.ndarray, times: dict[str, float] | None) -> Detections:
        self._ensure_open()
        image = _check_image(image)
        self._check_memory(image.shape[0], image.shape[1])
        with self._lock:  # a compiled net's infer request serves one call at a time
            self._ensure_open()
            boxes, scores, landmarks = run_cascade(
                image,
                *self._nets,
                self.params,
                times,
                channel_order=self.channel_order,
                workspace=self._workspace,
                num_threads=self.num_threads or 0,
                landmark_net=self._landmark_net,
            )
        return Detections(_frozen(boxes), _frozen(scores), _frozen(landmarks))

    def _check_memory(self, height: int, width: int) -> None:
        p = self.params
        need = estimate_cascade_memory_mb(height, width, p.min_face_size, p.scale_factor)
        if need > self.max_memory_mb:
            raise ValueError(
                f"a {width}x{height} image with min_face_size={p.min_face_size:g} needs about {need:.0f} MiB of "
                f"working memory, above the limit of {self.max_memory_mb:g} MiB; downscale the image, raise "
                f"min_face_size, or raise the limit (FaceDetector(max_memory_mb=...) or ${MAX_MEMORY_ENV})"
            )

    # -- resources ---------------------------------------------------------------------
    def _release(self) -> None:
        """Release the compiled nets and the reusable buffers (after a running detect)."""
        with self._lock:
            self._workspace.clear()
            for net in (*self._nets, self._landmark_net):
                close = getattr(net, "close", None)
                if close is not None:
                    close()
            self._nets = ()
            self._landmark_net = None

    def __repr__(self) -> str:
        p = self.params
        return (
            f"FaceDetector(model={self.model!r}, backend={self.backend!r}, precision={self.precision!r}, "
            f"min_face_size={p.min_face_size}, thresholds={p.thresholds}, scale_factor={p.scale_factor})"
        )


def _real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} should be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} should be finite, got {value}")
    return value


def _check_pyramid(min_face_size, scale_factor) -> tuple[float, float]:
    # The pyramid has log(short side / min_face_size) / log(1 / scale_factor) levels: these bounds keep it
    # under ~1,100 levels on the largest image detect takes (a 1e-12 step or a 1e-300 px face hung it).
    min_face_size = _real(min_face_size, "min_face_size")
    if min_face_size < MIN_FACE_SIZE_FLOOR:
        raise ValueError(f"min_face_size should be >= {MIN_FACE_SIZE_FLOOR:g} px, got {min_face_size}")
    scale_factor = _real(scale_factor, "scale_factor")
    if not 0 < scale_factor <= MAX_SCALE_FACTOR:
        raise ValueError(f"scale_factor should be in (0, {MAX_SCALE_FACTOR:g}], got {scale_factor}")
    return min_face_size, scale_factor


def _check_params(min_face_size, thresholds, scale_factor) -> CascadeParams:
    min_face_size, scale_factor = _check_pyramid(min_face_size, scale_factor)
    if isinstance(thresholds, (str, bytes)) or not isinstance(thresholds, Iterable):
        raise TypeError(f"thresholds should be 3 numbers (P-, R-, O-Net), got {type(thresholds).__name__}")
    thresholds = tuple(thresholds)
    if len(thresholds) != 3:
        raise ValueError(f"thresholds should have 3 values (P-, R-, O-Net), got {len(thresholds)}")
    thresholds = tuple(_real(t, "thresholds") for t in thresholds)
    if any(not 0 <= t <= 1 for t in thresholds):
        raise ValueError(f"thresholds should be in [0, 1], got {thresholds}")
    return CascadeParams(min_face_size, thresholds, scale_factor)


def _check_memory_limit(max_memory_mb: float | None) -> float:
    source = "max_memory_mb"
    if max_memory_mb is None:
        text = os.environ.get(MAX_MEMORY_ENV)
        if not text:
            return float(DEFAULT_MAX_MEMORY_MB)
        source = f"${MAX_MEMORY_ENV}"
        try:
            max_memory_mb = float(text)
        except ValueError:
            raise ValueError(f"{source} should be a number of MiB, got {text!r}") from None
    if isinstance(max_memory_mb, bool) or not isinstance(max_memory_mb, (int, float, np.integer, np.floating)):
        raise TypeError(f"{source} should be a number of MiB, got {type(max_memory_mb).__name__}")
    if not (math.isfinite(max_memory_mb) and max_memory_mb > 0):
        raise ValueError(f"{source} should be a positive number of MiB, got {max_memory_mb}")
    return float(max_memory_mb)


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
