"""``lanner enroll`` / ``lanner identify`` on real photos: the astronaut is found again in the group photo."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from lanner import FaceDetector, FaceGallery
from lanner.cli import main
from lanner.cli.detect import demo_image_path
from lanner.face.align import faces_inside


@pytest.fixture(scope="module")
def gallery_file(lanner_cache, tmp_path_factory):
    path = tmp_path_factory.mktemp("gallery") / "people.npz"
    assert main(["enroll", "collins", str(demo_image_path()), "--gallery", str(path)]) == 0
    return path


def test_enroll_writes_a_gallery(gallery_file, capsys, tmp_path):
    gallery = FaceGallery.load(gallery_file)
    assert gallery.names == ("collins",) and len(gallery) == 1
    flipped = tmp_path / "flipped.jpg"
    cv2.imwrite(str(flipped), cv2.imread(str(demo_image_path()))[:, ::-1])
    copy = tmp_path / "people.npz"
    copy.write_bytes(gallery_file.read_bytes())
    assert main(["enroll", "collins", str(flipped), "--gallery", str(copy)]) == 0  # appends
    assert len(FaceGallery.load(copy)) == 2


def test_enroll_checks_where_the_gallery_goes_before_embedding(tmp_path, capsys):
    """An unusable --gallery path was found only at the save, after detecting and embedding every photo."""
    (tmp_path / "file").write_text("x")
    for gallery, match in (
        (tmp_path / "file" / "g.npz", "is a file; expected a folder for --gallery"),
        (tmp_path / "missing" / "g.npz", "no such folder for --gallery"),
    ):
        assert main(["enroll", "collins", str(demo_image_path()), "--gallery", str(gallery)]) == 2
        captured = capsys.readouterr()
        assert match in captured.err and "enrolled" not in captured.out


def test_identify_names_the_enrolled_face_in_a_group(gallery_file, group_photo, tmp_path, capsys):
    photo = tmp_path / "group.jpg"
    cv2.imwrite(str(photo), group_photo)
    out, js = tmp_path / "named.jpg", tmp_path / "named.json"
    assert main(["identify", str(photo), "--gallery", str(gallery_file), "--out", str(out), "--json", str(js)]) == 0
    faces = json.loads(js.read_text())["inputs"][0]["faces"]
    names = [f["name"] for f in faces]
    assert names.count("collins") == 1 and names.count("unknown") == len(faces) - 1 >= 7
    collins = faces[names.index("collins")]
    assert collins["similarity"] > 0.9 and set(collins) >= {"box", "score", "landmarks", "name", "similarity"}
    assert cv2.imread(str(out)).shape == group_photo.shape
    assert "collins (" in capsys.readouterr().out


def test_identify_video(gallery_file, tmp_path):
    frame = cv2.imread(str(demo_image_path()))
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (frame.shape[1], frame.shape[0]))
    for shift in range(3):
        writer.write(np.roll(frame, 4 * shift, axis=1))
    writer.release()
    js = tmp_path / "clip.json"
    assert main(["identify", str(video), "--gallery", str(gallery_file), "--json", str(js), "--no-progress"]) == 0
    frames = json.loads(js.read_text())["inputs"][0]["frames"]
    assert len(frames) == 3 and all([f["name"] for f in fr["faces"]] == ["collins"] for fr in frames)


def test_cli_errors_are_one_line(gallery_file, tmp_path, capsys):
    assert main(["identify", str(tmp_path / "missing.jpg"), "--gallery", str(gallery_file)]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    assert main(["identify", str(demo_image_path()), "--gallery", str(tmp_path / "bad.npz")]) == 2
    assert "not a Lanner face gallery" in capsys.readouterr().err
    blank = tmp_path / "blank.jpg"
    cv2.imwrite(str(blank), np.zeros((64, 64, 3), np.uint8))
    assert main(["enroll", "nobody", str(blank), "--gallery", str(tmp_path / "g.npz")]) == 2
    assert "nothing enrolled" in capsys.readouterr().err and not (tmp_path / "g.npz").exists()


def test_identify_fast_routes_small_faces_to_the_student(gallery_file, tmp_path):
    frame = cv2.imread(str(demo_image_path()))
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), cv2.resize(frame, None, fx=0.2, fy=0.2, interpolation=cv2.INTER_AREA))  # a ~20 px face
    js = tmp_path / "small.json"
    args = ["identify", str(small), "--gallery", str(gallery_file), "--min-face-size", "12", "--json", str(js)]
    assert main([*args, "--fast"]) == 0
    record = json.loads(js.read_text())
    assert "face-student32" in record["recognizer"] and len(record["inputs"][0]["faces"]) >= 1
    assert main(args) == 0
    assert "dlib-resnet-lowres" in json.loads(js.read_text())["recognizer"]  # the default routes: the bridge


def test_identify_and_detect_report_a_face_cut_by_the_edge_without_failing(gallery_file, tmp_path, capsys):
    # The astronaut's face cut by the right edge: MTCNN still finds it, with landmarks outside the
    # image, which the recognizer cannot align. identify names it "unknown" with a null similarity (per frame)
    # or a null quality (best-frame tracks); detect --quality gives a null quality. Nothing fails.
    frame = cv2.imread(str(demo_image_path()))
    with FaceDetector() as detector:
        box = detector.detect(frame).boxes[0]
        cut = np.ascontiguousarray(frame[:, : int(box[2]) - 4])  # the face box cut by 4 px on the right
        found = detector.detect(cut)
    assert len(found) == 1 and not faces_inside(found.landmarks, cut.shape).all()  # the premise
    photo, video = tmp_path / "cut.png", tmp_path / "cut.avi"
    cv2.imwrite(str(photo), cut)
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (cut.shape[1], cut.shape[0]))
    for _ in range(2):
        writer.write(cut)
    writer.release()
    js = tmp_path / "out.json"
    for args in (["--best-frames", "0"], []):
        for path in (photo, video):
            assert (
                main(["identify", str(path), "--gallery", str(gallery_file), "--json", str(js), "--no-progress", *args])
                == 0
            )
            record = json.loads(js.read_text())["inputs"][0]
            faces = record["faces"] if "faces" in record else [f for fr in record["frames"] for f in fr["faces"]]
            edge = [f for f in faces if f["similarity"] is None or f.get("quality", 0.0) is None]
            assert edge and all(f["name"] == "unknown" for f in edge if f["similarity"] is None)
    assert main(["detect", str(photo), "--quality", "--json", str(js)]) == 0
    qualities = [f["quality"] for f in json.loads(js.read_text())["inputs"][0]["faces"]]
    assert None in qualities
    # enrolling needs a whole face: the cut one is no reference
    assert main(["enroll", "collins", str(photo), "--gallery", str(tmp_path / "g.npz")]) == 2
    assert "no whole face found" in capsys.readouterr().out and not (tmp_path / "g.npz").exists()
