"""Detection distillation (issue 15): targets invert the cascade, the multi-task loss by hand, a pool
drawn from photos and crops, and a tiny seeded training run through the one loop."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lanner.distill import detection as D  # noqa: E402
from lanner.distill.facemask import AnnotatedPhoto  # noqa: E402
from lanner.distill.training import run_loop  # noqa: E402
from lanner.face import cascade  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_regression_and_landmark_targets_invert_the_cascade():
    crop = np.array([[10.0, 20.0, 58.0, 68.0]], np.float32)
    face = np.array([12.5, 18.0, 55.0, 71.0], np.float32)
    reg = D._regression(crop[0], face)
    np.testing.assert_allclose(cascade._bbreg(crop.copy(), reg[None])[0], face, atol=1e-4)
    points = np.array([[25, 35], [45, 36], [35, 45], [27, 55], [44, 56]], np.float32)
    target = D._landmark_targets(crop[0], points)
    np.testing.assert_allclose(cascade._landmarks(crop, target[None])[0], points, atol=1e-4)


def test_stage_loss_matches_a_hand_computed_case():
    loss = D.DetectionStageLoss(box_weight=0.5, landmark_weight=2.0)
    prob = torch.tensor([[0.2, 0.8], [0.9, 0.1]])
    reg = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    marks = torch.zeros(2, 10)
    face = torch.tensor([1.0, 0.3])
    box = torch.tensor([[0.05, 0.0, 0.0, 0.0], [float("nan")] * 4])
    points = torch.tensor([[0.5] * 10, [float("nan")] * 10])
    terms = loss(prob, reg, marks, face, box, points)
    bce = -(np.log(0.8) + 0.3 * np.log(0.1) + 0.7 * np.log(0.9)) / 2
    assert float(terms["face"]) == pytest.approx(bce, rel=1e-5)
    # smooth-L1 (beta 0.1) on the first row only: 0.5 * 0.05^2 / 0.1 for one of 4 values
    assert float(terms["box"]) == pytest.approx(0.5 * (0.5 * 0.05**2 / 0.1) / 4, rel=1e-5)
    assert float(terms["landmarks"]) == pytest.approx(2.0 * 0.25, rel=1e-5)


def _tiny_inputs(tmp_path):
    from skimage import data as skdata

    photo = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(photo), skdata.astronaut()[:, :, ::-1])
    photos = [AnnotatedPhoto(photo, np.array([[170, 40, 260, 150]], np.float32), ("without_mask",))]
    faces = (skdata.lfw_subset()[:6] * 255 + 0.5).astype(np.uint8)
    crops = np.repeat(np.kron(faces, np.ones((4, 4), np.uint8))[..., None], 3, axis=3)  # 100x100
    landmarks = np.repeat(np.array([[[32, 38], [64, 38], [48, 54], [36, 70], [60, 70]]], np.float32), 6, 0)
    boxes = np.repeat(np.array([[16, 16, 84, 92]], np.float32), 6, 0)
    return photos, (crops, boxes, landmarks)


def _constant_teacher(face: float):
    """A stand-in for the teacher O-Net: the same face probability and landmarks (0.5) for every crop."""
    return lambda c: (np.full(len(c), face, np.float32), np.full((len(c), 10), 0.5, np.float32))


def test_pool_draws_every_kind_with_targets_and_repeats_for_a_seed(tmp_path):
    photos, celeba = _tiny_inputs(tmp_path)
    config = D.DetectionConfig(real_jitters=2, celeba_samples=8, negatives_per_photo=5, seed=3)
    teacher = _constant_teacher(0.25)
    pool = D.make_pool(photos, celeba, config, teacher)
    assert [int((pool.kind == k).sum()) for k in range(7)] == [5, 2, 4, 2, 1, 0, 1]  # 8 celeba: 2, 2, 3, 4, 6, 2, 2, 3
    assert pool.crops24.shape[1:] == (3, 24, 24) and pool.crops48.shape[1:] == (3, 48, 48)
    np.testing.assert_array_equal(pool.face[pool.kind == 1], 1.0)
    np.testing.assert_array_equal(pool.face[pool.kind != 1], 0.25)
    assert np.isnan(pool.landmarks[pool.kind == 0]).all() and not np.isnan(pool.landmarks[pool.kind >= 1]).any()
    np.testing.assert_array_equal(pool.landmarks[pool.kind == 1], 0.5)  # the teacher's points on the real faces
    again = D.make_pool(photos, celeba, config, teacher)
    np.testing.assert_array_equal(pool.crops48, again.crops48)
    assert not np.array_equal(
        pool.crops48,
        D.make_pool(
            photos, celeba, D.DetectionConfig(real_jitters=2, celeba_samples=8, negatives_per_photo=5, seed=4), teacher
        ).crops48,
    )


def _tiny_run(pool, config, out, stop_after=None):
    from lanner.compile.exporters.mtcnn import _build_nets

    torch.manual_seed(config.seed)
    nets = _build_nets()
    model = D.CascadeStages(nets["rnet"](), nets["onet"]())
    task = D.DetectionTask(model, pool, config)
    run_loop(
        task,
        config=config,
        evaluate_every=config.steps,
        checkpoint_every=config.steps,
        out_dir=out,
        stop_after=stop_after,
        workers=0,
        progress=False,
    )
    return task


def test_tiny_seeded_run_learns_and_repeats(tmp_path):
    photos, celeba = _tiny_inputs(tmp_path)
    config = D.DetectionConfig(
        steps=40, batch_size=16, learning_rate=3e-3, real_jitters=4, celeba_samples=8, negatives_per_photo=6, seed=1
    )
    pool = D.make_pool(photos, celeba, config, _constant_teacher(0.05))
    untrained = _tiny_run(pool, config, tmp_path / "untrained", stop_after=0)
    batch = untrained.batches[0]
    with torch.no_grad():
        loss_before = float(sum(untrained.loss_terms(batch).values()))
    task = _tiny_run(pool, config, tmp_path / "a")
    with torch.no_grad():
        loss_after = float(sum(task.loss_terms(batch).values()))
    assert loss_after < 0.7 * loss_before
    again = _tiny_run(pool, config, tmp_path / "b")
    for a, b in zip(task.model.state_dict().values(), again.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_task_refuses_a_pool_without_targets(tmp_path):
    photos, celeba = _tiny_inputs(tmp_path)
    pool = D.make_pool(
        photos,
        None,
        D.DetectionConfig(real_jitters=1, negatives_per_photo=2),
        _constant_teacher(np.nan),
    )
    with pytest.raises(ValueError, match="every face target of the pool should be set, got NaN"):
        D.DetectionTask(D.CascadeStages(torch.nn.Identity(), torch.nn.Identity()), pool, D.DetectionConfig())


def test_negative_boxes_keep_clear_of_annotated_and_unannotated_faces():
    annotated = np.array([[0, 0, 100, 100]], np.float32)
    teacher = np.array([[2, 2, 98, 98], [200, 200, 260, 260]], np.float32)  # the annotated face, and one more
    boxes = np.array(
        [
            [0, 0, 50, 50],  # a quarter of the annotated face: IoU 0.25, a negative (MTCNN's rule)
            [0, 0, 60, 60],  # IoU 0.36 with it: not a negative
            [250, 250, 300, 300],  # touches the unannotated face: never a negative
            [261, 261, 300, 300],  # clear of both
            [101, 0, 150, 50],  # beside the annotated face, overlapping the teacher's box of it by none
        ],
        np.float32,
    )
    np.testing.assert_array_equal(D.negative_boxes(boxes, annotated, teacher), [True, False, False, True, True])
    # without annotations every teacher face is an ignore region
    np.testing.assert_array_equal(
        D.negative_boxes(boxes, np.zeros((0, 4), np.float32), teacher), [False, False, False, True, True]
    )
    assert D.negative_boxes(np.zeros((0, 4), np.float32), annotated, teacher).shape == (0,)


def test_pool_takes_mined_hard_negatives_as_non_faces(tmp_path):
    photos, celeba = _tiny_inputs(tmp_path)
    config = D.DetectionConfig(real_jitters=1, celeba_samples=0, negatives_per_photo=2, seed=3)
    rgb = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)
    mined = [D.HardNegatives("x", rgb, np.array([[10, 10, 40, 40], [50, 20, 110, 80]], np.float32), np.array([1, 2]))]
    pool = D.make_pool(photos, None, config, _constant_teacher(0.25), mined)
    hard = pool.kind == 5
    assert int(hard.sum()) == 2
    np.testing.assert_array_equal(pool.face[hard], 0.0)
    assert np.isnan(pool.box[hard]).all() and np.isnan(pool.landmarks[hard]).all()


def test_clean_photos_never_include_the_parity_or_demo_photos():
    photos = D.clean_photos()
    assert "skimage:coffee" in photos and "skimage:rocket" in photos
    assert not any(k in name for name in photos for k in ("astronaut", "camera", "messi5", "lfw"))
    assert all(im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3 for im in photos.values())
    with pytest.raises(FileNotFoundError, match="sample-data folder"):
        D.clean_photos("/nonexistent-opencv-samples")


def test_compressed_copies_are_seeded_jpeg_decodes_with_the_same_faces():
    rng = np.random.default_rng(0)
    rgb = cv2.GaussianBlur(rng.integers(0, 255, (64, 80, 3), np.uint8), (5, 5), 2)
    faces = np.array([[5, 5, 30, 30]], np.float32)
    copies = D.compressed_copies([("a", rgb, faces), ("b", rgb, faces)], (10, 30), seed=2)
    assert [name.split("#jpeg")[0] for name, _, _ in copies] == ["a", "b"]
    for name, copy, boxes in copies:
        q = int(name.split("#jpeg")[1])
        assert 10 <= q <= 30 and copy.shape == rgb.shape and copy.dtype == np.uint8 and boxes is faces
        ok, encoded = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        np.testing.assert_array_equal(copy, cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1])
        assert not np.array_equal(copy, rgb)
    again = D.compressed_copies([("a", rgb, faces), ("b", rgb, faces)], (10, 30), 2)
    assert [n for n, _, _ in copies] == [n for n, _, _ in again]
    with pytest.raises(ValueError, match="increasing pair within 1-100"):
        D.compressed_copies([("a", rgb, faces)], (30, 10), 0)


def test_celeba_scenes_place_every_face_box_and_repeat_for_a_seed():
    crops = np.random.default_rng(0).integers(0, 255, (20, 144, 144, 3), np.uint8)
    boxes = np.repeat(np.array([[27, 27, 117, 117]], np.float32), 20, 0)
    scenes = D.celeba_scenes(crops, boxes, 2, seed=1)
    assert [name for name, _, _ in scenes] == ["celeba-scene0", "celeba-scene1"]
    _, scene, faces = scenes[0]
    assert scene.shape == (640, 640, 3) and faces.shape == (16, 4)
    side = faces[:, 2] - faces[:, 0]
    assert ((side >= 90 * 60 / 144 - 1e-3) & (side <= 90 + 1e-3)).all()  # crops shrunk to 60-144 px
    np.testing.assert_array_equal(scene, D.celeba_scenes(crops, boxes, 2, seed=1)[0][1])


def test_mining_keeps_only_boxes_clear_of_the_teachers_faces(lanner_cache):
    from skimage import data as skdata

    from lanner import models
    from lanner.face.cascade import CascadeParams, run_cascade

    rgb = np.ascontiguousarray(skdata.astronaut())
    nets = [models.open_net(n, num_threads=1) for n in ("mtcnn-pnet", "mtcnn-rnet", "mtcnn-onet")]
    params = CascadeParams(thresholds=(0.6, 0.3, 0.3))
    survivors = {}
    found = run_cascade(rgb, *nets, params, num_threads=1, survivors=survivors)
    plain = run_cascade(rgb, *nets, params, num_threads=1)
    for a, b in zip(found, plain):
        np.testing.assert_array_equal(a, b)
    rnet = survivors["rnet"]
    assert rnet.shape[1] == 5 and len(rnet) >= len(found[0]) and (rnet[:, 4] > 0.3).all()
    teacher, _, _ = run_cascade(rgb, *nets, CascadeParams(), num_threads=1)
    mined = D.mine_hard_negatives([("astronaut", rgb, np.zeros((0, 4), np.float32))], "mtcnn", (0.3, 0.3), 50, 1)
    assert len(mined) == 1 and len(mined[0].boxes) > 0
    assert set(np.unique(mined[0].stage)) <= {1, 2}
    assert D.negative_boxes(mined[0].boxes, np.zeros((0, 4), np.float32), teacher).all()


def test_mining_with_an_earlier_runs_folder_and_the_union_of_students(lanner_cache, tmp_path):
    """A run's folder (rnet.onnx, onet.onnx) mines like the registry detector with the same nets: here the shipped
    student's weights (the parity test's checkpoint) exported as a run would, behind the same P-Net and settings."""
    from pathlib import Path

    from skimage import data as skdata

    from lanner.compile.exporters.mtcnn import load_torch_nets

    nets = load_torch_nets()
    stages = D.CascadeStages(nets["rnet"], nets["onet"])
    weights = Path(__file__).resolve().parents[1] / "data" / "mtcnn_masked_stages.pt"
    stages.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    D.export_stages(stages, tmp_path / "run")
    images = [("astronaut", np.ascontiguousarray(skdata.astronaut()), np.zeros((0, 4), np.float32))]
    by_name = D.mine_hard_negatives(images, "mtcnn-masked", (0.1, 0.1), 20, 1)
    by_folder = D.mine_hard_negatives(images, tmp_path / "run", (0.1, 0.1), 20, 1)
    assert len(by_name) == len(by_folder) == 1 and len(by_name[0].boxes) > 0
    np.testing.assert_allclose(by_folder[0].boxes, by_name[0].boxes, atol=0.05)
    both = D.mine_hard_negatives(images, ["mtcnn-masked", tmp_path / "run"], (0.1, 0.1), 20, 1)
    np.testing.assert_array_equal(both[0].boxes, np.concatenate([by_name[0].boxes, by_folder[0].boxes]))
    with pytest.raises(ValueError, match="a folder with rnet.onnx and onet.onnx"):
        D.mine_hard_negatives(images, tmp_path / "missing", (0.1, 0.1), 20, 1)
