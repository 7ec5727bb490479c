"""Fixtures for the face-detection tests.

The detector's compiled packages are built once per test session into one cache directory:
``$LANNER_TEST_CACHE`` when set (CI points it at a cached folder, so packages are built once
per CI run), else a session temp dir. Subprocesses (CLI tests) inherit it via LANNER_CACHE.
"""

from __future__ import annotations

import numpy as np
import pytest


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
