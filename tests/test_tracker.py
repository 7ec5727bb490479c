"""lanner.Tracker / MultiTracker and the native tracker building blocks.

NumPy references (the oracles) for the features, the PSR and the KCF response;
golden behaviour on a generated sequence; multi == N singles; bad input; fuzz; soak.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import numpy as np
import pytest

import lanner
from lanner import _C

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# ---------------------------------------------------------------------------
# NumPy reference implementations


def features_ref(patch: np.ndarray, cell: int) -> np.ndarray:
    """HOG (9 unsigned bins, linear orientation split, 3x3 RMS-energy normalisation,
    clip 0.5) + gray mean + 2 opponent-colour means, as documented in
    csrc/tracking/tracking.h. `patch` is (rows, cols) gray or (3, rows, cols)."""
    planes = patch.astype(np.float64)
    if planes.ndim == 2:
        planes = np.stack([planes, np.zeros_like(planes), np.zeros_like(planes)])
    g = planes[0]
    rows, cols = g.shape
    gh, gw = (rows - 2) // cell, (cols - 2) // cell
    ys, xs = slice(1, gh * cell + 1), slice(1, gw * cell + 1)
    dx = g[ys, 2 : gw * cell + 2] - g[ys, 0 : gw * cell]
    dy = g[2 : gh * cell + 2, xs] - g[0 : gh * cell, xs]
    mag = np.hypot(dx, dy)
    ang = np.mod(np.arctan2(dy, dx), np.pi)
    ang[ang >= np.pi] = 0.0
    pos = ang * 9 / np.pi - 0.5
    b0 = np.floor(pos)
    frac = pos - b0
    b0 = (b0.astype(int) + 9) % 9
    b1 = (b0 + 1) % 9
    cy, cx = np.indices(mag.shape)
    ci = (cy // cell) * gw + cx // cell
    hist = np.zeros((9, gh * gw))
    np.add.at(hist, (b0.ravel(), ci.ravel()), (mag * (1 - frac)).ravel())
    np.add.at(hist, (b1.ravel(), ci.ravel()), (mag * frac).ravel())
    mean = np.zeros(gh * gw)
    np.add.at(mean, ci.ravel(), g[ys, xs].ravel())
    hist = hist.reshape(9, gh, gw)
    energy = (hist**2).sum(0)
    pad = np.pad(energy, 1)
    cnt = np.pad(np.ones_like(energy), 1)
    s = sum(pad[1 + a : 1 + a + gh, 1 + b : 1 + b + gw] for a in (-1, 0, 1) for b in (-1, 0, 1))
    n = sum(cnt[1 + a : 1 + a + gh, 1 + b : 1 + b + gw] for a in (-1, 0, 1) for b in (-1, 0, 1))
    inv = 1 / np.sqrt(s / n + (8.0 * cell * cell) ** 2)
    hog = np.minimum(hist * inv, 0.5)
    gray_ch = mean.reshape(1, gh, gw) / (cell * cell) / 255 - 0.5
    colour = planes[1:, ys, xs].reshape(2, gh, cell, gw, cell).mean(axis=(2, 4))
    return np.concatenate([hog, gray_ch, colour]).astype(np.float32)


def psr_ref(r: np.ndarray, exclude: int) -> float:
    h, w = r.shape
    py, px = np.unravel_index(np.argmax(r), r.shape)
    dy = np.abs(np.arange(h) - py)
    dy = np.minimum(dy, h - dy)
    dx = np.abs(np.arange(w) - px)
    dx = np.minimum(dx, w - dx)
    mask = ~((dy[:, None] <= exclude) & (dx[None, :] <= exclude))
    side = r[mask].astype(np.float64)
    return float((r[py, px] - side.mean()) / (side.std() + 1e-6))


def kcf_response_ref(z: np.ndarray, x: np.ndarray, alpha: np.ndarray, kernel: str, sigma: float) -> np.ndarray:
    c, h, w = z.shape
    zf = np.fft.fft2(z.astype(np.float64))
    xf = np.fft.fft2(x.astype(np.float64))
    if kernel == "gaussian":
        xy = np.real(np.fft.ifft2((zf * np.conj(xf)).sum(0)))
        d = np.maximum(
            0, ((z.astype(np.float64) ** 2).sum() + (x.astype(np.float64) ** 2).sum() - 2 * xy) / (h * w * c)
        )
        kf = np.fft.fft2(np.exp(-d / sigma**2))
    else:
        kf = (zf * np.conj(xf)).sum(0) / (h * w * c)
    return np.real(np.fft.ifft2(np.fft.fft2(alpha.astype(np.float64)) * kf))


# ---------------------------------------------------------------------------
# A small generated sequence: a textured patch translating over smooth clutter.


def make_sequence(
    seed: int, size: int, frames: int = 60, shape=(160, 200), color: bool = True, occlude=None, period: int = 100
):
    """Return (frames, gt boxes (x, y, w, h)): a Lissajous path of `period` frames.
    `occlude=(start, stop)` hides the target in those frames."""
    rng = np.random.default_rng(seed)
    h, w = shape
    bg = rng.normal(110, 25, (h // 8 + 2, w // 8 + 2))
    bg = np.kron(bg, np.ones((8, 8)))[:h, :w]
    bg = (bg + rng.normal(0, 4, (h, w))).clip(0, 255)
    tw, th = size, max(4, int(round(size * 0.75)))
    tex = rng.integers(0, 256, ((th + 1) // 2, (tw + 1) // 2)).astype(np.float64)
    tex = np.kron(tex, np.ones((2, 2)))[:th, :tw]
    out, gt = [], []
    for k in range(frames):
        cx = w / 2 + 0.3 * w * np.sin(2 * np.pi * k / period)
        cy = h / 2 + 0.25 * h * np.sin(4 * np.pi * k / period)
        x0, y0 = int(round(cx - tw / 2)), int(round(cy - th / 2))
        img = bg.copy()
        if occlude is None or not (occlude[0] <= k < occlude[1]):
            img[y0 : y0 + th, x0 : x0 + tw] = tex
        img = (img + rng.normal(0, 2, img.shape)).clip(0, 255).astype(np.uint8)
        if color:
            img = np.dstack([img, (img * 0.9).astype(np.uint8), img])
        out.append(img)
        gt.append((x0, y0, tw, th))
    return out, np.array(gt, np.float64)


def centre_error(box, gt) -> float:
    return float(np.hypot(box[0] + box[2] / 2 - gt[0] - gt[2] / 2, box[1] + box[3] / 2 - gt[1] - gt[3] / 2))


# ---------------------------------------------------------------------------
# Building blocks vs the oracle


@pytest.mark.native
@pytest.mark.parametrize("cell", [1, 2, 4])
@pytest.mark.parametrize("shape", [(18, 18), (34, 50), (51, 27)])
@pytest.mark.parametrize("colour", [False, True])
def test_features_match_numpy_reference(cell, shape, colour):
    rng = np.random.default_rng(cell * 100 + shape[0])
    gray = rng.uniform(0, 255, shape).astype(np.float32)
    gray[: shape[0] // 3] = 100.0  # a flat area (normalisation floor) and exact zero gradients
    patch = np.stack([gray, *rng.uniform(-1, 1, (2, *shape)).astype(np.float32)]) if colour else gray
    got = _C.tracker_features(patch, cell)
    want = features_ref(patch, cell)
    assert got.shape == want.shape == (12, (shape[0] - 2) // cell, (shape[1] - 2) // cell)
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-4)


@pytest.mark.native
@pytest.mark.parametrize("exclude", [0, 1, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_psr_matches_numpy_reference(exclude, seed):
    rng = np.random.default_rng(seed)
    r = rng.normal(0, 0.1, (24, 30)).astype(np.float32)
    r[0, 29] = 1.0  # peak on the wrap corner: the exclusion zone is cyclic
    assert _C.tracker_psr(r, exclude) == pytest.approx(psr_ref(r, exclude), rel=1e-4)


@pytest.mark.native
@pytest.mark.parametrize("kernel", ["gaussian", "linear"])
@pytest.mark.parametrize("shape", [(10, 16, 16), (3, 20, 13)])
def test_kcf_response_matches_numpy_fft(kernel, shape):
    rng = np.random.default_rng(7)
    z = rng.normal(0, 0.2, shape).astype(np.float32)
    x = rng.normal(0, 0.2, shape).astype(np.float32)
    alpha = rng.normal(0, 1, shape[1:]).astype(np.float32)
    got = _C.tracker_kcf_response(z, x, alpha, kernel, 0.5)
    want = kcf_response_ref(z, x, alpha, kernel, 0.5)
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max() + 1e-6)


@pytest.mark.native
def test_building_blocks_reject_bad_input():
    with pytest.raises(ValueError, match="dtype float32"):
        _C.tracker_features(np.zeros((10, 10)), 2)
    with pytest.raises(ValueError, match="planes must be 3"):
        _C.tracker_features(np.zeros((2, 10, 10), np.float32), 2)
    with pytest.raises(ValueError, match=r"at least \(cell \+ 2\)"):
        _C.tracker_features(np.zeros((3, 10), np.float32), 2)
    with pytest.raises(ValueError, match="cell must be in"):
        _C.tracker_features(np.zeros((10, 10), np.float32), 0)
    with pytest.raises(ValueError, match="2 dimensions"):
        _C.tracker_psr(np.zeros(5, np.float32), 1)
    z = np.zeros((2, 8, 8), np.float32)
    with pytest.raises(ValueError, match="same shape"):
        _C.tracker_kcf_response(z, np.zeros((2, 8, 6), np.float32), np.zeros((8, 8), np.float32), "linear", 0.5)
    with pytest.raises(ValueError, match="kernel must be"):
        _C.tracker_kcf_response(z, z, np.zeros((8, 8), np.float32), "poly", 0.5)


# ---------------------------------------------------------------------------
# Golden behaviour


@pytest.mark.native
@pytest.mark.parametrize("size", [8, 14, 30, 60])
@pytest.mark.parametrize("color", [True, False])
def test_tracks_translating_patch(size, color):
    frames, gt = make_sequence(
        seed=size, size=size, frames=100, color=color, shape=(160, 200) if size < 40 else (300, 360)
    )
    tracker = lanner.Tracker()
    tracker.init(frames[0], tuple(gt[0]))
    errors = []
    for f, g in zip(frames[1:], gt[1:]):
        r = tracker.update(f)
        assert isinstance(r, lanner.TrackResult)
        assert not r.lost
        errors.append(centre_error(r.box, g))
    assert max(errors) < max(3.0, 0.25 * size), errors
    assert np.mean(errors) < max(1.5, 0.1 * size)


@pytest.mark.native
def test_full_occlusion_lost_then_recovered():
    frames, gt = make_sequence(seed=3, size=16, frames=80, occlude=(30, 42))
    tracker = lanner.Tracker()
    tracker.init(frames[0], tuple(gt[0]))
    results = [tracker.update(f) for f in frames[1:]]
    lost = np.array([r.lost for r in results])
    recovered = [i + 1 for i, r in enumerate(results) if r.recovered]
    assert not lost[:28].any()
    assert lost[30:41].any(), "the target is hidden for 12 frames: it must be reported lost"
    assert recovered and 42 <= recovered[0] <= 60, recovered
    assert not lost[-5:].any()
    assert centre_error(results[-1].box, gt[-1]) < 4


@pytest.mark.native
def test_recovery_needs_a_strong_peak():
    """recover_peak_ratio gates re-acquisition on the peak's strength: at 2 (twice the
    target's usual peak, never reached) the hidden-then-visible target stays lost."""
    frames, gt = make_sequence(seed=3, size=16, frames=80, occlude=(30, 42))
    tracker = lanner.Tracker(recover_peak_ratio=2.0)
    tracker.init(frames[0], tuple(gt[0]))
    results = [tracker.update(f) for f in frames[1:]]
    assert any(r.lost for r in results[29:41])
    assert not any(r.recovered for r in results), "a recovery passed a peak gate it cannot pass"
    assert all(r.lost for r in results[41:])


@pytest.mark.native
def test_wider_redetection_finds_a_target_that_moved_while_hidden():
    """Hidden for 10 frames while moving ~6 px/frame, the target reappears ~45 px from
    the coasted prediction and keeps moving away: the 8 neighbour windows do not find it
    again, the rings of redetect_radius=2.4 (searched 8 windows per frame) do."""
    frames, gt = make_sequence(seed=5, size=16, frames=90, occlude=(40, 50))

    def first_recovery(**options):
        tracker = lanner.Tracker(**options)
        tracker.init(frames[0], tuple(gt[0]))
        results = [tracker.update(f) for f in frames[1:]]
        assert any(r.lost for r in results[39:49])
        recovered = [i + 1 for i, r in enumerate(results) if r.recovered]
        return (recovered[0] if recovered else None), results

    near, _ = first_recovery()
    wide, results = first_recovery(redetect_radius=2.4)
    assert wide is not None and 50 <= wide <= 80, wide
    assert near is None or near > wide, (near, wide)
    assert centre_error(results[wide - 1].box, gt[wide]) < 3
    assert centre_error(results[-1].box, gt[-1]) < 3


@pytest.mark.native
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("targets", [1, 6])  # 1: each target converts its windows; 6: the frame once
def test_multitracker_equals_single_trackers(threads, targets):
    frames, gt = make_sequence(seed=11, size=20, frames=25)
    rng = np.random.default_rng(0)
    boxes = np.array(
        [gt[0]]
        + [
            (rng.uniform(0, 150), rng.uniform(0, 110), rng.uniform(8, 40), rng.uniform(8, 40))
            for _ in range(targets - 1)
        ]
    )
    multi = lanner.MultiTracker(num_threads=threads)
    multi.init(frames[0], boxes)
    singles = [lanner.Tracker() for _ in boxes]
    for t, b in zip(singles, boxes):
        t.init(frames[0], tuple(b))
    for f in frames[1:]:
        m = multi.update(f)
        assert m.boxes.shape == (targets, 4) and m.boxes.dtype == np.float32
        assert m.scores.shape == (targets,) and m.lost.dtype == np.bool_
        for i, t in enumerate(singles):
            s = t.update(f)
            np.testing.assert_array_equal(m.boxes[i], np.float32(s.box))
            assert m.scores[i] == np.float32(s.score)
            assert m.lost[i] == s.lost and m[i].recovered == s.recovered


@pytest.mark.native
@pytest.mark.parametrize("threads", [1, 3])
def test_multitracker_batched_detection_matches_per_target(threads):
    """The batched detection step (what device='cuda' runs on the GPU), here with the CPU
    kcf_response as its backend: targets of several grid sizes, one of them hidden and
    re-detected on its own path, agree with per-target tracking to float rounding."""
    frames, gt = make_sequence(seed=11, size=20, frames=60, occlude=(30, 40))
    rng = np.random.default_rng(0)
    boxes = np.array(
        [gt[0]] + [(rng.uniform(0, 150), rng.uniform(0, 110), rng.uniform(8, 40), rng.uniform(8, 40)) for _ in range(7)]
    )
    params = lanner.TrackerOptions(num_threads=threads).to_params()
    per_target = _C.MultiCorrelationTracker(params, "cpu")
    batched = _C.testing.batched_cpu_multi_tracker(params)  # a test hook, not a product backend
    per_target.init(frames[0], boxes)
    batched.init(frames[0], boxes)
    lost_seen = False
    for f in frames[1:]:
        a, b = per_target.update(f), batched.update(f)
        np.testing.assert_allclose(b[0], a[0], atol=1e-2)
        np.testing.assert_allclose(b[1], a[1], rtol=1e-3, atol=1e-3)
        np.testing.assert_array_equal(b[2], a[2])
        np.testing.assert_array_equal(b[3], a[3])
        lost_seen |= bool(a[2][0])
    assert lost_seen, "target 0 is hidden for 10 frames: the lost path must have been taken"


def test_multitracker_device_is_validated():
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        lanner.MultiTracker(device="gpu")
    with pytest.raises(ValueError, match="backend must be"):
        _C.MultiCorrelationTracker(lanner.TrackerOptions().to_params(), "gpu")
    with pytest.raises(ValueError, match="backend must be 'cpu' or 'cuda'"):  # the test hook is not a backend
        _C.MultiCorrelationTracker(lanner.TrackerOptions().to_params(), "cpu-batch")
    if not (_C.built_with_cufft and lanner.has_cuda()):
        with pytest.raises(RuntimeError, match="device='cuda' needs"):
            lanner.MultiTracker(device="cuda")


@pytest.mark.native
def test_result_types_and_context_manager():
    frames, gt = make_sequence(seed=1, size=12, frames=3)
    with lanner.Tracker(lanner.TrackerOptions(num_scales=1, kernel="linear")) as t:
        t.init(frames[0], tuple(gt[0]))
        r = t.update(frames[1])
    with pytest.raises(AttributeError):
        r.score = 1.0  # frozen
    assert len(r.box) == 4 and all(isinstance(v, float) for v in r.box)
    with pytest.raises(ValueError, match="closed"):
        t.init(frames[0], tuple(gt[0]))


# ---------------------------------------------------------------------------
# Bad input


@pytest.fixture
def frame():
    return np.zeros((60, 80, 3), np.uint8)


@pytest.mark.native
@pytest.mark.parametrize(
    "box, match",
    [
        ((10, 10, 0, 5), "width and height must be >= 1 px"),
        ((10, 10, 5, -1), "width and height must be >= 1 px"),
        ((10, 10, 5, 1e-300), "width and height must be >= 1 px"),
        ((100, 10, 5, 5), "fully outside"),
        ((-20, -20, 10, 10), "fully outside"),
        ((1, 2, 3), "got 3 values"),
        ((), "got 0 values"),
        ((1, 2, float("nan"), 4), "finite"),
        ("abcd", "4 numbers"),
    ],
)
def test_bad_boxes(frame, box, match):
    with pytest.raises(ValueError, match=match):
        lanner.Tracker().init(frame, box)


@pytest.mark.native
@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((60, 80, 3), np.float32), "dtype uint8"),
        (np.zeros((60, 80, 4), np.uint8), r"HxWx3"),
        (np.zeros((2, 60, 80, 3), np.uint8), r"HxWx3"),
        (np.zeros((0, 80), np.uint8), "empty"),
        ([[1, 2], [3, 4]], "numpy.ndarray"),
    ],
)
def test_bad_frames(frame, bad, match):
    error = ValueError if isinstance(bad, np.ndarray) else TypeError  # a non-array is a TypeError, as in NumPy
    t = lanner.Tracker()
    with pytest.raises(error, match=match):
        t.init(bad, (1, 1, 5, 5))
    t.init(frame, (10, 10, 8, 8))
    with pytest.raises(error, match=match):
        t.update(bad)


@pytest.mark.native
def test_update_before_init_and_size_change(frame):
    with pytest.raises(ValueError, match="before init"):
        lanner.Tracker().update(frame)
    with pytest.raises(ValueError, match="before init"):
        lanner.MultiTracker().update(frame)
    t = lanner.Tracker()
    t.init(frame, (10, 10, 8, 8))
    with pytest.raises(ValueError, match="frame size changed from 80x60"):
        t.update(np.zeros((61, 80, 3), np.uint8))
    t.update(frame[:, :, 0].copy())  # gray after BGR of the same size is fine
    m = lanner.MultiTracker()
    m.init(frame, np.array([[10, 10, 8, 8]]))
    with pytest.raises(ValueError, match="frame size changed"):
        m.update(np.zeros((60, 81), np.uint8))


@pytest.mark.native
def test_native_boundary_validates_too(frame):
    """The binding is public (lanner._C): it must validate on its own."""
    t = _C.CorrelationTracker(_C.TrackerParams())
    with pytest.raises(ValueError, match="before init"):
        t.update(frame)
    with pytest.raises(ValueError, match="dtype uint8"):
        t.init(frame.astype(np.int16), [1, 1, 5, 5])
    with pytest.raises(ValueError, match="fully outside"):
        t.init(frame, [500, 1, 5, 5])
    with pytest.raises(ValueError, match="larger than 4x"):
        t.init(frame, [0, 0, 1e9, 5])
    m = _C.MultiCorrelationTracker(_C.TrackerParams())
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        m.init(frame, np.zeros((3, 5)))
    p = _C.TrackerParams()
    p.num_scales = 4
    with pytest.raises(ValueError, match="num_scales must be odd"):
        _C.CorrelationTracker(p)


@pytest.mark.native
def test_frames_that_went_through_pickle_are_accepted():
    """A frame sent through a multiprocessing queue has a dtype equal to, not the same object
    as, NumPy's uint8: the native checks compare dtypes by value (a byte-swapped float32
    patch is still refused)."""
    import pickle

    frames, gt = make_sequence(seed=3, size=20, frames=6, color=True, shape=(120, 160))
    plain, pickled = lanner.Tracker(), lanner.Tracker()
    plain.init(frames[0], tuple(gt[0]))
    pickled.init(pickle.loads(pickle.dumps(frames[0])), tuple(gt[0]))
    for f in frames[1:]:
        assert pickled.update(pickle.loads(pickle.dumps(f))).box == plain.update(f).box
    patch = np.zeros((3, 16, 16), np.float32)
    np.testing.assert_array_equal(
        _C.tracker_features(pickle.loads(pickle.dumps(patch)), 4), _C.tracker_features(patch, 4)
    )
    with pytest.raises(ValueError, match="should have dtype float32, got >f4"):
        _C.tracker_features(patch.astype(">f4"), 4)


@pytest.mark.native
def test_multitracker_bad_boxes(frame):
    m = lanner.MultiTracker()
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        m.init(frame, np.zeros((0, 4)))
    with pytest.raises(ValueError, match="fully outside"):
        m.init(frame, np.array([[1, 1, 5, 5], [900, 1, 5, 5]]))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"padding": 0.1}, ValueError, "padding must be in"),
        ({"kernel": "poly"}, ValueError, "kernel must be"),
        ({"num_scales": 2}, ValueError, "num_scales must be odd"),
        ({"learning_rate": 0.0}, ValueError, "learning_rate must be in"),
        ({"lost_psr": 12.0}, ValueError, "good_psr must be greater"),
        ({"max_grid": 10}, ValueError, "max_grid must be in"),
        ({"scale_step": float("inf")}, ValueError, "finite"),
        ({"num_scales": 3.0}, TypeError, "must be an int"),
        ({"padding": "2"}, TypeError, "must be a number"),
        ({"cell_size": True}, TypeError, "must be an int"),
        ({"num_threads": 2**40}, ValueError, "num_threads must fit a 32-bit int, got 1099511627776"),  # pybind's
        ({"lost_patience": 10**12}, ValueError, "lost_patience must fit a 32-bit int"),  # "incompatible arguments"
        ({"recover_peak_ratio": -0.1}, ValueError, "recover_peak_ratio must be in"),
        ({"snapshot_ratio": 5.0}, ValueError, "snapshot_ratio must be in"),
        ({"snapshot_ratio": float("nan")}, ValueError, "finite"),
    ],
)
def test_options_validated(kwargs, error, match):
    with pytest.raises(error, match=match):
        lanner.TrackerOptions(**kwargs)
    with pytest.raises(error, match=match):
        lanner.Tracker(**kwargs)


def test_options_round_trip():
    o = lanner.TrackerOptions(padding=1.5, kernel="linear", num_threads=2)
    p = o.to_params()
    assert p.padding == 1.5 and p.kernel == "linear" and p.num_threads == 2 and p.lambda_ == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="not both"):
        lanner.Tracker(o, padding=2.0)


# ---------------------------------------------------------------------------
# Fuzz and soak


@pytest.mark.native
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    channels=st.sampled_from([0, 3]),
    box=st.tuples(*[st.one_of(st.floats(-60, 60), st.sampled_from([float("nan"), float("inf"), 0.0]))] * 4),
    seed=st.integers(0, 2**16),
    steps=st.integers(0, 3),
)
def test_fuzz_binding_never_crashes(h, w, channels, box, seed, steps):
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 0 else (h, w, 3)
    t = _C.CorrelationTracker(_C.TrackerParams())
    try:
        t.init(rng.integers(0, 256, shape, dtype=np.uint8), list(box))
    except ValueError:
        return
    for _ in range(steps):
        (x, y, bw, bh), score, lost, rec = t.update(rng.integers(0, 256, shape, dtype=np.uint8))
        assert np.isfinite([x, y, bw, bh]).all() and bw > 0 and bh > 0
        assert np.isfinite(score)


@pytest.mark.native
def test_soak_100k_updates_no_memory_growth():
    opts = lanner.TrackerOptions(min_grid=8, max_grid=8, cell_size=1, num_scales=1, padding=1.0)
    frames, gt = make_sequence(seed=5, size=6, frames=8, shape=(24, 24), color=False)
    t = _C.CorrelationTracker(opts.to_params())
    t.init(frames[0], list(gt[0]))
    rss = []
    for i in range(100_000):
        t.update(frames[i % 8])
        if i % 20_000 == 19_999:
            rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    assert rss[-1] - rss[0] < 2048, f"max RSS grew {rss} kB"


# ---------------------------------------------------------------------------
# CLI


def test_cli_track_writes_json(tmp_path):
    cv2 = pytest.importorskip("cv2")
    frames, gt = make_sequence(seed=2, size=16, frames=20)
    video = tmp_path / "seq.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (200, 160))
    for f in frames:
        writer.write(f)
    writer.release()
    out_json = tmp_path / "track.json"
    x, y, w, h = gt[0]
    proc = subprocess.run(
        [sys.executable, "-m", "lanner.cli", "track", str(video), "--box", f"{x},{y},{w},{h}", "--json", str(out_json)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "frames" in proc.stderr
    data = json.loads(out_json.read_text())
    assert len(data["frames"]) == 20
    assert {"box", "score", "lost"} <= set(data["frames"][5])
    assert centre_error(data["frames"][-1]["box"], gt[-1]) < 4


def test_cli_track_bad_box(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lanner.cli", "track", "nofile.avi", "--box", "1,2,3"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "x,y,w,h" in proc.stderr


# ---------------------------------------------------------------------------
# CUDA batch path


@pytest.mark.cuda
@pytest.mark.native
@pytest.mark.parametrize("kernel", ["gaussian", "linear"])
def test_cuda_batch_response_matches_cpu(kernel):
    if not lanner.has_cuda() or not hasattr(_C, "tracker_kcf_response_batch_cuda"):
        pytest.skip("needs a CUDA device and a build with cuFFT")
    rng = np.random.default_rng(3)
    n, c, h, w = 7, 10, 24, 30
    z = rng.normal(0, 0.2, (n, c, h, w)).astype(np.float32)
    x = rng.normal(0, 0.2, (n, c, h, w)).astype(np.float32)
    a = rng.normal(0, 1, (n, h, w)).astype(np.float32)
    got = _C.tracker_kcf_response_batch_cuda(z, x, a, kernel, 0.5)
    for i in range(n):
        want = _C.tracker_kcf_response(z[i], x[i], a[i], kernel, 0.5)
        np.testing.assert_allclose(got[i], want, atol=1e-4 * np.abs(want).max() + 1e-6)


@pytest.mark.cuda
@pytest.mark.native
def test_cuda_multitracker_matches_cpu():
    if not lanner.has_cuda() or not _C.built_with_cufft:
        pytest.skip("needs a CUDA device and a build with cuFFT")
    frames, gt = make_sequence(seed=11, size=20, frames=40, occlude=(20, 28))
    rng = np.random.default_rng(1)
    boxes = np.array(
        [gt[0]] + [(rng.uniform(0, 150), rng.uniform(0, 110), rng.uniform(8, 40), rng.uniform(8, 40)) for _ in range(9)]
    )
    cpu, gpu = lanner.MultiTracker(), lanner.MultiTracker(device="cuda")
    cpu.init(frames[0], boxes)
    gpu.init(frames[0], boxes)
    for f in frames[1:]:
        a, b = cpu.update(f), gpu.update(f)
        np.testing.assert_allclose(b.boxes, a.boxes, atol=0.05)
        np.testing.assert_array_equal(b.lost, a.lost)


@pytest.mark.native
def test_cuda_batch_binding_follows_the_build():
    """The batch op exists exactly when cuFFT was built in; its arguments are validated
    before any CUDA call, and without a usable device it raises, never crashes."""
    assert hasattr(_C, "tracker_kcf_response_batch_cuda") == _C.built_with_cufft
    if not _C.built_with_cufft:
        pytest.skip("built without cuFFT (pip install '.[cuda]' before building adds it)")
    z = np.zeros((2, 3, 8, 8), np.float32)
    with pytest.raises(ValueError, match="same shape"):
        _C.tracker_kcf_response_batch_cuda(
            z, np.zeros((2, 3, 8, 6), np.float32), np.zeros((2, 8, 8), np.float32), "gaussian", 0.5
        )
    with pytest.raises(ValueError, match="same number of targets"):
        _C.tracker_kcf_response_batch_cuda(z, z, np.zeros((3, 8, 8), np.float32), "gaussian", 0.5)
    if not lanner.has_cuda():
        with pytest.raises(RuntimeError, match="CUDA"):
            _C.tracker_kcf_response_batch_cuda(z, z, np.zeros((2, 8, 8), np.float32), "linear", 0.5)


# ---------------------------------------------------------------------------
# The benchmark's generator (benchmarks/tracking/uav_sim.py): a short smoke sequence


def test_uav_sim_smoke_sequence():
    from dataclasses import replace
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "benchmarks" / "tracking"
    sys.path.insert(0, str(root))
    try:
        import uav_sim
    finally:
        sys.path.remove(str(root))
    if not (uav_sim.OPENCV_DATA / "aero1.jpg").exists():
        pytest.skip("Debian package opencv-doc is not installed")
    spec = replace(uav_sim.make_split("tune")[0], frames=12)
    a, b = uav_sim.render_sequence(spec), uav_sim.render_sequence(spec)
    assert len(a.frames) == 12 and a.frames[0].shape == (360, 480, 3) and a.frames[0].dtype == np.uint8
    np.testing.assert_array_equal(a.frames[7], b.frames[7])  # seeded: reproducible
    assert a.valid[0] and 8 <= a.boxes[0, 2:].max() <= 80
    t = lanner.Tracker()
    t.init(a.frames[0], tuple(a.boxes[0]))
    for f in a.frames[1:]:
        r = t.update(f)
    assert centre_error(r.box, a.boxes[-1]) < 10
