"""The recognition benchmark's protocol pieces: metrics, probe degradation, gallery split."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

# The benchmark script, loaded as a module of its own (nothing put on sys.path for other tests).
_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "recognition" / "bench_recognition.py"
_SPEC = importlib.util.spec_from_file_location("bench_recognition", _SCRIPT)
bench = sys.modules["bench_recognition"] = importlib.util.module_from_spec(_SPEC)  # dataclasses look it up
_SPEC.loader.exec_module(bench)


def test_identification_metrics_by_hand():
    gallery = np.array(["a", "b", "c"])
    probes = np.array(["a", "b", "c", "a"])
    scores = np.array(
        [
            [0.9, 0.1, 0.2],  # a: right
            [0.3, 0.2, 0.1],  # b: wrong (a wins)
            [0.0, 0.1, 0.8],  # c: right
            [0.5, 0.4, 0.45],
        ]
    )  # a: right
    r = bench.identification(scores, gallery, probes)
    assert r["rank1"] == pytest.approx(0.75) and r["probes"] == 4
    # impostors, descending: 0.45 0.4 0.3 0.2 0.1 0.1 0.1 0.0; FAR 1e-2 of 8 -> k = 0, threshold 0.45:
    # genuine scores 0.9 0.2 0.8 0.5 -> 3 of 4 exceed it
    assert r["tar@far=0.01"] == pytest.approx(0.75)


def test_shrink_makes_the_face_the_asked_width():
    image = np.zeros((144, 144, 3), np.uint8)
    landmarks = np.array([[50, 60], [90, 60], [70, 80], [55, 100], [85, 100]], np.float32)
    small, lms = bench.shrink(image, landmarks, box_width=72.0, width=16)
    assert small.shape == (32, 32, 3)
    np.testing.assert_allclose(lms, (landmarks + 0.5) * (32 / 144) - 0.5, atol=1e-5)
    same, _ = bench.shrink(image, landmarks, box_width=10.0, width=16)  # never upsamples
    assert same.shape == image.shape


def test_gallery_split_takes_the_first_photo_of_each_identity():
    faces = bench.FaceSet(
        [None] * 5,
        np.zeros((5, 5, 2), np.float32),
        np.ones(5),
        np.array(["b", "a", "b", "a", "a"]),
        np.array(["b/2", "a/3", "b/1", "a/1", "a/2"]),
    )
    gallery, probes = bench.gallery_split(faces)
    assert sorted(faces.files[gallery]) == ["a/1", "b/1"]
    assert sorted(faces.files[probes]) == ["a/2", "a/3", "b/2"]


def test_split_is_issue_14s():
    assert bench.is_test_identity("7399") == (int(__import__("hashlib").sha1(b"7399").hexdigest()[:8], 16) % 5 == 0)


def test_student_sources_read_chip_size_and_centring(tmp_path):
    onnx = tmp_path / "bridge.onnx"
    onnx.write_bytes(b"not read here")
    assert bench.student_sources([f"{onnx}:150:centred", f"{onnx}:16"]) == [
        (onnx, 150, True, None),
        (onnx, 16, False, None),
    ]
    registered = bench.student_sources(["dlib-resnet-lowres"])  # measured as shipped, under its registry name
    assert [(chip, centred, label) for _, chip, centred, label in registered] == [
        (150, True, "dlib-resnet-lowres (registry)")
    ]
    for bad in (f"{onnx}", f"{onnx}:x", f"{tmp_path / 'missing.onnx'}:16", f"{onnx}:16:centered"):
        with pytest.raises(ValueError, match=r"PATH.onnx:CHIP_SIZE\[:centred\]"):
            bench.student_sources([bad])
