"""Fixtures for the face-recognition tests: the model cache, real photos with faces, aligned chips.

Photos come from installed packages (scikit-image, Debian's opencv-doc), as in the detection
tests. Set ``LANNER_CELEBA_FACES`` to the celeba-faces folder to also check the teacher's parity
on 48 of its crops (skipped otherwise).
"""
from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DETECTION_BENCH = ROOT / "benchmarks" / "detection"


@pytest.fixture(scope="session")
def lanner_cache(tmp_path_factory) -> Path:
    cache = Path(os.environ.get("LANNER_TEST_CACHE") or tmp_path_factory.mktemp("lanner-cache"))
    previous = os.environ.get("LANNER_CACHE")
    os.environ["LANNER_CACHE"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("LANNER_CACHE", None)
    else:
        os.environ["LANNER_CACHE"] = previous


@pytest.fixture(scope="session")
def group_photo() -> np.ndarray:
    """The detection benchmark's 1280x886 BGR group photo (astronaut, cameraman, messi5, LFW faces)."""
    pytest.importorskip("skimage")
    if str(DETECTION_BENCH) not in sys.path:
        sys.path.insert(0, str(DETECTION_BENCH))
    import images

    if not (images.OPENCV_DATA / "messi5.jpg").is_file():
        pytest.skip("opencv-doc's messi5.jpg is missing (apt-get install opencv-doc)")
    return images.group()


@pytest.fixture(scope="session")
def recognizer(lanner_cache):
    import lanner

    with lanner.FaceRecognizer(num_threads=2) as rec:
        yield rec


@pytest.fixture(scope="session")
def group_faces(lanner_cache, group_photo):
    import lanner

    with lanner.FaceDetector(num_threads=2) as detector:
        return detector.detect(group_photo)


@pytest.fixture(scope="session")
def teacher_chips(group_photo, group_faces) -> np.ndarray:
    """(N, 150, 150, 3) uint8 RGB chips of real faces: the group photo's, plus celeba crops when available."""
    from lanner.face.align import align_faces

    chips = [align_faces(np.ascontiguousarray(group_photo[:, :, ::-1]), group_faces.landmarks, 150)]
    data = os.environ.get("LANNER_CELEBA_FACES")
    if data:
        import cv2

        with open(Path(data) / "faces.csv", newline="") as f:
            rows = list(csv.DictReader(f))[::100][:48]
        for row in rows:
            image = cv2.imread(str(Path(data) / "images" / row["file"]), cv2.IMREAD_COLOR)[:, :, ::-1]
            landmarks = np.array([float(row[f"lm{i}_{a}"]) for i in range(5) for a in "xy"], np.float32)
            chips.append(align_faces(np.ascontiguousarray(image), landmarks.reshape(1, 5, 2), 150))
    return np.concatenate(chips)
