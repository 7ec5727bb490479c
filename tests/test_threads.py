"""Objects shared between Python threads: calls are serialised, never a hang.

A hang here holds the GIL (the bug this guards against: a native call waiting for the
object's mutex while holding the GIL, while the mutex holder waits for the GIL), so the
threads run in a child process that the test kills after a timeout instead of hanging.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lanner
from lanner import _C

_TIMEOUT_S = 240  # the work takes a few seconds; a deadlock never ends

_SCRIPT = """
import sys, threading
import numpy as np
import lanner

rng = np.random.default_rng(0)
frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
kind, calls = sys.argv[1], int(sys.argv[2])
tracker = lanner.MultiTracker(num_threads=2) if kind == "multi" else lanner.Tracker()
box = np.array([[150.0, 100.0, 24.0, 18.0], [40.0, 40.0, 16.0, 16.0]]) if kind == "multi" else (150, 100, 24, 18)
tracker.init(frame, box)
errors = []

def updates():
    try:
        for _ in range(calls):
            tracker.update(frame)
    except BaseException as exc:
        errors.append(exc)

def inits_and_updates():
    try:
        for _ in range(calls // 2):
            tracker.init(frame, box)
            tracker.update(frame)
    except BaseException as exc:
        errors.append(exc)

second = inits_and_updates if "init" in sys.argv[3:] else updates
threads = [threading.Thread(target=updates), threading.Thread(target=second)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if errors:
    raise SystemExit(f"a thread failed: {errors[0]!r}")
print("ok")
"""


def _run_threads(kind: str, calls: int, *extra: str) -> None:
    try:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_SCRIPT), kind, str(calls), *extra],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"two threads sharing one {kind} tracker did not finish in {_TIMEOUT_S} s (deadlock)")
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


@pytest.mark.native
@pytest.mark.parametrize("second", ["update", "init"])
def test_one_tracker_shared_by_two_threads_finishes(second):
    """Issue 12.1: one Tracker, two threads x 1,000 calls (update+update, init+update) on a
    320x240 frame froze the interpreter."""
    _run_threads("single", 1000, second)


@pytest.mark.native
@pytest.mark.parametrize("second", ["update", "init"])
def test_one_multitracker_shared_by_two_threads_finishes(second):
    _run_threads("multi", 200, second)


@pytest.mark.native
def test_shared_tracker_gives_the_serial_results():
    """Serialised calls: two threads feeding the same frame to one tracker end in the state that
    as many calls from one thread reach (every update sees a consistent tracker)."""
    import threading

    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    shared, serial = lanner.Tracker(), lanner.Tracker()
    shared.init(frame, (150, 100, 24, 18))
    serial.init(frame, (150, 100, 24, 18))
    threads = [threading.Thread(target=lambda: [shared.update(frame) for _ in range(50)]) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=_TIMEOUT_S)
    assert not any(t.is_alive() for t in threads)
    for _ in range(100):
        serial.update(frame)
    assert shared.update(frame) == serial.update(frame)


@pytest.mark.native
def test_close_while_another_thread_updates():
    """close() from another thread: the running update finishes, later calls say closed."""
    import threading

    frame = np.random.default_rng(2).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    tracker = lanner.Tracker()
    tracker.init(frame, (150, 100, 24, 18))
    seen: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(2000):
                tracker.update(frame)
        except ValueError as exc:
            seen.append(exc)

    t = threading.Thread(target=run)
    t.start()
    tracker.close()
    t.join(timeout=_TIMEOUT_S)
    assert not t.is_alive()
    with pytest.raises(ValueError, match="tracker is closed"):
        tracker.update(frame)
    assert all("closed" in str(e) for e in seen)


def test_native_multitracker_length_is_safe_without_python_lock():
    m = _C.MultiCorrelationTracker(lanner.TrackerOptions().to_params(), "cpu")
    assert len(m) == 0
    m.init(np.zeros((60, 80), np.uint8), np.array([[10.0, 10, 8, 8], [30, 30, 8, 8]]))
    assert len(m) == 2


@pytest.fixture(scope="module")
def rnet_package(tmp_path_factory):
    import os

    from lanner import models

    cache = os.environ.get("LANNER_TEST_CACHE") or str(tmp_path_factory.mktemp("lanner-cache"))
    previous = os.environ.get("LANNER_CACHE")
    os.environ["LANNER_CACHE"] = cache
    try:
        yield models.build_package("mtcnn-rnet", "openvino", "fp32", quiet=True)
    finally:
        if previous is None:
            os.environ.pop("LANNER_CACHE", None)
        else:
            os.environ["LANNER_CACHE"] = previous


def test_one_model_shared_by_threads_gives_the_serial_results(rnet_package):
    """Model.run calls are serialised: a backend request reused by two threads at once would
    mix their outputs."""
    import threading

    rng = np.random.default_rng(3)
    inputs = [rng.standard_normal((4, 3, 24, 24)).astype(np.float32) for _ in range(2)]
    with lanner.load(rnet_package, num_threads=1) as model:
        expected = [model.run({"image": x}) for x in inputs]
        mismatches: list[int] = []

        def run(k: int) -> None:
            for _ in range(100):
                out = model.run({"image": inputs[k]})
                if any(not np.array_equal(out[name], expected[k][name]) for name in out):
                    mismatches.append(k)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=_TIMEOUT_S)
        assert not any(t.is_alive() for t in threads)
    assert mismatches == []
