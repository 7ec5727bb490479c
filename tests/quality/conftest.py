"""Fixtures for the face-quality tests: the model cache and the bundled demo photo's face."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


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
def recognizer(lanner_cache):
    import lanner

    with lanner.FaceRecognizer(num_threads=1) as rec:
        yield rec


@pytest.fixture(scope="session")
def astronaut(lanner_cache):
    """The bundled demo photo (BGR) and its one face's landmarks, found by lanner.FaceDetector."""
    import cv2

    import lanner
    from lanner.cli.detect import demo_image_path

    image = cv2.imread(str(demo_image_path()), cv2.IMREAD_COLOR)
    with lanner.FaceDetector(num_threads=1) as detector:
        faces = detector.detect(image)
    assert len(faces) == 1
    return image, faces
