"""Seeded synthetic face masks placed by the 5 landmarks (issue 15's masked training data).

After the ICCV 2021 masked-face challenge's data generation (masks rendered onto unmasked faces
from their landmarks): a procedural mask — ``surgical`` (pleated, pale colours, ear loops),
``cloth`` (any colour, stripes / checks / dots) or ``scarf`` (wide, down past the chin, knit
noise) — is drawn as a polygon whose top edge crosses the nose bridge and whose lower edge curves
under the chin, in the face's own frame (eye line and eye-to-mouth axis), so it follows roll and
scale. Each mask is slightly misplaced (shift, scale, rotation) as real masks are worn, shaded
top-to-bottom, and blended with an anti-aliased edge.

Works on face crops (celeba-faces: landmarks in crop pixels) and on any photo whose faces'
landmarks are known (e.g. ``lanner.FaceDetector``'s); :func:`lanner.distill.downsample_face`
makes the tiny copies. Only NumPy and OpenCV: usable without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["MASK_STYLES", "MaskPlacement", "SyntheticMasks", "draw_mask"]

MASK_STYLES: tuple[str, ...] = ("surgical", "cloth", "scarf")

# Mask outline in the face frame: units of the eye-to-mouth distance along the face axis (0 = eye
# line, 1 = mouth line) and of the inter-ocular distance across it (0 = between the eyes).
# (top along the axis, bottom along the axis, half width at the top, half width at the bottom)
_OUTLINE = {
    "surgical": (0.45, 1.75, 1.05, 0.85),
    "cloth": (0.42, 1.70, 1.00, 0.80),
    "scarf": (0.55, 2.30, 1.25, 1.25),
}
# Surgical masks' usual colours, RGB.
_SURGICAL_COLOURS = np.array([[170, 200, 230], [235, 238, 240], [160, 215, 200], [40, 42, 48], [225, 190, 205]])


@dataclass(frozen=True)
class MaskPlacement:
    """How one mask was drawn (frozen: safe to share between threads).

    Attributes:
        style: one of :data:`MASK_STYLES`.
        colour: (3,) uint8 RGB base colour.
        shift: (2,) offset of the mask from its landmark position, in inter-ocular distances (x, y).
        scale: size factor relative to the landmark fit.
        angle: extra rotation, degrees.
    """

    style: str
    colour: np.ndarray
    shift: np.ndarray
    scale: float
    angle: float


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image should be an (H, W, 3) uint8 array, got {got}")


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.shape != (5, 2) or not np.isfinite(landmarks).all():
        raise ValueError(
            f"landmarks should be a finite (5, 2) array (left eye, right eye, nose, mouth corners), "
            f"got shape {landmarks.shape}"
        )
    return landmarks


def _outline(landmarks: np.ndarray, placement: MaskPlacement) -> np.ndarray:
    """The mask polygon, (K, 2) float image pixels."""
    left_eye, right_eye, _, left_mouth, right_mouth = landmarks
    eyes, mouth = (left_eye + right_eye) / 2, (left_mouth + right_mouth) / 2
    ocular = max(float(np.linalg.norm(right_eye - left_eye)), 1e-3)
    across = (right_eye - left_eye) / ocular
    down = mouth - eyes
    reach = max(float(np.linalg.norm(down)), 1e-3)
    down = down / reach
    top, bottom, top_half, bottom_half = _OUTLINE[placement.style]
    t = np.linspace(0, np.pi, 13)
    # top edge (straight, slightly raised over the nose), then the lower edge as a half-ellipse under the chin
    upper = [(-top_half, top), (0.0, top - 0.12), (top_half, top)]
    middle = (top + bottom) / 2
    lower = [
        (np.cos(a) * (top_half + (bottom_half - top_half) * np.sin(a)), middle + (bottom - middle) * np.sin(a))
        for a in t
    ]
    points = np.array(upper + lower)
    c, s = np.cos(np.radians(placement.angle)), np.sin(np.radians(placement.angle))
    rot_across, rot_down = c * across + s * down, -s * across + c * down
    centre = eyes + down * reach * middle + placement.shift * ocular
    rel_x, rel_y = points[:, 0] * ocular, (points[:, 1] - middle) * reach
    return centre + placement.scale * (rel_x[:, None] * rot_across + rel_y[:, None] * rot_down)


def _texture(
    style: str, colour: np.ndarray, shape: tuple[int, int], scale: float, rng: np.random.Generator
) -> np.ndarray:
    """An (H, W, 3) float32 texture of the mask's material, ``scale`` px per inter-ocular distance."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    tex = np.broadcast_to(colour.astype(np.float32), (h, w, 3)).copy()
    period = max(2.0, scale * rng.uniform(0.15, 0.35))
    if style == "surgical":  # three horizontal pleats
        tex *= (1 - 0.12 * (np.sin(yy / max(2.0, scale * 0.22) * np.pi) > 0.8))[..., None]
    elif style == "cloth":
        pattern = rng.integers(0, 4)  # plain, stripes, checks, dots
        other = rng.integers(0, 256, 3).astype(np.float32)
        if pattern == 1:
            on = np.sin(xx / period * np.pi) > 0
        elif pattern == 2:
            on = (np.sin(xx / period * np.pi) > 0) ^ (np.sin(yy / period * np.pi) > 0)
        elif pattern == 3:
            on = (np.sin(xx / period * np.pi) * np.sin(yy / period * np.pi)) > 0.6
        else:
            on = np.zeros((h, w), bool)
        tex[on] = 0.5 * tex[on] + 0.5 * other
    else:  # scarf: knit noise and a stripe
        tex *= (1 + 0.12 * rng.standard_normal((h, w)).astype(np.float32))[..., None]
        tex *= (1 - 0.2 * (np.sin(yy / (2 * period) * np.pi) > 0.7))[..., None]
    shading = 1.1 - 0.3 * yy / max(h - 1, 1)  # lit from above
    return np.clip(tex * shading[..., None], 0, 255)


def draw_mask(
    image: np.ndarray, landmarks: np.ndarray, placement: MaskPlacement, rng: np.random.Generator
) -> np.ndarray:
    """Draw one mask onto a face.

    Args:
        image: (H, W, 3) uint8 RGB (or BGR: the colour is then read as BGR).
        landmarks: (5, 2) landmarks of the face in ``image`` pixels (left eye, right eye, nose,
            left and right mouth corner).
        placement: style, colour and misplacement (see :class:`SyntheticMasks`).
        rng: texture randomness.

    Returns:
        A new (H, W, 3) uint8 image with the mask.

    Raises:
        ValueError: bad image, landmarks or style.
    """
    _check_image(image)
    landmarks = _check_landmarks(landmarks)
    if placement.style not in MASK_STYLES:
        raise ValueError(f"style should be one of {MASK_STYLES}, got {placement.style!r}")
    polygon = _outline(landmarks, placement)
    h, w = image.shape[:2]
    x0, y0 = np.floor(polygon.min(0)).astype(int) - 2
    x1, y1 = np.ceil(polygon.max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    out = image.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    # Alpha drawn at 4x and area-reduced: an anti-aliased edge, even on a 10-px face.
    sub = 4
    alpha = np.zeros(((y1 - y0) * sub, (x1 - x0) * sub), np.uint8)
    cv2.fillPoly(alpha, [np.round((polygon - [x0, y0]) * sub).astype(np.int32)], 255)
    alpha = cv2.resize(alpha, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA).astype(np.float32)[..., None] / 255
    ocular = float(np.linalg.norm(landmarks[1] - landmarks[0]))
    tex = _texture(placement.style, placement.colour, (y1 - y0, x1 - x0), ocular, rng)
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.round(region * (1 - alpha) + tex * alpha).astype(np.uint8)
    if placement.style == "surgical" and ocular >= 6:  # ear loops from the mask's top corners outwards
        loop = tuple(int(v) for v in np.clip(placement.colour.astype(int) - 30, 0, 255))
        for corner, eye, sign in ((polygon[0], landmarks[0], -1), (polygon[2], landmarks[1], 1)):
            ear = eye + sign * (landmarks[1] - landmarks[0]) * 0.6
            cv2.line(out, tuple(np.round(corner).astype(int)), tuple(np.round(ear).astype(int)), loop, 1, cv2.LINE_AA)
    return out


@dataclass(frozen=True)
class SyntheticMasks:
    """Seeded masks: sample ``index`` of a run always gets the same mask (frozen: safe to share
    between threads; every call makes its own generator).

    Attributes:
        seed: run seed.
        styles: the styles drawn from, uniformly.
        max_shift: largest misplacement, inter-ocular distances (uniform in each direction).
        scale_range: size factor range.
        max_angle: largest extra rotation, degrees.
    """

    seed: int = 0
    styles: tuple[str, ...] = MASK_STYLES
    max_shift: float = 0.12
    scale_range: tuple[float, float] = (0.92, 1.1)
    max_angle: float = 8.0

    def __post_init__(self) -> None:
        unknown = set(self.styles) - set(MASK_STYLES)
        if not self.styles or unknown:
            raise ValueError(f"styles should be a non-empty subset of {MASK_STYLES}, got {self.styles!r}")

    def rng(self, index: int) -> np.random.Generator:
        """The generator of sample ``index``."""
        return np.random.default_rng([self.seed, int(index), 15])

    def placement(self, rng: np.random.Generator) -> MaskPlacement:
        """Draw a style, colour and misplacement."""
        style = self.styles[int(rng.integers(len(self.styles)))]
        if style == "surgical":
            colour = _SURGICAL_COLOURS[int(rng.integers(len(_SURGICAL_COLOURS)))]
        else:
            hsv = np.array([[[rng.integers(0, 180), rng.integers(40, 220), rng.integers(40, 240)]]], np.uint8)
            colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
        return MaskPlacement(
            style=style,
            colour=np.asarray(colour, np.uint8),
            shift=rng.uniform(-self.max_shift, self.max_shift, 2),
            scale=float(rng.uniform(*self.scale_range)),
            angle=float(rng.uniform(-self.max_angle, self.max_angle)),
        )

    def __call__(self, image: np.ndarray, landmarks: np.ndarray, index: int) -> np.ndarray:
        """Mask every face of an image.

        Args:
            image: (H, W, 3) uint8 RGB.
            landmarks: (5, 2) for one face or (N, 5, 2) for N faces, image pixels.
            index: sample index (with the seed, fixes every random choice).

        Returns:
            A new image with one mask per face.

        Raises:
            ValueError: bad image or landmarks.
        """
        landmarks = np.asarray(landmarks, np.float64)
        faces = landmarks[None] if landmarks.ndim == 2 else landmarks
        if faces.ndim != 3 or faces.shape[1:] != (5, 2):
            raise ValueError(f"landmarks should be (5, 2) or (N, 5, 2), got shape {landmarks.shape}")
        rng = self.rng(index)
        out = image
        for face in faces:
            out = draw_mask(out, face, self.placement(rng), rng)
        if out is image:  # no face: still a new array, as documented
            _check_image(image)
            out = image.copy()
        return out
