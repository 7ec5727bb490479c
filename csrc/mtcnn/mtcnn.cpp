// MTCNN pre/post-processing ops: boundary validation, dispatch to the CPU kernels, and the
// pybind11 registration. See mtcnn.h for what each op computes.
#include "mtcnn/mtcnn.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "common/check.h"

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
  check(bin <= kMaxBinPixels, what, " ", out_h, "x", out_w, " of a ", in_h, "x", in_w,
        " image would average up to ", bin, " pixels per output pixel; at most ", kMaxBinPixels,
        " fit the uint32 summed-area table: use a larger output size");
}

// An HxWx3 uint8 C-contiguous image; returns (height, width).
std::pair<int, int> check_image(const py::array& image) {
  check(image.dtype().is(py::dtype::of<uint8_t>()), "image should have dtype uint8, got ",
        std::string(py::str(image.dtype())));
  check(image.ndim() == 3, "image should be a 3d array (H, W, 3), got ", image.ndim(), "D");
  check(image.shape(2) == 3, "image should have 3 channels (H, W, 3), got ", image.shape(2));
  check(image.shape(0) >= 1 && image.shape(1) >= 1, "image should be non-empty, got ", image.shape(0), "x",
        image.shape(1));
  check(image.shape(0) <= kMaxSide && image.shape(1) <= kMaxSide, "image sides should be at most ", kMaxSide,
        ", got ", image.shape(0), "x", image.shape(1));
  check(image.flags() & py::array::c_style, "image should be C-contiguous");
  return {static_cast<int>(image.shape(0)), static_cast<int>(image.shape(1))};
}

// A (H + 1, W + 1, 3) uint32 summed-area table from mtcnn_integral; returns (H, W).
std::pair<int, int> check_integral(const py::array& table) {
  check(table.dtype().is(py::dtype::of<uint32_t>()), "integral should have dtype uint32 (from mtcnn_integral), got ",
        std::string(py::str(table.dtype())));
  check(table.ndim() == 3 && table.shape(2) == 3, "integral should have shape (H + 1, W + 1, 3), got ",
        table.ndim(), "D");
  check(table.shape(0) >= 2 && table.shape(1) >= 2, "integral should come from a non-empty image, got shape (",
        table.shape(0), ", ", table.shape(1), ", 3)");
  check(table.shape(0) <= kMaxSide + 1 && table.shape(1) <= kMaxSide + 1, "integral sides should be at most ",
        kMaxSide + 1);
  check(table.flags() & py::array::c_style, "integral should be C-contiguous");
  return {static_cast<int>(table.shape(0) - 1), static_cast<int>(table.shape(1) - 1)};
}

void check_float_map(const py::array& a, const char* name, int64_t channels) {
  check(a.dtype().is(py::dtype::of<float>()), name, " should have dtype float32, got ",
        std::string(py::str(a.dtype())));
  check(a.ndim() == 4, name, " should be a 4d array (1, ", channels, ", h, w), got ", a.ndim(), "D");
  check(a.shape(0) == 1 && a.shape(1) == channels, name, " should have shape (1, ", channels, ", h, w), got (",
        a.shape(0), ", ", a.shape(1), ", ...)");
  check(a.flags() & py::array::c_style, name, " should be C-contiguous");
}

// Truncates a float coordinate toward zero (torch's .trunc().int()), clamped to a safe range.
int trunc_coord(float v) {
  const float lim = static_cast<float>(kMaxSide) * 4.0f;
  return static_cast<int>(std::trunc(std::clamp(v, -lim, lim)));
}

}  // namespace

py::array_t<uint32_t> integral(const py::array& image) {
  const auto [h, w] = check_image(image);
  py::array_t<uint32_t> table(std::vector<py::ssize_t>{h + 1, w + 1, 3});
  uint32_t* dst = table.mutable_data();
  const auto* src = static_cast<const uint8_t*>(image.data());
  {
    py::gil_scoped_release release;
    integral_image_cpu(src, h, w, dst);
  }
  return table;
}

py::list pyramid(const py::array& table, const std::vector<std::pair<int, int>>& sizes) {
  const auto [h, w] = check_integral(table);
  for (const auto& [oh, ow] : sizes) {
    check(oh >= 1 && ow >= 1 && oh <= kMaxSide && ow <= kMaxSide,
          "pyramid sizes should be in [1, ", kMaxSide, "], got ", oh, "x", ow);
    check_bins(h, w, oh, ow, "pyramid level");
  }
  std::vector<py::array_t<float>> outs;
  outs.reserve(sizes.size());
  for (const auto& [oh, ow] : sizes) outs.emplace_back(std::vector<py::ssize_t>{1, 3, oh, ow});
  std::vector<float*> ptrs;
  for (auto& o : outs) ptrs.push_back(o.mutable_data());
  const auto* src = static_cast<const uint32_t*>(table.data());
  {
    py::gil_scoped_release release;
    for (size_t s = 0; s < sizes.size(); ++s) {
      area_resize_normalize_cpu(src, w, 0, h, 0, w, sizes[s].first, sizes[s].second, ptrs[s]);
    }
  }
  py::list result;
  for (auto& o : outs) result.append(o);
  return result;
}

py::array_t<float> generate_candidates(const py::array& prob, const py::array& reg, double scale, double threshold) {
  check_float_map(prob, "prob", 2);
  check_float_map(reg, "reg", 4);
  check(prob.shape(2) == reg.shape(2) && prob.shape(3) == reg.shape(3), "prob and reg maps should have the same ",
        "height and width, got ", prob.shape(2), "x", prob.shape(3), " and ", reg.shape(2), "x", reg.shape(3));
  check(std::isfinite(scale) && scale > 0.0, "scale should be a positive finite number, got ", scale);
  check(std::isfinite(threshold), "threshold should be finite, got ", threshold);
  const auto mh = static_cast<int>(prob.shape(2));
  const auto mw = static_cast<int>(prob.shape(3));
  check(int64_t{mh} <= kMaxSide && int64_t{mw} <= kMaxSide, "maps should be at most ", kMaxSide, " per side");
  std::vector<float> rows(static_cast<size_t>(mh) * mw * 9);
  // Channel 1 of prob is the face probability.
  const float* p = static_cast<const float*>(prob.data()) + int64_t{mh} * mw;
  const auto* r = static_cast<const float*>(reg.data());
  int64_t n = 0;
  {
    py::gil_scoped_release release;
    n = generate_candidates_cpu(p, r, mh, mw, static_cast<float>(scale), static_cast<float>(threshold),
                                rows.data());
  }
  py::array_t<float> out(std::vector<py::ssize_t>{n, 9});
  std::copy(rows.begin(), rows.begin() + n * 9, out.mutable_data());
  return out;
}

py::tuple crop_resize(const py::array& table, const py::array& boxes, int size) {
  const auto [h, w] = check_integral(table);
  check(boxes.dtype().is(py::dtype::of<float>()), "boxes should have dtype float32, got ",
        std::string(py::str(boxes.dtype())));
  check(boxes.ndim() == 2 && boxes.shape(1) == 4, "boxes should have shape (N, 4), got ", boxes.ndim(), "D");
  check(boxes.flags() & py::array::c_style, "boxes should be C-contiguous");
  check(size >= 1 && size <= 1024, "size should be in [1, 1024], got ", size);
  check_bins(h, w, size, size, "crop size");  // the largest crop is the whole image
  const int64_t n = boxes.shape(0);
  const auto* b = static_cast<const float*>(boxes.data());
  for (int64_t i = 0; i < 4 * n; ++i) check(std::isfinite(b[i]), "boxes should be finite, got ", b[i]);
  py::array_t<float> crops(std::vector<py::ssize_t>{n, 3, size, size});
  py::array_t<bool> valid(std::vector<py::ssize_t>{n});
  float* out = crops.mutable_data();
  bool* ok = valid.mutable_data();
  const auto* src = static_cast<const uint32_t*>(table.data());
  {
    py::gil_scoped_release release;
    const int64_t per = int64_t{3} * size * size;
    for (int64_t i = 0; i < n; ++i) {
      // facenet-pytorch's pad(): truncate, clip to [1, w] x [1, h] (1-based), crop
      // rows [y - 1, ey) and columns [x - 1, ex).
      const int x = std::max(trunc_coord(b[4 * i + 0]), 1);
      const int y = std::max(trunc_coord(b[4 * i + 1]), 1);
      const int ex = std::min(trunc_coord(b[4 * i + 2]), w);
      const int ey = std::min(trunc_coord(b[4 * i + 3]), h);
      float* dst = out + i * per;
      ok[i] = ey > y - 1 && ex > x - 1;
      if (!ok[i]) {
        std::fill(dst, dst + per, 0.0f);
        continue;
      }
      area_resize_normalize_cpu(src, w, y - 1, ey, x - 1, ex, size, size, dst);
    }
  }
  return py::make_tuple(crops, valid);
}

void register_mtcnn(py::module_& m) {
  m.def("mtcnn_integral", &integral, py::arg("image"),
        "Summed-area table of an (H, W, 3) uint8 image: (H + 1, W + 1, 3) uint32 (modulo 2^32).");
  m.def("mtcnn_pyramid", &pyramid, py::arg("integral"), py::arg("sizes"),
        "Area-resize the image behind an mtcnn_integral table to each (h, w) in sizes; returns "
        "[(1, 3, h, w) float32] normalised (x - 127.5) / 128.");
  m.def("mtcnn_generate_candidates", &generate_candidates, py::arg("prob"), py::arg("reg"), py::arg("scale"),
        py::arg("threshold"),
        "P-Net maps (1, 2, h, w) and (1, 4, h, w) -> (N, 9) float32 rows x1, y1, x2, y2, score, reg0..3.");
  m.def("mtcnn_crop_resize", &crop_resize, py::arg("integral"), py::arg("boxes"), py::arg("size"),
        "Crop (N, 4) xyxy boxes (facenet-pytorch pad rules) from the image behind an mtcnn_integral table and "
        "area-resize to "
        "size x size; returns ((N, 3, size, size) float32 normalised, (N,) bool valid).");
}

}  // namespace lanner::mtcnn
