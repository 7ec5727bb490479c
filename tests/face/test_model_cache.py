"""The model cache shared by processes: built once under a file lock, never seen half built;
corrupt packages listed, rebuilt by `lanner models build`, and named in the load error."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lanner import models
from lanner.manifest import PackageError

BUILD_PNET = "from lanner import models; print(models.build_package('mtcnn-pnet', 'openvino', 'fp32'))"


@pytest.mark.slow
def test_concurrent_processes_build_once_on_a_cold_cache(tmp_path):
    env = {**os.environ, "LANNER_CACHE": str(tmp_path / "cache")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", BUILD_PNET], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outs]
    assert len({out.strip() for out, _ in outs}) == 1  # one package folder
    compiled = sum(err.count("compiling mtcnn-pnet") for _, err in outs)
    assert compiled == 1, [err for _, err in outs]
    package = outs[0][0].strip()
    leftovers = [p.name for p in (tmp_path / "cache").rglob(".*") if not p.name.endswith(".lock")]
    assert not leftovers  # no staging folder left behind
    from lanner.manifest import Manifest

    Manifest.read(package).verify(package)


def _corrupt(package) -> None:
    target = package / "model.bin"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))


def _cli(*args: str, cache) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lanner.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "LANNER_CACHE": str(cache)},
        timeout=600,
    )


@pytest.mark.slow
def test_corrupt_package_is_listed_refused_with_the_repair_command_and_rebuilt(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("LANNER_CACHE", str(cache))
    for net in models.MTCNN_NETS:
        models.build_package(net, "openvino", "fp32", quiet=True)
    onet = models.package_dir("mtcnn-onet", "openvino", "fp32")
    _corrupt(onet)
    assert models.package_status("mtcnn-onet", "openvino", "fp32").startswith("corrupt: checksum mismatch")

    listed = _cli("models", "list", cache=cache)
    assert listed.returncode == 0, listed.stderr
    assert "mtcnn-onet: mtcnn/onet.onnx" in listed.stdout and "corrupt: checksum mismatch" in listed.stdout
    assert "lanner models build" in listed.stdout

    with pytest.raises(PackageError, match=r"corrupt.*Rebuild it with `lanner models build --backend openvino"):
        models.open_net("mtcnn-onet", "openvino", "fp32")

    built = _cli("models", "build", "--backend", "openvino", "--precision", "fp32", cache=cache)
    assert built.returncode == 0, built.stderr
    assert "mtcnn-onet: corrupt" in built.stdout and "compiling mtcnn-onet" in built.stderr
    assert "compiling mtcnn-pnet" not in built.stderr  # intact packages are kept
    assert models.package_status("mtcnn-onet", "openvino", "fp32") == "built"
    models.open_net("mtcnn-onet", "openvino", "fp32").close()
