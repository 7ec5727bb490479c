import subprocess
import sys

import pytest

import lanner


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
