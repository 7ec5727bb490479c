"""Benchmark and test photos, all from installed packages (no downloads).

* ``astronaut`` (512x512): scikit-image's ``astronaut`` (NASA, public domain).
* ``messi`` (548x342): OpenCV's ``messi5.jpg`` (Debian ``opencv-doc``).
* ``cameraman`` (512x512, grayscale): scikit-image's ``camera``.
* ``group`` (1280x886): a composed group photo: astronaut, cameraman, messi5 and eight
  faces from scikit-image's ``lfw_subset`` (Labeled Faces in the Wild, 25x25, upscaled 4x).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


def _skimage(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()


def astronaut() -> np.ndarray:
    """512x512 BGR."""
    return np.ascontiguousarray(_skimage("astronaut")[:, :, ::-1])


def cameraman() -> np.ndarray:
    """512x512 grayscale."""
    return _skimage("camera")


def messi() -> np.ndarray:
    """548x342 BGR from opencv-doc."""
    import cv2

    image = cv2.imread(str(OPENCV_DATA / "messi5.jpg"), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{OPENCV_DATA / 'messi5.jpg'} is missing: apt-get install opencv-doc")
    return image


def lfw_faces(count: int, size: int) -> list[np.ndarray]:
    """The first ``count`` faces of scikit-image's lfw_subset, upscaled to size x size, BGR."""
    import cv2
    from skimage.data import lfw_subset

    faces = lfw_subset()[:count]
    out = []
    for face in faces:
        gray = np.clip(face * 255.0, 0, 255).astype(np.uint8)
        gray = cv2.resize(gray, (size, size), interpolation=cv2.INTER_CUBIC)
        out.append(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    return out


def group() -> np.ndarray:
    """1280x886 BGR group photo composed from package-shipped photos (11 faces; MTCNN finds 10)."""
    import cv2

    canvas = np.full((886, 1280, 3), 96, np.uint8)
    canvas[0:512, 0:512] = astronaut()
    canvas[0:512, 512:1024] = cv2.cvtColor(cameraman(), cv2.COLOR_GRAY2BGR)
    canvas[512:854, 0:548] = messi()
    # LFW crops are tight around the face: pad each with a grey margin so that MTCNN sees a head.
    faces = lfw_faces(8, 100)
    positions = [(20, 1030), (20, 1150), (200, 1030), (200, 1150), (560, 600), (560, 760), (720, 920), (720, 1080)]
    for face, (y, x) in zip(faces, positions):
        canvas[y + 20 : y + 120, x : x + 100] = face
    return canvas


def all_photos() -> dict[str, np.ndarray]:
    return {"astronaut": astronaut(), "messi": messi(), "cameraman": cameraman(), "group": group()}
