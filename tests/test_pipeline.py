"""lanner.FacePipeline, lanner.video and ``lanner watch``.

Association, track lifetimes and identification are checked against a scripted detector (a
test double that returns known boxes) on generated frames, so that they are exact; the real
MTCNN detector runs on a short clip of the bundled astronaut photo moving. Video sources: the
drop-oldest queue with a deterministic slow consumer, a stream that stops, a stream that stalls,
unreadable sources; the CLI: outputs, JSON Lines for live sources, same-file refusal.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

import lanner
from lanner.cli import main as cli_main
from lanner.pipeline import box_iou, match_boxes
from lanner.video import FrameQueue, VideoSource

ASTRONAUT = Path(lanner.__file__).parent / "face" / "data" / "astronaut.jpg"


# ---------------------------------------------------------------------------------------------
# fixtures and test doubles


def astronaut_clip(n: int = 24, size: tuple[int, int] = (320, 240), step: tuple[int, int] = (3, 1)) -> list[np.ndarray]:
    """The bundled astronaut photo at half size sliding over a grey canvas, ``step`` px per frame."""
    photo = cv2.resize(cv2.imread(str(ASTRONAUT)), (256, 256), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(n):
        canvas = np.full((size[1], size[0], 3), 90, np.uint8)
        x, y = 10 + step[0] * i, -40 + step[1] * i
        src = photo[max(0, -y) :, max(0, -x) :]
        h, w = min(src.shape[0], size[1] - max(y, 0)), min(src.shape[1], size[0] - max(x, 0))
        canvas[max(y, 0) : max(y, 0) + h, max(x, 0) : max(x, 0) + w] = src[:h, :w]
        frames.append(canvas)
    return frames


def textured_scene(boxes: list[tuple[int, int, int, int]], size=(320, 240), seed=0) -> np.ndarray:
    """A smooth background with a random high-contrast texture patch in each ``xyxy`` box (trackable)."""
    rng = np.random.default_rng(seed)
    frame = np.full((size[1], size[0], 3), 110, np.uint8)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        patch = np.random.default_rng(100 + k).integers(0, 256, (y1 - y0, x1 - x0, 1), dtype=np.uint8)
        patch = cv2.GaussianBlur(np.repeat(patch, 3, 2), (3, 3), 0)
        visible = frame[y0:y1, x0:x1]  # the part inside the frame
        visible[:] = patch[: visible.shape[0], : visible.shape[1]]
    return cv2.add(frame, rng.integers(0, 3, frame.shape, dtype=np.uint8))


class ScriptedDetector:
    """Test double: returns the boxes scripted for each call (frame order), score 0.99, landmarks at fixed
    fractions of the box."""

    def __init__(self, script: list[list[tuple[float, float, float, float]]]) -> None:
        self.script, self.calls = script, []

    def detect(self, image: np.ndarray) -> lanner.Detections:
        boxes = np.array(self.script[len(self.calls)], np.float32).reshape(-1, 4)
        self.calls.append(image.shape)
        rel = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]], np.float32)
        lm = boxes[:, None, :2] + rel[None] * (boxes[:, None, 2:] - boxes[:, None, :2])
        return lanner.Detections(boxes, np.full(len(boxes), 0.99, np.float32), lm.astype(np.float32))


class ConstantRecognizer:
    """Test double: embeds a face as a unit vector chosen by which half of the frame its box centre is in."""

    def __init__(self) -> None:
        self.faces_embedded: list[np.ndarray] = []

    def embed(self, image: np.ndarray, faces: lanner.Detections) -> np.ndarray:
        self.faces_embedded.append(faces.boxes.copy())
        emb = np.zeros((len(faces), 128), np.float32)
        centre_x = (faces.boxes[:, 0] + faces.boxes[:, 2]) / 2
        emb[np.arange(len(faces)), (centre_x > image.shape[1] / 2).astype(int)] = 1.0
        return emb


class TwoPersonGallery:
    """Test double: dimension 0 is "left", dimension 1 is "right"."""

    def identify(self, embeddings: np.ndarray) -> tuple[list[str], np.ndarray]:
        scores = embeddings[:, :2]
        return [("left", "right")[i] for i in scores.argmax(1)], scores.max(1)


# ---------------------------------------------------------------------------------------------
# association


def test_box_iou_and_hungarian_matching():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    b = np.array([[21, 21, 31, 31], [0, 0, 10, 5], [100, 100, 110, 110]], np.float32)
    iou = box_iou(a, b)
    assert iou[0, 1] == pytest.approx(0.5) and iou[1, 0] == pytest.approx(81 / 119) and iou[:, 2].max() == 0
    assert match_boxes(a, b, 0.3) == [(0, 1), (1, 0)]
    assert match_boxes(a, b, 0.6) == [(1, 0)]
    assert match_boxes(a, np.zeros((0, 4)), 0.3) == []
    # Greedy would give box 0 to its best match (IoU 0.81) and leave box 1 unmatched; the Hungarian
    # assignment maximises the total.
    a2 = np.array([[0, 0, 10, 10], [0, 0, 10, 8]], np.float32)
    b2 = np.array([[0, 0, 10, 9], [0, 0, 10, 7]], np.float32)
    assert sorted(match_boxes(a2, b2, 0.1)) == [(0, 0), (1, 1)]


# ---------------------------------------------------------------------------------------------
# pipeline logic with the scripted detector


def moving_boxes(i: int) -> list[tuple[int, int, int, int]]:
    return [(20 + 2 * i, 40, 60 + 2 * i, 90), (200 - i, 120 + i, 240 - i, 170 + i)]


def test_pipeline_keeps_ids_detects_every_n_and_carries_landmarks():
    n = 20
    frames = [textured_scene(moving_boxes(i)) for i in range(n)]
    script = [moving_boxes(i) for i in range(n)]
    det = ScriptedDetector(script[::5])  # called on frames 0, 5, 10, 15
    with lanner.FacePipeline(det, detect_every=5, num_threads=1) as pipeline:
        for i, frame in enumerate(frames):
            tracks = pipeline.process(frame)
            assert [t.track_id for t in tracks] == [1, 2]
            assert all(t.detected == (i % 5 == 0) for t in tracks)
            truth = np.array(moving_boxes(i), np.float32)
            assert np.diag(box_iou(np.array([t.box for t in tracks]), truth)).min() > 0.7, i
            for t in tracks:
                assert t.landmarks.shape == (5, 2) and not t.landmarks.flags.writeable
                x0, y0, x1, y1 = t.box
                assert t.landmarks[2] == pytest.approx([x0 + 0.5 * (x1 - x0), y0 + 0.6 * (y1 - y0)], abs=1e-3)
                assert (t.psr is None) == t.detected and t.frames == i + 1
        assert pipeline.detections_run == 4 and len(det.calls) == 4
        assert not any(t.lost for t in tracks)


def test_new_faces_start_tracks_and_missing_faces_end_after_max_missed():
    boxes_a, boxes_b = [(20, 40, 60, 90)], [(200, 120, 240, 170)]
    frames = [textured_scene(boxes_a + boxes_b) for _ in range(6)]
    # detections: A only; A and B; A only; A only (B missed twice -> ends); A only
    det = ScriptedDetector([boxes_a, boxes_a + boxes_b, boxes_a, boxes_a, boxes_a, boxes_a])
    with lanner.FacePipeline(det, detect_every=1, max_missed=2, num_threads=1) as pipeline:
        ids = [[t.track_id for t in pipeline.process(f)] for f in frames]
    assert ids == [[1], [1, 2], [1, 2], [1], [1], [1]]


def test_auto_detects_on_low_confidence_and_after_max_interval():
    box = [(100, 80, 150, 140)]
    still = textured_scene(box)
    det = ScriptedDetector([box] * 3 + [[]])  # the 4th detection (face covered) finds nothing
    with lanner.FacePipeline(det, detect_every="auto", max_interval=6, num_threads=1) as pipeline:
        detected = [pipeline.process(still)[0].detected for _ in range(13)]
        # a static, sure target: only the interval triggers the detector
        assert detected == [True] + [False] * 5 + [True] + [False] * 5 + [True]
        # the face is covered: the tracker's confidence drops and the detector runs at once
        covered = still.copy()
        covered[60:160, 80:170] = 110
        tracks = pipeline.process(covered)
        assert pipeline.detections_run == 4 and tracks[0].psr < pipeline.redetect_psr and tracks[0].lost is False


def test_auto_detects_on_scene_change():
    box = [(100, 80, 150, 140)]
    det = ScriptedDetector([box] * 10)
    frame = textured_scene(box)
    with lanner.FacePipeline(det, detect_every="auto", max_interval=50, num_threads=1) as pipeline:
        pipeline.process(frame)
        pipeline.process(frame)
        assert pipeline.detections_run == 1
        brighter = frame.copy()
        brighter[:, 200:] = 250  # a third of the picture, away from the face, changes
        pipeline.process(brighter)
        assert pipeline.detections_run == 2


def test_identity_from_best_faces_and_reidentified_when_a_better_face_arrives():
    # Face A grows (a better face every detection), face B keeps its size.
    def boxes(i):
        return [(20, 40, 60 + 2 * i, 80 + 2 * i), (220, 120, 260, 160)]

    frames = [textured_scene(boxes(i)) for i in range(8)]
    det = ScriptedDetector([boxes(i) for i in range(8)])
    recognizer = ConstantRecognizer()
    with lanner.FacePipeline(
        det, recognizer, TwoPersonGallery(), detect_every=1, identity_faces=2, num_threads=1
    ) as pipeline:
        for f in frames:
            tracks = pipeline.process(f)
    assert [(t.track_id, t.name, t.name_score) for t in tracks] == [(1, "left", 1.0), (2, "right", 1.0)]
    per_call = [len(b) for b in recognizer.faces_embedded]
    # frame 0: both; frame 1: B's second face fills its 2 best; then only A's growing face
    assert per_call == [2, 2, 1, 1, 1, 1, 1, 1]


def test_a_failed_identification_leaves_the_pipeline_working():
    """An identify() that raised (an empty gallery) left new tracks without trackers: every later frame failed with
    "update() called before init" until reset()."""

    class FlakyGallery(TwoPersonGallery):
        calls = 0

        def identify(self, embeddings):
            self.calls += 1
            if self.calls == 1:
                raise ValueError("the gallery is empty: add() people before identify()")
            return super().identify(embeddings)

    box = [(20, 40, 60, 80)]
    frame = textured_scene(box)
    with lanner.FacePipeline(
        ScriptedDetector([box] * 4), ConstantRecognizer(), FlakyGallery(), detect_every=2, num_threads=1
    ) as pipeline:
        with pytest.raises(ValueError, match="the gallery is empty"):
            pipeline.process(frame)
        tracks = pipeline.process(frame)  # followed by its tracker
        assert [t.track_id for t in tracks] == [1] and not tracks[0].detected and tracks[0].name is None
        tracks = pipeline.process(frame)  # detected again, identified now
        assert [(t.track_id, t.name) for t in tracks] == [(1, "left")]


def test_frame_size_change_rescales_tracks_and_detects():
    small = [(40, 40, 80, 90)]
    big = [(50, 50, 100, 112)]  # the same face at 1.25x
    det = ScriptedDetector([small, big, big])
    with lanner.FacePipeline(det, detect_every=10, num_threads=1) as pipeline:
        pipeline.process(textured_scene(small))
        pipeline.process(textured_scene(small))
        tracks = pipeline.process(textured_scene(big, size=(400, 300)))
        assert len(det.calls) == 2 and det.calls[1] == (300, 400, 3)
        assert [t.track_id for t in tracks] == [1] and tracks[0].box == pytest.approx(big[0])
        tracks = pipeline.process(textured_scene(big, size=(400, 300)))
        assert [t.track_id for t in tracks] == [1] and not tracks[0].detected


def test_colour_to_gray_switch_restarts_the_trackers():
    box = [(40, 40, 80, 90)]
    det = ScriptedDetector([box, box])
    frame = textured_scene(box)
    with lanner.FacePipeline(det, detect_every=10, num_threads=1) as pipeline:
        pipeline.process(frame)
        tracks = pipeline.process(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        assert len(det.calls) == 2 and det.calls[1] == (240, 320)
        assert [t.track_id for t in tracks] == [1] and tracks[0].detected


def test_gray_frames_and_a_face_leaving_the_frame():
    boxes = [[(260 + 20 * i, 100, 300 + 20 * i, 150)] if 260 + 20 * i < 320 else [] for i in range(8)]
    det = ScriptedDetector(boxes)
    with lanner.FacePipeline(det, detect_every=1, max_missed=1, num_threads=1) as pipeline:
        counts = [len(pipeline.process(cv2.cvtColor(textured_scene(b), cv2.COLOR_BGR2GRAY))) for b in boxes]
    assert counts == [1, 1, 1, 0, 0, 0, 0, 0]


@pytest.mark.parametrize(
    "frame, error, match",
    [
        ([[0, 1], [2, 3]], TypeError, "numpy.ndarray, got list"),
        (np.zeros((8, 8, 3), np.float32), ValueError, "dtype uint8, got float32"),
        (np.zeros((8, 8, 4), np.uint8), ValueError, r"got shape \(8, 8, 4\)"),
        (np.zeros((0, 8, 3), np.uint8), ValueError, "non-empty"),
    ],
)
def test_bad_frames_are_refused(frame, error, match):
    with lanner.FacePipeline(ScriptedDetector([[]]), num_threads=1) as pipeline, pytest.raises(error, match=match):
        pipeline.process(frame)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"detect_every": 0}, ValueError, "detect_every should be >= 1, got 0"),
        ({"detect_every": "sometimes"}, ValueError, "an int >= 1 or 'auto', got 'sometimes'"),
        ({"detect_every": 2.5}, TypeError, "detect_every should be an int, got float"),
        ({"match_iou": 1.5}, ValueError, r"match_iou should be in \[1e-06, 1.0\], got 1.5"),
        ({"scene_change": float("nan")}, ValueError, "scene_change"),
        ({"recognizer": ConstantRecognizer()}, ValueError, "both a recognizer and a gallery"),
        ({"recognizer": object(), "gallery": TwoPersonGallery()}, TypeError, "embed"),
        ({"recognizer": ConstantRecognizer(), "gallery": object()}, TypeError, "identify"),
        ({"detector": "mtcnn"}, TypeError, "detect"),
        ({"tracker_options": {"padding": 2}}, TypeError, "TrackerOptions, got dict"),
        ({"num_threads": 10**6}, ValueError, "num_threads should be a positive int or None, at most 256, got 1000000"),
        ({"num_threads": None}, TypeError, "num_threads should be a positive int, got NoneType"),
    ],
)
def test_bad_options_are_refused(kwargs, error, match):
    kwargs.setdefault("detector", ScriptedDetector([]))
    with pytest.raises(error, match=match):
        lanner.FacePipeline(**kwargs)


def test_a_detector_that_returns_no_detections_is_named():
    class NoneDetector:
        def detect(self, frame):
            return None

    with lanner.FacePipeline(NoneDetector(), num_threads=1) as pipeline:
        with pytest.raises(TypeError, match="detector.detect should return Detections .* got NoneType"):
            pipeline.process(np.zeros((32, 32, 3), np.uint8))  # was AttributeError: 'NoneType' ... 'boxes'


def test_closed_pipeline_refuses_frames():
    pipeline = lanner.FacePipeline(ScriptedDetector([[]]), num_threads=1)
    pipeline.close()
    pipeline.close()
    with pytest.raises(ValueError, match="closed"):
        pipeline.process(np.zeros((32, 32, 3), np.uint8))


# ---------------------------------------------------------------------------------------------
# pipeline with the real detector


def test_real_detector_follows_the_astronaut(detector):
    frames = astronaut_clip(24)
    reference = [detector.detect(f) for f in frames]
    assert all(len(r) == 1 for r in reference)
    with lanner.FacePipeline(detector, detect_every=6, num_threads=2) as pipeline:
        outputs = [pipeline.process(f) for f in frames]
        assert pipeline.detections_run == 4
    assert all([t.track_id for t in out] == [1] and not out[0].lost for out in outputs)
    ious = [box_iou(np.array([out[0].box]), ref.boxes)[0, 0] for out, ref in zip(outputs, reference)]
    assert min(ious) > 0.6, np.round(ious, 2)
    # landmarks follow the face between detections: within a few pixels of the detector's (which
    # itself jitters by a few pixels from frame to frame on this ~60 px face)
    err = [np.abs(out[0].landmarks - ref.landmarks[0]).max() for out, ref in zip(outputs, reference)]
    assert max(err) < 8, np.round(err, 1)


# ---------------------------------------------------------------------------------------------
# video sources


class FakeCapture:
    """Test double of cv2.VideoCapture: ``n`` numbered frames, then a failed read (the stream
    stops); or, with ``hang``, a read that blocks until ``release_hang`` is set (a stalled stream)."""

    def __init__(self, n: int, hang: bool = False) -> None:
        self.n, self.hang, self.i = n, hang, 0
        self.exhausted, self.release_hang = threading.Event(), threading.Event()
        self.released = False

    def read(self):
        if self.i >= self.n:
            if self.hang:
                self.release_hang.wait(10)
            self.exhausted.set()
            return False, None
        frame = np.full((4, 6, 3), self.i, np.uint8)
        self.i += 1
        return True, frame

    def get(self, prop):
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self):
        self.released = True


def test_frame_queue_drops_the_oldest():
    q = FrameQueue(3)
    for i in range(10):
        q.put(np.array([i]))
    assert q.dropped == 7 and q.pushed == 10 and len(q) == 3
    q.close()
    assert [int(q.get()[0]) for _ in range(3)] == [7, 8, 9]
    assert q.get() is None
    assert FrameQueue(1).get(timeout=0.01) is None
    with pytest.raises(ValueError, match="maxsize should be >= 1, got 0"):
        FrameQueue(0)


def test_live_source_drops_oldest_for_a_slow_consumer_and_reports_a_stopped_stream():
    capture = FakeCapture(20)
    source = VideoSource.from_capture(capture, name="fake", live=True, queue_size=4)
    assert source.fps == 30.0 and source.frame_count is None
    first = source.read()  # read at open
    assert first[0, 0, 0] == 0
    assert capture.exhausted.wait(5)  # the slow consumer: does nothing until the stream has ended
    rest = [int(f[0, 0, 0]) for f in source]
    assert rest == [16, 17, 18, 19]  # the newest frames; 1..15 were dropped
    assert source.dropped == 15 and source.frames_read == 5
    assert "stopped" in source.stop_reason
    source.close()
    assert capture.released


def test_file_source_reads_every_frame_in_order(tmp_path):
    capture = FakeCapture(7)
    with VideoSource.from_capture(capture, name="file", live=False) as source:
        assert [int(f[0, 0, 0]) for f in source] == list(range(7))
        assert source.dropped == 0 and source.stop_reason is None


def test_stalled_stream_ends_with_a_message():
    capture = FakeCapture(2, hang=True)
    source = VideoSource.from_capture(capture, name="cam", live=True, stall_timeout=1.0)
    assert len(list(source)) == 2
    assert "stalled: no frame for 1 s" in source.stop_reason
    capture.release_hang.set()
    source.close()


def test_unreadable_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such video file"):
        VideoSource(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="is a folder; expected a video file"):  # said "no such video file"
        VideoSource(tmp_path)
    bogus = tmp_path / "notes.avi"
    bogus.write_text("not a video")
    with pytest.raises(ValueError, match="notes.avi"):
        VideoSource(bogus)
    with pytest.raises(TypeError, match="got float"):
        VideoSource(1.5)
    with pytest.raises(ValueError, match="no readable frame"):
        VideoSource.from_capture(FakeCapture(0), name="empty", live=True)
    with pytest.raises(TypeError, match="read"):
        VideoSource.from_capture(object(), name="x", live=False)
    with pytest.raises(ValueError, match="queue_size should be >= 1, got 0"):
        VideoSource(tmp_path / "missing.mp4", queue_size=0)
    with pytest.raises(ValueError, match=r"stall_timeout should be in \[0.001, 2e\+06\] s, got -1"):
        VideoSource.from_capture(FakeCapture(3), name="x", live=True, stall_timeout=-1)
    for timeout in (0.0004, 1e10):  # FFmpeg read 0 ms as "no timeout" (a hang); 1e13 ms was an OpenCV overload error
        with pytest.raises(ValueError, match="stall_timeout should be in"):
            VideoSource("http://127.0.0.1:9/x", stall_timeout=timeout)
    for camera in (10**10, "10000000000", -1, "-1"):  # cv2.error: integer won't fit into a C int
        with pytest.raises(ValueError, match=r"camera index should be in \[0, 2147483647\]"):
            VideoSource(camera)
    with pytest.raises(ValueError, match="source is empty"):  # was ". is a folder"
        VideoSource("")
    with pytest.raises(FileNotFoundError, match="no such video file: ²"):  # int("²") failed: isdigit() takes it
        VideoSource("²")


# ---------------------------------------------------------------------------------------------
# lanner watch


def write_clip(path: Path, frames: list[np.ndarray]) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (frames[0].shape[1], frames[0].shape[0]))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def test_cli_watch_file_writes_video_and_json(lanner_cache, tmp_path, capsys):
    clip = write_clip(tmp_path / "clip.avi", astronaut_clip(16))
    out, js = tmp_path / "o" / "tracks.mp4", tmp_path / "o" / "tracks.json"
    assert cli_main(["watch", str(clip), "--out", str(out), "--json", str(js), "--detect-every", "4"]) == 0
    record = json.loads(js.read_text())
    assert record["live"] is False and len(record["frames"]) == 16
    assert {t["id"] for f in record["frames"] for t in f["tracks"]} == {1}
    assert sum(t["detected"] for f in record["frames"] for t in f["tracks"]) == 4
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 16
    cap.release()
    assert sorted(p.name for p in out.parent.iterdir()) == ["tracks.json", "tracks.mp4"]  # no partial files left
    captured = capsys.readouterr()
    assert "16 frames" in captured.out and "fps" in captured.err


def test_cli_watch_outputs_of_two_runs_never_share_a_temporary_file(tmp_path):
    """Two runs writing one --out wrote the same fixed '.NAME.partial.mp4': the first to finish renamed the other's
    half-written file into place (a damaged video) and the other failed at its rename."""
    from lanner.cli.watch import _AtomicVideo

    out = tmp_path / "o" / "race.mp4"
    first, second = _AtomicVideo(out, 25.0), _AtomicVideo(out, 25.0)
    frame = np.zeros((32, 48, 3), np.uint8)
    for _ in range(3):
        first.write(frame)
    second.write(frame + 255)
    assert second.close() == out  # the short run finishes first
    assert first.close() == out  # the long one still has its own file to move
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()
    assert [p.name for p in out.parent.iterdir()] == ["race.mp4"]
    unused = _AtomicVideo(tmp_path / "o" / "none.mp4", 25.0)
    assert unused.close() is None and [p.name for p in out.parent.iterdir()] == ["race.mp4"]


def test_cli_watch_fails_before_the_first_frame_where_the_output_cannot_go(tmp_path, capsys):
    clip = write_clip(tmp_path / "clip.avi", astronaut_clip(2))
    (tmp_path / "file").write_text("x")
    assert cli_main(["watch", str(clip), "--out", str(tmp_path / "file" / "o.mp4"), "--no-progress"]) == 2
    file = tmp_path / "file"
    assert f"the folder of {file / 'o.mp4'}: {file} is a file, not a folder" in capsys.readouterr().err


def test_cli_watch_leaves_no_output_when_a_file_fails_part_way(lanner_cache, tmp_path, capsys, monkeypatch):
    """A failure mid-file moved the half-written video and JSON into place under the final names."""
    clip = write_clip(tmp_path / "clip.avi", astronaut_clip(6))
    real = lanner.FacePipeline.process
    calls = []

    def failing(self, frame):
        calls.append(1)
        if len(calls) == 4:
            raise ValueError("injected failure on frame 4")
        return real(self, frame)

    monkeypatch.setattr(lanner.FacePipeline, "process", failing)
    out, js = tmp_path / "o" / "v.mp4", tmp_path / "o" / "v.json"
    assert cli_main(["watch", str(clip), "--out", str(out), "--json", str(js), "--no-progress"]) == 2
    assert "injected failure on frame 4" in capsys.readouterr().err
    assert list((tmp_path / "o").iterdir()) == []


def test_cli_watch_refuses_to_overwrite_its_input(tmp_path, capsys):
    clip = write_clip(tmp_path / "clip.avi", astronaut_clip(2))
    before = clip.read_bytes()
    assert cli_main(["watch", str(clip), "--out", str(clip)]) == 2
    assert "is the input video" in capsys.readouterr().err
    link = tmp_path / "link.avi"
    link.symlink_to(clip)
    assert cli_main(["watch", str(clip), "--json", str(link)]) == 2
    assert "is the input video" in capsys.readouterr().err
    assert clip.read_bytes() == before


def test_cli_watch_bad_arguments(tmp_path, capsys):
    assert cli_main(["watch", str(tmp_path / "missing.mp4"), "--detect-every", "auto"]) == 2
    assert "no such video file" in capsys.readouterr().err
    assert cli_main(["watch", "x.mp4", "--out", str(tmp_path / "o.txt")]) == 2
    assert "--out should be a video file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["watch", "x.mp4", "--detect-every", "0"])
    assert "expected an int >= 1 or 'auto', got '0'" in capsys.readouterr().err
    assert cli_main(["watch", "x.mp4", "--gallery", "g.npz"]) == 2
    err = capsys.readouterr().err
    assert "--gallery needs" in err or "no such gallery" in err
    assert list(tmp_path.iterdir()) == []


def test_cli_watch_live_stream_writes_json_lines_and_keeps_them_when_it_stops(
    lanner_cache, tmp_path, monkeypatch, capsys
):
    frames = astronaut_clip(12)

    class ClipCapture(FakeCapture):
        def read(self):
            ok, _ = super().read()
            return (True, frames[self.i - 1].copy()) if ok else (False, None)

    def fake_stream(source):
        assert source == "rtsp://camera.test/stream"
        return VideoSource.from_capture(ClipCapture(len(frames)), name=source, live=True, queue_size=64)

    monkeypatch.setattr(lanner.video, "VideoSource", fake_stream)
    out, js = tmp_path / "live.avi", tmp_path / "live.jsonl"
    rc = cli_main(["watch", "rtsp://camera.test/stream", "--out", str(out), "--json", str(js), "--no-progress"])
    assert rc == 1
    assert "stream rtsp://camera.test/stream stopped (no more frames) after 12 frames; kept" in capsys.readouterr().err
    lines = [json.loads(line) for line in js.read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(12)) and all(r["dropped"] == 0 for r in lines)
    assert all([t["id"] for t in r["tracks"]] == [1] for r in lines)
    assert out.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["live.avi", "live.jsonl"]


def test_pipeline_owns_the_detector_it_creates(lanner_cache):
    frame = astronaut_clip(1)[0]
    with lanner.FacePipeline(num_threads=1) as pipeline:
        assert [t.track_id for t in pipeline.process(frame)] == [1]
    with pytest.raises(ValueError, match="closed"):
        pipeline.detector.detect(frame)


def test_cli_watch_names_the_track_with_the_real_recognizer(lanner_cache, tmp_path, capsys):
    # lanner enroll (the real FaceRecognizer and FaceGallery) on the bundled photo, then lanner watch on
    # a clip of the same photo moving: the one track ends up named after the enrolled person, its best
    # faces chosen by the recognizer's quality model.
    gallery = tmp_path / "people.npz"
    assert cli_main(["enroll", "astronaut", str(ASTRONAUT), "--gallery", str(gallery)]) == 0
    clip = write_clip(tmp_path / "clip.avi", astronaut_clip(12))
    js = tmp_path / "tracks.json"
    assert cli_main(["watch", str(clip), "--gallery", str(gallery), "--json", str(js), "--detect-every", "4"]) == 0
    tracks = [t for f in json.loads(js.read_text())["frames"] for t in f["tracks"]]
    assert {t["id"] for t in tracks} == {1}
    # The clip starts with the face cut by the top of the frame (too poor to name: "unknown"); as better
    # faces arrive the track is identified again and named, its similarity rising.
    assert {t["name"] for t in tracks} <= {"unknown", "astronaut"} and tracks[-1]["name"] == "astronaut"
    assert tracks[-1]["name_score"] > tracks[0]["name_score"]
    capsys.readouterr()


def test_pipeline_ranks_faces_by_the_recognizer_quality_when_it_has_one():
    class QualityRecognizer(ConstantRecognizer):
        def quality(self, image, faces):
            return np.linspace(0.9, 0.1, len(faces), dtype=np.float32)  # the first face is the best

    det = ScriptedDetector([[(10, 10, 40, 40), (100, 100, 180, 180)]] * 2)
    with lanner.FacePipeline(det, QualityRecognizer(), TwoPersonGallery(), detect_every=1, num_threads=1) as pipe:
        pipe.process(np.full((240, 320, 3), 90, np.uint8))
        qualities = sorted(q for t in pipe._tracks for q, _, _ in t.best_faces)
    assert qualities == pytest.approx([0.1, 0.9])  # quality from the model, not the (larger) box size


def test_a_face_cut_by_the_frame_edge_is_tracked_but_never_embedded(lanner_cache):
    # The real recognizer refuses a face with a landmark outside the image; the pipeline must skip it
    # (and keep the track's name) instead of failing on the frame: faces enter and leave videos at the edges.
    frame = np.full((240, 320, 3), 90, np.uint8)
    whole, cut = (100, 60, 180, 150), (280, 60, 360, 150)  # the second face's right eye is past x = 319.5
    det = ScriptedDetector([[whole, cut], [whole, cut]])
    with lanner.FaceRecognizer(num_threads=1) as recognizer:
        gallery = lanner.FaceGallery()
        gallery.add("grey", recognizer.embed(frame, det.detect(frame).landmarks[:1]))
        det.calls.clear()
        with lanner.FacePipeline(det, recognizer, gallery, detect_every=1, num_threads=1) as pipe:
            for _ in range(2):
                tracks = pipe.process(frame)
    assert len(tracks) == 2
    by_x = sorted(tracks, key=lambda t: t.box[0])
    assert by_x[0].name is not None and by_x[1].name is None  # the cut face was never embedded
