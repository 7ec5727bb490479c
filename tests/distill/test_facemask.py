"""issue 15's evaluation pieces: the facemask-voc split, VOC AP with ignore regions (against a
hand-computed case), reading VOC annotations, and seeded synthetic masks."""

from __future__ import annotations

import numpy as np
import pytest

from lanner.distill.average_precision import match_detections, voc_average_precision
from lanner.distill.facemask import FACEMASK_CLASSES, facemask_split, read_facemask
from lanner.distill.masks import MASK_STYLES, MaskPlacement, SyntheticMasks, draw_mask


# --- the split ------------------------------------------------------------------------
def test_split_is_the_documented_hash_rule():
    assert [n for n in range(10) if facemask_split(f"maksssksksss{n}.jpg") == "test"] == [3, 5, 7, 8]
    # the stem decides: extension and folder do not move a photo between splits
    assert facemask_split("images/maksssksksss3.png") == facemask_split("maksssksksss3.jpg") == "test"
    assert facemask_split("maksssksksss0.jpg") == "train"


def test_split_holds_at_least_30_percent_of_the_set():
    names = [f"maksssksksss{n}.jpg" for n in range(853)]  # the Kaggle set's names (facemask-voc keeps 617)
    test = sum(facemask_split(n) == "test" for n in names)
    assert 0.30 <= test / len(names) <= 0.33


@pytest.mark.parametrize(
    "name,error,match", [(3, TypeError, "should be a str, got int"), ("", ValueError, "should name a file")]
)
def test_split_rejects_bad_names(name, error, match):
    with pytest.raises(error, match=match):
        facemask_split(name)


def _voc(tmp_path, stem, objects):
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "annotations").mkdir(exist_ok=True)
    (tmp_path / "images" / f"{stem}.jpg").write_bytes(b"")
    body = "".join(
        f"<object><name>{c}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
        f"<ymax>{b[3]}</ymax></bndbox></object>"
        for c, b in objects
    )
    (tmp_path / "annotations" / f"{stem}.xml").write_text(
        f"<annotation><filename>{stem}.jpg</filename>{body}</annotation>"
    )


def test_read_facemask_reads_boxes_classes_and_splits(tmp_path):
    _voc(
        tmp_path,
        "maksssksksss3",
        [("with_mask", (1, 2, 21, 30)), ("mask_weared_incorrect", (40, 2, 60, 30)), ("without_mask", (70, 5, 80, 17))],
    )
    _voc(tmp_path, "maksssksksss0", [("without_mask", (1, 2, 3, 4))])
    test = read_facemask(tmp_path, "test")
    assert [p.image_path.name for p in test] == ["maksssksksss3.jpg"]
    np.testing.assert_array_equal(test[0].boxes, [[1, 2, 21, 30], [40, 2, 60, 30], [70, 5, 80, 17]])
    assert test[0].labels == ("with_mask", "mask_weared_incorrect", "without_mask")
    np.testing.assert_array_equal(test[0].masked, [True, True, False])  # worn incorrectly counts as masked
    assert [p.image_path.name for p in read_facemask(tmp_path, "train")] == ["maksssksksss0.jpg"]


def test_read_facemask_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match=r"split should be one of \('train', 'test'\), got 'val'"):
        read_facemask(tmp_path, "val")
    with pytest.raises(FileNotFoundError, match="is not a facemask-voc folder"):
        read_facemask(tmp_path, "test")
    _voc(tmp_path, "maksssksksss3", [("hat", (1, 2, 3, 4))])
    with pytest.raises(
        ValueError,
        match=f"class should be one of {FACEMASK_CLASSES!r}".replace("(", r"\(").replace(")", r"\)") + ", got 'hat'",
    ):
        read_facemask(tmp_path, "test")


# --- average precision ----------------------------------------------------------------
def test_average_precision_matches_a_hand_computed_case():
    box = lambda x, y: [x, y, x + 10, y + 10]  # noqa: E731
    # photo A: one positive, one ignore region; a hit, a detection of the ignore region, a miss, a duplicate
    truth_a = (np.array([box(0, 0), box(20, 0)]), np.array([True, False]))
    dets_a = (np.array([box(0, 0), box(20, 0), box(50, 50), box(0, 0)]), np.array([0.9, 0.8, 0.7, 0.6]))
    # photo B: two positives, both found (the first at IoU 90/110)
    truth_b = (np.array([box(0, 0), box(40, 40)]), np.array([True, True]))
    dets_b = (np.array([box(1, 0), box(40, 40)]), np.array([0.85, 0.5]))
    tp, counted = match_detections(*dets_a, *truth_a)
    np.testing.assert_array_equal(tp, [True, False, False, False])
    np.testing.assert_array_equal(counted, [True, False, True, True])
    pr = voc_average_precision([dets_a, dets_b], [truth_a, truth_b])
    # counted by score: TP .9, TP .85, FP .7, FP .6, TP .5 over 3 positives
    np.testing.assert_allclose(pr.precision, [1, 1, 2 / 3, 2 / 4, 3 / 5])
    np.testing.assert_allclose(pr.recall, [1 / 3, 2 / 3, 2 / 3, 2 / 3, 1])
    # AP = 1/3 * 1 + 1/3 * 1 + 1/3 * max(3/5) = 13/15
    assert pr.average_precision == pytest.approx(13 / 15, abs=1e-12)
    assert pr.positives == 3


def test_iou_below_threshold_is_a_false_positive():
    truth = (np.array([[0, 0, 10, 10]]), np.array([True]))
    dets = (np.array([[5, 0, 15, 10]]), np.array([0.9]))  # IoU 50/150
    assert voc_average_precision([dets], [truth]).average_precision == 0.0
    assert voc_average_precision([dets], [truth], iou_threshold=0.3).average_precision == 1.0


def test_average_precision_rejects_malformed_input():
    with pytest.raises(ValueError, match=r"boxes should be \(N, 4\) x1, y1, x2, y2, got shape \(2, 3\)"):
        match_detections(np.zeros((2, 3)), np.zeros(2), np.zeros((0, 4)), np.zeros(0, bool))
    with pytest.raises(ValueError, match=r"positive should be \(1,\), got shape \(2,\)"):
        match_detections(np.zeros((0, 4)), np.zeros(0), np.zeros((1, 4)), np.zeros(2, bool))
    with pytest.raises(ValueError, match="same photos, got 1 and 0"):
        voc_average_precision([(np.zeros((0, 4)), np.zeros(0))], [])


# --- synthetic masks ------------------------------------------------------------------
LANDMARKS = np.array([[38.0, 50.0], [66.0, 50.0], [52.0, 66.0], [41.0, 80.0], [63.0, 80.0]])


def _face() -> np.ndarray:
    return np.random.default_rng(0).integers(100, 160, (128, 104, 3), dtype=np.uint8)


def test_masks_repeat_for_a_seed_and_index_and_vary_otherwise():
    masks = SyntheticMasks(seed=3)
    a, b = masks(_face(), LANDMARKS, 7), masks(_face(), LANDMARKS, 7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, masks(_face(), LANDMARKS, 8))
    assert not np.array_equal(a, SyntheticMasks(seed=4)(_face(), LANDMARKS, 7))


@pytest.mark.parametrize("style", MASK_STYLES)
def test_each_style_covers_mouth_and_chin_not_the_eyes(style):
    face = _face()
    placement = MaskPlacement(style, np.array([200, 30, 30], np.uint8), np.zeros(2), 1.0, 0.0)
    out = draw_mask(face, LANDMARKS, placement, np.random.default_rng(0))
    changed = np.any(out != face, axis=2)
    assert changed[78:95, 40:65].mean() > 0.95  # mouth and chin
    assert not changed[44:56, 32:72].any()  # eyes
    assert not np.shares_memory(out, face)


def test_masks_follow_every_face_of_a_photo_and_tiny_faces():
    photo = np.zeros((60, 120, 3), np.uint8)
    tiny = LANDMARKS * 0.12 + [5, 5]  # a face ~12 px wide
    big = LANDMARKS * 0.5 + [50, 0]
    out = SyntheticMasks(seed=0)(photo, np.stack([tiny, big]), 0)
    changed = np.any(out != 0, axis=2)
    assert changed[int(tiny[3, 1]), int(tiny[:, 0].mean())]  # mouth of the tiny face
    assert changed[int(big[3, 1]), int(big[:, 0].mean())]
    assert not changed[:, 20:40].any()  # nothing between the faces


def test_masks_reject_bad_input():
    with pytest.raises(ValueError, match=r"landmarks should be \(5, 2\) or \(N, 5, 2\), got shape \(4, 2\)"):
        SyntheticMasks()(_face(), LANDMARKS[:4], 0)
    with pytest.raises(ValueError, match=r"image should be an \(H, W, 3\) uint8 array, got \(128, 104\) uint8"):
        SyntheticMasks()(_face()[..., 0], LANDMARKS, 0)
    with pytest.raises(ValueError, match=r"styles should be a non-empty subset"):
        SyntheticMasks(styles=("balaclava",))
