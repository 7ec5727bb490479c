"""Detection distillation (issue 15): MTCNN's R-Net and O-Net retrained for masked and tiny faces.

The student keeps the teacher's architecture and starts from its weights (facenet-pytorch's MTCNN);
only the refinement stages learn, on crops made exactly as the runtime makes them
(``lanner._C.mtcnn_crop_resize``: squared boxes, area resize, ``(x - 127.5) / 128``):

* **cross-quality KD** — celeba-faces crops with a synthetic mask (:class:`~lanner.distill.masks.SyntheticMasks`),
  some shrunk to 10-30 px wide: the student's face probability learns the teacher's soft output on the
  *clean* face (Hinton et al. 2015, temperature 1 on the two-way softmax), its box regression and 5
  landmarks the teacher's box and landmarks of the clean face (faces.csv);
* **real masked faces** — the facemask-voc *train* split's boxes (every class): face probability 1, box
  regression to the annotated box, landmarks the teacher O-Net's on the same crop (none are annotated;
  the student's own O-Net then gives the teacher's points, with no second O-Net call at run time);
* **negatives** — crops of the same photos away from every face (IoU < 0.3): the teacher's soft output
  on the crop itself, which keeps the teacher's behaviour on clutter;
* clean celeba crops: the teacher's own outputs, which keeps its results on ordinary faces; and blurred or
  dark ones (Gaussian blur, under-exposure, monochrome in low light): the teacher's output on the clean face;
* **hard negatives** (MTCNN's online hard-example mining, done offline here, Zhang et al. 2016) —
  what a previous student cascade detects, and what its R-Net passes to O-Net, on *training* images
  that is no face (:func:`mine_hard_negatives`): face probability 0. Sources: the facemask-voc train
  split, scenes of celeba-faces training crops, and clean photos shipped in installed packages
  (:func:`clean_photos`: never the parity photos or the demo photo), each also as a heavily compressed
  JPEG copy (:func:`compressed_copies`: the blocks and ringing of a low-bit-rate video frame).

Losses follow MTCNN's multi-task weights (face 1, box 0.5, landmarks 0.5 for R-Net, 1 for O-Net).
The run is :func:`lanner.distill.training.run_loop` with :class:`DetectionTask`: one loop for every
student. All samples are drawn once from ``(seed, kind, index)`` generators into a pool (:func:`make_pool`,
the teacher's soft outputs computed there); batch ``k`` is a pure function of ``(seed, k)``.
``lanner distill face-detector --facemask D --celeba D --out DIR`` runs the whole recipe
(:func:`run_face_detector`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .. import _C
from ..ops import box_iou
from .degrade import GaussianBlur, Greyscale, JpegCompression, LowLight
from .facemask import AnnotatedPhoto
from .masks import SyntheticMasks
from .training import RunConfig, run_loop

__all__ = [
    "DetectionConfig",
    "DetectionPool",
    "CascadeStages",
    "DetectionStageLoss",
    "DetectionTask",
    "make_pool",
    "HardNegatives",
    "clean_photos",
    "celeba_scenes",
    "mine_hard_negatives",
    "train_stages",
    "teacher_onet",
    "compressed_copies",
    "read_celeba_faces",
    "export_stages",
    "run_face_detector",
]


@dataclass(frozen=True)
class DetectionConfig(RunConfig):
    """Everything that defines a detection-student run.

    Attributes:
        steps: optimisation steps.
        batch_size: samples per step.
        learning_rate: AdamW peak learning rate (cosine decay to 0 after a short warm-up).
        weight_decay: AdamW decoupled weight decay.
        box_weight: weight of the box-regression loss (MTCNN: 0.5).
        landmark_weights: weights of the landmark loss for R-Net (no landmark head: unused) and O-Net.
        real_jitters: crops per real facemask-voc face.
        celeba_samples: celeba-faces samples (masked, masked-and-tiny, clean, blurred or dark in ratio 2:1:1:1).
        negatives_per_photo: background crops per training photo.
        tiny_range: face widths (px) of the tiny celeba samples.
        seed: run seed (pool, batches).
        init: a state dict (``rnet.*``, ``onet.*`` keys, as :func:`run_face_detector` writes to
            ``stages.pt``) to start from; None: the teacher's weights.
        mining_thresholds: R-Net and O-Net thresholds of the mining cascade (the student's P-Net
            threshold and R-Net NMS overlap); 0 entries turn mining off.
        celeba_scenes: scenes of celeba-faces training crops to mine on.
        max_hard_negatives_per_image: the most mined boxes kept per image (the highest scores).
        mining_jpeg_quality: JPEG quality range of the compressed copy of each mining image
            (:func:`compressed_copies`); None: mine on the images as they are only.
    """

    steps: int = 400
    batch_size: int = 128
    learning_rate: float = 5e-4
    weight_decay: float = 1e-4
    box_weight: float = 0.5
    landmark_weights: tuple[float, float] = (0.0, 1.0)
    real_jitters: int = 3
    celeba_samples: int = 2500
    negatives_per_photo: int = 10
    tiny_range: tuple[float, float] = (10.0, 30.0)
    seed: int = 0
    init: str | None = None
    mining_thresholds: tuple[float, float] = (0.0, 0.0)
    celeba_scenes: int = 40
    max_hard_negatives_per_image: int = 20
    mining_jpeg_quality: tuple[int, int] | None = (10, 30)

    warmup_fraction: ClassVar[float] = 0.03  # of the steps (not a field: checkpoints' stored configs stay as they are)
    _kind = "detection"


@dataclass(frozen=True)
class DetectionPool:
    """Training samples (frozen; the arrays are read-only by convention).

    Attributes:
        crops24, crops48: (N, 3, 24, 24) and (N, 3, 48, 48) float16 normalised RGB crops of the same boxes.
        face: (N,) float32 target face probability.
        box: (N, 4) float32 target box regression (MTCNN's convention; NaN: no target).
        landmarks: (N, 10) float32 target landmarks (x1..x5, y1..y5 as box fractions; NaN: no target).
        kind: (N,) int8: 0 negative, 1 real face, 2 masked celeba, 3 masked tiny celeba, 4 clean celeba,
            5 mined hard negative, 6 blurred or dark celeba.
    """

    crops24: np.ndarray
    crops48: np.ndarray
    face: np.ndarray
    box: np.ndarray
    landmarks: np.ndarray
    kind: np.ndarray

    def __len__(self) -> int:
        return len(self.face)


# What the blurred-or-dark celeba samples see (seeded per sample): defocus up to a sigma of 4 px on a ~90 px face,
# under-exposure, and a monochrome camera in low light.
_DEGRADE = (
    GaussianBlur(sigma=(1.0, 4.0)),
    LowLight(gain=(0.15, 0.6)),
    lambda image, rng: LowLight(gain=(0.2, 0.7))(Greyscale()(image, rng), rng),
)


def _square(box: np.ndarray) -> np.ndarray:
    w, h = box[2] - box[0], box[3] - box[1]
    side = max(w, h)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], np.float32)


def _jitter(box: np.ndarray, rng: np.random.Generator, shift: float = 0.1, scale: tuple = (0.9, 1.1)) -> np.ndarray:
    sq = _square(box)
    side = sq[2] - sq[0]
    new = side * rng.uniform(*scale)
    cx = (sq[0] + sq[2]) / 2 + rng.uniform(-shift, shift) * side
    cy = (sq[1] + sq[3]) / 2 + rng.uniform(-shift, shift) * side
    return np.array([cx - new / 2, cy - new / 2, cx + new / 2, cy + new / 2], np.float32)


def _regression(crop: np.ndarray, target: np.ndarray) -> np.ndarray:
    """MTCNN's box regression from ``crop`` to ``target`` (offsets in units of the 1-based side)."""
    w, h = crop[2] - crop[0] + 1, crop[3] - crop[1] + 1
    return np.array(
        [(target[0] - crop[0]) / w, (target[1] - crop[1]) / h, (target[2] - crop[2]) / w, (target[3] - crop[3]) / h],
        np.float32,
    )


def _landmark_targets(crop: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Landmarks (5, 2) px as O-Net's outputs: x and y fractions of the 1-based box (inverse of the cascade's)."""
    w, h = crop[2] - crop[0] + 1, crop[3] - crop[1] + 1
    return np.concatenate([(landmarks[:, 0] - crop[0] + 1) / w, (landmarks[:, 1] - crop[1] + 1) / h]).astype(np.float32)


def _crops(image_rgb: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The runtime's crops of ``boxes`` at 24 and 48 px, and which were valid."""
    table = _C.mtcnn_integral(np.ascontiguousarray(image_rgb), "rgb")
    boxes = np.ascontiguousarray(boxes, np.float32)
    c24, valid = _C.mtcnn_crop_resize(table, boxes, 24, num_threads=1)
    c48, _ = _C.mtcnn_crop_resize(table, boxes, 48, num_threads=1)
    return c24.copy(), c48.copy(), valid.copy()


def make_pool(
    photos: list[AnnotatedPhoto],
    celeba: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    config: DetectionConfig,
    teacher: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    hard_negatives: list[HardNegatives] = (),
) -> DetectionPool:
    """Draw every training sample (seeded by ``config.seed``) with its targets.

    Args:
        photos: facemask-voc training photos (never the test split).
        celeba: ``(crops (M, H, W, 3) uint8 RGB, boxes (M, 4), landmarks (M, 5, 2))`` clean faces with the
            teacher's box and landmarks, or None.
        config: the run.
        teacher: the teacher O-Net (:func:`teacher_onet`) on (N, 3, 48, 48) float32 crops: face probability
            (N,) and landmarks (N, 10) as O-Net's outputs.
        hard_negatives: mined boxes (:func:`mine_hard_negatives`): face probability 0, each box as mined.

    Returns:
        The pool.

    Raises:
        ValueError: a photo cannot be read, or no sample could be drawn.
    """
    parts: list[tuple] = []  # (c24, c48, face, box, landmarks, kind)

    def add(c24, c48, valid, face, box, landmarks, kind):
        n = int(valid.sum())
        if n:
            parts.append(
                (
                    c24[valid],
                    c48[valid],
                    np.full(n, face, np.float32),
                    box[valid],
                    landmarks[valid],
                    np.full(n, kind, np.int8),
                )
            )

    nan4, nan10 = np.full(4, np.nan, np.float32), np.full(10, np.nan, np.float32)
    for p_index, photo in enumerate(photos):
        rng = np.random.default_rng([config.seed, 1, p_index])
        image = cv2.imread(str(photo.image_path))
        if image is None:
            raise ValueError(f"cannot read {photo.image_path}")
        rgb = image[:, :, ::-1]
        h, w = rgb.shape[:2]
        crop_boxes, reg = [], []
        for box in photo.boxes:
            for _ in range(config.real_jitters):
                crop = _jitter(box, rng)
                crop_boxes.append(crop)
                reg.append(_regression(crop, box))
        if crop_boxes:
            c24, c48, valid = _crops(rgb, np.array(crop_boxes))
            points = np.tile(nan10, (len(reg), 1))
            if valid.any():  # no landmarks are annotated: the teacher O-Net's on the same crop
                points[valid] = teacher(c48[valid])[1]
            add(c24, c48, valid, 1.0, np.array(reg), points, 1)
        negatives = []
        for _ in range(config.negatives_per_photo * 4):
            if len(negatives) == config.negatives_per_photo:
                break
            side = rng.uniform(10, max(11.0, min(h, w) / 2))
            x, y = rng.uniform(0, w - side), rng.uniform(0, h - side)
            cand = np.array([x, y, x + side, y + side], np.float32)
            if not len(photo.boxes) or box_iou(cand, photo.boxes)[0].max() < 0.3:
                negatives.append(cand)
        if negatives:
            c24, c48, valid = _crops(rgb, np.array(negatives))
            face = np.zeros(len(negatives), np.float32)
            if valid.any():
                face[valid] = teacher(c48[valid])[0]
            add(c24, c48, valid, face, np.tile(nan4, (len(negatives), 1)), np.tile(nan10, (len(negatives), 1)), 0)
    if celeba is not None and config.celeba_samples:
        crops, boxes, landmarks = celeba
        masks = SyntheticMasks(seed=config.seed)
        for i in range(config.celeba_samples):
            rng = np.random.default_rng([config.seed, 2, i])
            j = int(rng.integers(len(crops)))
            kind = (2, 2, 3, 4, 6)[i % 5]
            clean, box, lm = crops[j], boxes[j].astype(np.float32), landmarks[j].astype(np.float32)
            crop = _jitter(box, rng, shift=0.06, scale=(0.95, 1.08))
            _, clean48, clean_valid = _crops(clean, crop[None])
            if kind == 6:  # cross-quality: the student sees the blurred or dark face, the teacher the clean one
                image = _DEGRADE[i % len(_DEGRADE)](clean, rng)
            else:
                image = clean if kind == 4 else masks(clean, lm, i)
            if kind == 3:  # shrink the photo so that the face is tiny
                s = rng.uniform(*config.tiny_range) / float(box[2] - box[0])
                size = (max(1, round(image.shape[1] * s)), max(1, round(image.shape[0] * s)))
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                box, lm, crop = box * s, lm * s, crop * s
            c24, c48, valid = _crops(image, crop[None])
            if clean_valid[0]:  # KD target: the teacher's output on the clean face, same crop
                add(
                    c24,
                    c48,
                    valid,
                    teacher(clean48)[0][0],
                    _regression(crop, box)[None],
                    _landmark_targets(crop, lm)[None],
                    kind,
                )
    for mined in hard_negatives:
        boxes = mined.boxes
        c24, c48, valid = _crops(mined.image_rgb, boxes)
        nan = np.full((len(boxes), 14), np.nan, np.float32)
        add(c24, c48, valid, 0.0, nan[:, :4], nan[:, 4:], 5)
    if not parts:
        raise ValueError("no training sample could be drawn: no photo and no celeba crop")
    columns = list(zip(*parts))
    return DetectionPool(
        crops24=np.concatenate(columns[0]).astype(np.float16),
        crops48=np.concatenate(columns[1]).astype(np.float16),
        face=np.concatenate(columns[2]),
        box=np.concatenate(columns[3]),
        landmarks=np.concatenate(columns[4]),
        kind=np.concatenate(columns[5]),
    )


@dataclass(frozen=True)
class HardNegatives:
    """Boxes of one training image that a student cascade took for faces and that are none.

    Attributes:
        name: where the image comes from (``facemask:<stem>``, ``celeba-scene<k>``, ``skimage:<name>``, ...).
        image_rgb: (H, W, 3) uint8 RGB image.
        boxes: (K, 4) float32 xyxy pixels.
        stage: (K,) int8: 1 passed by R-Net (sent to O-Net), 2 a final detection of the cascade.
    """

    name: str
    image_rgb: np.ndarray
    boxes: np.ndarray
    stage: np.ndarray


# Clean photos shipped in installed packages that the mining may use. NEVER the four parity photos
# (scikit-image astronaut and camera, OpenCV's messi5, and the lfw_subset faces of the composed
# group photo) nor the demo photo (astronaut): those measure the detector.
SKIMAGE_PHOTOS: tuple[str, ...] = (
    "brick", "cell", "chelsea", "clock_motion", "coffee", "coins", "color", "grass", "gravel", "horse",
    "hubble_deep_field", "ihc", "logo", "microaneurysms", "moon", "motorcycle_left", "page", "phantom",
    "retina", "rocket", "text",
)  # fmt: skip
OPENCV_SAMPLES_EXCLUDED: frozenset[str] = frozenset({"messi5.jpg"})  # a parity photo
OPENCV_VIDEO_FRAMES: tuple[tuple[str, tuple[int, ...]], ...] = (("vtest.avi", (0, 150, 300, 450, 600, 750)),)


def clean_photos(opencv_samples: str | Path | None = None) -> dict[str, np.ndarray]:
    """Photos from installed packages for mining: scikit-image's data (:data:`SKIMAGE_PHOTOS`) and, when
    given, every ``.jpg``/``.png`` of OpenCV's sample-data folder (Debian ``opencv-doc``:
    ``examples/data``) but messi5, plus frames of its pedestrian video ``vtest.avi``.

    Args:
        opencv_samples: OpenCV's sample-data folder, or None.

    Returns:
        ``{name: (H, W, 3) uint8 RGB}``, sorted by name; images that contain faces keep them (the
        mining ignores the teacher's detections).

    Raises:
        FileNotFoundError: ``opencv_samples`` is not a folder.
    """
    import skimage.data
    import skimage.io

    photos: dict[str, np.ndarray] = {}
    data_dir = Path(skimage.data.__file__).parent
    for name in SKIMAGE_PHOTOS:
        files = sorted(data_dir.glob(f"{name}.*"))
        if not files:
            continue
        image = np.asarray(skimage.io.imread(files[0]))
        photos[f"skimage:{name}"] = image
    if opencv_samples is not None:
        folder = Path(opencv_samples)
        if not folder.is_dir():
            raise FileNotFoundError(f"OpenCV sample-data folder {folder} does not exist")
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in (".jpg", ".png") and path.name not in OPENCV_SAMPLES_EXCLUDED:
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is not None:
                    photos[f"opencv:{path.name}"] = image[:, :, ::-1]
        for video, frames in OPENCV_VIDEO_FRAMES:
            capture = cv2.VideoCapture(str(folder / video))
            for index in frames:
                capture.set(cv2.CAP_PROP_POS_FRAMES, index)
                ok, frame = capture.read()
                if ok:
                    photos[f"opencv:{video}#{index}"] = frame[:, :, ::-1]
            capture.release()
    out = {}
    for name, image in sorted(photos.items()):
        image = image.astype(np.uint8) if image.dtype != np.uint8 else image
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        out[name] = np.ascontiguousarray(image[:, :, :3])
    return out


def celeba_scenes(
    crops: np.ndarray, boxes: np.ndarray, count: int, seed: int
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Scenes of 16 celeba-faces crops (4x4 grid on 640x640 grey, each crop shrunk to 60-144 px, seeded):
    hair, shoulders and clothes next to faces, with every face's box known.

    Args:
        crops: (M, H, W, 3) uint8 RGB crops of the *training* identities (:func:`read_celeba_faces`).
        boxes: (M, 4) the teacher's face boxes in crop pixels.
        count: scenes to make.
        seed: their seed.

    Returns:
        ``[(name, scene (640, 640, 3) uint8 RGB, face boxes (16, 4) float32)]``.
    """
    rng = np.random.default_rng([seed, 5])
    out = []
    for k in range(count):
        canvas = np.full((640, 640, 3), int(rng.integers(60, 200)), np.uint8)
        faces = []
        for i, j in enumerate(rng.choice(len(crops), 16, replace=False)):
            side = int(rng.integers(60, 145))
            s = side / crops[j].shape[1]
            y, x = 160 * (i // 4) + (160 - side) // 2, 160 * (i % 4) + (160 - side) // 2
            canvas[y : y + side, x : x + side] = cv2.resize(crops[j], (side, side), interpolation=cv2.INTER_AREA)
            faces.append(boxes[j] * s + np.array([x, y, x, y], np.float32))
        out.append((f"celeba-scene{k}", canvas, np.array(faces, np.float32)))
    return out


def compressed_copies(
    images: list[tuple[str, np.ndarray, np.ndarray]], quality: tuple[int, int], seed: int
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """A JPEG-compressed copy of each mining image (quality drawn from ``quality``, seeded per image): the 8x8
    blocks, ringing and lost colour of a low-bit-rate video frame, where a cascade sees faces in glossy
    reflections that the clean photo does not show.

    Args:
        images: ``[(name, image (H, W, 3) uint8 RGB, annotated faces (A, 4))]``.
        quality: lowest and highest JPEG quality (1-100).
        seed: their seed.

    Returns:
        ``[(name + "#jpeg<q>", decoded copy, the same annotated faces)]``.

    Raises:
        ValueError: ``quality`` is not an increasing pair within 1-100.
    """
    low, high = quality
    if not 1 <= low <= high <= 100:
        raise ValueError(f"quality should be an increasing pair within 1-100, got {quality!r}")
    out = []
    for index, (name, rgb, annotated) in enumerate(images):
        rng = np.random.default_rng([seed, 6, index])
        q = int(rng.integers(low, high + 1))
        out.append((f"{name}#jpeg{q}", JpegCompression(quality=(q, q))(np.ascontiguousarray(rgb), rng), annotated))
    return out


def negative_boxes(boxes: np.ndarray, annotated: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    """Which detections are negatives: IoU < 0.3 with every annotated face, and no overlap at all with a
    face the teacher finds that is not annotated (IoU < 0.5 with every annotated box: unannotated faces
    exist, and a crop of one is no negative).

    Args:
        boxes: (K, 4) detections; annotated: (A, 4) faces; teacher: (T, 4) the teacher's detections.

    Returns:
        (K,) bool.
    """
    keep = np.ones(len(boxes), bool)
    if not len(boxes):
        return keep
    if len(annotated):
        keep &= box_iou(boxes, annotated).max(1) < 0.3
    if len(teacher):
        unannotated = teacher if not len(annotated) else teacher[box_iou(teacher, annotated).max(1) < 0.5]
        if len(unannotated):
            ix = np.minimum(boxes[:, None, 2], unannotated[None, :, 2]) - np.maximum(
                boxes[:, None, 0], unannotated[None, :, 0]
            )
            iy = np.minimum(boxes[:, None, 3], unannotated[None, :, 3]) - np.maximum(
                boxes[:, None, 1], unannotated[None, :, 1]
            )
            keep &= ~((ix > 0) & (iy > 0)).any(1)
    return keep


def _open_student(student: str | Path, num_threads: int, staging: Path):
    """The nets and cascade settings of a registry detector, or of an earlier run's folder (its ``rnet.onnx`` and
    ``onet.onnx`` behind the shipped student's P-Net, with the shipped student's settings), compiled for ONNX Runtime
    into ``staging``."""
    from .. import models
    from ..compile import compile_model
    from ..models._runtime import _host_target
    from ..models.face_detectors import FACE_DETECTORS, get_face_detector
    from ..runtime import load

    if isinstance(student, str) and student in FACE_DETECTORS:
        spec = get_face_detector(student)
        return [models.open_net(n, num_threads=num_threads) for n in spec.nets], spec
    folder = Path(student)
    if not all((folder / f"{net}.onnx").is_file() for net in ("rnet", "onet")):
        raise ValueError(
            f"a detector to mine with should be one of {sorted(FACE_DETECTORS)} or a folder with rnet.onnx and "
            f"onet.onnx, got {student!r}"
        )
    spec = get_face_detector("mtcnn-masked")
    nets = [models.open_net(spec.nets[0], num_threads=num_threads)]
    for net in ("rnet", "onet"):
        out = staging / f"{len(list(staging.iterdir()))}-{net}"
        compile_model(
            str(folder / f"{net}.onnx"),
            target=_host_target(),
            backend="onnxruntime",
            precision="fp32",
            out=str(out),
            name=f"{folder.name}-{net}",
            task="face-detection",
        )
        nets.append(load(out, num_threads=num_threads))
    return nets, spec


def mine_hard_negatives(
    images: list[tuple[str, np.ndarray, np.ndarray]],
    students: str | Path | list[str | Path],
    thresholds: tuple[float, float],
    max_per_image: int,
    num_threads: int = 2,
) -> list[HardNegatives]:
    """Run the compiled ``students`` cascades and the teacher on training images; keep, of each student's
    final detections and R-Net's survivors, the boxes that are no face (:func:`negative_boxes`).

    Several students give the union of their mistakes: the shipped student's, and those of a student
    trained from the teacher's weights without them (what a new run would make again if it never saw them),
    the bootstrapping rounds of classic hard-negative mining.

    Args:
        images: ``[(name, image (H, W, 3) uint8 RGB, annotated faces (A, 4))]``: training images only.
        students: the detectors to mine with, each a registry name (``lanner.models.face_detectors``; its P-Net
            threshold and R-Net NMS overlap are used) or the output folder of an earlier
            :func:`run_face_detector` (its ``rnet.onnx`` and ``onet.onnx`` behind the shipped student's P-Net).
        thresholds: R-Net and O-Net thresholds of the mining run (below the student's own, to also
            catch near misses).
        max_per_image: the most boxes kept per image and student (final detections first, then R-Net's, by score).
        num_threads: threads of the nets.

    Returns:
        One entry per image that gave at least one negative.

    Raises:
        ValueError: a student is neither a registry detector nor a folder with ``rnet.onnx`` and ``onet.onnx``.
    """
    import tempfile

    from .. import models
    from ..face.cascade import CascadeParams, Workspace, run_cascade
    from ..models.face_detectors import get_face_detector

    students = [students] if isinstance(students, (str, Path)) else list(students)
    teacher_spec = get_face_detector("mtcnn")
    teacher_params = CascadeParams(thresholds=teacher_spec.thresholds)
    ws = Workspace()
    opened = []
    with tempfile.TemporaryDirectory(prefix="lanner-mining-") as staging:
        try:
            teacher_nets = [models.open_net(n, num_threads=num_threads) for n in teacher_spec.nets]
            opened += teacher_nets
            cascades = []
            for student in students:
                nets, spec = _open_student(student, num_threads, Path(staging))
                opened += nets
                params = CascadeParams(
                    thresholds=(spec.thresholds[0], *thresholds), rnet_iou_threshold=spec.rnet_iou_threshold
                )
                cascades.append((nets, params))
            mined = []
            for name, rgb, annotated in images:
                teacher, _, _ = run_cascade(rgb, *teacher_nets, teacher_params, workspace=ws, num_threads=num_threads)
                found_boxes, found_stages = [], []
                for nets, params in cascades:
                    survivors: dict[str, np.ndarray] = {}
                    final, scores, _ = run_cascade(
                        rgb, *nets, params, workspace=ws, num_threads=num_threads, survivors=survivors
                    )
                    rnet = survivors.get("rnet", np.zeros((0, 5), np.float32))
                    order_f, order_r = np.argsort(-scores, kind="stable"), np.argsort(-rnet[:, 4], kind="stable")
                    boxes = np.concatenate([final[order_f], rnet[order_r, :4]]).astype(np.float32)
                    stage = np.concatenate([np.full(len(final), 2, np.int8), np.ones(len(rnet), np.int8)])
                    keep = negative_boxes(boxes, np.asarray(annotated, np.float32).reshape(-1, 4), teacher)
                    found_boxes.append(boxes[keep][:max_per_image])
                    found_stages.append(stage[keep][:max_per_image])
                boxes = np.concatenate(found_boxes)
                if len(boxes):
                    mined.append(HardNegatives(name, rgb, boxes, np.concatenate(found_stages)))
        finally:
            for net in opened:
                net.close()
    return mined


class CascadeStages(torch.nn.Module):
    """The student: MTCNN's R-Net and O-Net (the teacher's architecture), trained together.

    Args:
        rnet, onet: the nets to train (``lanner.compile.exporters.mtcnn.load_torch_nets()`` for the
            teacher's initial weights).
    """

    def __init__(self, rnet: torch.nn.Module, onet: torch.nn.Module) -> None:
        super().__init__()
        self.rnet, self.onet = rnet, onet


class DetectionStageLoss(torch.nn.Module):
    """MTCNN's multi-task loss for one stage, with soft face targets (KD).

    Face: cross-entropy between the student's two-way softmax and the target probability (the
    teacher's soft output, or 0/1); box: smooth-L1 on the regression; landmarks: MSE. Rows whose
    target is NaN do not count in that term.

    Args:
        box_weight: weight of the box term.
        landmark_weight: weight of the landmark term (0: none).
    """

    def __init__(self, box_weight: float, landmark_weight: float) -> None:
        super().__init__()
        self.box_weight, self.landmark_weight = box_weight, landmark_weight

    def forward(
        self,
        prob: torch.Tensor,
        reg: torch.Tensor,
        landmarks: torch.Tensor | None,
        face: torch.Tensor,
        box: torch.Tensor,
        points: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Loss terms of a batch.

        Args:
            prob: (N, 2) softmax; reg: (N, 4); landmarks: (N, 10) or None.
            face: (N,) target face probability; box: (N, 4); points: (N, 10) (NaN: no target).

        Returns:
            ``{"face", "box"[, "landmarks"]}`` weighted terms.
        """
        p = prob[:, 1].clamp(1e-6, 1 - 1e-6)
        terms = {"face": F.binary_cross_entropy(p, face)}
        has_box = ~torch.isnan(box).any(1)
        if has_box.any():
            terms["box"] = self.box_weight * F.smooth_l1_loss(reg[has_box], box[has_box], beta=0.1)
        if landmarks is not None and self.landmark_weight:
            has_points = ~torch.isnan(points).any(1)
            if has_points.any():
                terms["landmarks"] = self.landmark_weight * F.mse_loss(landmarks[has_points], points[has_points])
        return terms


class _PoolBatches(torch.utils.data.Dataset):
    def __init__(self, pool: DetectionPool, config: DetectionConfig) -> None:
        self.pool, self.config = pool, config

    def __len__(self) -> int:
        return self.config.steps

    def __getitem__(self, step: int):
        rng = np.random.default_rng([self.config.seed, step, 3])
        idx = rng.choice(len(self.pool), size=min(self.config.batch_size, len(self.pool)), replace=False)
        p = self.pool
        return (
            p.crops24[idx].astype(np.float32),
            p.crops48[idx].astype(np.float32),
            p.face[idx],
            p.box[idx],
            p.landmarks[idx],
        )


class DetectionTask:
    """R-Net and O-Net learning from a :class:`DetectionPool` (a :class:`~lanner.distill.training.TrainingTask`)."""

    def __init__(self, model: CascadeStages, pool: DetectionPool, config: DetectionConfig) -> None:
        if np.isnan(pool.face).any():
            raise ValueError("every face target of the pool should be set, got NaN")
        self.model, self.config = model, config
        self.batches = _PoolBatches(pool, config)
        self.losses = {
            stage: DetectionStageLoss(config.box_weight, w)
            for stage, w in zip(("rnet", "onet"), config.landmark_weights)
        }

    def loss_terms(self, batch) -> dict[str, torch.Tensor]:
        c24, c48, face, box, points = (torch.as_tensor(a) for a in batch)
        reg, prob = self.model.rnet(c24)
        terms = {f"r_{k}": v for k, v in self.losses["rnet"](prob, reg, None, face, box, points).items()}
        reg, landmarks, prob = self.model.onet(c48)
        terms.update({f"o_{k}": v for k, v in self.losses["onet"](prob, reg, landmarks, face, box, points).items()})
        return terms

    def validate(self, step: int) -> dict | None:
        return None  # measured on the facemask-voc test split by benchmarks/detection/bench_masked.py


def teacher_onet(onet: torch.nn.Module) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The teacher O-Net as a NumPy function for :func:`make_pool`: ``(face probability (N,), landmarks (N, 10))``
    of (N, 3, 48, 48) float32 crops."""

    def outputs(crops48: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            _, landmarks, prob = onet(torch.from_numpy(np.ascontiguousarray(crops48, np.float32)))
        return prob[:, 1].numpy(), landmarks.numpy().astype(np.float32)

    return outputs


def train_stages(
    config: DetectionConfig, pool: DetectionPool, out_dir: str | Path, *, workers: int = 1, progress: bool = True
) -> tuple[CascadeStages, list, float]:
    """Train the student's R-Net and O-Net from the teacher's weights with :func:`run_loop`.

    Returns:
        ``(model (eval mode), history, seconds)``.

    Raises:
        ImportError: facenet-pytorch (the teacher's weights) is missing.
    """
    from ..compile.exporters.mtcnn import load_torch_nets

    torch.manual_seed(config.seed)
    nets = load_torch_nets()
    model = CascadeStages(nets["rnet"], nets["onet"])
    if config.init is not None:
        model.load_state_dict(torch.load(config.init, map_location="cpu", weights_only=True))
    task = DetectionTask(model, pool, config)
    history, seconds = run_loop(
        task,
        config=config,
        evaluate_every=config.steps,
        checkpoint_every=max(1, config.steps // 5),
        out_dir=out_dir,
        resume=True,
        workers=workers,
        progress=progress,
    )
    return model.eval(), history, seconds


def read_celeba_faces(data_dir: str | Path, limit: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training-identity crops of the celeba-faces folder with the teacher's box and landmarks.

    Args:
        data_dir: the celeba-faces folder (``faces.csv`` and ``images/``).
        limit: read at most this many crops (the first by file name), None for all.

    Returns:
        ``(crops (M, H, W, 3) uint8 RGB, boxes (M, 4) float32, landmarks (M, 5, 2) float32)``.

    Raises:
        FileNotFoundError: no faces.csv or a missing crop.
    """
    import csv

    from .faces import load_crops
    from .teacher import is_test_identity

    table = Path(data_dir) / "faces.csv"
    if not table.is_file():
        raise FileNotFoundError(f"{data_dir} is not a celeba-faces folder: expected {table}")
    with table.open(newline="") as f:
        rows = sorted((r for r in csv.DictReader(f) if not is_test_identity(r["identity"])), key=lambda r: r["file"])
    rows = rows[:limit] if limit is not None else rows
    boxes = np.array([[float(r[f"box_{k}"]) for k in ("x0", "y0", "x1", "y1")] for r in rows], np.float32)
    landmarks = np.array([[[float(r[f"lm{i}_x"]), float(r[f"lm{i}_y"])] for i in range(5)] for r in rows], np.float32)
    return load_crops(data_dir, np.array([r["file"] for r in rows])), boxes, landmarks


def export_stages(model: CascadeStages, out_dir: str | Path) -> dict[str, Path]:
    """Write the student's ``rnet.onnx`` and ``onet.onnx`` (the teacher's export: same inputs, outputs, opset).

    Returns:
        ``{"rnet": path, "onet": path}``.
    """
    import shutil
    import tempfile

    from ..compile.exporters.mtcnn import export_mtcnn_onnx, facenet_weights_dir

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights"
        weights.mkdir()
        shutil.copy(facenet_weights_dir() / "pnet.pt", weights / "pnet.pt")
        torch.save(model.rnet.state_dict(), weights / "rnet.pt")
        torch.save(model.onet.state_dict(), weights / "onet.pt")
        paths = export_mtcnn_onnx(Path(tmp) / "onnx", weights)
        return {net: Path(shutil.copy(paths[net], out_dir / f"{net}.onnx")) for net in ("rnet", "onet")}


def run_face_detector(
    facemask_dir: str | Path,
    celeba_dir: str | Path,
    out_dir: str | Path,
    config: DetectionConfig,
    *,
    workers: int = 1,
    mine_with: str | Path | list[str | Path] = "mtcnn-masked",
    opencv_samples: str | Path | None = None,
) -> dict:
    """The whole recipe: pool (train split + synthetic masks), training, ONNX export, ``report.json``.

    Args:
        facemask_dir: the facemask-voc folder (only its train split is read).
        celeba_dir: the celeba-faces folder (training identities only).
        out_dir: output folder (``train/checkpoint.pt``, ``rnet.onnx``, ``onet.onnx``, ``report.json``).
        config: the run (``config.mining_thresholds`` all > 0: mine hard negatives first).
        workers: batch-making processes.
        mine_with: the detectors whose mistakes are mined (:func:`mine_hard_negatives`; default the shipped
            student).
        opencv_samples: OpenCV's sample-data folder (Debian ``opencv-doc``) to mine on too, or None.

    Returns:
        The report (also written to ``out_dir/report.json``; the trained weights to ``out_dir/stages.pt``).
    """
    import time

    from ..compile.exporters.mtcnn import load_torch_nets
    from .facemask import read_facemask

    started = time.perf_counter()
    photos = read_facemask(facemask_dir, "train")
    celeba = read_celeba_faces(celeba_dir)
    mined: list[HardNegatives] = []
    sources: dict[str, int] = {}
    if all(t > 0 for t in config.mining_thresholds):
        images = [(f"facemask:{p.image_path.stem}", cv2.imread(str(p.image_path))[:, :, ::-1], p.boxes) for p in photos]
        images += celeba_scenes(celeba[0], celeba[1], config.celeba_scenes, config.seed)
        images += [(name, rgb, np.zeros((0, 4), np.float32)) for name, rgb in clean_photos(opencv_samples).items()]
        if config.mining_jpeg_quality is not None:
            images += compressed_copies(images, config.mining_jpeg_quality, config.seed)
        sources = {
            kind: sum(1 for name, _, _ in images if name.startswith(kind))
            for kind in ("facemask", "celeba", "skimage", "opencv")
        }
        mined = mine_hard_negatives(images, mine_with, config.mining_thresholds, config.max_hard_negatives_per_image)
    mining_seconds = time.perf_counter() - started
    teacher = load_torch_nets()
    pool = make_pool(photos, celeba, config, teacher_onet(teacher["onet"]), mined)
    pool_seconds = time.perf_counter() - started - mining_seconds
    model, history, seconds = train_stages(config, pool, Path(out_dir) / "train", workers=workers)
    paths = export_stages(model, out_dir)
    torch.save(model.state_dict(), Path(out_dir) / "stages.pt")
    kinds = (
        "negative",
        "real face",
        "masked celeba",
        "masked tiny celeba",
        "clean celeba",
        "hard negative",
        "blurred or dark celeba",
    )
    report = {
        "config": asdict(config),
        "train_photos": len(photos),
        "celeba_crops": len(celeba[0]),
        "pool": {name: int((pool.kind == k).sum()) for k, name in enumerate(kinds)},
        "mining": {
            "with": ([str(m) for m in mine_with] if isinstance(mine_with, list) else str(mine_with)) if mined else None,
            "images": sources,
            "images_with_negatives": {k: sum(1 for m in mined if m.name.startswith(k)) for k in sources},
            "boxes": {k: int(sum(len(m.boxes) for m in mined if m.name.startswith(k))) for k in sources},
            "final_detections": int(sum((m.stage == 2).sum() for m in mined)),
            "clean_photos": sorted(m.name for m in mined if m.name.startswith(("skimage", "opencv"))),
            "compressed_copies": sum(1 for m in mined if "#jpeg" in m.name),
            "seconds": round(mining_seconds, 1),
        },
        "pool_seconds": round(pool_seconds, 1),
        "training_seconds": round(seconds, 1),
        "history": history,
        "onnx": {net: str(path.name) for net, path in paths.items()},
    }
    (Path(out_dir) / "report.json").write_text(json.dumps(report, indent=1))
    return report
