"""Fixtures for the face-detection tests.

The detector's compiled packages are built once per test session into one cache directory:
``$LANNER_TEST_CACHE`` when set (CI points it at a cached folder, so packages are built once
per CI run), else a session temp dir. Subprocesses (CLI tests) inherit it via LANNER_CACHE.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "detection"
DATA = ROOT / "tests" / "data"


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
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import images

    out = {"astronaut": images.astronaut(), "cameraman": images.cameraman()}
    if (images.OPENCV_DATA / "messi5.jpg").is_file():
        out["messi"] = images.messi()
        out["group"] = images.group()
    return out
