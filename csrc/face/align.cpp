// Face alignment's geometry: boundary validation, the per-face fit, and the pybind11 registration.
// See align.h for what the op computes.
#include "face/align.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/check.h"
#include "common/py_array.h"

namespace py = pybind11;

namespace lanner::face {

namespace {

constexpr int kMinSize = 8, kMaxSize = 1024;  // chip sides, px
constexpr double kMinExtent = 1.0;            // px: landmarks spanning less in x and in y are a zero-size face

// printf-style formatting of one number (Python's f"{v:.1f}" writes every digit of 1e300: so does this).
std::string format(const char* spec, double v) {
  std::string text(static_cast<size_t>(std::snprintf(nullptr, 0, spec, v)), '\0');
  std::snprintf(text.data(), text.size() + 1, spec, v);
  return text;
}

// (N, 5, 2) landmarks, float32 or float64, C-contiguous -> float64 copy.
std::vector<double> check_landmarks(const py::array& landmarks) {
  const bool f32 = has_dtype<float>(landmarks), f64 = has_dtype<double>(landmarks);
  LANNER_CHECK(f32 || f64, "landmarks should have dtype float32 or float64, got ",
               py::str(landmarks.dtype()).cast<std::string>());
  LANNER_CHECK(landmarks.ndim() == 3 && landmarks.shape(1) == kLandmarks && landmarks.shape(2) == 2,
               "landmarks should have shape (N, 5, 2), got ", shape_string(landmarks));
  require_c_contiguous(landmarks, "landmarks");
  const auto count = static_cast<size_t>(landmarks.size());
  std::vector<double> points(count);
  if (f64) {
    std::copy_n(static_cast<const double*>(landmarks.data()), count, points.begin());
  } else {
    std::copy_n(static_cast<const float*>(landmarks.data()), count, points.begin());
  }
  return points;
}

// ValueError unless an (H, W) image size has at least 1 px each way.
void check_image_size(int height, int width) {
  LANNER_CHECK(height >= 1 && width >= 1, "image_size should be (H, W) of at least 1 px each, got (", height, ", ",
               width, ")");
}

// A landmark on or inside the border of a height x width image (pixel centres on integers, so the border is half a
// pixel beyond the outer pixel centres); false for NaN.
bool inside(double x, double y, int height, int width) {
  return x >= -0.5 && x <= width - 0.5 && y >= -0.5 && y <= height - 0.5;
}

// Each face's landmarks finite, not of zero size, and (for height >= 1) inside a height x width image;
// the first face failing a check, checks in this order, is named.
void check_faces(const std::vector<double>& points, int64_t n, int height, int width) {
  for (int64_t i = 0; i < n; ++i) {
    for (int j = 0; j < 2 * kLandmarks; ++j) {
      LANNER_CHECK(std::isfinite(points[i * 2 * kLandmarks + j]), "landmarks should be finite, face ", i,
                   " has NaN or inf");
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    const double* p = points.data() + i * 2 * kLandmarks;
    double x0 = p[0], x1 = p[0], y0 = p[1], y1 = p[1];
    for (int j = 1; j < kLandmarks; ++j) {
      x0 = std::min(x0, p[2 * j]);
      x1 = std::max(x1, p[2 * j]);
      y0 = std::min(y0, p[2 * j + 1]);
      y1 = std::max(y1, p[2 * j + 1]);
    }
    LANNER_CHECK(x1 - x0 >= kMinExtent || y1 - y0 >= kMinExtent, "face ", i,
                 " has zero size: its landmarks should span at least ", format("%.1f", kMinExtent), " px, got ",
                 format("%.3g", x1 - x0), " x ", format("%.3g", y1 - y0), " px");
  }
  for (int64_t i = 0; i < n && height >= 1; ++i) {
    for (int j = 0; j < kLandmarks; ++j) {
      const double x = points[i * 2 * kLandmarks + 2 * j], y = points[i * 2 * kLandmarks + 2 * j + 1];
      LANNER_CHECK(inside(x, y, height, width), "face ", i, " is partly outside the ", width, "x", height,
                   " image: landmark ", j, " at (", format("%.1f", x), ", ", format("%.1f", y),
                   "), expected x in [-0.5, ", width - 0.5, "] and y in [-0.5, ", height - 0.5, "]");
    }
  }
}

py::tuple align_transforms(const py::array& landmarks, const py::array& chip_template, int size,
                           const std::optional<std::pair<int, int>>& image_size) {
  const std::vector<double> points = check_landmarks(landmarks);
  require_dtype<double>(chip_template, "template");
  LANNER_CHECK(chip_template.ndim() == 2 && chip_template.shape(0) == kLandmarks && chip_template.shape(1) == 2,
               "template should have shape (5, 2), got ", shape_string(chip_template));
  require_c_contiguous(chip_template, "template");
  LANNER_CHECK(size >= kMinSize && size <= kMaxSize, "size should be in [", kMinSize, ", ", kMaxSize, "] px, got ",
               size);
  const int64_t n = landmarks.shape(0);
  if (image_size) {
    const auto [height, width] = *image_size;
    check_image_size(height, width);
    check_faces(points, n, height, width);
  } else {
    check_faces(points, n, -1, -1);
  }
  double dst[2 * kLandmarks];
  const auto* unit = static_cast<const double*>(chip_template.data());
  for (int j = 0; j < 2 * kLandmarks; ++j) {
    LANNER_CHECK(std::isfinite(unit[j]), "template should be finite");
    dst[j] = unit[j] * size - 0.5;  // unit chip coordinates -> chip pixels (centres on integers)
  }
  py::array_t<double> matrices(std::vector<py::ssize_t>{n, 2, 3});
  py::array_t<int32_t> factors(std::vector<py::ssize_t>{n});
  double* m = matrices.mutable_data();
  int32_t* k = factors.mutable_data();
  for (int64_t i = 0; i < n; ++i) {
    fit_similarity(points.data() + i * 2 * kLandmarks, dst, m + 6 * i);
    k[i] = supersampling(m + 6 * i);
  }
  return py::make_tuple(matrices, factors);
}

// (N,) bool: every landmark of the face inside an (H, W) image (the faces align_transforms accepts there, when
// their landmarks are finite and not of zero size).
py::array_t<bool> faces_inside(const py::array& landmarks, const std::pair<int, int>& image_size) {
  const std::vector<double> points = check_landmarks(landmarks);
  const auto [height, width] = image_size;
  check_image_size(height, width);
  const int64_t n = landmarks.shape(0);
  py::array_t<bool> result(std::vector<py::ssize_t>{n});
  bool* out = result.mutable_data();
  for (int64_t i = 0; i < n; ++i) {
    const double* p = points.data() + i * 2 * kLandmarks;
    bool all = true;
    for (int j = 0; j < kLandmarks; ++j) all = all && inside(p[2 * j], p[2 * j + 1], height, width);
    out[i] = all;
  }
  return result;
}

}  // namespace

void register_face(py::module_& m) {
  m.def("faces_inside", &faces_inside, py::arg("landmarks"), py::arg("image_size"),
        "(N,) bool: which faces of (N, 5, 2) float32/float64 landmarks have every landmark inside an image of "
        "image_size=(H, W) (align_transforms's border rule; False for NaN).");
  m.def("align_transforms", &align_transforms, py::arg("landmarks"), py::arg("template"), py::arg("size"),
        py::arg("image_size") = py::none(),
        "The image -> chip transforms of (N, 5, 2) float32/float64 landmarks: checks them (finite, not of zero "
        "size, and with image_size=(H, W) inside the image: ValueError naming the first face that fails), fits each "
        "face's least-squares similarity onto template ((5, 2) float64, "
        "unit chip coordinates) at chip side size, and returns ((N, 2, 3) float64 matrices in cv2.warpAffine's "
        "convention, (N,) int32 supersampling factors: the smallest k making the warp onto a k-times chip an "
        "upsampling).");
}

}  // namespace lanner::face
