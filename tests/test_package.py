import importlib.util
import subprocess
import sys

import pytest

import lanner
from lanner import names
from lanner.models.face_detectors import DEFAULT_FACE_DETECTOR, get_face_detector

import facenet_reference
from import_blocker import run_without

COMPILE_TIME = ("onnx", "torch", "tvm", "nncf")


def test_version_and_all():
    assert lanner.__version__ == "0.1.0"
    assert set(lanner.__all__) <= set(dir(lanner))


@pytest.mark.native
def test_has_cuda_is_bool():
    assert isinstance(lanner.has_cuda(), bool)


def test_runtime_does_not_import_torch():
    code = "import sys, lanner, lanner.ops; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_info_runs():
    out = subprocess.run([sys.executable, "-m", "lanner.cli", "info"], check=True, capture_output=True, text=True)
    assert "native ops" in out.stdout
    for dist in names.DISTRIBUTIONS:
        assert f"  {dist}: " in out.stdout


@pytest.mark.slow
def test_face_detector_builds_and_runs_without_compile_time_packages(tmp_path):
    """The runtime install needs none of onnx, torch, TVM, NNCF: a cold cache is built with
    OpenVINO reading the shipped ONNX, and detection runs."""
    code = (
        "import sys, numpy as np, lanner\n"
        "with lanner.FaceDetector(num_threads=2) as d:\n"
        "    faces = d.detect(np.zeros((120, 160, 3), np.uint8))\n"
        f"leaked = sorted(m for m in sys.modules if m.split('.')[0] in {COMPILE_TIME!r})\n"
        "assert not leaked, leaked\n"
        "print('faces', len(faces))\n"
    )
    done = run_without(COMPILE_TIME, code, env={"LANNER_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    assert "faces 0" in done.stdout
    onet = get_face_detector(DEFAULT_FACE_DETECTOR).nets[2]  # the default detector's O-Net
    assert f"compiling {onet} for" in done.stderr  # really built from a cold cache
    assert any((tmp_path / "cache" / "packages").rglob(names.MANIFEST_FILENAME))


def test_the_blocker_blocks():
    done = run_without(("onnx",), "import onnx")
    assert done.returncode != 0 and "blocked by the test" in done.stderr


def test_ops_reference_and_exporter_are_not_runtime_modules():
    assert importlib.util.find_spec("lanner.ops_reference") is None
    assert importlib.util.find_spec("lanner.models.mtcnn_export") is None
    assert importlib.util.find_spec("lanner.compile.exporters.mtcnn") is not None


def test_reference_standins_do_not_leak():
    assert str(facenet_reference.STANDINS) not in sys.path
    with facenet_reference.standins():
        import torchvision

        assert torchvision.__version__.endswith("lanner-standin")
    assert "torchvision" not in sys.modules and str(facenet_reference.STANDINS) not in sys.path
