// MTCNN pre/post-processing ops: boundary validation, dispatch to the CPU kernels, and the
// pybind11 registration. See mtcnn.h for what each op computes.
#include "mtcnn/mtcnn.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/check.h"
#include "common/parallel.h"
#include "common/py_array.h"

namespace py = pybind11;

namespace lanner::mtcnn {

namespace {

constexpr int64_t kMaxSide = 1 << 15;  // 32768 px: bounds every size product below int64 overflow

// Area resizing reads box sums from the uint32 summed-area table; a box sum is exact
// (modulo arithmetic undoes the table's wrap-around) while the box holds at most
// (2^32 - 1) / 255 pixels. An output pixel averages a bin of at most
// (ceil(in / out) + 1) pixels per side.
constexpr int64_t kMaxBinPixels = 0xFFFFFFFFLL / 255;  // 16,843,009

void check_bins(int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w, const char* what) {
  const int64_t bin = ((in_h + out_h - 1) / out_h + 1) * ((in_w + out_w - 1) / out_w + 1);
  LANNER_CHECK(bin <= kMaxBinPixels, what, " ", out_h, "x", out_w, " of a ", in_h, "x", in_w,
               " image would average up to ", bin, " pixels per output pixel; at most ", kMaxBinPixels,
               " fit the uint32 summed-area table: use a larger output size");
}

// A uint8 image (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), any strides; returns (height, width).
std::pair<int, int> check_image(const py::array& image) {
  require_dtype<uint8_t>(image, "image");
  LANNER_CHECK(image.ndim() == 2 || image.ndim() == 3, "image should be a 2d (H, W) or 3d (H, W, C) array, got ",
               image.ndim(), "D");
  if (image.ndim() == 3) {
    const auto c = image.shape(2);
    LANNER_CHECK(c == 1 || c == 3 || c == 4, "image should have 1, 3 or 4 channels (H, W, C), got ", c);
  }
  LANNER_CHECK(image.shape(0) >= 1 && image.shape(1) >= 1, "image should be non-empty, got ", image.shape(0), "x",
               image.shape(1));
  LANNER_CHECK(image.shape(0) <= kMaxSide && image.shape(1) <= kMaxSide, "image sides should be at most ", kMaxSide,
               ", got ", image.shape(0), "x", image.shape(1));
  return {static_cast<int>(image.shape(0)), static_cast<int>(image.shape(1))};
}

// A (H + 1, W + 1, 3) uint32 summed-area table from mtcnn_integral; returns (H, W).
std::pair<int, int> check_integral(const py::array& table) {
  require_dtype<uint32_t>(table, "integral");  // from mtcnn_integral
  LANNER_CHECK(table.ndim() == 3 && table.shape(2) == 3, "integral should have shape (H + 1, W + 1, 3), got ",
               table.ndim(), "D");
  LANNER_CHECK(table.shape(0) >= 2 && table.shape(1) >= 2, "integral should come from a non-empty image, got shape (",
               table.shape(0), ", ", table.shape(1), ", 3)");
  LANNER_CHECK(table.shape(0) <= kMaxSide + 1 && table.shape(1) <= kMaxSide + 1, "integral sides should be at most ",
               kMaxSide + 1);
  require_c_contiguous(table, "integral");
  return {static_cast<int>(table.shape(0) - 1), static_cast<int>(table.shape(1) - 1)};
}

void check_float_map(const py::array& a, const char* name, int64_t channels) {
  require_dtype<float>(a, name);
  LANNER_CHECK(a.ndim() == 4, name, " should be a 4d array (1, ", channels, ", h, w), got ", a.ndim(), "D");
  LANNER_CHECK(a.shape(0) == 1 && a.shape(1) == channels, name, " should have shape (1, ", channels, ", h, w), got (",
               a.shape(0), ", ", a.shape(1), ", ...)");
  require_c_contiguous(a, name);
}

// The bytes an array spans, [first, last), whatever its strides.
std::pair<const char*, const char*> byte_span(const py::array& a) {
  const char* lo = static_cast<const char*>(a.data());
  const char* hi = lo;
  if (a.size() == 0) return {lo, lo};
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    const auto reach = (a.shape(d) - 1) * a.strides(d);
    (reach < 0 ? lo : hi) += reach;
  }
  return {lo, hi + a.itemsize()};
}

// An op's output must not share memory with its input (the kernels read while they write).
void check_disjoint(const py::array& result, const py::array& input, const char* what) {
  const auto [a0, a1] = byte_span(result);
  const auto [b0, b1] = byte_span(input);
  LANNER_CHECK(a1 <= b0 || b1 <= a0, what, " out shares memory with the input; pass a separate buffer");
}

// Storage for an op's result: a new array, or -- when the caller passes a workspace
// buffer (`out`: a writeable, C-contiguous 1-d array of the dtype with room for the result)
// -- a view into it, so that repeated calls reuse memory instead of page-faulting in fresh
// allocations. The view keeps the buffer alive.
template <typename T>
py::array_t<T> result_array(const py::object& out, std::vector<py::ssize_t> shape, const char* what) {
  if (out.is_none()) return py::array_t<T>(shape);
  LANNER_CHECK(py::isinstance<py::array>(out), what, " out should be a numpy array or None, got ", type_name(out));
  auto buf = py::reinterpret_borrow<py::array>(out);
  const std::string name = std::string(what) + " out";
  require_dtype<T>(buf, name.c_str());
  LANNER_CHECK(buf.ndim() == 1, what, " out should be a 1d buffer, got ", buf.ndim(), "D");
  require_c_contiguous(buf, name.c_str());
  LANNER_CHECK(buf.writeable(), what, " out should be writeable");
  int64_t need = 1;
  for (auto d : shape) need *= d;
  LANNER_CHECK(buf.shape(0) >= need, what, " out holds ", buf.shape(0), " values, the result needs ", need);
  return py::array_t<T>(shape, static_cast<T*>(buf.mutable_data()), buf);
}

// A pyramid level's size, in [1, kMaxSide] per side and small enough bins for the table.
void check_level(int64_t h, int64_t w, int oh, int ow) {
  LANNER_CHECK(oh >= 1 && ow >= 1 && oh <= kMaxSide && ow <= kMaxSide, "pyramid sizes should be in [1, ", kMaxSide,
               "], got ", oh, "x", ow);
  check_bins(h, w, oh, ow, "pyramid level");
}

// Bands of output rows of every level: parallel_for's work items for a pyramid.
std::vector<RowBand> level_bands(const std::vector<std::pair<int, int>>& sizes) {
  std::vector<RowBand> bands;
  for (size_t s = 0; s < sizes.size(); ++s) append_row_bands(bands, static_cast<int>(s), 0, sizes[s].first);
  return bands;
}

void check_threads(int num_threads) {
  LANNER_CHECK(num_threads <= 256, "num_threads should be at most 256 (<= 0: one per core), got ", num_threads);
}

// Truncates a float coordinate toward zero (torch's .trunc().int()), clamped to a safe range.
int trunc_coord(float v) {
  const float lim = static_cast<float>(kMaxSide) * 4.0f;
  return static_cast<int>(std::trunc(std::clamp(v, -lim, lim)));
}

}  // namespace

py::array_t<uint32_t> integral(const py::array& image, const std::string& channel_order, const py::object& out,
                               int num_threads) {
  const auto [h, w] = check_image(image);
  check_threads(num_threads);
  LANNER_CHECK(channel_order == "rgb" || channel_order == "bgr", "channel_order should be 'rgb' or 'bgr', got '",
               channel_order, "'");
  // Read the pixels in place through the array's strides (views, negative strides and all):
  // no copy for BGR, grayscale or alpha input.
  const int64_t row_stride = image.strides(0);
  const int64_t pixel_stride = image.strides(1);
  int64_t offset[3] = {0, 0, 0};
  if (image.ndim() == 3 && image.shape(2) >= 3) {
    const int64_t cs = image.strides(2);
    const bool bgr = channel_order == "bgr";
    for (int c = 0; c < 3; ++c) offset[c] = (bgr ? 2 - c : c) * cs;
  }
  auto table = result_array<uint32_t>(out, {h + 1, w + 1, 3}, "integral");
  check_disjoint(table, image, "integral");
  uint32_t* dst = table.mutable_data();
  const auto* src = static_cast<const uint8_t*>(image.data());
  {
    py::gil_scoped_release release;
    integral_image_cpu(src, h, w, row_stride, pixel_stride, offset, num_threads, dst);
  }
  return table;
}

py::list pyramid(const py::array& table, const std::vector<std::pair<int, int>>& sizes, const py::object& out,
                 int num_threads) {
  const auto [h, w] = check_integral(table);
  check_threads(num_threads);
  for (const auto& [oh, ow] : sizes) check_level(h, w, oh, ow);
  // All levels in one block (back to back), each returned as a (1, 3, h, w) view of it.
  int64_t total = 0;
  for (const auto& [oh, ow] : sizes) total += int64_t{3} * oh * ow;
  auto block = result_array<float>(out, {static_cast<py::ssize_t>(total)}, "pyramid");
  check_disjoint(block, table, "pyramid");
  std::vector<py::array_t<float>> outs;
  outs.reserve(sizes.size());
  float* next = block.mutable_data();
  for (const auto& [oh, ow] : sizes) {
    outs.emplace_back(std::vector<py::ssize_t>{1, 3, oh, ow}, next, block);
    next += int64_t{3} * oh * ow;
  }
  std::vector<float*> ptrs;
  for (auto& o : outs) ptrs.push_back(o.mutable_data());
  const auto* src = static_cast<const uint32_t*>(table.data());
  {
    py::gil_scoped_release release;
    const std::vector<RowBand> bands = level_bands(sizes);
    parallel_for(bands.size(), num_threads, [&](size_t k) {
      const RowBand& b = bands[k];
      const auto [oh, ow] = sizes[b.item];
      area_resize_normalize_cpu(src, w, 0, h, 0, w, oh, ow, b.begin, b.end, ptrs[b.item], ow, int64_t{oh} * ow);
    });
  }
  py::list result;
  for (auto& o : outs) result.append(o);
  return result;
}

// The levels of a P-Net pyramid packed into one (1, 3, canvas_h, canvas_w) image, so that
// P-Net runs once instead of once per level. Where P-Net's maps of the canvas equal its maps
// of each level (the caller's packing must ensure it, and this op checks): every level starts
// at even coordinates (P-Net's 2x2 pool pairs align), levels do not overlap, and a level with
// an odd width (height) ends at the canvas's right (bottom) edge, where the ceil-mode pool's
// last, partial window is partial in the canvas too. Cells outside the levels are 0.
py::array_t<float> pyramid_canvas(const py::array& table, const std::vector<std::pair<int, int>>& sizes,
                                  const std::vector<std::pair<int, int>>& offsets, std::pair<int, int> canvas,
                                  const py::object& out, int num_threads) {
  const auto [h, w] = check_integral(table);
  check_threads(num_threads);
  const auto [ch, cw] = canvas;
  LANNER_CHECK(ch >= 1 && cw >= 1 && ch <= kMaxSide && cw <= kMaxSide, "canvas size should be in [1, ", kMaxSide,
               "], got ", ch, "x", cw);
  LANNER_CHECK(offsets.size() == sizes.size(), "offsets should give one (y, x) per size, got ", offsets.size(), " for ",
               sizes.size(), " sizes");
  constexpr size_t kMaxLevels = 1024;
  LANNER_CHECK(sizes.size() <= kMaxLevels, "a canvas holds at most ", kMaxLevels, " levels, got ", sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) {
    const auto [lh, lw] = sizes[i];
    const auto [oy, ox] = offsets[i];
    check_level(h, w, lh, lw);
    LANNER_CHECK(oy >= 0 && ox >= 0 && int64_t{oy} + lh <= ch && int64_t{ox} + lw <= cw, "level ", i, " (", lh, "x", lw,
                 " at y=", oy, ", x=", ox, ") should lie inside the ", ch, "x", cw, " canvas");
    LANNER_CHECK(oy % 2 == 0 && ox % 2 == 0, "level ", i,
                 " should start at even coordinates (P-Net's 2x2 pooling), got y=", oy, ", x=", ox);
    LANNER_CHECK(lw % 2 == 0 || ox + lw == cw, "level ", i, " has an odd width (", lw,
                 ") and should end at the canvas's right edge (P-Net's partial pool window), got x=", ox);
    LANNER_CHECK(lh % 2 == 0 || oy + lh == ch, "level ", i, " has an odd height (", lh,
                 ") and should end at the canvas's bottom edge (P-Net's partial pool window), got y=", oy);
    for (size_t j = 0; j < i; ++j) {
      const auto [jy, jx] = offsets[j];
      const bool apart = jy >= oy + lh || oy >= jy + sizes[j].first || jx >= ox + lw || ox >= jx + sizes[j].second;
      LANNER_CHECK(apart, "levels ", j, " and ", i, " overlap in the canvas");
    }
  }
  auto image = result_array<float>(out, {1, 3, ch, cw}, "pyramid_canvas");
  check_disjoint(image, table, "pyramid_canvas");
  float* dst = image.mutable_data();
  const auto* src = static_cast<const uint32_t*>(table.data());
  {
    py::gil_scoped_release release;
    const int64_t plane = int64_t{ch} * cw;
    std::vector<RowBand> bands = level_bands(sizes);
    append_row_bands(bands, -1, 0, ch);  // item -1: the gaps of canvas rows
    parallel_for(bands.size(), num_threads, [&](size_t k) {
      const RowBand& b = bands[k];
      if (b.item >= 0) {
        const auto [lh, lw] = sizes[b.item];
        const auto [oy, ox] = offsets[b.item];
        area_resize_normalize_cpu(src, w, 0, h, 0, w, lh, lw, b.begin, b.end, dst + int64_t{oy} * cw + ox, cw, plane);
        return;
      }
      fill_canvas_gaps_cpu(sizes, offsets, ch, cw, b.begin, b.end, dst);
    });
  }
  return image;
}

py::array_t<float> generate_candidates(const py::array& maps, double scale, double threshold,
                                       const std::optional<std::array<int64_t, 4>>& window) {
  check_float_map(maps, "maps", 6);
  LANNER_CHECK(std::isfinite(scale) && scale > 0.0, "scale should be a positive finite number, got ", scale);
  LANNER_CHECK(std::isfinite(threshold), "threshold should be finite, got ", threshold);
  LANNER_CHECK(maps.shape(2) <= kMaxSide && maps.shape(3) <= kMaxSide, "maps should be at most ", kMaxSide,
               " per side");
  const auto mh = static_cast<int>(maps.shape(2));
  const auto mw = static_cast<int>(maps.shape(3));
  // The window of the map to read: one pyramid level's cells in a packed canvas's maps.
  int64_t y0 = 0, x0 = 0, wh = mh, ww = mw;
  if (window) {
    y0 = (*window)[0];
    x0 = (*window)[1];
    wh = (*window)[2];
    ww = (*window)[3];
    LANNER_CHECK(y0 >= 0 && x0 >= 0 && wh >= 0 && ww >= 0 && y0 + wh <= mh && x0 + ww <= mw,
                 "window (y0, x0, h, w) should lie inside the ", mh, "x", mw, " map, got (", y0, ", ", x0, ", ", wh,
                 ", ", ww, ")");
  }
  const auto* m = static_cast<const float*>(maps.data());
  const auto thr = static_cast<float>(threshold);
  const int iy = static_cast<int>(y0), ix = static_cast<int>(x0), ih = static_cast<int>(wh), iw = static_cast<int>(ww);
  std::vector<float> rows;
  {
    py::gil_scoped_release release;
    generate_candidates_cpu(m, mh, mw, iy, ix, ih, iw, static_cast<float>(scale), thr, rows);
  }
  py::array_t<float> out(std::vector<py::ssize_t>{static_cast<py::ssize_t>(rows.size() / 9), 9});
  if (!rows.empty()) std::memcpy(out.mutable_data(), rows.data(), rows.size() * sizeof(float));
  return out;
}

py::tuple crop_resize(const py::array& table, const py::array& boxes, int size, const py::object& out,
                      int num_threads) {
  const auto [h, w] = check_integral(table);
  check_threads(num_threads);
  require_dtype<float>(boxes, "boxes");
  LANNER_CHECK(boxes.ndim() == 2 && boxes.shape(1) == 4, "boxes should have shape (N, 4), got ", boxes.ndim(), "D");
  require_c_contiguous(boxes, "boxes");
  LANNER_CHECK(size >= 1 && size <= 1024, "size should be in [1, 1024], got ", size);
  check_bins(h, w, size, size, "crop size");  // the largest crop is the whole image
  const int64_t n = boxes.shape(0);
  const auto* b = static_cast<const float*>(boxes.data());
  for (int64_t i = 0; i < 4 * n; ++i) LANNER_CHECK(std::isfinite(b[i]), "boxes should be finite, got ", b[i]);
  auto crops = result_array<float>(out, {n, 3, size, size}, "crop_resize");
  check_disjoint(crops, table, "crop_resize");
  check_disjoint(crops, boxes, "crop_resize");
  py::array_t<bool> valid(std::vector<py::ssize_t>{n});
  float* dst_all = crops.mutable_data();
  bool* ok = valid.mutable_data();
  const auto* src = static_cast<const uint32_t*>(table.data());
  {
    py::gil_scoped_release release;
    const int64_t per = int64_t{3} * size * size;
    parallel_for(static_cast<size_t>(n), num_threads, [&](size_t k) {
      const auto i = static_cast<int64_t>(k);
      // facenet-pytorch's pad(): truncate, clip to [1, w] x [1, h] (1-based), crop
      // rows [y - 1, ey) and columns [x - 1, ex).
      const int x = std::max(trunc_coord(b[4 * i + 0]), 1);
      const int y = std::max(trunc_coord(b[4 * i + 1]), 1);
      const int ex = std::min(trunc_coord(b[4 * i + 2]), w);
      const int ey = std::min(trunc_coord(b[4 * i + 3]), h);
      float* dst = dst_all + i * per;
      ok[i] = ey > y - 1 && ex > x - 1;
      if (!ok[i]) {
        std::fill(dst, dst + per, 0.0f);
        return;
      }
      area_resize_normalize_cpu(src, w, y - 1, ey, x - 1, ex, size, size, 0, size, dst, size, int64_t{size} * size);
    });
  }
  return py::make_tuple(crops, valid);
}

void register_mtcnn(py::module_& m) {
  m.def("mtcnn_integral", &integral, py::arg("image"), py::arg("channel_order") = "rgb", py::arg("out") = py::none(),
        py::arg("num_threads") = 1,
        "Summed-area table of a uint8 image -- (H, W) grayscale, (H, W, 1), (H, W, 3) or (H, W, 4) (alpha "
        "ignored), any strides, colour channels in channel_order ('rgb' or 'bgr') -- as RGB: (H + 1, W + 1, 3) "
        "uint32 (modulo 2^32). out: optional 1d uint32 workspace buffer to write into (the result is a view of it). "
        "num_threads: threads for bands of rows (<= 0: one per core).");
  m.def("mtcnn_pyramid", &pyramid, py::arg("integral"), py::arg("sizes"), py::arg("out") = py::none(),
        py::arg("num_threads") = 1,
        "Area-resize the image behind an mtcnn_integral table to each (h, w) in sizes; returns "
        "[(1, 3, h, w) float32] normalised (x - 127.5) / 128, bit-identical to torch's interpolate(mode='area'). "
        "The levels are views of one block (out: optional 1d float32 workspace buffer for it). num_threads: "
        "threads to spread the rows over (<= 0: one per core).");
  m.def("mtcnn_pyramid_canvas", &pyramid_canvas, py::arg("integral"), py::arg("sizes"), py::arg("offsets"),
        py::arg("canvas"), py::arg("out") = py::none(), py::arg("num_threads") = 1,
        "The pyramid levels of `sizes` (as mtcnn_pyramid) written into one (1, 3, canvas_h, canvas_w) float32 image "
        "at `offsets` (y, x), 0 elsewhere, for one P-Net run whose maps equal the per-level maps: offsets even, "
        "levels disjoint, a level of odd width (height) ending at the canvas's right (bottom) edge -- checked. "
        "out: optional 1d float32 workspace buffer; num_threads: threads (<= 0: one per core).");
  m.def("mtcnn_generate_candidates", &generate_candidates, py::arg("maps"), py::arg("scale"), py::arg("threshold"),
        py::arg("window") = py::none(),
        "P-Net maps (1, 6, h, w) -- face logits (not face, face), then 4 box regressions -- to (N, 9) float32 rows "
        "x1, y1, x2, y2, score, reg0..3 for the cells whose face probability (softmax of the logits) is >= "
        "threshold; window=(y0, x0, h, w) reads only that part of the maps (one level of a packed canvas), "
        "cells counted from its corner.");
  m.def("mtcnn_crop_resize", &crop_resize, py::arg("integral"), py::arg("boxes"), py::arg("size"),
        py::arg("out") = py::none(), py::arg("num_threads") = 1,
        "Crop (N, 4) xyxy boxes (facenet-pytorch pad rules) from the image behind an mtcnn_integral table and "
        "area-resize to "
        "size x size; returns ((N, 3, size, size) float32 normalised, (N,) bool valid). out: optional 1d float32 "
        "workspace buffer for the crops. num_threads: threads to spread the crops over (<= 0: one per core).");
}

}  // namespace lanner::mtcnn
