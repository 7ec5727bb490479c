// NMS: Python boundary (type, dtype and layout checks), validation via nms.h,
// and dispatch to the CPU or CUDA kernel.
//
// The bindings are strict on purpose so that calling lanner._C directly is
// safe: arrays must be numpy.ndarray, C-contiguous, with the exact dtype
// (boxes/scores float32, class_ids int64). lanner.ops converts array-likes.
#include "nms/nms.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/py_array.h"

namespace py = pybind11;

namespace lanner {
namespace {

enum class Device { kCpu, kCuda };

Device parse_device(const std::string& device) {
  if (device == "cpu") return Device::kCpu;
  if (device == "cuda") {
#ifdef LANNER_WITH_CUDA
    return Device::kCuda;
#else
    throw std::runtime_error(
        "device='cuda' requested, but lanner._C was built without CUDA (no nvcc at build time); "
        "use device='cpu' or rebuild with LANNER_CUDA=on");
#endif
  }
  fail("device should be 'cpu' or 'cuda', got '", device, "'");
}

std::vector<int64_t> shape_of(const py::array& a) {
  std::vector<int64_t> s(static_cast<size_t>(a.ndim()));
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s[static_cast<size_t>(i)] = a.shape(i);
  return s;
}

// Checks boxes/scores(/class_ids) and returns a validated view.
BoxesView boxes_view(const py::array& boxes, const py::array& scores, const py::array* class_ids) {
  const auto bs = shape_of(boxes);
  const int64_t n = check_boxes_shape(boxes.ndim(), bs.data());
  const auto ss = shape_of(scores);
  check_per_box_shape("scores", scores.ndim(), ss.data(), n);
  BoxesView v;
  v.n = n;
  v.boxes = static_cast<const float*>(boxes.data());
  v.scores = static_cast<const float*>(scores.data());
  if (class_ids != nullptr) {
    const auto cs = shape_of(*class_ids);
    check_per_box_shape("class_ids", class_ids->ndim(), cs.data(), n);
    v.class_ids = static_cast<const int64_t*>(class_ids->data());
  }
  check_boxes_view(v);
  return v;
}

py::array_t<int64_t> to_numpy(const std::vector<int64_t>& v) {
  py::array_t<int64_t> out(static_cast<py::ssize_t>(v.size()));
  if (!v.empty()) std::memcpy(out.mutable_data(), v.data(), v.size() * sizeof(int64_t));
  return out;
}

py::array_t<int64_t> run_nms(py::handle boxes_obj, py::handle scores_obj, py::handle class_ids_obj,
                             double iou_threshold, std::optional<double> score_threshold,
                             std::optional<int64_t> max_output, const std::string& mode, const std::string& device) {
  const py::array boxes = require_array<float>(boxes_obj, "boxes");
  const py::array scores = require_array<float>(scores_obj, "scores");
  std::optional<py::array> class_ids;
  if (!class_ids_obj.is_none()) class_ids = require_array<int64_t>(class_ids_obj, "class_ids");
  NmsParams p;
  p.iou_threshold = iou_threshold;
  p.score_threshold = score_threshold;
  p.max_output = max_output;
  p.mode = parse_overlap_mode(mode);
  check_nms_params(p);
  const Device dev = parse_device(device);
  const BoxesView v = boxes_view(boxes, scores, class_ids ? &*class_ids : nullptr);
  std::vector<int64_t> keep;
  {
    py::gil_scoped_release release;  // the arrays stay referenced by this frame
#ifdef LANNER_WITH_CUDA
    keep = dev == Device::kCuda ? nms_cuda(v, p) : nms_cpu(v, p);
#else
    (void)dev;
    keep = nms_cpu(v, p);
#endif
  }
  return to_numpy(keep);
}

py::array_t<int64_t> nms_py(py::handle boxes, py::handle scores, double iou_threshold,
                            std::optional<double> score_threshold, std::optional<int64_t> max_output,
                            const std::string& mode, const std::string& device) {
  return run_nms(boxes, scores, py::none(), iou_threshold, score_threshold, max_output, mode, device);
}

py::array_t<int64_t> batched_nms_py(py::handle boxes, py::handle scores, py::handle class_ids, double iou_threshold,
                                    std::optional<double> score_threshold, std::optional<int64_t> max_output,
                                    const std::string& mode, const std::string& device) {
  if (class_ids.is_none()) throw py::type_error("class_ids should be a numpy.ndarray of int64, got NoneType");
  return run_nms(boxes, scores, class_ids, iou_threshold, score_threshold, max_output, mode, device);
}

py::tuple soft_nms_py(py::handle boxes_obj, py::handle scores_obj, const std::string& method, double sigma,
                      double iou_threshold, double score_threshold) {
  const py::array boxes = require_array<float>(boxes_obj, "boxes");
  const py::array scores = require_array<float>(scores_obj, "scores");
  SoftNmsParams p;
  p.method = parse_soft_nms_method(method);
  p.sigma = sigma;
  p.iou_threshold = iou_threshold;
  p.score_threshold = score_threshold;
  check_soft_nms_params(p);
  const BoxesView v = boxes_view(boxes, scores, nullptr);
  SoftNmsResult r;
  {
    py::gil_scoped_release release;
    r = soft_nms_cpu(v, p);
  }
  py::array_t<float> rescored(static_cast<py::ssize_t>(r.scores.size()));
  if (!r.scores.empty()) std::memcpy(rescored.mutable_data(), r.scores.data(), r.scores.size() * sizeof(float));
  return py::make_tuple(to_numpy(r.indices), rescored);
}

}  // namespace

void register_nms(py::module_& m) {
  using namespace pybind11::literals;
  m.def("nms", &nms_py,
        "Greedy NMS. boxes float32 (N, 4) xyxy C-contiguous, scores float32 (N,). Returns int64 kept indices, "
        "score descending (ties: lower index first).",
        "boxes"_a, "scores"_a, "iou_threshold"_a, "score_threshold"_a = py::none(), "max_output"_a = py::none(),
        "mode"_a = "union", "device"_a = "cpu");
  m.def("batched_nms", &batched_nms_py,
        "Per-class greedy NMS. As nms, plus class_ids int64 (N,): boxes of different classes never suppress "
        "each other.",
        "boxes"_a, "scores"_a, "class_ids"_a, "iou_threshold"_a, "score_threshold"_a = py::none(),
        "max_output"_a = py::none(), "mode"_a = "union", "device"_a = "cpu");
  m.def("soft_nms", &soft_nms_py,
        "Soft-NMS (CPU). Returns (int64 indices in selection order, float32 rescored scores).", "boxes"_a, "scores"_a,
        "method"_a = "gaussian", "sigma"_a = 0.5, "iou_threshold"_a = 0.3, "score_threshold"_a = 0.001);
}

}  // namespace lanner
