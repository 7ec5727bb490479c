"""Fixtures for the face-detection tests.

The detector's compiled packages are built once per test session into one cache directory:
``$LANNER_TEST_CACHE`` when set (CI points it at a cached folder, so packages are built once
per CI run), else a session temp dir. Subprocesses (CLI tests) inherit it via LANNER_CACHE.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
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
def detector(lanner_cache):
    import lanner

    with lanner.FaceDetector(num_threads=2) as det:
        yield det


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """Package-shipped photos with faces (scikit-image, opencv-doc); skipped when missing."""
    pytest.importorskip("skimage")
    import photos

    out = {"astronaut": photos.astronaut(), "cameraman": photos.cameraman()}
    if (photos.OPENCV_DATA / "messi5.jpg").is_file():
        out["messi"] = photos.messi()
        out["group"] = photos.group()
    return out
