"""Identification metrics by hand, and the CLI's handling of a bad data folder."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from lanner.distill.evaluate import gallery_split, identification_metrics


def test_rank1_and_tar_by_hand():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0]])
    labels = np.array(["a", "b"])
    # probe 0 is a and closest to a; probe 1 is b but closest to a; probe 2 is b, closest to b
    probes = np.array([[0.9, 0.1], [0.8, 0.6], [0.1, 0.9]])
    result = identification_metrics(gallery, labels, probes, np.array(["a", "b", "b"]))
    assert result.rank1 == pytest.approx(2 / 3)
    # cosines: genuine .994, .6, .994; impostor .110, .8, .110. FAR 0.1 accepts no impostor: threshold .8,
    # two genuine pairs pass; FAR 0.34 accepts one (the .8): threshold .110, all three pass.
    result = identification_metrics(gallery, labels, probes, np.array(["a", "b", "b"]), fars=(0.1, 0.34))
    assert result.tar_at_far == pytest.approx({0.1: 2 / 3, 0.34: 1.0})


def test_metrics_refuse_mismatched_input():
    with pytest.raises(ValueError, match=r"expected \(G, D\) gallery and \(P, D\) probes, got \(2, 2\) and \(1, 3\)"):
        identification_metrics(np.eye(2), np.array([0, 1]), np.ones((1, 3)), np.array([0]))
    with pytest.raises(ValueError, match="every probe label should be in the gallery"):
        identification_metrics(np.eye(2), np.array([0, 1]), np.ones((1, 2)), np.array([5]))


def test_gallery_split_takes_the_first_photo_of_each_identity():
    files = np.array(["b/2.jpg", "a/9.jpg", "b/1.jpg", "a/3.jpg", "c/1.jpg"])
    identities = np.array(["b", "a", "b", "a", "c"])
    gallery, probes = gallery_split(files, identities)
    assert files[gallery].tolist() == ["b/1.jpg", "a/3.jpg", "c/1.jpg"]
    assert sorted(files[probes].tolist()) == ["a/9.jpg", "b/2.jpg"]


def test_cli_names_the_missing_data_folder(tmp_path):
    pytest.importorskip("torch")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lanner.cli",
            "distill",
            "face-embedding",
            "--data",
            str(tmp_path / "nowhere"),
            "--out",
            str(tmp_path / "out"),
            "--cache",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "expected the celeba-faces folder (with faces.csv)" in proc.stderr


@pytest.mark.parametrize(
    "command, option, value, match",
    [
        ("face-bridge", "--steps", "0", "bridge config: steps should be an int >= 1, got 0"),
        ("face-embedding", "--out", "FILE", "is a file; expected a folder"),
    ],
)
def test_cli_refuses_bad_runs_before_any_work(tmp_path, capsys, command, option, value, match):
    """--steps 0 loaded the data and reported a missing checkpoint; an --out that is a file said 'File exists'."""
    pytest.importorskip("torch")
    from lanner.cli import main

    (tmp_path / "FILE").write_text("x")
    options = {"--data": str(tmp_path), "--out": str(tmp_path / "out"), "--cache": str(tmp_path / "cache")}
    options[option] = str(tmp_path / value) if value == "FILE" else value
    assert main(["distill", command, *[v for kv in options.items() for v in kv]]) == 2
    assert match in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE"]


def test_distill_without_torch_names_the_extra():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "try:\n    import lanner.distill\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "pip install 'lanner[torch]' (the 'torch' extra)" in out
