"""``lanner.FaceRecognizer``: faces -> unit embeddings in one space, each face by the model made for its size;
and each face's quality (how well it can be recognised)."""

from __future__ import annotations

import threading

import numpy as np

from .. import models
from .._resources import Closeable, check_num_threads
from ..models import face_embedders, face_quality
from .align import align_faces, face_widths, landmarks_from_boxes
from .detector import Detections
from .gallery import check_threshold

__all__ = ["FaceRecognizer"]

_CHANNEL_ORDERS = ("bgr", "rgb")
MAX_BATCH = 64  # faces per model run


class FaceRecognizer(Closeable):
    """Embeds faces into issue 14's shared 128-d space, routing each face by its width.

    Each face is aligned from its five landmarks (:func:`lanner.face.align.align_faces`) into
    the chip its model reads and embedded; the embedding is ``normalize(d - mu)`` for the teacher
    (dlib's ResNet, descriptor ``d``) and the normalised output for a student trained to match
    it, so embeddings from different models compare directly (cosine similarity). The routing
    table is :func:`lanner.models.face_embedders.routing_table`: a face ``w`` px wide (MTCNN box
    width) goes to the embedder with the smallest ``max_face_width >= w``; with no student
    installed, every face goes to the teacher. Models are compiled for this CPU on first use
    (see ``lanner models build``) and opened lazily, when a face first needs them.

    Thread-safe: one lock serialises model runs (a compiled model serves one call at a time);
    use one recognizer per thread for parallel throughput.

    Example::

        with lanner.FaceDetector() as detector, lanner.FaceRecognizer() as recognizer:
            faces = detector.detect(image)
            embeddings = recognizer.embed(image, faces)        # (N, 128) float32, unit norm

    Args:
        embedders: registry names to route between, at most one per ``max_face_width``; must include
            one with unbounded ``max_face_width`` (the teacher) so that every face has a model. Default:
            ``lanner.models.face_embedders.DEFAULT_EMBEDDERS``, the most accurate (faces up to 20 px by
            the bridge model, larger ones by the teacher); ``FAST_EMBEDDERS`` gives faces up to 20 px to
            the 32 px student instead, ~29x faster per face on one core than the int8 bridge and less accurate
            (``benchmarks/recognition``).
        backend: ``"auto"``, ``"openvino"`` or ``"onnxruntime"``.
        num_threads: CPU threads per model (None: the backend's default).
        channel_order: ``"bgr"`` (OpenCV's, default) or ``"rgb"`` for 3/4-channel images.

    Raises:
        ValueError: an unknown embedder, no unbounded embedder, or a bad option.
        TypeError: ``embedders`` is a string, or ``num_threads`` is not an int.
    """

    def __init__(
        self,
        *,
        embedders: tuple[str, ...] | list[str] | None = None,
        backend: str = "auto",
        num_threads: int | None = None,
        channel_order: str = "bgr",
    ) -> None:
        if isinstance(embedders, (str, bytes)):
            raise TypeError(f"embedders should be a tuple or list of registry names, got one string {embedders!r}")
        names = face_embedders.DEFAULT_EMBEDDERS if embedders is None else tuple(embedders)
        self._routes = face_embedders.routing_table(names)
        if not np.isinf(self._routes[-1].max_face_width):
            raise ValueError(
                f"embedders {names} leave large faces without a model: include one with unbounded "
                f"max_face_width (the teacher, {face_embedders.TEACHER!r})"
            )
        num_threads = check_num_threads(num_threads)
        if channel_order not in _CHANNEL_ORDERS:
            raise ValueError(f"channel_order should be one of {_CHANNEL_ORDERS}, got {channel_order!r}")
        self.backend, _ = models.resolve(backend, "fp32")
        self.num_threads = num_threads
        self.channel_order = channel_order
        self._spaces = {spec.model: face_embedders.read_space(spec) for spec in self._routes}
        self._nets: dict[str, object] = {}
        self._lock = threading.Lock()

    @property
    def embedders(self) -> tuple[str, ...]:
        """Registry names of the embedders, by increasing ``max_face_width``."""
        return tuple(spec.model for spec in self._routes)

    @property
    def threshold(self) -> float:
        """The teacher's identification threshold (cosine similarity at FAR 1e-3 on training identities)."""
        return float(self._spaces[self._routes[-1].model]["threshold"])

    def thresholds(self, faces, *, base: float | None = None) -> np.ndarray:
        """Each face's identification threshold: that of the embedder its width routes it to.

        Every embedder stores the cosine similarity at which its probes meet a false-accept rate of
        1e-3 against the teacher's clean embeddings of other people (the teacher 0.598, the bridge
        model 0.640 for its 16 px faces): faces embedded by different models need their own. ``base``
        moves them all together: it is the threshold asked for the teacher (a gallery's, which defaults
        to the teacher's), and every embedder's threshold moves by the same offset from its own.

        Args:
            faces: as for :meth:`embed`.
            base: the teacher's threshold to use (default: its calibrated one, :attr:`threshold`).

        Returns:
            (N,) float64 thresholds in [-1, 1], for :meth:`lanner.FaceGallery.identify`'s ``thresholds``.

        Raises:
            TypeError: faces of the wrong type, or a ``base`` that is not a number.
            ValueError: faces of the wrong shape, or a ``base`` outside [-1, 1].
        """
        self._ensure_open()
        _, widths = self._landmarks(faces)
        offset = 0.0 if base is None else check_threshold(base, "base") - self.threshold
        own = np.array([float(self._spaces[name]["threshold"]) for name in self.route(widths)], np.float64)
        return np.clip(own + offset, -1.0, 1.0)

    def route(self, widths: np.ndarray) -> list[str]:
        """The embedder each face width (px) is routed to.

        Args:
            widths: (N,) face widths, px.

        Returns:
            N registry names.

        Raises:
            ValueError: widths that are not finite and >= 0, or not one-dimensional.
        """
        widths = np.asarray(widths, np.float64)
        if widths.ndim != 1:
            raise ValueError(f"widths should have shape (N,), got {widths.shape}")
        bad = ~(np.isfinite(widths) & (widths >= 0))  # NaN sorted past the last route: an IndexError
        if bad.any():
            raise ValueError(f"widths should be finite and >= 0 px, got {widths[bad][:3]}")
        limits = np.array([spec.max_face_width for spec in self._routes])
        index = np.searchsorted(limits, widths, side="left")
        return [self._routes[i].model for i in index]

    def embed(self, image: np.ndarray, faces) -> np.ndarray:
        """Embed the faces of one image.

        Args:
            image: uint8 (H, W, 3) BGR (or RGB with ``channel_order="rgb"``), (H, W) or (H, W, 1)
                grey, or (H, W, 4) with alpha (dropped).
            faces: where the faces are, in image pixels: a :class:`lanner.Detections` (its
                landmarks are used), an (N, 5, 2) float array of landmarks (left eye, right eye,
                nose, left and right mouth corner), or an (N, 4) float array of ``x1, y1, x2, y2``
                boxes (aligned by the box alone: coarser, see
                :func:`lanner.face.align.landmarks_from_boxes`).

        Returns:
            (N, 128) float32 embeddings, unit L2 norm, one row per face in input order.

        Raises:
            TypeError: image or faces of the wrong type or dtype.
            ValueError: wrong shapes, NaN landmarks, a face partly outside the image, a zero-size
                face, or a closed recognizer.
        """
        self._ensure_open()  # zero faces too: a closed recognizer answers nothing
        image = self._check_image(image)
        landmarks, widths = self._landmarks(faces)
        out = np.zeros((len(landmarks), face_embedders.EMBEDDING_DIM), np.float32)
        if len(landmarks) == 0:
            align_faces(image, landmarks, 8)  # validates the landmarks' shape and dtype
            return out
        routes = np.array(self.route(widths))
        for spec in self._routes:
            chosen = np.flatnonzero(routes == spec.model)
            if chosen.size:
                out[chosen] = self._embed_chips(spec, self._rgb_chips(image, landmarks[chosen], spec.chip_size))
        return out

    def quality(self, image: np.ndarray, faces) -> np.ndarray:
        """How well each face can be recognised: the SDD-FIQA quality student's score.

        Scores near 1 are faces the teacher separates clearly from other people (large, sharp, lit,
        unoccluded); near 0, faces it cannot tell from strangers (tiny, blurred, dark, masked). Use
        it to reject faces before recognition, or to pick a track's best frames. The student reads
        a 32 px aligned chip and the face's width (from the landmarks, or the box's width for boxes);
        see ``lanner/models/face_quality/README.md`` and ``benchmarks/quality``.

        Args:
            image: as for :meth:`embed`.
            faces: as for :meth:`embed`.

        Returns:
            (N,) float32 qualities in [0, 1], one per face in input order.

        Raises:
            TypeError: image or faces of the wrong type or dtype.
            ValueError: wrong shapes, NaN landmarks, a face partly outside the image, a zero-size
                face, or a closed recognizer.
        """
        self._ensure_open()  # zero faces too: a closed recognizer answers nothing
        image = self._check_image(image)
        landmarks, widths = self._landmarks(faces)
        chips = self._rgb_chips(image, landmarks, face_quality.CHIP_SIZE)
        if len(chips) == 0:
            return np.zeros(0, np.float32)
        scores = self._run_chips(face_quality.MODEL, face_quality.OUTPUT, chips, widths=widths).reshape(-1)
        return np.clip(scores, 0.0, 1.0)

    @staticmethod
    def _landmarks(faces) -> tuple[np.ndarray, np.ndarray]:
        """``faces`` as (N, 5, 2) landmarks and (N,) face widths (px), or a TypeError/ValueError."""
        if isinstance(faces, Detections):
            landmarks = faces.landmarks
            widths = face_widths(landmarks) if len(faces) else np.zeros(0, np.float32)
        elif isinstance(faces, np.ndarray) and faces.ndim == 2 and faces.shape[1:] == (4,):
            landmarks = landmarks_from_boxes(faces)
            widths = (faces[:, 2] - faces[:, 0]).astype(np.float32)
        elif isinstance(faces, np.ndarray) and faces.ndim == 3:
            landmarks = faces
            widths = face_widths(landmarks) if len(faces) else np.zeros(0, np.float32)
        elif isinstance(faces, np.ndarray):
            raise ValueError(
                f"faces should be Detections, (N, 5, 2) landmarks or (N, 4) boxes, got shape {faces.shape}"
            )
        else:
            raise TypeError(
                f"faces should be Detections, (N, 5, 2) landmarks or (N, 4) boxes, got {type(faces).__name__}"
            )
        return landmarks, widths

    def embed_chips(self, chips: np.ndarray, embedder: str | None = None) -> np.ndarray:
        """Embed already aligned RGB chips with one embedder (no routing).

        Args:
            chips: (N, S, S, 3) uint8 RGB, aligned by :func:`lanner.face.align.align_faces` at the
                embedder's chip size S.
            embedder: registry name (default: the teacher).

        Returns:
            (N, 128) float32 unit embeddings.

        Raises:
            TypeError: chips not a uint8 array.
            ValueError: unknown embedder, wrong chip shape, or a closed recognizer.
        """
        name = self._routes[-1].model if embedder is None else embedder
        spec = next((s for s in self._routes if s.model == name), None)
        if spec is None:
            raise ValueError(f"embedder should be one of {self.embedders}, got {name!r}")
        if not isinstance(chips, np.ndarray) or chips.dtype != np.uint8:
            raise TypeError(f"chips should be a uint8 numpy array, got {getattr(chips, 'dtype', type(chips).__name__)}")
        size = spec.chip_size
        if chips.ndim != 4 or chips.shape[1:] != (size, size, 3):
            raise ValueError(f"chips should have shape (N, {size}, {size}, 3) for {name}, got {chips.shape}")
        if len(chips) == 0:
            self._ensure_open()
            return np.zeros((0, face_embedders.EMBEDDING_DIM), np.float32)
        return self._embed_chips(spec, chips)

    def _run_chips(self, model: str, output: str, chips: np.ndarray, widths: np.ndarray | None = None) -> np.ndarray:
        """Run registry net ``model`` (opened on first use) on (N, S, S, 3) uint8 RGB chips, in
        batches of at most MAX_BATCH, as (N, 3, S, S) float32 in [0, 1] (and, for the quality model,
        the face ``widths`` (px) as its (N, 1) float32 second input); returns ``output``."""
        results = []
        with self._lock:
            self._ensure_open()
            net = self._nets.get(model)
            if net is None:
                net = models.open_net(model, self.backend, "fp32", num_threads=self.num_threads)
                self._nets[model] = net
            for start in range(0, len(chips), MAX_BATCH):
                x = np.ascontiguousarray(chips[start : start + MAX_BATCH].transpose(0, 3, 1, 2), np.float32)
                x *= np.float32(1.0 / 255.0)
                feeds = {"image": x}
                if widths is not None:
                    feeds[face_quality.WIDTH_INPUT] = np.asarray(widths[start : start + MAX_BATCH], np.float32)[:, None]
                results.append(np.asarray(net.run(feeds)[output], np.float32))
        return np.concatenate(results)

    def _embed_chips(self, spec, chips: np.ndarray) -> np.ndarray:
        v = self._run_chips(spec.model, spec.output, chips)
        if spec.centred:
            v = v - self._spaces[spec.model]["mu"]
        norm = np.linalg.norm(v, axis=1, keepdims=True)
        return (v / np.maximum(norm, 1e-12)).astype(np.float32)

    @staticmethod
    def _check_image(image: np.ndarray) -> np.ndarray:
        """``image`` as (H, W) or (H, W, 3|4) uint8 (a (H, W, 1) one as (H, W)), or a TypeError/ValueError."""
        if not isinstance(image, np.ndarray):
            raise TypeError(f"image should be a numpy array, got {type(image).__name__}")
        if image.dtype != np.uint8:
            raise TypeError(f"image should have dtype uint8, got {image.dtype}")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise ValueError(f"image should be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {image.shape}")
        return image

    def _rgb_chips(self, image: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
        """(N, size, size, 3) RGB chips of a checked image: aligned in the image's own channels, then
        converted (grey replicated, alpha dropped, BGR reversed), so a video frame is never copied whole."""
        chips = align_faces(image, landmarks, size)
        if chips.shape[3] == 1:
            return np.ascontiguousarray(np.broadcast_to(chips, (*chips.shape[:3], 3)))
        chips = chips[..., 2::-1] if self.channel_order == "bgr" else chips[..., :3]
        return np.ascontiguousarray(chips)

    # -- resources ---------------------------------------------------------------------
    _closed_message = "this FaceRecognizer is closed; create a new one"

    def _release(self) -> None:
        """Close the compiled models (waits for a call running in another thread)."""
        with self._lock:
            for net in self._nets.values():
                close = getattr(net, "close", None)
                if close is not None:
                    close()
            self._nets = {}

    def __repr__(self) -> str:
        return f"FaceRecognizer(embedders={self.embedders}, backend={self.backend!r})"
