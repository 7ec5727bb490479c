// Non-maximum suppression: one declaration for every device.
//
// Greedy hard NMS (ONNX NonMaxSuppression semantics: a box is suppressed when
// its overlap with a kept, higher-ranked box is strictly greater than the
// threshold), per-class NMS, and Soft-NMS (Bodla et al., "Soft-NMS --
// Improving Object Detection With One Line of Code", ICCV 2017).
//
// Conventions shared by the CPU and CUDA paths (and by the NumPy reference in
// sdk/ops_reference.py, which is the test oracle):
//   * boxes are float32 xyxy pixels, row-major (n, 4);
//   * rank: score descending, ties broken by the lower index;
//   * overlap arithmetic is done in double in exactly the order written in
//     box_overlap() below, with no fused multiply-add, so every device and the
//     reference make bit-identical decisions;
//   * a box with zero or negative width or height has zero area: its overlap
//     with any box is 0, so it never suppresses and is never suppressed.
//
// This header also holds the boundary validation, written once: the pybind11
// layer (nms.cpp) calls it before dispatching to any device.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "common/check.h"

#if defined(__CUDACC__)
#define LANNER_HOST_DEVICE __host__ __device__
#else
#define LANNER_HOST_DEVICE
#endif

namespace lanner {

// How two boxes' overlap is measured.
enum class OverlapMode : int {
  kUnion = 0,  // intersection over union (IoU)
  kMin = 1,    // intersection over the smaller area (MTCNN's "Min")
};

enum class SoftNmsMethod : int { kLinear = 0, kGaussian = 1 };

// Validated, non-owning view of the inputs.
struct BoxesView {
  const float* boxes = nullptr;        // (n, 4) xyxy
  const float* scores = nullptr;       // (n,)
  const int64_t* class_ids = nullptr;  // (n,), or nullptr for class-agnostic NMS
  int64_t n = 0;
};

struct NmsParams {
  double iou_threshold = 0.5;             // suppress when overlap > iou_threshold
  std::optional<double> score_threshold;  // drop boxes whose score <= score_threshold
  std::optional<int64_t> max_output;      // keep at most this many (highest ranked)
  OverlapMode mode = OverlapMode::kUnion;
};

struct SoftNmsParams {
  SoftNmsMethod method = SoftNmsMethod::kGaussian;
  double sigma = 0.5;              // Gaussian decay: score *= exp(-iou^2 / sigma)
  double iou_threshold = 0.3;      // linear decay: score *= 1 - iou when iou > iou_threshold
  double score_threshold = 0.001;  // drop boxes whose rescored score <= score_threshold
};

struct SoftNmsResult {
  std::vector<int64_t> indices;  // selection order (rescored score descending)
  std::vector<float> scores;     // rescored score of each selected box
};

// ---------------------------------------------------------------------------
// Overlap arithmetic shared by all devices.

// Multiplication that is never fused into a neighbouring add (nvcc contracts
// a*b+c into an FMA by default; host code is built with -ffp-contract=off).
LANNER_HOST_DEVICE inline double mul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

// Area of an xyxy box; 0 for zero or negative width/height.
LANNER_HOST_DEVICE inline double box_area(double x1, double y1, double x2, double y2) {
  const double w = x2 - x1;
  const double h = y2 - y1;
  return (w > 0.0 && h > 0.0) ? mul_rn(w, h) : 0.0;
}

// Overlap of box a and box b (areas precomputed with box_area). 0 when the
// boxes do not share a region of positive area.
LANNER_HOST_DEVICE inline double box_overlap(double ax1, double ay1, double ax2, double ay2, double aarea, double bx1,
                                             double by1, double bx2, double by2, double barea, OverlapMode mode) {
  const double iw = (ax2 < bx2 ? ax2 : bx2) - (ax1 > bx1 ? ax1 : bx1);
  const double ih = (ay2 < by2 ? ay2 : by2) - (ay1 > by1 ? ay1 : by1);
  if (!(iw > 0.0 && ih > 0.0)) return 0.0;
  const double inter = mul_rn(iw, ih);
  if (mode == OverlapMode::kMin) return inter / (aarea < barea ? aarea : barea);
  return inter / ((aarea + barea) - inter);
}

// ---------------------------------------------------------------------------
// Boundary validation (once, for every device). Each check names what was
// expected and what arrived; lanner::fail throws std::invalid_argument.

inline std::string shape_str(int ndim, const int64_t* shape) {
  std::string s = "(";
  for (int i = 0; i < ndim; ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (ndim == 1) s += ",";
  return s + ")";
}

// boxes: (N, 4), N < 2^31 (indices are int32 inside the kernels).
inline int64_t check_boxes_shape(int ndim, const int64_t* shape) {
  LANNER_CHECK(ndim == 2, "boxes should be a 2-D array of shape (N, 4), got ", ndim, "-D shape ",
               shape_str(ndim, shape));
  LANNER_CHECK(shape[1] == 4, "boxes should have shape (N, 4), got ", shape_str(ndim, shape));
  LANNER_CHECK(shape[0] <= std::numeric_limits<int32_t>::max(), "boxes should have at most 2^31 - 1 rows, got ",
               shape[0]);
  return shape[0];
}

// A per-box vector (scores, class_ids): shape (n,).
inline void check_per_box_shape(const char* name, int ndim, const int64_t* shape, int64_t n) {
  LANNER_CHECK(ndim == 1, name, " should be a 1-D array of shape (N,) = (", n, ",), got ", ndim, "-D shape ",
               shape_str(ndim, shape));
  LANNER_CHECK(shape[0] == n, name, " should have shape (N,) = (", n, ",) to match boxes, got ",
               shape_str(ndim, shape));
}

inline void check_finite_boxes(const float* boxes, int64_t n) {
  for (int64_t i = 0; i < n * 4; ++i) {
    if (!std::isfinite(boxes[i])) {
      fail("boxes should contain only finite coordinates, got ", boxes[i], " at row ", i / 4, ", column ", i % 4);
    }
  }
}

inline void check_finite_scores(const float* scores, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(scores[i])) fail("scores should be finite, got ", scores[i], " at index ", i);
  }
}

inline void check_unit_interval(const char* name, double value) {
  LANNER_CHECK(value >= 0.0 && value <= 1.0, name, " should be in [0, 1], got ", value);
}

inline OverlapMode parse_overlap_mode(const std::string& mode) {
  if (mode == "union") return OverlapMode::kUnion;
  if (mode == "min") return OverlapMode::kMin;
  fail("mode should be 'union' or 'min', got '", mode, "'");
}

inline SoftNmsMethod parse_soft_nms_method(const std::string& method) {
  if (method == "gaussian") return SoftNmsMethod::kGaussian;
  if (method == "linear") return SoftNmsMethod::kLinear;
  fail("method should be 'gaussian' or 'linear', got '", method, "'");
}

inline void check_nms_params(const NmsParams& p) {
  check_unit_interval("iou_threshold", p.iou_threshold);
  if (p.score_threshold) check_unit_interval("score_threshold", *p.score_threshold);
  if (p.max_output) LANNER_CHECK(*p.max_output >= 0, "max_output should be >= 0 or None, got ", *p.max_output);
}

inline void check_soft_nms_params(const SoftNmsParams& p) {
  LANNER_CHECK(std::isfinite(p.sigma) && p.sigma > 0.0, "sigma should be a finite number > 0, got ", p.sigma);
  check_unit_interval("iou_threshold", p.iou_threshold);
  check_unit_interval("score_threshold", p.score_threshold);
}

// Validates the data of a view whose shapes were checked. Every device
// dispatch goes through this (see nms.cpp).
inline void check_boxes_view(const BoxesView& v) {
  check_finite_boxes(v.boxes, v.n);
  check_finite_scores(v.scores, v.n);
}

// ---------------------------------------------------------------------------
// Kernels. Inputs are validated; results hold original row indices.

std::vector<int64_t> nms_cpu(const BoxesView& in, const NmsParams& p);    // cpu/nms_kernel.cpp
SoftNmsResult soft_nms_cpu(const BoxesView& in, const SoftNmsParams& p);  // cpu/nms_kernel.cpp
#ifdef LANNER_WITH_CUDA
std::vector<int64_t> nms_cuda(const BoxesView& in, const NmsParams& p);  // cuda/nms_kernel.cu
#endif

}  // namespace lanner
