"""Fixtures shared by every test folder.

Compiled model packages are built once per test session into one cache directory:
``$LANNER_TEST_CACHE`` when set (CI points it at a folder kept for the whole run, so packages
are built once per CI run), else a session temp dir. Subprocesses (CLI tests) inherit it
through ``LANNER_CACHE``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run (seeded from each test's name): a CI run must not
# pass or fail by the draw. A case worth keeping is pinned with @example beside its test.
settings.register_profile("lanner", derandomize=True)
settings.load_profile("lanner")


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
    """One :class:`lanner.FaceDetector` (fp32, 2 threads) for every test that detects faces: the MTCNN
    teacher by name (``model="mtcnn"``), whose faces the goldens and the facenet-pytorch parity tests hold."""
    import lanner

    with lanner.FaceDetector(model="mtcnn", num_threads=2) as det:
        yield det


@pytest.fixture(scope="session")
def recognizer(lanner_cache):
    """One :class:`lanner.FaceRecognizer` (2 threads) for the recognition and quality tests."""
    import lanner

    with lanner.FaceRecognizer(num_threads=2) as rec:
        yield rec


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (tiny seeded training runs: repeatable and light), then as before."""
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
