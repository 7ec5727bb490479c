"""``lanner.FacePipeline``: faces in video: detect sparsely, track in between, identify per track.

The detector (:class:`lanner.FaceDetector`, MTCNN) runs every ``detect_every`` frames, or, with
``detect_every="auto"``, only when the trackers ask for it: a track was lost, a tracker's
confidence (the peak-to-sidelobe ratio of its correlation response) fell below
``redetect_psr``, ``max_interval`` frames passed (new faces can only be found by the
detector), or a large part of the picture outside the tracked faces changed since the last
detection (a cut, a fade-in, a person stepping close to the camera: ``scene_change``).
Between detections every face is followed by :class:`lanner.MultiTracker` (native
correlation filters on threads, one call per frame for all faces).

On a detection frame, detections and tracks are associated by IoU with the Hungarian algorithm
(:func:`scipy.optimize.linear_sum_assignment`): a matched detection re-anchors its track (box,
landmarks, score), an unmatched detection starts a new track, and a track that no detection
matched for ``max_missed`` detection rounds in a row ends. The trackers are then re-initialised
on the re-anchored boxes.

With a ``recognizer`` (``embed(image, faces) -> (N, D)`` unit-norm embeddings) and a ``gallery``
(``identify(embeddings) -> (names, scores)``), each track keeps the embeddings of its
``identity_faces`` best faces (quality: the recognizer's ``quality(image, faces)`` when it has
one, as :class:`lanner.FaceRecognizer` does; else face size, the shorter side of the box) and
is identified from their mean; it is identified again whenever a better face arrives.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._resources import Closeable, check_num_threads
from .face import Detections, FaceDetector
from .face.align import faces_inside
from .ops import box_iou
from .tracking import MultiTracker, TrackerOptions

__all__ = ["FacePipeline", "Track"]


@dataclass(frozen=True)
class Track:
    """One face followed through a video, as of the last processed frame.

    Attributes:
        track_id: stable id (1, 2, ...), never reused within one pipeline.
        box: ``(x0, y0, x1, y1)`` float pixels, as in :class:`lanner.Detections`.
        score: face probability of the last detection that anchored the track, in [0, 1].
        landmarks: ``(5, 2)`` float32 ``x, y`` (eyes, nose, mouth corners) of the last
            detection, moved and scaled with the tracked box since; read-only.
        lost: the tracker lost the face (its box is the last confident one).
        detected: this frame's box comes from a detection (not from the tracker).
        psr: the tracker's confidence on this frame (peak-to-sidelobe ratio; > 10 sure);
            ``None`` on a detection frame.
        name: the identity decided from the track's best faces (``None`` without a
            recognizer and gallery, or before the first identification); whatever the
            gallery returns for an unknown face.
        name_score: the gallery's score for ``name`` (``None`` when ``name`` is).
        frames: frames since the track started (1 on its first frame).

    Thread-safety: immutable (a frozen dataclass with a read-only landmarks array); share freely.
    """

    track_id: int
    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    lost: bool
    detected: bool
    psr: float | None
    name: str | None
    name_score: float | None
    frames: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of this track (rounded floats)."""
        return {
            "id": self.track_id,
            "box": [round(v, 2) for v in self.box],
            "score": round(self.score, 5),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
            "lost": self.lost,
            "detected": self.detected,
            "psr": None if self.psr is None else round(self.psr, 3),
            "name": self.name,
            "name_score": None if self.name_score is None else round(self.name_score, 5),
        }


@dataclass
class _TrackState:
    """Mutable state of one track (internal)."""

    track_id: int
    box: np.ndarray  # (4,) float64 xyxy
    score: float
    landmarks_rel: np.ndarray  # (5, 2) landmarks as fractions of the box (0 = x0/y0, 1 = x1/y1)
    lost: bool = False
    detected: bool = True
    psr: float | None = None
    missed: int = 0  # detection rounds in a row that did not match this track
    frames: int = 1
    # (quality, embedding, threshold), best first; the threshold is the face's own (NaN: the gallery's one)
    best_faces: list[tuple[float, np.ndarray, float]] = field(default_factory=list)
    name: str | None = None
    name_score: float | None = None
    det_index: int | None = None  # the detection that anchored it on the current frame, for _identify

    def landmarks(self) -> np.ndarray:
        x0, y0, x1, y1 = self.box
        return (np.array([x0, y0]) + self.landmarks_rel * np.array([x1 - x0, y1 - y0])).astype(np.float32)

    def public(self) -> Track:
        lm = self.landmarks()
        lm.setflags(write=False)
        return Track(
            self.track_id,
            tuple(float(v) for v in self.box),
            self.score,
            lm,
            self.lost,
            self.detected,
            self.psr,
            self.name,
            self.name_score,
            self.frames,
        )  # type: ignore[arg-type]


def match_boxes(a: np.ndarray, b: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """One-to-one matching of two box sets maximising the total IoU (Hungarian algorithm).

    Args:
        a: ``(N, 4)`` ``xyxy`` boxes.
        b: ``(M, 4)`` ``xyxy`` boxes.
        min_iou: pairs below this IoU are never matched.

    Returns:
        ``(i, j)`` index pairs, ``a[i]`` matched to ``b[j]``, by increasing ``i``.
    """
    from scipy.optimize import linear_sum_assignment

    iou = box_iou(a, b)
    if iou.size == 0:
        return []
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if iou[i, j] >= min_iou]


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} should be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} should be >= {minimum}, got {value}")
    return int(value)


def _real(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} should be a number, got {type(value).__name__}")
    if not (math.isfinite(float(value)) and low <= float(value) <= high):
        raise ValueError(f"{name} should be in [{low}, {high}], got {value}")
    return float(value)


class FacePipeline(Closeable):
    """Detect, track and (optionally) identify faces in a video, frame by frame.

    Example::

        with lanner.FacePipeline(detect_every="auto") as pipeline:
            for frame in lanner.video.VideoSource("clip.mp4"):
                for track in pipeline.process(frame):
                    print(track.track_id, track.box, track.lost)

    Args:
        detector: a :class:`lanner.FaceDetector` (or anything with its ``detect(image) ->
            Detections``); None creates one with ``num_threads`` (closed with the pipeline).
        recognizer: optional, with ``embed(image, faces: Detections) -> (N, D)`` float32
            unit-norm embeddings; needs ``gallery``. Only whole faces are embedded: a face cut by
            the frame's edge (a landmark outside it) leaves its track's name as it was.
        gallery: optional, with ``identify(embeddings (N, D)) -> (names, scores)``; needs
            ``recognizer``. When the recognizer has ``thresholds(faces, base=)`` and the gallery a
            ``threshold`` (a :class:`lanner.FaceRecognizer` and a :class:`lanner.FaceGallery`), each
            track is judged against the mean threshold of the models that embedded its faces
            (``identify(embeddings, thresholds=)``).
        detect_every: run the detector every N frames (int >= 1; 1 = every frame), or
            ``"auto"``: when a track is lost or uncertain, or after ``max_interval`` frames.
        max_interval: ``"auto"`` detects at least every this many frames (>= 1).
        redetect_psr: ``"auto"`` detects when a tracker's PSR falls below this (>= 0).
        scene_change: ``"auto"`` detects when more than this fraction of a 64-px-wide grey
            thumbnail, outside the tracked faces, changed by more than 24 grey levels since the
            last detection, in [0, 1] (1 = never).
        match_iou: a detection re-anchors a track when their IoU is at least this, (0, 1].
        max_missed: a track ends after this many detection rounds in a row that did not find
            it (>= 1).
        identity_faces: best faces kept per track for identification (>= 1).
        num_threads: threads of the trackers and of a detector created here (1 to 256).
        tracker_options: :class:`lanner.TrackerOptions` of the trackers (``num_threads`` is
            taken from ``num_threads``).

    Raises:
        TypeError: an option of the wrong type; a recognizer or gallery without its method.
        ValueError: an option out of range; a recognizer without a gallery or the reverse.

    Thread-safety: :meth:`process` holds an internal lock, so concurrent calls are serialised
    and safe, but a pipeline carries the tracks of ONE video: give each stream its own pipeline
    (frames of two streams interleaved into one pipeline mix up their tracks).
    """

    def __init__(
        self,
        detector: Any | None = None,
        recognizer: Any | None = None,
        gallery: Any | None = None,
        *,
        detect_every: int | str = "auto",
        max_interval: int = 15,
        redetect_psr: float = 6.0,
        scene_change: float = 0.1,
        match_iou: float = 0.3,
        max_missed: int = 2,
        identity_faces: int = 3,
        num_threads: int = 2,
        tracker_options: TrackerOptions | None = None,
    ) -> None:
        if isinstance(detect_every, str):
            if detect_every != "auto":
                raise ValueError(f"detect_every should be an int >= 1 or 'auto', got {detect_every!r}")
        else:
            detect_every = _positive_int(detect_every, "detect_every")
        self.detect_every = detect_every
        self.max_interval = _positive_int(max_interval, "max_interval")
        self.redetect_psr = _real(redetect_psr, "redetect_psr", 0.0, 1e6)
        self.scene_change = _real(scene_change, "scene_change", 0.0, 1.0)
        self.match_iou = _real(match_iou, "match_iou", 1e-6, 1.0)
        self.max_missed = _positive_int(max_missed, "max_missed")
        self.identity_faces = _positive_int(identity_faces, "identity_faces")
        num_threads = check_num_threads(num_threads)  # None is not taken: the trackers need a count
        if num_threads is None:
            raise TypeError("num_threads should be a positive int, got NoneType")
        if (recognizer is None) != (gallery is None):
            raise ValueError(
                "give both a recognizer and a gallery to identify faces, or neither "
                f"(got recognizer={type(recognizer).__name__}, gallery={type(gallery).__name__})"
            )
        if recognizer is not None and not callable(getattr(recognizer, "embed", None)):
            raise TypeError(f"recognizer should have embed(image, faces), got {type(recognizer).__name__}")
        if gallery is not None and not callable(getattr(gallery, "identify", None)):
            raise TypeError(f"gallery should have identify(embeddings), got {type(gallery).__name__}")
        if detector is not None and not callable(getattr(detector, "detect", None)):
            raise TypeError(f"detector should have detect(image) -> Detections, got {type(detector).__name__}")
        if tracker_options is not None and not isinstance(tracker_options, TrackerOptions):
            raise TypeError(f"tracker_options should be a TrackerOptions, got {type(tracker_options).__name__}")
        options = dataclasses.replace(tracker_options or TrackerOptions(), num_threads=num_threads)
        self._owns_detector = detector is None
        self.detector = FaceDetector(num_threads=num_threads) if detector is None else detector
        self.recognizer = recognizer
        self.gallery = gallery
        self._tracker = MultiTracker(options)
        self._tracks: list[_TrackState] = []  # in MultiTracker order
        self._next_id = 1
        self._frame_shape: tuple[int, ...] | None = None
        self._since_detection = 0
        self._thumbnail: np.ndarray | None = None  # this frame's, for the scene-change cue
        self._detection_thumbnail: np.ndarray | None = None  # the last detection frame's
        self._detection_boxes = np.zeros((0, 4))  # track boxes right after the last detection
        self._lock = threading.Lock()
        self.frames = 0  #: frames processed
        self.detections_run = 0  #: frames on which the detector ran

    # -- per frame -----------------------------------------------------------------------------
    def process(self, frame: np.ndarray) -> list[Track]:
        """Update the tracks with the next frame of the video.

        Args:
            frame: ``HxWx3`` BGR or ``HxW`` gray ``uint8``. When the frame size changes (a
                stream switching resolution) or the frame turns from colour to gray or back,
                the tracks are rescaled to the new size, the detector runs on this frame and the
                trackers are re-initialised.

        Returns:
            The current tracks by ascending ``track_id``, lost ones included (``lost=True``).

        Raises:
            TypeError: ``frame`` is not a NumPy array.
            ValueError: wrong dtype, rank or channel count, an empty frame, a closed pipeline.
        """
        frame = _check_frame(frame)
        with self._lock:
            self._ensure_open()
            self.frames += 1
            # a new size (or gray <-> colour): the trackers cannot continue on it
            resized = self._frame_shape is not None and frame.shape != self._frame_shape
            if resized:
                self._rescale_tracks(frame.shape)
            elif self._tracks:
                self._follow(frame)
            self._frame_shape = frame.shape
            self._since_detection += 1
            if self.detect_every == "auto":
                self._thumbnail = _thumbnail(frame)
            if resized or self._should_detect():
                self._detect(frame)
            for t in self._tracks:
                t.frames += 1
            return sorted((t.public() for t in self._tracks), key=lambda t: t.track_id)

    def _follow(self, frame: np.ndarray) -> None:
        """Move every track by one tracker step (all faces in one native call)."""
        result = self._tracker.update(frame)
        h, w = frame.shape[:2]
        keep = []
        for t, (x, y, bw, bh), psr, lost in zip(self._tracks, result.boxes, result.scores, result.lost):
            t.box = np.array([x, y, x + bw, y + bh], np.float64)
            t.psr, t.lost, t.detected = float(psr), bool(lost), False
            if t.box[2] > 0 and t.box[3] > 0 and t.box[0] < w and t.box[1] < h:
                keep.append(t)  # a box that left the frame ends its track
        if len(keep) != len(self._tracks):
            self._tracks = keep
            self._reinit_trackers(frame)

    def _should_detect(self) -> bool:
        if self.detections_run == 0:
            return True
        if self.detect_every != "auto":
            return self._since_detection >= self.detect_every
        if self._since_detection >= self.max_interval:
            return True
        if any(t.lost or (t.psr is not None and t.psr < self.redetect_psr) for t in self._tracks):
            return True
        return self._changed_fraction() > self.scene_change

    def _changed_fraction(self) -> float:
        """Fraction of the thumbnail outside the tracked faces (now and at the last detection) that
        changed by more than ``_CHANGE_LEVEL`` grey levels since the last detection."""
        now, then = self._thumbnail, self._detection_thumbnail
        if now is None or then is None or now.shape != then.shape:
            return 1.0
        changed = np.abs(now - then) > _CHANGE_LEVEL
        scale = now.shape[1] / self._frame_shape[1]  # type: ignore[index]
        boxes = [t.box for t in self._tracks] + list(self._detection_boxes)
        for x0, y0, x1, y1 in boxes:
            pad_x, pad_y = 0.25 * (x1 - x0), 0.25 * (y1 - y0)  # tracks move: leave a margin around them
            changed[
                max(0, int((y0 - pad_y) * scale)) : max(0, math.ceil((y1 + pad_y) * scale)),
                max(0, int((x0 - pad_x) * scale)) : max(0, math.ceil((x1 + pad_x) * scale)),
            ] = False
        return float(changed.mean())

    def _detect(self, frame: np.ndarray) -> None:
        faces = self.detector.detect(frame)
        if not all(hasattr(faces, a) for a in ("boxes", "scores", "landmarks")):
            raise TypeError(
                f"detector.detect should return Detections (boxes, scores, landmarks), got {type(faces).__name__}"
            )
        self.detections_run += 1
        self._since_detection = 0
        boxes = np.asarray(faces.boxes, np.float64).reshape(-1, 4)
        for t in self._tracks:
            t.det_index = None  # only this detection's matches are identified
        matched_tracks: set[int] = set()
        matched_dets: set[int] = set()
        if self._tracks and len(boxes):
            track_boxes = np.stack([t.box for t in self._tracks])
            for i, j in match_boxes(track_boxes, boxes, self.match_iou):
                self._anchor(self._tracks[i], faces, j)
                matched_tracks.add(i)
                matched_dets.add(j)
        survivors = []
        for i, t in enumerate(self._tracks):
            if i not in matched_tracks:
                t.missed += 1
                if t.missed >= self.max_missed:
                    continue
            survivors.append(t)
        for j in range(len(boxes)):
            if j not in matched_dets:
                t = _TrackState(self._next_id, boxes[j].copy(), 0.0, np.zeros((5, 2)), frames=0)
                self._next_id += 1
                self._anchor(t, faces, j)
                survivors.append(t)
        self._tracks = survivors
        # trackers first: an identification that raises (an empty gallery, a failing recognizer) leaves the tracks
        # and their trackers in step, and the next frame goes on (it failed with "update() called before init")
        self._reinit_trackers(frame)
        self._detection_thumbnail = self._thumbnail
        self._detection_boxes = np.array([t.box for t in self._tracks]).reshape(-1, 4)
        if self.recognizer is not None:
            self._identify(frame, faces)

    def _anchor(self, t: _TrackState, faces: Detections, j: int) -> None:
        box = np.asarray(faces.boxes[j], np.float64)
        t.box, t.score = box.copy(), float(faces.scores[j])
        size = np.maximum(box[2:] - box[:2], 1e-6)
        t.landmarks_rel = (np.asarray(faces.landmarks[j], np.float64) - box[:2]) / size
        t.lost, t.detected, t.psr, t.missed = False, True, None, 0
        t.det_index = j

    def _face_qualities(self, frame: np.ndarray, faces: Detections) -> np.ndarray:
        """(N,) quality of each detected face: the recognizer's ``quality(image, faces)`` when it has
        one (:meth:`lanner.FaceRecognizer.quality`, SDD-FIQA), else the face size (the shorter side
        of the box, px); NaN for a face cut by the frame's edge (:func:`lanner.face.align.faces_inside`:
        it cannot be aligned, so it is never embedded)."""
        quality = getattr(self.recognizer, "quality", None)
        if quality is not None:
            return whole_face_qualities(quality, frame, faces)
        inside = faces_inside(faces.landmarks, frame.shape)
        qualities = np.full(len(faces), np.nan, np.float32)
        sides = np.minimum(faces.boxes[:, 2] - faces.boxes[:, 0], faces.boxes[:, 3] - faces.boxes[:, 1])
        qualities[inside] = sides[inside]
        return qualities

    def _identify(self, frame: np.ndarray, faces: Detections) -> None:
        """Embed the detected faces that would enter their track's best ``identity_faces`` and
        identify every track whose best faces changed (one embed and one identify call)."""
        wanted: list[tuple[_TrackState, int, float]] = []
        qualities = self._face_qualities(frame, faces)
        for t in self._tracks:
            j = t.det_index
            if j is None:
                continue
            quality = float(qualities[j])
            if np.isnan(quality):
                continue  # cut by the frame's edge: the track keeps its name until a whole face is seen
            if len(t.best_faces) < self.identity_faces or quality > t.best_faces[-1][0]:
                wanted.append((t, j, quality))
        for t in self._tracks:
            t.det_index = None
        if not wanted:
            return
        chosen = _subset(faces, np.array([j for _, j, _ in wanted]))
        embeddings = np.asarray(self.recognizer.embed(frame, chosen), np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(wanted):
            raise ValueError(f"recognizer.embed should return ({len(wanted)}, D) embeddings, got {embeddings.shape}")
        # Faces embedded by different models (a small face by a student) have their own thresholds
        # (lanner.FaceRecognizer.thresholds): a track's is the mean of its kept faces'.
        per_face = getattr(self.recognizer, "thresholds", None)
        base = getattr(self.gallery, "threshold", None)
        own = per_face is not None and base is not None  # the same for every call of this pipeline
        limits = per_face(chosen, base=base) if own else np.full(len(wanted), np.nan)
        means, track_limits = [], []
        for (t, _, quality), emb, limit in zip(wanted, embeddings, limits):
            t.best_faces.append((quality, emb, float(limit)))
            t.best_faces.sort(key=lambda qe: -qe[0])
            del t.best_faces[self.identity_faces :]
            mean = np.mean([e for _, e, _ in t.best_faces], axis=0)
            means.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
            track_limits.append(np.mean([lim for _, _, lim in t.best_faces]))
        probes = np.stack(means).astype(np.float32)
        if own:
            names, scores = self.gallery.identify(probes, thresholds=np.array(track_limits))
        else:
            names, scores = self.gallery.identify(probes)
        if len(names) != len(wanted) or len(scores) != len(wanted):
            raise ValueError(
                f"gallery.identify should return {len(wanted)} names and scores, got {len(names)} and {len(scores)}"
            )
        for (t, _, _), name, score in zip(wanted, names, scores):
            t.name = None if name is None else str(name)
            t.name_score = None if name is None else float(score)

    def _reinit_trackers(self, frame: np.ndarray) -> None:
        """Start the trackers on the current track boxes (the MultiTracker takes all targets at once)."""
        h, w = frame.shape[:2]
        kept = []
        for t in self._tracks:
            x0, y0 = max(t.box[0], 0.0), max(t.box[1], 0.0)
            x1, y1 = min(t.box[2], float(w)), min(t.box[3], float(h))
            if x1 - x0 >= 1 and y1 - y0 >= 1:  # the trackers need a box that overlaps the frame
                kept.append(t)
        self._tracks = kept
        if kept:
            xyxy = np.stack([t.box for t in kept])
            self._tracker.init(frame, np.concatenate([xyxy[:, :2], np.maximum(xyxy[:, 2:] - xyxy[:, :2], 1.0)], 1))

    def _rescale_tracks(self, shape: tuple[int, ...]) -> None:
        """Scale the track boxes from the previous frame size to ``shape`` (the trackers restart on them)."""
        sy = shape[0] / self._frame_shape[0]
        sx = shape[1] / self._frame_shape[1]
        for t in self._tracks:
            t.box = t.box * np.array([sx, sy, sx, sy])

    # -- state -----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every track (a new video); ids keep counting up."""
        with self._lock:
            self._tracks = []
            self._frame_shape = None
            self._since_detection = 0
            self._detection_thumbnail = None
            self.detections_run = 0

    _closed_message = "this FacePipeline is closed; create a new one"

    def _release(self) -> None:
        """Release the trackers, and the detector if the pipeline created it (after a running
        :meth:`process` call in another thread has finished)."""
        with self._lock:
            self._tracker.close()
            if self._owns_detector:
                self.detector.close()

    def __repr__(self) -> str:
        return (
            f"FacePipeline(detect_every={self.detect_every!r}, max_interval={self.max_interval}, "
            f"redetect_psr={self.redetect_psr}, scene_change={self.scene_change}, tracks={len(self._tracks)}, "
            f"frames={self.frames}, "
            f"detections_run={self.detections_run})"
        )


_THUMBNAIL_WIDTH = 64  # px: enough to see a face-sized change, ~0.1 ms to make
_CHANGE_LEVEL = 24  # grey levels: above sensor noise and compression artefacts


def whole_face_qualities(quality, image: np.ndarray, faces: Detections) -> np.ndarray:
    """(N,) float32 ``quality(image, faces)`` (e.g. :meth:`lanner.FaceRecognizer.quality`) of the detected
    faces that align; NaN for a face cut by the image's edge (a landmark outside it,
    :func:`lanner.face.align.faces_inside`: it cannot be aligned). Thread-safe if ``quality`` is."""
    qualities = np.full(len(faces), np.nan, np.float32)
    inside = faces_inside(faces.landmarks, image.shape)
    if inside.any():
        chosen = _subset(faces, np.flatnonzero(inside))
        qualities[inside] = np.asarray(quality(image, chosen), np.float32).reshape(-1)
    return qualities


def _subset(faces: Detections, index: np.ndarray) -> Detections:
    """The faces at ``index`` (an int array) as their own Detections."""
    return Detections(faces.boxes[index], faces.scores[index], faces.landmarks[index])


def _thumbnail(frame: np.ndarray) -> np.ndarray:
    """A small grey copy of ``frame`` (int16, for differences) for the scene-change cue."""
    import cv2

    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    height = max(1, round(_THUMBNAIL_WIDTH * frame.shape[0] / frame.shape[1]))
    return cv2.resize(gray, (_THUMBNAIL_WIDTH, height), interpolation=cv2.INTER_AREA).astype(np.int16)


def _check_frame(frame: Any) -> np.ndarray:
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"frame should be a numpy.ndarray, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame should have dtype uint8, got {frame.dtype}")
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3)):
        raise ValueError(f"frame should be (H, W) gray or (H, W, 3) BGR, got shape {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"frame should be non-empty, got shape {frame.shape}")
    return frame
