"""``lanner detect --quality`` and ``lanner identify`` on a video choosing each track's best-quality frames."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from lanner.cli import main
from lanner.cli.detect import demo_image_path


@pytest.fixture(scope="module")
def gallery_file(lanner_cache, tmp_path_factory):
    path = tmp_path_factory.mktemp("gallery") / "people.npz"
    assert main(["enroll", "collins", str(demo_image_path()), "--gallery", str(path)]) == 0
    return path


def test_detect_quality_adds_one_field(lanner_cache, tmp_path):
    js = tmp_path / "faces.json"
    assert main(["detect", "--demo", "--json", str(js), "--quality"]) == 0
    face = json.loads(js.read_text())["inputs"][0]["faces"][0]
    assert 0.0 <= face["quality"] <= 1.0 and {"box", "score", "landmarks"} <= set(face)
    assert main(["detect", "--demo", "--json", str(js)]) == 0
    assert "quality" not in json.loads(js.read_text())["inputs"][0]["faces"][0]


def test_identify_video_embeds_only_the_best_frames(gallery_file, tmp_path, capsys):
    frame = cv2.imread(str(demo_image_path()))
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (frame.shape[1], frame.shape[0]))
    sigmas = [6.0, 4.0, 0.0, 3.0, 5.0, 2.0]  # the sharp frame (index 2) and the least blurred ones should be picked
    for k, sigma in enumerate(sigmas):
        image = np.roll(frame, 3 * k, axis=1)
        writer.write(cv2.GaussianBlur(image, (0, 0), sigma) if sigma else image)
    writer.release()
    js, out = tmp_path / "clip.json", tmp_path / "named.mp4"
    assert (
        main(
            [
                "identify",
                str(video),
                "--gallery",
                str(gallery_file),
                "--json",
                str(js),
                "--out",
                str(out),
                "--no-progress",
                "--best-frames",
                "2",
            ]
        )
        == 0
    )
    record = json.loads(js.read_text())["inputs"][0]
    frames = record["frames"]
    assert len(frames) == 6 and record["tracks"] == 1 and record["recognizer_calls"] == 2
    assert all([f["name"] for f in fr["faces"]] == ["collins"] for fr in frames)
    qualities = [fr["faces"][0]["quality"] for fr in frames]
    assert int(np.argmax(qualities)) == 2, qualities
    assert "1 tracks, 2 embedded" in capsys.readouterr().out
    assert cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT) == 6
    assert main(["identify", str(video), "--gallery", str(gallery_file), "--best-frames", "-1"]) == 2
    assert "--best-frames should be >= 0, got -1" in capsys.readouterr().err
