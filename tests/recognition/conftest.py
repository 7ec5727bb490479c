"""Fixtures for the face-recognition tests: the model cache, real photos with faces, aligned chips.

Photos come from installed packages (scikit-image, Debian's opencv-doc), as in the detection
tests. Set ``LANNER_CELEBA_FACES`` to the celeba-faces folder to also check the teacher's parity
on 48 of its crops (skipped otherwise).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def group_photo() -> np.ndarray:
    """The detection benchmark's 1280x886 BGR group photo (astronaut, cameraman, messi5, LFW faces)."""
    pytest.importorskip("skimage")
    import photos as images  # tests/support

    if not (images.OPENCV_DATA / "messi5.jpg").is_file():
        pytest.skip("opencv-doc's messi5.jpg is missing (apt-get install opencv-doc)")
    return images.group()


@pytest.fixture(scope="session")
def group_faces(lanner_cache, group_photo):
    import lanner

    with lanner.FaceDetector(num_threads=2) as detector:
        return detector.detect(group_photo)


@pytest.fixture(scope="session")
def teacher_chips(lanner_cache, request) -> np.ndarray:
    """(N, 150, 150, 3) uint8 RGB chips of real faces.

    Always: the bundled astronaut photo, also mirrored, rotated and rescaled (needs nothing but
    Lanner). Plus the group photo's faces when scikit-image and opencv-doc are installed, and 48
    celeba crops when ``LANNER_CELEBA_FACES`` names that folder.
    """
    import cv2

    import lanner
    from lanner.cli.detect import demo_image_path
    from lanner.face.align import align_faces

    astronaut = cv2.imread(str(demo_image_path()), cv2.IMREAD_COLOR)
    centre = (astronaut.shape[1] / 2, astronaut.shape[0] / 2)
    variants = [astronaut, astronaut[:, ::-1]] + [
        cv2.warpAffine(astronaut, cv2.getRotationMatrix2D(centre, angle, scale), astronaut.shape[1::-1])
        for angle, scale in ((12, 1.0), (-9, 0.7), (4, 1.3), (0, 0.45))
    ]
    chips = []
    with lanner.FaceDetector(num_threads=2) as detector:
        for image in variants:
            image = np.ascontiguousarray(image)
            faces = detector.detect(image)
            chips.append(align_faces(np.ascontiguousarray(image[:, :, ::-1]), faces.landmarks[:1], 150))
        try:
            group = request.getfixturevalue("group_photo")
        except pytest.skip.Exception:
            group = None
        if group is not None:
            faces = detector.detect(group)
            chips.append(align_faces(np.ascontiguousarray(group[:, :, ::-1]), faces.landmarks, 150))
    data = os.environ.get("LANNER_CELEBA_FACES")
    if data:
        with open(Path(data) / "faces.csv", newline="") as f:
            rows = list(csv.DictReader(f))[::100][:48]
        for row in rows:
            image = cv2.imread(str(Path(data) / "images" / row["file"]), cv2.IMREAD_COLOR)[:, :, ::-1]
            landmarks = np.array([float(row[f"lm{i}_{a}"]) for i in range(5) for a in "xy"], np.float32)
            chips.append(align_faces(np.ascontiguousarray(image), landmarks.reshape(1, 5, 2), 150))
    return np.concatenate(chips)
