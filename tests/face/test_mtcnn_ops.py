"""The MTCNN native ops (lanner._C.mtcnn_*) against NumPy reference oracles."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lanner import _C, ops

pytestmark = pytest.mark.native

MEAN, SCALE = 127.5, 0.0078125


# --- NumPy reference oracles ----------------------------------------------------------
def integral_ref(image: np.ndarray) -> np.ndarray:
    table = np.zeros((image.shape[0] + 1, image.shape[1] + 1, 3), np.uint64)
    table[1:, 1:] = image.astype(np.uint64).cumsum(0).cumsum(1)
    return (table % (1 << 32)).astype(np.uint32)


def area_resize_ref(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """torch.nn.functional.interpolate(mode="area") == adaptive average pooling, then normalise,
    with torch's float32 arithmetic: the (exact) bin sum divided by the bin height, then by its
    width, then (x - 127.5) * 0.0078125."""
    src = image.astype(np.int64)
    in_h, in_w = src.shape[:2]
    out = np.empty((3, out_h, out_w), np.float32)
    for i in range(out_h):
        ys, ye = (i * in_h) // out_h, -(-((i + 1) * in_h) // out_h)
        for j in range(out_w):
            xs, xe = (j * in_w) // out_w, -(-((j + 1) * in_w) // out_w)
            total = src[ys:ye, xs:xe].reshape(-1, 3).sum(0).astype(np.float32)
            out[:, i, j] = total / np.float32(ye - ys) / np.float32(xe - xs)
    return (out - np.float32(MEAN)) * np.float32(SCALE)


def face_probability_ref(maps: np.ndarray) -> np.ndarray:
    """Softmax of P-Net's two logits (not face, face), float32, as torch computes it."""
    logits = maps[0, :2]
    e = np.exp(logits - logits.max(0))
    return (e[1] / (e[0] + e[1])).astype(np.float32)


def candidates_ref(maps: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    p = face_probability_ref(maps)
    ys, xs = np.nonzero(p >= np.float32(threshold))
    cell = np.stack([xs, ys], 1).astype(np.float32)
    s = np.float32(scale)
    q1 = np.floor((2 * cell + 1) / s)
    q2 = np.floor((2 * cell + 12) / s)
    return np.concatenate([q1, q2, p[ys, xs][:, None], maps[0, 2:][:, ys, xs].T], 1).astype(np.float32)


def assert_candidates_equal(got: np.ndarray, want: np.ndarray) -> None:
    """Same cells, boxes and regressions; probabilities within float rounding (C's expf and
    NumPy's exp may differ in the last ulp)."""
    assert got.shape == want.shape
    np.testing.assert_array_equal(got[:, :4], want[:, :4])
    np.testing.assert_array_equal(got[:, 5:], want[:, 5:])
    np.testing.assert_allclose(got[:, 4], want[:, 4], rtol=1e-6, atol=0)


def _maps(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """P-Net-like maps: logits spread over [-4, 4] (probabilities over (0, 1)), regressions."""
    maps = rng.normal(size=(1, 6, h, w)).astype(np.float32)
    maps[0, :2] *= 2.0
    return maps


def crop_resize_ref(image: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """facenet-pytorch's pad() + crop + imresample."""
    h, w = image.shape[:2]
    crops = np.zeros((len(boxes), 3, size, size), np.float32)
    valid = np.zeros(len(boxes), bool)
    for k, (x1, y1, x2, y2) in enumerate(np.trunc(boxes).astype(np.int64)):
        x, y, ex, ey = max(x1, 1), max(y1, 1), min(x2, w), min(y2, h)
        if ey > y - 1 and ex > x - 1:
            valid[k] = True
            crops[k] = area_resize_ref(image[y - 1 : ey, x - 1 : ex], size, size)
    return crops, valid


def _image(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --- integral + pyramid -----------------------------------------------------------------
@pytest.mark.parametrize("h,w", [(1, 1), (7, 13), (64, 48), (200, 301)])
def test_integral_matches_cumsum(h, w):
    image = _image(h * w, h, w)
    np.testing.assert_array_equal(_C.mtcnn_integral(image), integral_ref(image))


def _layouts(rgb: np.ndarray):
    """The same picture as every input form the integral reads in place: (image, channel_order)."""
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    bgra = np.concatenate([bgr, np.full(rgb.shape[:2] + (1,), 77, np.uint8)], axis=2)
    wide = np.zeros((rgb.shape[0] * 2, rgb.shape[1] * 3, 3), np.uint8)
    wide[::2, ::3] = rgb
    yield rgb, "rgb"
    yield bgr, "bgr"
    yield rgb[:, :, ::-1], "bgr"  # a negative-stride view
    yield bgr[::-1, ::-1][::-1, ::-1], "bgr"
    yield bgra, "bgr"  # alpha ignored
    yield np.ascontiguousarray(bgra[:, :, [2, 1, 0, 3]]), "rgb"
    yield wide[::2, ::3], "rgb"  # strided rows and pixels
    yield np.asfortranarray(rgb), "rgb"


@pytest.mark.parametrize("h,w", [(1, 1), (9, 14), (57, 40)])
def test_integral_reads_any_layout_in_place(h, w):
    rgb = _image(h + 5 * w, h, w)
    want = integral_ref(rgb)
    for image, order in _layouts(rgb):
        np.testing.assert_array_equal(_C.mtcnn_integral(image, order), want, err_msg=f"{order} {image.strides}")


def test_integral_reads_no_byte_past_a_view():
    # Colour bytes of BGRx pixels whose buffer ends right after the last pixel's red byte:
    # a packed-row read must stop there (the sanitizer build would flag one byte more).
    h, w = 5, 7
    rgb = _image(9, h, w)
    buf = np.zeros(h * w * 4 - 1, np.uint8)
    full = np.zeros((h, w, 4), np.uint8)
    full[..., :3] = rgb[..., ::-1]
    buf[:] = full.reshape(-1)[:-1]
    view = np.lib.stride_tricks.as_strided(buf, shape=(h, w, 3), strides=(4 * w, 4, 1))
    np.testing.assert_array_equal(_C.mtcnn_integral(view, "bgr"), integral_ref(rgb))
    gray = np.lib.stride_tricks.as_strided(buf, shape=(h, w), strides=(4 * w, 4))
    np.testing.assert_array_equal(_C.mtcnn_integral(gray), integral_ref(np.repeat(rgb[..., 2:3], 3, axis=2)))


@pytest.mark.parametrize("shape", [(6, 9), (6, 9, 1)])
def test_integral_of_grayscale_repeats_the_channel(shape):
    gray = np.random.default_rng(4).integers(0, 256, shape, dtype=np.uint8)
    want = integral_ref(np.repeat(gray.reshape(6, 9, 1), 3, axis=2))
    for order in ("rgb", "bgr"):
        np.testing.assert_array_equal(_C.mtcnn_integral(gray, order), want)


@pytest.mark.parametrize(
    "h,w,sizes",
    [
        (40, 60, [(24, 36), (17, 25), (12, 18)]),  # downscaling, as in the pyramid
        (13, 11, [(13, 11)]),  # identity
        (10, 7, [(24, 24)]),  # upscaling (overlapping bins)
        (1, 1, [(3, 2)]),
        (97, 131, [(59, 79), (42, 56)]),
    ],
)
def test_pyramid_matches_adaptive_average_pooling(h, w, sizes):
    image = _image(h + w, h, w)
    levels = _C.mtcnn_pyramid(_C.mtcnn_integral(image), sizes)
    assert [lv.shape for lv in levels] == [(1, 3, oh, ow) for oh, ow in sizes]
    for level, (oh, ow) in zip(levels, sizes):
        np.testing.assert_array_equal(level[0], area_resize_ref(image, oh, ow))


@pytest.mark.parametrize("seed", range(6))
def test_pyramid_is_bit_identical_to_torch_interpolate_area(seed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(12, 260, 2))
    sizes = [tuple(int(v) for v in rng.integers(1, 140, 2)) for _ in range(3)]
    image = _image(seed, h, w)
    levels = _C.mtcnn_pyramid(_C.mtcnn_integral(image), sizes)
    for level, size in zip(levels, sizes):
        ref = torch.nn.functional.interpolate(
            torch.from_numpy(image).permute(2, 0, 1)[None].float(), size=size, mode="area"
        )
        np.testing.assert_array_equal(level, ((ref - 127.5) * 0.0078125).numpy())


def test_workspace_buffers_are_filled_and_returned_as_views():
    image = _image(5, 41, 67)
    sizes = [(30, 49), (21, 35), (15, 25)]
    table_buf = np.full(42 * 68 * 3 + 10, 7, np.uint32)
    table = _C.mtcnn_integral(image, out=table_buf)
    assert np.shares_memory(table, table_buf) and table.shape == (42, 68, 3)
    np.testing.assert_array_equal(table, integral_ref(image))
    level_buf = np.full(sum(3 * h * w for h, w in sizes) + 5, np.nan, np.float32)
    levels = _C.mtcnn_pyramid(table, sizes, out=level_buf)
    for level, (oh, ow) in zip(levels, sizes):
        assert np.shares_memory(level, level_buf) and level.shape == (1, 3, oh, ow)
        np.testing.assert_array_equal(level[0], area_resize_ref(image, oh, ow))
    boxes = np.array([[3, 4, 30, 33], [10, 2, 60, 40]], np.float32)
    crop_buf = np.full(2 * 3 * 24 * 24, np.nan, np.float32)
    crops, valid = _C.mtcnn_crop_resize(table, boxes, 24, out=crop_buf)
    assert np.shares_memory(crops, crop_buf) and valid.all()
    np.testing.assert_array_equal(crops, crop_resize_ref(image, boxes, 24)[0])


def test_workspace_buffers_are_validated():
    image = _image(6, 8, 8)
    table = _C.mtcnn_integral(image)
    with pytest.raises(ValueError, match="integral out holds 10 values, the result needs 243"):
        _C.mtcnn_integral(image, out=np.zeros(10, np.uint32))
    with pytest.raises(ValueError, match="integral out should have dtype uint32, got float32"):
        _C.mtcnn_integral(image, out=np.zeros(243, np.float32))
    with pytest.raises(ValueError, match="pyramid out should be a 1d buffer, got 2D"):
        _C.mtcnn_pyramid(table, [(4, 4)], out=np.zeros((3, 16), np.float32))
    with pytest.raises(ValueError, match="pyramid out should be C-contiguous"):
        _C.mtcnn_pyramid(table, [(4, 4)], out=np.zeros(96, np.float32)[::2])
    readonly = np.zeros(48, np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="pyramid out should be writeable"):
        _C.mtcnn_pyramid(table, [(4, 4)], out=readonly)
    with pytest.raises(ValueError, match="crop_resize out should be a numpy array or None, got list"):
        _C.mtcnn_crop_resize(table, np.zeros((1, 4), np.float32), 4, out=[0.0] * 48)
    # Writing over the input while reading it would be garbage: refused.
    shared = np.zeros(243 + 48, np.uint32)
    big = _C.mtcnn_integral(image, out=shared[:243])
    with pytest.raises(ValueError, match="pyramid out shares memory with the input"):
        _C.mtcnn_pyramid(big, [(4, 4)], out=shared.view(np.float32))
    boxes = np.zeros(4 + 48, np.float32)
    with pytest.raises(ValueError, match="crop_resize out shares memory with the input"):
        _C.mtcnn_crop_resize(table, boxes[:4].reshape(1, 4), 4, out=boxes)
    pixels = np.zeros(4 * 300, np.uint8)
    with pytest.raises(ValueError, match="integral out shares memory with the input"):
        _C.mtcnn_integral(pixels[:192].reshape(8, 8, 3), out=pixels.view(np.uint32))


def test_integral_wraps_modulo_2_32_and_box_sums_stay_exact():
    # 130k white pixels overflow uint32 in the table; box sums are still exact.
    image = np.full((400, 330, 3), 255, np.uint8)
    level = _C.mtcnn_pyramid(_C.mtcnn_integral(image), [(3, 3)])[0]
    np.testing.assert_allclose(level, (255 - MEAN) * SCALE, atol=1e-6)


def test_bins_too_large_for_the_uint32_table_are_refused():
    # A 4200x4200 image resized to 1x1 would sum 17.6 Mpx x 255 > 2^32 in one box.
    table = _C.mtcnn_integral(np.zeros((4200, 4200, 3), np.uint8))
    with pytest.raises(ValueError, match="would average up to .* pixels per output pixel"):
        _C.mtcnn_pyramid(table, [(1, 1)])
    with pytest.raises(ValueError, match="crop size 1x1 of a 4200x4200 image"):
        _C.mtcnn_crop_resize(table, np.zeros((1, 4), np.float32), 1)
    # The cascade's own sizes are far below the limit: levels >= 12 px, crops 24 and 48 px.
    assert _C.mtcnn_pyramid(table, [(12, 12)])[0].shape == (1, 3, 12, 12)
    assert _C.mtcnn_crop_resize(table, np.array([[1, 1, 4200, 4200]], np.float32), 24)[0].shape == (1, 3, 24, 24)


# --- candidates ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "seed,scale,threshold",
    [(0, 0.6, 0.6), (1, 0.3004, 0.9), (2, 1.7, 0.0), (3, 0.05, 1.0), (4, 0.5, 0.999), (5, 0.8, 0.02)],
)
def test_candidates_match_reference(seed, scale, threshold):
    maps = _maps(np.random.default_rng(seed), 23, 31)
    got = _C.mtcnn_generate_candidates(maps, scale, threshold)
    assert_candidates_equal(got, candidates_ref(maps, scale, threshold))


def test_candidates_at_the_threshold_and_at_extreme_logits():
    # Equal logits give exactly 0.5 (kept at threshold 0.5: the test is >=); margins far beyond
    # float range saturate to 0 and 1 as torch's softmax does; NaN logits are never candidates.
    maps = np.zeros((1, 6, 1, 6), np.float32)
    maps[0, 0, 0] = [0.0, 200.0, -200.0, np.nan, 1.0, 0.0]
    maps[0, 1, 0] = [0.0, -200.0, 200.0, 1.0, np.nan, np.log(3.0)]
    got = _C.mtcnn_generate_candidates(maps, 1.0, 0.5)
    np.testing.assert_array_equal(got[:, 0], [1, 5, 11])  # cells 0, 2 and 5
    np.testing.assert_allclose(got[:, 4], [0.5, 1.0, 0.75], rtol=1e-6)
    assert got[0, 4] == 0.5 and got[1, 4] == 1.0
    assert len(_C.mtcnn_generate_candidates(maps, 1.0, 1.0)) == 1
    assert len(_C.mtcnn_generate_candidates(maps, 1.0, 0.0)) == 4


def test_candidates_empty_map():
    out = _C.mtcnn_generate_candidates(np.zeros((1, 6, 0, 5), np.float32), 1.0, 0.5)
    assert out.shape == (0, 9)


# --- crop + resize --------------------------------------------------------------------------
@pytest.mark.parametrize("size", [24, 48])
def test_crop_resize_matches_reference(size):
    image = _image(7, 90, 120)
    boxes = np.array(
        [
            [10.7, 5.2, 40.9, 35.1],  # inside
            [-20.0, -15.5, 30.0, 34.0],  # clipped at the top-left
            [100.0, 70.0, 150.0, 130.0],  # clipped at the bottom-right
            [0.0, 0.0, 1.0, 1.0],  # one pixel
            [130.0, 10.0, 160.0, 40.0],  # fully outside: invalid
            [50.0, 50.0, 40.0, 60.0],
        ],  # inverted: invalid
        np.float32,
    )
    crops, valid = _C.mtcnn_crop_resize(_C.mtcnn_integral(image), boxes, size)
    ref_crops, ref_valid = crop_resize_ref(image, boxes, size)
    np.testing.assert_array_equal(valid, ref_valid)
    np.testing.assert_array_equal(crops, ref_crops)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(*[st.floats(-1e6, 1e6, allow_nan=False, width=32)] * 4), max_size=8))
def test_crop_resize_fuzz_any_finite_boxes(boxes):
    image = _image(11, 17, 23)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    crops, valid = _C.mtcnn_crop_resize(_C.mtcnn_integral(image), boxes, 12)
    ref_crops, ref_valid = crop_resize_ref(image, np.clip(boxes, -131072, 131072), 12)
    np.testing.assert_array_equal(valid, ref_valid)
    np.testing.assert_array_equal(crops, ref_crops)


# --- validation -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "image,match",
    [
        (np.zeros((4, 4, 3), np.float32), "dtype uint8, got float32"),
        (np.zeros((4,), np.uint8), r"2d \(H, W\) or 3d \(H, W, C\) array, got 1D"),
        (np.zeros((2, 4, 4, 3), np.uint8), "got 4D"),
        (np.zeros((4, 4, 2), np.uint8), "1, 3 or 4 channels"),
        (np.zeros((0, 4, 3), np.uint8), "non-empty"),
        (np.zeros((4, 0), np.uint8), "non-empty"),
    ],
)
def test_integral_rejects_bad_images(image, match):
    with pytest.raises(ValueError, match=match):
        _C.mtcnn_integral(image)
    with pytest.raises(ValueError, match="channel_order should be 'rgb' or 'bgr', got 'bgra'"):
        _C.mtcnn_integral(np.zeros((4, 4, 3), np.uint8), "bgra")


def test_pyramid_and_crop_reject_bad_arguments():
    table = _C.mtcnn_integral(_image(0, 8, 8))
    with pytest.raises(ValueError, match="pyramid sizes should be in"):
        _C.mtcnn_pyramid(table, [(0, 4)])
    with pytest.raises(ValueError, match="integral should have dtype uint32"):
        _C.mtcnn_pyramid(table.astype(np.int64), [(4, 4)])
    with pytest.raises(ValueError, match=r"integral should have shape \(H \+ 1, W \+ 1, 3\)"):
        _C.mtcnn_pyramid(table[..., :2].copy(), [(4, 4)])
    with pytest.raises(ValueError, match="boxes should be finite"):
        _C.mtcnn_crop_resize(table, np.array([[0, 0, np.nan, 3]], np.float32), 24)
    with pytest.raises(ValueError, match=r"boxes should have shape \(N, 4\)"):
        _C.mtcnn_crop_resize(table, np.zeros((2, 3), np.float32), 24)
    with pytest.raises(ValueError, match="boxes should have dtype float32"):
        _C.mtcnn_crop_resize(table, np.zeros((2, 4), np.float64), 24)
    with pytest.raises(ValueError, match="size should be in"):
        _C.mtcnn_crop_resize(table, np.zeros((2, 4), np.float32), 0)


def test_candidates_reject_bad_maps():
    maps = np.zeros((1, 6, 5, 6), np.float32)
    with pytest.raises(ValueError, match=r"maps should have shape \(1, 6, h, w\)"):
        _C.mtcnn_generate_candidates(maps[:, :4].copy(), 1.0, 0.5)
    with pytest.raises(ValueError, match=r"maps should be a 4d array"):
        _C.mtcnn_generate_candidates(maps[0], 1.0, 0.5)
    with pytest.raises(ValueError, match="maps should have dtype float32"):
        _C.mtcnn_generate_candidates(maps.astype(np.float64), 1.0, 0.5)
    with pytest.raises(ValueError, match="maps should be C-contiguous"):
        _C.mtcnn_generate_candidates(np.zeros((1, 6, 5, 12), np.float32)[..., ::2], 1.0, 0.5)
    with pytest.raises(ValueError, match="scale should be a positive finite number"):
        _C.mtcnn_generate_candidates(maps, 0.0, 0.5)
    with pytest.raises(ValueError, match="threshold should be finite"):
        _C.mtcnn_generate_candidates(maps, 1.0, float("nan"))


@pytest.mark.parametrize("num_threads", [0, 2, 3, 7])
def test_threads_give_the_same_bits_as_one(num_threads):
    image = _image(21, 150, 211)
    table = _C.mtcnn_integral(image)
    for tall in (image, _image(22, 700, 9)):  # bands of rows
        np.testing.assert_array_equal(
            _C.mtcnn_integral(tall[:, ::-1], "bgr", num_threads=num_threads),
            integral_ref(np.ascontiguousarray(tall[:, ::-1, ::-1])),
        )
    sizes = [(90, 127), (64, 90), (45, 64), (12, 17), (1, 1)]
    one = _C.mtcnn_pyramid(table, sizes, num_threads=1)
    many = _C.mtcnn_pyramid(table, sizes, num_threads=num_threads)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(num_threads)
    xy = rng.uniform(-20, 220, (300, 2))
    side = rng.uniform(1, 90, (300, 1))
    boxes = np.concatenate([xy, xy + side], 1).astype(np.float32)
    for size in (24, 48):
        c1, v1 = _C.mtcnn_crop_resize(table, boxes, size, num_threads=1)
        cn, vn = _C.mtcnn_crop_resize(table, boxes, size, num_threads=num_threads)
        np.testing.assert_array_equal(v1, vn)
        np.testing.assert_array_equal(c1, cn)


def test_thread_count_is_validated():
    table = _C.mtcnn_integral(_image(0, 8, 8))
    with pytest.raises(ValueError, match="num_threads should be at most 256"):
        _C.mtcnn_integral(_image(0, 8, 8), num_threads=300)
    with pytest.raises(ValueError, match="num_threads should be at most 256"):
        _C.mtcnn_pyramid(table, [(4, 4)], num_threads=257)
    with pytest.raises(ValueError, match="num_threads should be at most 256"):
        _C.mtcnn_crop_resize(table, np.zeros((1, 4), np.float32), 4, num_threads=1000)


# --- packed pyramid canvas ------------------------------------------------------------------
def test_canvas_holds_each_level_bit_for_bit_and_zeros_elsewhere():
    image = _image(31, 97, 131)
    table = _C.mtcnn_integral(image)
    # Canvas 101 x 107: odd widths (79, 27) end at the right edge, odd heights (29, 27) at the bottom.
    sizes = [(58, 79), (42, 26), (29, 40), (27, 27)]
    offsets = [(0, 28), (0, 0), (72, 38), (74, 80)]
    canvas = _C.mtcnn_pyramid_canvas(table, sizes, offsets, (101, 107))
    assert canvas.shape == (1, 3, 101, 107)
    levels = _C.mtcnn_pyramid(table, sizes)
    covered = np.zeros((101, 107), bool)
    for level, (lh, lw), (oy, ox) in zip(levels, sizes, offsets):
        np.testing.assert_array_equal(canvas[:, :, oy : oy + lh, ox : ox + lw], level)
        covered[oy : oy + lh, ox : ox + lw] = True
    assert (canvas[0][:, ~covered] == 0).all()
    buf = np.full(3 * 101 * 107, np.nan, np.float32)  # a reused buffer gets its gaps zeroed too
    again = _C.mtcnn_pyramid_canvas(table, sizes, offsets, (101, 107), out=buf, num_threads=3)
    assert np.shares_memory(again, buf)
    np.testing.assert_array_equal(again, canvas)


@pytest.mark.parametrize(
    "sizes,offsets,canvas,match",
    [
        ([(10, 10)], [(1, 0)], (20, 20), "should start at even coordinates"),
        ([(10, 10)], [(12, 0)], (20, 20), r"should lie inside the 20x20 canvas"),
        ([(10, 11)], [(0, 0)], (20, 21), "odd width .* should end at the canvas's right edge"),
        ([(11, 10)], [(0, 0)], (21, 20), "odd height .* should end at the canvas's bottom edge"),
        ([(10, 10), (10, 10)], [(0, 0), (8, 8)], (20, 20), "levels 0 and 1 overlap"),
        ([(10, 10)], [(0, 0), (0, 10)], (20, 20), "one \\(y, x\\) per size"),
        ([(10, 10)], [(0, 0)], (0, 20), "canvas size should be in"),
        ([(0, 10)], [(0, 0)], (20, 20), "pyramid sizes should be in"),
    ],
)
def test_canvas_placement_is_validated(sizes, offsets, canvas, match):
    table = _C.mtcnn_integral(_image(3, 30, 30))
    with pytest.raises(ValueError, match=match):
        _C.mtcnn_pyramid_canvas(table, sizes, offsets, canvas)


@pytest.mark.parametrize(
    "h,w",
    [
        (342, 548),
        (886, 1280),
        (480, 640),
        (512, 512),
        (720, 1280),
        (1080, 1920),
        (100, 100),
        (31, 2000),
        (3000, 40),
        (12, 12),
        (11, 50),
    ],
)
def test_packing_places_every_level_once_by_the_rules(h, w):
    from lanner.face.cascade import pack_pyramid, pyramid_scales

    sizes = tuple((int(h * s + 1), int(w * s + 1)) for s in pyramid_scales(h, w, 20.0, 0.709))
    layout = pack_pyramid(sizes)
    assert sorted(layout.packed + layout.alone) == list(range(len(sizes)))
    assert len(layout.packed) == len(layout.offsets)
    assert sum(1 for i in layout.packed if sizes[i][0] % 2 and sizes[i][1] % 2) <= 1
    if layout.packed:  # the op checks the rules (even starts, no overlap, odd edges at the canvas edges)
        table = _C.mtcnn_integral(_image(1, 4, 4))
        _C.mtcnn_pyramid_canvas(table, [sizes[i] for i in layout.packed], list(layout.offsets), layout.canvas)


@settings(max_examples=80, deadline=None)
@given(st.integers(12, 2500), st.integers(12, 2500), st.floats(6, 60), st.floats(0.3, 0.9))
def test_packing_fuzz_any_image_size(h, w, min_face, factor):
    from lanner.face.cascade import pack_pyramid, pyramid_scales

    sizes = tuple((int(h * s + 1), int(w * s + 1)) for s in pyramid_scales(h, w, min_face, factor))
    layout = pack_pyramid(sizes)
    assert sorted(layout.packed + layout.alone) == list(range(len(sizes)))
    if layout.packed:
        table = _C.mtcnn_integral(_image(1, 4, 4))
        _C.mtcnn_pyramid_canvas(table, [sizes[i] for i in layout.packed], list(layout.offsets), layout.canvas)


def test_candidates_in_a_window_match_the_sliced_maps():
    maps = _maps(np.random.default_rng(8), 40, 50)
    for window in [(0, 0, 40, 50), (3, 7, 11, 20), (39, 49, 1, 1), (5, 5, 0, 3)]:
        y, x, h, w = window
        want = candidates_ref(np.ascontiguousarray(maps[:, :, y : y + h, x : x + w]), 0.37, 0.6)
        assert_candidates_equal(_C.mtcnn_generate_candidates(maps, 0.37, 0.6, window), want)
    for bad in [(0, 0, 41, 50), (-1, 0, 2, 2), (0, 45, 1, 6)]:
        with pytest.raises(ValueError, match="window .* should lie inside the 40x50 map"):
            _C.mtcnn_generate_candidates(maps, 0.37, 0.6, bad)


def test_arrays_that_went_through_pickle_are_accepted():
    """An unpickled array's dtype equals NumPy's but is another object: the ops compare dtypes
    by value (and still refuse other byte orders)."""
    import pickle

    def again(a):
        return pickle.loads(pickle.dumps(a))

    image = _image(3, 40, 50)
    table = _C.mtcnn_integral(image)
    np.testing.assert_array_equal(_C.mtcnn_integral(again(image)), table)
    boxes = np.array([[2, 3, 30, 35]], np.float32)
    np.testing.assert_array_equal(
        _C.mtcnn_crop_resize(again(table), again(boxes), 24)[0], _C.mtcnn_crop_resize(table, boxes, 24)[0]
    )
    np.testing.assert_array_equal(_C.mtcnn_pyramid(again(table), [(10, 12)])[0], _C.mtcnn_pyramid(table, [(10, 12)])[0])
    maps = _maps(np.random.default_rng(2), 9, 11)
    assert_candidates_equal(_C.mtcnn_generate_candidates(again(maps), 0.5, 0.6), candidates_ref(maps, 0.5, 0.6))
    np.testing.assert_array_equal(ops.nms(again(boxes), again(np.ones(1, np.float32)), 0.5), [0])
    with pytest.raises(ValueError, match="maps should have dtype float32, got >f4"):
        _C.mtcnn_generate_candidates(maps.astype(">f4"), 0.5, 0.6)
    with pytest.raises(ValueError, match="image should have dtype uint8"):
        _C.mtcnn_integral(image.astype(">u2"))
