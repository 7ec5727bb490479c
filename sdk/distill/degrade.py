"""Seeded, composable image degradations: what a face looks like from a CCTV camera or a drone.

Each degradation is a small callable ``step(image, rng) -> image`` on an (H, W, 3) uint8 RGB image;
:class:`Degradations` applies a list of them, each with its probability, from a generator seeded
by ``(seed, sample index)`` so that every sample of every run repeats exactly. Face-size reduction
(:func:`downsample_face`) changes the geometry too, so it is a function of its own that also
rescales the landmarks. Only NumPy and OpenCV: usable without torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = [
    "downsample_face",
    "GaussianBlur",
    "MotionBlur",
    "JpegCompression",
    "SensorNoise",
    "LowLight",
    "Greyscale",
    "occlude_lower_face",
    "Degradations",
    "default_degradations",
    "moderate_degradations",
]

Step = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image should be an (H, W, 3) uint8 array, got {got}")


def downsample_face(
    image: np.ndarray, landmarks: np.ndarray, face_width: float, box_width: float
) -> tuple[np.ndarray, np.ndarray]:
    """Shrink an image so that a face box ``box_width`` px wide becomes ``face_width`` px wide.

    Area interpolation (each output pixel averages the input pixels it covers: no aliasing), as a
    camera further away would see the face.

    Args:
        image: (H, W, 3) uint8.
        landmarks: (5, 2) float landmark coordinates in ``image`` pixels.
        face_width: target face width in px (> 0).
        box_width: current face width in px (> 0).

    Returns:
        ``(small, small_landmarks)``: the shrunk image and the landmarks in its pixels
        (pixel-centre convention: ``x' = (x + 0.5) * s - 0.5``).

    Raises:
        ValueError: bad image, non-positive widths, or a face already smaller than ``face_width``.
    """
    _check_image(image)
    if not (face_width > 0 and box_width > 0):
        raise ValueError(f"face_width and box_width should be > 0, got {face_width} and {box_width}")
    if face_width > box_width:
        raise ValueError(
            f"face_width ({face_width}) should not exceed the face's width ({box_width}): "
            "upsampling is not a degradation"
        )
    h, w = image.shape[:2]
    size = (max(1, round(w * face_width / box_width)), max(1, round(h * face_width / box_width)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    sx, sy = size[0] / w, size[1] / h
    scaled = (np.asarray(landmarks, np.float64) + 0.5) * np.array([sx, sy]) - 0.5
    return small, scaled.astype(np.float32)


@dataclass(frozen=True)
class GaussianBlur:
    """Defocus: Gaussian blur with sigma drawn uniformly from ``sigma`` (px of the degraded image)."""

    sigma: tuple[float, float] = (0.3, 1.2)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s = float(rng.uniform(*self.sigma))
        return cv2.GaussianBlur(image, (0, 0), sigmaX=s, borderType=cv2.BORDER_REFLECT)


@dataclass(frozen=True)
class MotionBlur:
    """Camera or subject motion: a line kernel of ``length`` px (uniform) at a uniform random angle."""

    length: tuple[float, float] = (1.5, 4.0)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        length, angle = float(rng.uniform(*self.length)), float(rng.uniform(0, np.pi))
        k = int(np.ceil(length)) | 1  # odd kernel side
        kernel = np.zeros((k, k), np.float32)
        c = k // 2
        dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
        cv2.line(
            kernel,
            (round(c * 16 - dx * 16), round(c * 16 - dy * 16)),
            (round(c * 16 + dx * 16), round(c * 16 + dy * 16)),
            1.0,
            1,
            cv2.LINE_AA,
            shift=4,
        )
        kernel /= max(kernel.sum(), 1e-6)
        return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)


@dataclass(frozen=True)
class JpegCompression:
    """Compression artefacts: JPEG round trip at a quality drawn uniformly from ``quality``."""

    quality: tuple[int, int] = (10, 50)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        q = int(rng.integers(self.quality[0], self.quality[1] + 1))
        ok, data = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB image
            raise RuntimeError("JPEG encoding failed")
        return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])


@dataclass(frozen=True)
class SensorNoise:
    """Sensor noise: additive Gaussian noise with standard deviation drawn from ``sigma`` (0-255 units)."""

    sigma: tuple[float, float] = (2.0, 10.0)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = rng.normal(0.0, float(rng.uniform(*self.sigma)), image.shape)
        return np.clip(image + noise, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class LowLight:
    """Under-exposure: intensities scaled by ``gain`` and passed through a gamma of ``gamma`` (uniform)."""

    gain: tuple[float, float] = (0.25, 0.8)
    gamma: tuple[float, float] = (1.0, 1.6)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        gain, gamma = float(rng.uniform(*self.gain)), float(rng.uniform(*self.gamma))
        out = 255.0 * (image / 255.0) ** gamma * gain
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Greyscale:
    """An infrared or monochrome camera: luma copied into the three channels."""

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        return np.repeat(grey[:, :, None], 3, axis=2)


def occlude_lower_face(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Synthetic mask-like occlusion: a flat-coloured, lightly textured face mask over nose and mouth.

    The mask is a polygon placed from the five landmarks (it needs the face's geometry, so it is a
    function like :func:`downsample_face`, not a :class:`Degradations` step): its top edge runs
    between the nose and the eyes (a random 20-60% of the way down from the eyes to the nose, as a
    worn-low or worn-high mask), across the face from cheek to cheek, and it covers the mouth and the
    chin. Colour: a uniform random colour (surgical blue, black, white and patterned masks all occur).

    Args:
        image: (H, W, 3) uint8 RGB.
        landmarks: (5, 2) float landmarks (left eye, right eye, nose, left and right mouth corner), px.
        rng: the sample's generator.

    Returns:
        The occluded (H, W, 3) uint8 image (a new array).

    Raises:
        ValueError: bad image or landmarks that are not (5, 2) finite numbers.
    """
    _check_image(image)
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (5, 2) or not np.isfinite(lm).all():
        raise ValueError(f"landmarks should be (5, 2) finite numbers, got shape {lm.shape}")
    eyes, nose, mouth = lm[:2].mean(axis=0), lm[2], lm[3:].mean(axis=0)
    down = mouth - eyes  # the face's vertical axis, eyes to mouth
    across = lm[1] - lm[0]  # the face's horizontal axis, left to right eye
    top = eyes + (nose - eyes) * rng.uniform(0.2, 0.6)
    half = 1.1 * across  # cheek to cheek: a bit more than twice the eye distance
    polygon = np.array(
        [top - half, top + half, top + half * 0.9 + 1.2 * down, mouth + 0.9 * down, top - half * 0.9 + 1.2 * down]
    )
    out = image.copy()
    colour = rng.integers(0, 256, 3)
    cv2.fillPoly(out, [np.round(polygon * 16).astype(np.int32)], tuple(int(c) for c in colour), cv2.LINE_AA, shift=4)
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    texture = rng.normal(0.0, 6.0, image.shape[:2])[..., None] * mask[..., None]
    return np.clip(out + texture, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Degradations:
    """Apply ``steps`` in order, each with its probability, seeded per sample.

    Thread-safe (immutable; every call makes its own generator).

    Attributes:
        steps: ``(probability, step)`` pairs; a step runs when a uniform draw falls below its probability.
        seed: run seed; sample ``index`` uses ``np.random.default_rng([seed, index])``.
    """

    steps: Sequence[tuple[float, Step]] = field(default_factory=tuple)
    seed: int = 0

    def rng(self, index: int) -> np.random.Generator:
        """The generator of sample ``index`` (callers draw their own geometry from it too)."""
        return np.random.default_rng([self.seed, int(index)])

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Degrade ``image`` with draws from ``rng``.

        Args:
            image: (H, W, 3) uint8 RGB.
            rng: the sample's generator (see :meth:`rng`).

        Returns:
            The degraded (H, W, 3) uint8 image (a new array).

        Raises:
            ValueError: ``image`` is not (H, W, 3) uint8.
        """
        _check_image(image)
        out = image
        for probability, step in self.steps:
            if rng.uniform() < probability:
                out = step(out, rng)
        return np.ascontiguousarray(out)


def default_degradations(seed: int = 0) -> Degradations:
    """The training degradations of Lanner's face students (probabilities tuned by eye, not searched).

    Order follows a camera: optics (defocus, motion), exposure, sensor noise, colour, then compression.
    """
    return Degradations(
        steps=(
            (0.4, GaussianBlur()),
            (0.2, MotionBlur()),
            (0.25, LowLight()),
            (0.4, SensorNoise()),
            (0.15, Greyscale()),
            (0.5, JpegCompression()),
        ),
        seed=seed,
    )


def moderate_degradations(seed: int = 0) -> Degradations:
    """Milder degradations for fine-tuning a high-resolution model to small faces (the bridge recipe).

    The face's size is the main degradation there (it is shrunk to 10-24 px and upsampled back by
    the alignment); these steps add the camera's other defects less often and less strongly than
    :func:`default_degradations`, so that the model still learns what a clean small face carries.
    """
    return Degradations(
        steps=(
            (0.3, GaussianBlur(sigma=(0.3, 0.9))),
            (0.1, MotionBlur(length=(1.5, 3.0))),
            (0.15, LowLight(gain=(0.4, 0.9))),
            (0.25, SensorNoise(sigma=(2.0, 6.0))),
            (0.1, Greyscale()),
            (0.3, JpegCompression(quality=(30, 80))),
        ),
        seed=seed,
    )
