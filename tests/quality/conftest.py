"""Fixtures for the face-quality tests: the model cache and the bundled demo photo's face."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def astronaut(lanner_cache):
    """The bundled demo photo (BGR) and its one face's landmarks, found by the MTCNN teacher."""
    import cv2

    import lanner
    from lanner.cli.detect import demo_image_path

    image = cv2.imread(str(demo_image_path()), cv2.IMREAD_COLOR)
    with lanner.FaceDetector(model="mtcnn", num_threads=1) as detector:
        faces = detector.detect(image)
    assert len(faces) == 1
    return image, faces
