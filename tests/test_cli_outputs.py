"""Issue 12.2 / 12.7: CLI outputs are checked before any work, never destroy an input, never
overwrite each other within a run, and are written atomically; a failed input in a batch does
not lose what was done."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lanner import models
from lanner.cli import media
from lanner.cli.detect import demo_image_path
from lanner.models.face_detectors import DEFAULT_FACE_DETECTOR, get_face_detector

cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def cache_env(lanner_cache) -> dict[str, str]:
    """The environment of CLI subprocesses: the default detector's packages built once."""
    for name in get_face_detector(DEFAULT_FACE_DETECTOR).nets:
        models.build_package(name, quiet=True)
    return dict(os.environ, LANNER_CACHE=str(lanner_cache))


def lanner_cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lanner.cli", *map(str, args)], capture_output=True, text=True, env=env, timeout=600
    )


def make_video(path: Path, frames: int = 30, size=(160, 120)) -> Path:
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    for k in range(frames):
        frame = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8)
        frame[40:60, 50 + k : 70 + k] = 220  # a bright square moving right
        writer.write(frame)
    writer.release()
    return path


def frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    n = 0
    while capture.read()[0]:
        n += 1
    capture.release()
    return n


# --- 12.2: an output that is an input ------------------------------------------------------------


def test_track_refuses_to_write_over_its_input(tmp_path):
    """`lanner track clip.mp4 --out clip.mp4` truncated the 30-frame input to 2 frames and exited 0."""
    video = make_video(tmp_path / "clip.avi")
    before = video.read_bytes()
    proc = lanner_cli("track", video, "--box", "50,40,20,20", "--out", video)
    assert proc.returncode == 2
    assert "is the input file" in proc.stderr and "Traceback" not in proc.stderr
    assert video.read_bytes() == before and frame_count(video) == 30
    # The same file under another name (a symlink) is refused too.
    link = tmp_path / "link.avi"
    link.symlink_to(video)
    proc = lanner_cli("track", video, "--box", "50,40,20,20", "--json", tmp_path / "t.json", "--out", link)
    assert proc.returncode == 2
    assert video.read_bytes() == before and not (tmp_path / "t.json").exists()


def test_detect_refuses_to_write_over_an_input(tmp_path, cache_env):
    image = tmp_path / "photo.jpg"
    image.write_bytes(demo_image_path().read_bytes())
    before = image.read_bytes()
    for out in (["--out", image], ["--json", image]):
        proc = lanner_cli("detect", image, *out, env=cache_env)
        assert proc.returncode == 2 and "is the input file" in proc.stderr, proc.stderr
    # Several inputs into their own folder: an output name that is an input is skipped, not written over.
    named_like_output = tmp_path / "photo_faces.jpg"
    named_like_output.write_bytes(before)
    proc = lanner_cli("detect", image, named_like_output, "--out", tmp_path, env=cache_env)
    assert proc.returncode == 0, proc.stderr
    assert image.read_bytes() == before and named_like_output.read_bytes() == before
    assert (tmp_path / "photo_faces_2.jpg").is_file() and (tmp_path / "photo_faces_faces.jpg").is_file()


# --- 12.7: outputs checked before any work ------------------------------------------------------


@pytest.mark.parametrize(
    "option, make, match",
    [
        ("--json", lambda d: (d / "folder").mkdir() or d / "folder", "is an existing folder; expected a json file"),
        ("--json", lambda d: d / "faces.txt", r"unsupported json extension '.txt'; supported: .json"),
        ("--out", lambda d: d / "faces.xyz", r"unsupported image extension '.xyz'; supported: .jpg .jpeg .png"),
        ("--out", lambda d: (d / "afile").write_text("x") and d / "afile" / "faces.jpg", "afile is a file, not"),
        ("--json", lambda d: (d / "afile").write_text("x") and d / "afile" / "s" / "f.json", "is a file, not a folder"),
    ],
)
def test_detect_bad_output_paths_are_clear_errors_before_any_work(tmp_path, option, make, match):
    proc = lanner_cli("detect", "--demo", option, make(tmp_path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "face(s)" not in proc.stdout
    assert re.search(match, proc.stderr), proc.stderr


def test_detect_into_an_existing_folder_with_an_image_name(tmp_path, cache_env):
    folder = tmp_path / "x.jpg"
    folder.mkdir()
    proc = lanner_cli("detect", "--demo", "--out", folder, env=cache_env)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in folder.iterdir()] == ["astronaut_faces.jpg"]


def test_detect_creates_missing_parents_and_never_overwrites_within_a_run(tmp_path, cache_env):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "face.jpg").write_bytes(demo_image_path().read_bytes())
    gray = cv2.cvtColor(cv2.imread(str(demo_image_path())), cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(b / "face.jpg"), gray)
    out, js = tmp_path / "new" / "out", tmp_path / "new" / "json" / "faces.json"
    proc = lanner_cli("detect", a / "face.jpg", b / "face.jpg", "--out", out, "--json", js, env=cache_env)
    assert proc.returncode == 0, proc.stderr
    first, second = cv2.imread(str(out / "face_faces.jpg")), cv2.imread(str(out / "face_faces_2.jpg"))
    assert first is not None and second is not None and first.shape == second.shape
    assert np.abs(first.astype(int) - second).mean() > 1  # the colour photo's and the gray one's: both kept
    assert [r["path"] for r in json.loads(js.read_text())["inputs"]] == [str(a / "face.jpg"), str(b / "face.jpg")]
    assert not list(tmp_path.rglob(".*partial*"))  # no temporary files left behind


def test_one_unreadable_image_keeps_the_rest_and_exits_non_zero(tmp_path, cache_env):
    good = tmp_path / "good.jpg"
    good.write_bytes(demo_image_path().read_bytes())
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not a jpeg")
    js = tmp_path / "faces.json"
    proc = lanner_cli("detect", good, bad, good, "--json", js, "--out", tmp_path / "out", env=cache_env)
    assert proc.returncode == 1
    assert f"{bad}: cannot read {bad} as an image" in proc.stderr and "1 of 3 input(s) failed" in proc.stderr
    data = json.loads(js.read_text())
    assert [r["path"] for r in data["inputs"]] == [str(good), str(good)]
    assert len(data["inputs"][0]["faces"]) == 1
    assert data["failed"] == [{"path": str(bad), "error": f"cannot read {bad} as an image"}]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good_faces.jpg", "good_faces_2.jpg"]


def test_truncated_jpeg_is_reported(tmp_path, cache_env):
    data = demo_image_path().read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 2 // 3])
    js = tmp_path / "cut.json"
    proc = lanner_cli("detect", cut, "--json", js, env=cache_env)
    assert proc.returncode == 0, proc.stderr
    assert f"warning: {cut}: truncated JPEG" in proc.stderr
    assert json.loads(js.read_text())["inputs"][0]["warnings"][0].startswith("truncated JPEG")


def test_track_checks_json_up_front_and_creates_its_folder(tmp_path):
    video = make_video(tmp_path / "clip.avi")
    (tmp_path / "afile").write_text("x")
    proc = lanner_cli("track", video, "--box", "50,40,20,20", "--json", tmp_path / "afile" / "t.json")
    assert proc.returncode == 2 and "is a file, not a folder" in proc.stderr
    assert "frames" not in proc.stderr + proc.stdout  # refused before the video was read
    js = tmp_path / "newdir" / "t.json"
    proc = lanner_cli(
        "track", video, "--box", "50,40,20,20", "--json", js, "--out", tmp_path / "o" / "t.avi", "--no-progress"
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(js.read_text())["frames"]) == 30
    assert frame_count(tmp_path / "o" / "t.avi") == 30


@pytest.mark.parametrize("value", ["-5", "x"])
def test_track_refuses_negative_max_frames(tmp_path, value):
    proc = lanner_cli(
        "track", make_video(tmp_path / "clip.avi", frames=3), "--box", "50,40,20,20", "--max-frames", value
    )
    assert proc.returncode == 2 and "expected an integer >= 0" in proc.stderr


def test_track_max_frames_and_video_extension(tmp_path):
    video = make_video(tmp_path / "clip.avi")
    js = tmp_path / "t.json"
    assert lanner_cli("track", video, "--box", "50,40,20,20", "--json", js, "--max-frames", "7").returncode == 0
    assert len(json.loads(js.read_text())["frames"]) == 7
    proc = lanner_cli("track", video, "--box", "50,40,20,20", "--out", tmp_path / "t.gif")
    assert proc.returncode == 2 and "unsupported video extension '.gif'; supported: .mp4 .avi" in proc.stderr


# --- atomic writes -------------------------------------------------------------------------------


def test_atomic_path_leaves_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with media.atomic_path(target) as temp:
            temp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    media.write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # the usual permissions, not mkstemp's private 0600


def test_failed_video_leaves_no_output(tmp_path):
    video = make_video(tmp_path / "clip.avi", frames=5)
    out = tmp_path / "o.avi"

    def step(index, frame):
        if index == 3:
            raise ValueError("the model failed on frame 3")
        return frame

    with pytest.raises(ValueError, match="frame 3"):
        media.process_video(video, step, out=out, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi"]


_SLOW_COMMAND = """
import sys, tempfile, time
import lanner.cli.info as info

def slow(args):
    with tempfile.TemporaryDirectory(prefix="work-", dir=sys.argv[1]) as folder:
        print(folder, flush=True)
        time.sleep(60)

info.run = slow  # lanner info's command, made slow and given a temporary folder
from lanner.cli import main

sys.exit(main(["info"]))
"""


@pytest.mark.parametrize("sig, code, message", [(signal.SIGTERM, 143, ""), (signal.SIGINT, 130, "interrupted")])
def test_stopping_a_command_cleans_up_its_temporary_folders(tmp_path, sig, code, message):
    # kill / timeout / a service manager (SIGTERM) and Ctrl-C (SIGINT) end a command through Python's
    # unwinding, so its temporary folders go with it, and Ctrl-C prints one line instead of a traceback.
    # A command started in the background by a non-interactive shell inherits SIGINT *ignored* (and Python
    # then keeps it ignored): give the child the terminal's default, as a user's Ctrl-C meets it.
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_COMMAND, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    folder = proc.stdout.readline().strip()
    assert folder and os.path.isdir(folder)
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:  # never leave the child behind, whatever failed
            proc.kill()
            proc.communicate()
    assert proc.returncode == code and not os.path.exists(folder)
    assert message in err and "Traceback" not in err
