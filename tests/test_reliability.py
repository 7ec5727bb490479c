"""Issue 12: no network or stray writes at run time, and the API's edges refuse bad input clearly.

The detector's packages are built once into ``$LANNER_TEST_CACHE`` (else a session temp dir),
as tests/face does; subprocesses get it through ``LANNER_CACHE``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import lanner
from lanner import models
from lanner.models.face_detectors import DEFAULT_FACE_DETECTOR, get_face_detector


@pytest.fixture(scope="module")
def cache(lanner_cache) -> Path:
    """The shared test cache with the default detector's nets (and the teacher's) built for both runtime backends."""
    for backend in ("openvino", "onnxruntime"):
        for name in dict.fromkeys(models.MTCNN_NETS + get_face_detector(DEFAULT_FACE_DETECTOR).nets):
            models.build_package(name, backend, "fp32", quiet=True)
    return lanner_cache


@pytest.fixture(scope="module")
def detector(cache):
    with lanner.FaceDetector(num_threads=1) as det:
        yield det


# --- 12.4: no network, no writes outside the cache and the outputs ------------------------------

# Runs first in the child: records every DNS lookup and connection attempt (and refuses it).
_NETWORK_GUARD = """
import json, os, socket, sys
_attempts = []
def _refuse(kind):
    def refuse(*args, **kwargs):
        _attempts.append([kind, repr(args[:2])])
        raise OSError(f"network refused by the test: {kind}")
    return refuse
socket.getaddrinfo = _refuse("getaddrinfo")
socket.create_connection = _refuse("create_connection")
socket.socket.connect = _refuse("connect")
socket.socket.connect_ex = _refuse("connect_ex")
import atexit
atexit.register(lambda: open(os.environ["NETWORK_LOG"], "w").write(json.dumps(_attempts)))
"""

_RUN = """
import numpy as np, lanner
from lanner.cli import main
with lanner.FaceDetector() as d:
    d.detect(np.full((120, 160, 3), 90, np.uint8))
with lanner.load(lanner.models.package_dir("mtcnn-rnet", "onnxruntime", "fp32")) as m:
    m.run({"image": np.zeros((1, 3, 24, 24), np.float32)})
assert main(["detect", "--demo", "--out", os.environ["OUT_DIR"] + "/demo.jpg",
             "--json", os.environ["OUT_DIR"] + "/demo.json"]) == 0
import importlib.util
if importlib.util.find_spec("onnx"):  # the compile extra: a compile run stays offline too
    from lanner.compile import compile_model
    for backend in ("openvino", "onnxruntime"):
        compile_model(lanner.models.onnx_path("mtcnn-rnet"), target="x86", backend=backend, precision="fp32",
                      out=os.environ["OUT_DIR"] + "/rnet-" + backend)
import time
time.sleep(1.0)  # telemetry senders run in background threads: give them time to try
"""


def _files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_no_network_and_no_writes_in_home(cache, tmp_path):
    """Issue 12.4: OpenVINO's import sent a Google Analytics event and wrote ~/intel/...; ONNX
    Runtime wrote a device id under ~/.cache/Microsoft. A detect run (API and CLI), an ONNX
    Runtime package and a compile run must make no DNS lookup or connection and write nothing in
    HOME."""
    home, out = tmp_path / "home", tmp_path / "out"
    home.mkdir()
    out.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ORT_", "OPENVINO_")) and k not in ("CI", "TF_BUILD", "JENKINS_URL", "XDG_CACHE_HOME")
    }
    env.update(HOME=str(home), LANNER_CACHE=str(cache), OUT_DIR=str(out), NETWORK_LOG=str(tmp_path / "net.json"))
    proc = subprocess.run(
        [sys.executable, "-c", _NETWORK_GUARD + textwrap.dedent(_RUN)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "net.json").read_text()) == []
    assert _files_under(home) == []
    assert {"demo.jpg", "demo.json"} <= set(_files_under(out))
    assert all(f.startswith(("demo.", "rnet-")) for f in _files_under(out))


# --- 12.9: API edges --------------------------------------------------------------------------


def test_face_detector_refuses_absurd_thread_counts_up_front():
    with pytest.raises(ValueError, match="at most 256, got 1000"):
        lanner.FaceDetector(num_threads=1000)
    with pytest.raises(TypeError, match="num_threads should be a positive int or None, got float"):
        lanner.FaceDetector(num_threads=2.0)


def test_detect_batch_refuses_a_single_array(detector):
    image = np.zeros((60, 80, 3), np.uint8)
    with pytest.raises(TypeError, match=r"takes a list of images, got one numpy.ndarray of shape \(60, 80, 3\)"):
        detector.detect_batch(image)
    assert len(detector.detect_batch([image, image])) == 2


def test_pyramid_stays_bounded_at_the_extreme_options():
    """The finest pyramid the options allow on the largest image detect takes: ~1,000 levels, counted at once
    (a 1e-12 step or a 1e-300 px face used to loop for hours or overflow)."""
    from lanner.face.cascade import pyramid_scales
    from lanner.face.detector import MAX_SCALE_FACTOR, MIN_FACE_SIZE_FLOOR

    assert len(pyramid_scales(32768, 32768, MIN_FACE_SIZE_FLOOR, MAX_SCALE_FACTOR)) < 1100
    with pytest.raises(ValueError, match="min_face_size should be >= 1 px"):
        lanner.face.detector.estimate_cascade_memory_mb(100, 100, 1e-300)
    with pytest.raises(ValueError, match=r"scale_factor should be in \(0, 0.99\]"):
        lanner.face.detector.estimate_cascade_memory_mb(100, 100, 20.0, 1 - 1e-12)


def test_memory_guard_refuses_huge_images_and_the_limit_can_be_raised(cache, monkeypatch):
    image = np.zeros((3000, 4000, 3), np.uint8)
    need = lanner.face.detector.estimate_cascade_memory_mb(3000, 4000, 20.0)
    assert 700 < need < 1400  # measured peak: ~1.0 GiB (OpenVINO fp32, 2 threads)
    with lanner.FaceDetector(num_threads=1, max_memory_mb=500) as small:
        with pytest.raises(ValueError, match=r"4000x3000 image .* needs about \d+ MiB .* limit of 500 MiB"):
            small.detect(image)
        assert len(small.detect(np.zeros((200, 200, 3), np.uint8))) == 0  # small images still run
    monkeypatch.setenv("LANNER_MAX_MEMORY_MB", "100")
    with lanner.FaceDetector(num_threads=1) as from_env:
        assert from_env.max_memory_mb == 100
        with pytest.raises(ValueError, match="LANNER_MAX_MEMORY_MB"):
            from_env.detect(np.zeros((1500, 1500, 3), np.uint8))
    monkeypatch.setenv("LANNER_MAX_MEMORY_MB", "lots")
    with pytest.raises(ValueError, match=r"\$LANNER_MAX_MEMORY_MB should be a number of MiB, got 'lots'"):
        lanner.FaceDetector(num_threads=1)
    with pytest.raises(ValueError, match="positive number of MiB"):
        lanner.FaceDetector(num_threads=1, max_memory_mb=-1)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda b, s: lanner.ops.nms(np.float32(3), s, 0.5),
            ValueError,
            r"boxes should have shape \(N, 4\), got a 0-d",
        ),
        (lambda b, s: lanner.ops.nms(b, np.float32(1), 0.5), ValueError, r"scores should have shape \(N,\), got a 0-d"),
        (
            lambda b, s: lanner.ops.nms(b, s, 0.5, max_output=True),
            TypeError,
            "max_output should be an int or None, got bool",
        ),
        (lambda b, s: lanner.ops.nms(b, s, 0.5, max_output=2.0), TypeError, "max_output should be an int or None"),
        (lambda b, s: lanner.ops.nms(b, s, "0.5"), TypeError, "iou_threshold should be a number, got str"),
        (
            lambda b, s: lanner.ops.nms(b, s, 0.5, score_threshold="x"),
            TypeError,
            "score_threshold should be a number or None",
        ),
        (lambda b, s: lanner.ops.nms(b, s, 0.5, mode=1), TypeError, "mode should be a str, got int"),
        (
            lambda b, s: lanner.ops.batched_nms(b, s, [0, 1], None),
            TypeError,
            "iou_threshold should be a number, got NoneType",
        ),
        (lambda b, s: lanner.ops.soft_nms(b, s, sigma="wide"), TypeError, "sigma should be a number, got str"),
    ],
)
def test_nms_wrappers_name_expected_and_actual(call, error, match):
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    with pytest.raises(error, match=match):
        call(boxes, scores)


def test_nms_still_takes_numpy_numbers():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    keep = lanner.ops.nms(boxes, scores, np.float32(0.5), max_output=np.int64(5), score_threshold=np.float64(0.1))
    np.testing.assert_array_equal(keep, [0, 2])


def test_tracker_after_close_says_closed_and_non_arrays_are_type_errors():
    frame = np.zeros((60, 80, 3), np.uint8)
    tracker = lanner.Tracker()
    tracker.init(frame, (10, 10, 8, 8))
    tracker.close()
    with pytest.raises(ValueError, match="the tracker is closed"):
        tracker.update(frame)
    with pytest.raises(TypeError, match="frame must be a numpy.ndarray, got list"):
        lanner.Tracker().init([[0] * 80] * 60, (10, 10, 8, 8))
    multi = lanner.MultiTracker()
    with pytest.raises(TypeError, match="frame must be a numpy.ndarray"):
        multi.init("frame", np.array([[10, 10, 8, 8]]))
    multi.close()
    with pytest.raises(ValueError, match="the tracker is closed"):
        multi.update(frame)
    assert len(multi) == 0


def _copy_package(cache: Path, backend: str, tmp_path: Path) -> Path:
    src = models.package_dir("mtcnn-rnet", backend, "fp32")
    dst = tmp_path / f"rnet-{backend}"
    shutil.copytree(src, dst)
    return dst


def test_onnxruntime_package_with_wrong_output_name_fails_at_load(cache, tmp_path):
    pkg = _copy_package(cache, "onnxruntime", tmp_path)
    manifest = json.loads((pkg / "manifest.json").read_text())
    real = manifest["outputs"][0]["name"]
    manifest["outputs"][0]["name"] = "not_an_output"
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(lanner.PackageError, match=rf"no output named \['not_an_output'\]; it has \[.*'{real}'"):
        lanner.load(pkg)


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_model_run_rejects_non_finite_inputs_on_every_backend(cache, backend, bad):
    """OpenVINO and ONNX Runtime disagreed on NaN inputs: both refuse them now, alike."""
    x = np.zeros((2, 3, 24, 24), np.float32)
    x[1, 2, 3, 4] = bad
    with lanner.load(models.package_dir("mtcnn-rnet", backend, "fp32")) as model:
        with pytest.raises(ValueError, match=r"input 'image': expected finite values, got 1 NaN or infinite value"):
            model.run({"image": x})
        with pytest.raises(ValueError, match="expected finite values"):
            model.run_many([{"image": x[:1]}, {"image": x}])
        assert set(model.run({"image": x[:1]})) == {o.name for o in model.outputs}  # finite rows still run


def test_model_is_closeable_once_and_says_so(cache):
    model = lanner.load(models.package_dir("mtcnn-rnet", "openvino", "fp32"))
    with model:
        pass
    assert model.closed
    model.close()  # idempotent
    with pytest.raises(ValueError, match="model is closed"):
        model.run({"image": np.zeros((1, 3, 24, 24), np.float32)})
    with pytest.raises(ValueError, match="model is closed"):
        with model:
            pass


def test_load_refuses_absurd_or_wrong_typed_thread_counts(cache):
    pkg = models.package_dir("mtcnn-rnet", "openvino", "fp32")
    with pytest.raises(ValueError, match="at most 256, got 1000"):
        lanner.load(pkg, num_threads=1000)
    with pytest.raises(TypeError, match="num_threads should be a positive int or None, got str"):
        lanner.load(pkg, num_threads="2")


def test_large_finite_inputs_are_not_taken_for_infinite(cache):
    """The finiteness check sums the input: a sum that overflows float32 must not refuse finite values."""
    x = np.full((1, 3, 24, 24), 3e38, np.float32)
    with lanner.load(models.package_dir("mtcnn-rnet", "onnxruntime", "fp32")) as model:
        with np.errstate(all="ignore"):
            assert set(model.run({"image": x})) == {o.name for o in model.outputs}
