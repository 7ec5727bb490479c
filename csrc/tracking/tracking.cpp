// Boundary of the tracker op: validation of every argument that crosses from
// Python, dispatch to the kernels (CorrelationTracker, MultiTracker in
// multi_tracker.h), and the pybind11 registration.
#include "tracking/tracking.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "common/check.h"
#include "common/py_array.h"
#include "tracking/multi_tracker.h"

#ifndef LANNER_WITH_FFTW
#error "the tracker needs FFTW3 single precision (Debian: libfftw3-dev); CMake did not find fftw3f"
#endif

namespace py = pybind11;

namespace lanner {
namespace tracking {

void validate_params(const TrackerParams& p) {
  auto finite = [](float v) { return std::isfinite(v); };
  LANNER_CHECK(finite(p.padding) && p.padding >= 0.5f && p.padding <= 6.f, "padding must be in [0.5, 6], got ",
               p.padding);
  LANNER_CHECK(p.cell_size == 0 || (p.cell_size >= 1 && p.cell_size <= 8),
               "cell_size must be 0 (auto) or in [1, 8], got ", p.cell_size);
  LANNER_CHECK(p.min_grid >= 8 && p.min_grid <= 128, "min_grid must be in [8, 128], got ", p.min_grid);
  LANNER_CHECK(p.max_grid >= p.min_grid && p.max_grid <= 128, "max_grid must be in [min_grid, 128], got ", p.max_grid);
  LANNER_CHECK(std::isfinite(p.window_power) && p.window_power >= 0.25f && p.window_power <= 8.f,
               "window_power must be in [0.25, 8], got ", p.window_power);
  LANNER_CHECK(p.kernel == "gaussian" || p.kernel == "linear", "kernel must be 'gaussian' or 'linear', got '", p.kernel,
               "'");
  LANNER_CHECK(finite(p.kernel_sigma) && p.kernel_sigma > 0.f, "kernel_sigma must be > 0, got ", p.kernel_sigma);
  LANNER_CHECK(finite(p.lambda) && p.lambda > 0.f, "lambda must be > 0, got ", p.lambda);
  LANNER_CHECK(finite(p.output_sigma_factor) && p.output_sigma_factor > 0.f && p.output_sigma_factor <= 1.f,
               "output_sigma_factor must be in (0, 1], got ", p.output_sigma_factor);
  LANNER_CHECK(finite(p.learning_rate) && p.learning_rate > 0.f && p.learning_rate <= 1.f,
               "learning_rate must be in (0, 1], got ", p.learning_rate);
  LANNER_CHECK(p.num_scales >= 1 && p.num_scales <= 15 && p.num_scales % 2 == 1,
               "num_scales must be odd and in [1, 15], got ", p.num_scales);
  LANNER_CHECK(finite(p.scale_step) && p.scale_step > 1.f && p.scale_step <= 1.5f,
               "scale_step must be in (1, 1.5], got ", p.scale_step);
  LANNER_CHECK(finite(p.scale_penalty) && p.scale_penalty > 0.f && p.scale_penalty <= 1.f,
               "scale_penalty must be in (0, 1], got ", p.scale_penalty);
  LANNER_CHECK(finite(p.lost_psr) && finite(p.good_psr) && p.good_psr > p.lost_psr,
               "good_psr must be greater than lost_psr, got good_psr=", p.good_psr, " lost_psr=", p.lost_psr);
  LANNER_CHECK(finite(p.recover_psr) && p.recover_psr >= p.lost_psr, "recover_psr must be >= lost_psr, got ",
               p.recover_psr);
  LANNER_CHECK(finite(p.miss_ratio) && p.miss_ratio >= 0.f && p.miss_ratio < 1.f, "miss_ratio must be in [0, 1), got ",
               p.miss_ratio);
  LANNER_CHECK(finite(p.peak_ratio) && p.peak_ratio >= 0.f && p.peak_ratio < 1.f, "peak_ratio must be in [0, 1), got ",
               p.peak_ratio);
  LANNER_CHECK(finite(p.recover_ratio) && p.recover_ratio >= 0.f && p.recover_ratio <= 2.f,
               "recover_ratio must be in [0, 2], got ", p.recover_ratio);
  LANNER_CHECK(finite(p.miss_motion) && p.miss_motion >= 0.f && p.miss_motion <= 1.f,
               "miss_motion must be in [0, 1], got ", p.miss_motion);
  LANNER_CHECK(p.lost_patience >= 1 && p.lost_patience <= 1000, "lost_patience must be in [1, 1000], got ",
               p.lost_patience);
  LANNER_CHECK(finite(p.recover_peak_ratio) && p.recover_peak_ratio >= 0.f && p.recover_peak_ratio <= 2.f,
               "recover_peak_ratio must be in [0, 2], got ", p.recover_peak_ratio);
  LANNER_CHECK(finite(p.snapshot_ratio) && p.snapshot_ratio >= 0.f && p.snapshot_ratio <= 4.f,
               "snapshot_ratio must be in [0, 4], got ", p.snapshot_ratio);
  LANNER_CHECK(finite(p.redetect_radius) && p.redetect_radius >= 0.f && p.redetect_radius <= 8.f,
               "redetect_radius must be in [0, 8], got ", p.redetect_radius);
  LANNER_CHECK(finite(p.redetect_spread) && p.redetect_spread >= 0.f && p.redetect_spread <= 4.f,
               "redetect_spread must be in [0, 4], got ", p.redetect_spread);
  LANNER_CHECK(p.num_threads >= 0 && p.num_threads <= 256, "num_threads must be in [0, 256], got ", p.num_threads);
}

namespace {

// A validated, C-contiguous uint8 frame that keeps its NumPy array alive.
struct Frame {
  py::array_t<uint8_t, py::array::c_style> array;
  FrameView view;
};

// Not an array: TypeError (as NumPy raises); a wrong array: ValueError.
Frame to_frame(const py::handle& obj) {
  auto a = require_typed_array<uint8_t>(obj, "frame");
  LANNER_CHECK(a.ndim() == 2 || (a.ndim() == 3 && a.shape(2) == 3),
               "frame must be HxW (gray) or HxWx3 (BGR), got shape with ndim=", a.ndim(),
               a.ndim() == 3 ? " and last dim " + std::to_string(a.shape(2)) : std::string());
  LANNER_CHECK(a.shape(0) > 0 && a.shape(1) > 0, "frame must not be empty, got ", a.shape(0), "x", a.shape(1));
  LANNER_CHECK(a.shape(0) <= 32768 && a.shape(1) <= 32768, "frame side must be <= 32768 px, got ", a.shape(0), "x",
               a.shape(1));
  Frame f;
  f.array = py::array_t<uint8_t, py::array::c_style>::ensure(a);  // copies only if strided
  LANNER_CHECK(static_cast<bool>(f.array), "frame could not be made contiguous");
  f.view.data = f.array.data();
  f.view.height = static_cast<int>(a.shape(0));
  f.view.width = static_cast<int>(a.shape(1));
  f.view.channels = a.ndim() == 3 ? 3 : 1;
  return f;
}

Box to_box(const std::vector<double>& b, const FrameView& frame) {
  LANNER_CHECK(b.size() == 4, "box must be (x, y, w, h), got ", b.size(), " values");
  for (double v : b) LANNER_CHECK(std::isfinite(v), "box values must be finite, got a non-finite value");
  LANNER_CHECK(b[2] >= 1 && b[3] >= 1, "box width and height must be >= 1 px, got w=", b[2], " h=", b[3]);
  LANNER_CHECK(b[2] <= 4.0 * frame.width && b[3] <= 4.0 * frame.height,
               "box must not be larger than 4x the frame, got w=", b[2], " h=", b[3], " for a ", frame.width, "x",
               frame.height, " frame");
  const double ix = std::min(b[0] + b[2], static_cast<double>(frame.width)) - std::max(b[0], 0.0);
  const double iy = std::min(b[1] + b[3], static_cast<double>(frame.height)) - std::max(b[1], 0.0);
  LANNER_CHECK(ix > 0 && iy > 0, "box (", b[0], ", ", b[1], ", ", b[2], ", ", b[3], ") lies fully outside the ",
               frame.width, "x", frame.height, " frame");
  return {static_cast<float>(b[0]), static_cast<float>(b[1]), static_cast<float>(b[2]), static_cast<float>(b[3])};
}

// The frame of an update() must have the size of the frame given to init().
void check_frame_size(const FrameView& v, int height, int width) {
  LANNER_CHECK(v.height == height && v.width == width, "frame size changed from ", width, "x", height, " (at init) to ",
               v.width, "x", v.height, "; call init() again for a new video");
}

py::tuple state_tuple(const TrackState& s) {
  return py::make_tuple(py::make_tuple(s.box.x, s.box.y, s.box.w, s.box.h), s.score, s.lost, s.recovered);
}

// Threads: every call validates its Python arguments while holding the GIL, then releases
// the GIL and only then takes the object's mutex, so that calls on one object from several
// Python threads are serialised and never wait for the mutex while holding the GIL (the
// thread that holds the mutex may need the GIL back: a deadlock). State read or written
// under the mutex only.
class PyTracker {
 public:
  explicit PyTracker(const TrackerParams& p) : tracker_(p) {}

  void init(const py::handle& frame_obj, const std::vector<double>& box) {
    Frame f = to_frame(frame_obj);
    const Box b = to_box(box, f.view);
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    tracker_.init(f.view, nullptr, b);
    height_ = f.view.height;
    width_ = f.view.width;
  }

  py::tuple update(const py::handle& frame_obj) {
    if (!initialized()) fail("update() called before init(frame, box)");
    Frame f = to_frame(frame_obj);
    TrackState s;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      check_frame_size(f.view, height_, width_);
      s = tracker_.update(f.view, nullptr);
    }
    return state_tuple(s);
  }

 private:
  bool initialized() {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    return tracker_.initialized();
  }

  CorrelationTracker tracker_;
  std::mutex mutex_;
  int height_ = 0, width_ = 0;
};

// N targets (the algorithm: multi_tracker.h). Threads as PyTracker.
class PyMultiTracker {
 public:
  // backend: "cpu" (each target searches on its own) or "cuda" (the search windows of all
  // targets go to the GPU in one batched cuFFT step per grid size; needs a build with cuFFT).
  PyMultiTracker(const TrackerParams& p, const std::string& backend) : tracker_(p, batch_response_for(backend)) {}

  // A MultiTracker with a given batched detection step (the test hook in lanner._C.testing).
  PyMultiTracker(const TrackerParams& p, BatchResponseFn batch_response) : tracker_(p, std::move(batch_response)) {}

  void init(const py::handle& frame_obj, const py::handle& boxes_obj) {
    Frame f = to_frame(frame_obj);
    if (!py::isinstance<py::array>(boxes_obj))
      throw py::type_error("boxes must be a numpy.ndarray of shape (N, 4), got " + type_name(boxes_obj));
    auto boxes = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(boxes_obj);
    LANNER_CHECK(static_cast<bool>(boxes), "boxes must be numeric");
    LANNER_CHECK(boxes.ndim() == 2 && boxes.shape(1) == 4, "boxes must have shape (N, 4), got ndim=", boxes.ndim());
    LANNER_CHECK(boxes.shape(0) >= 1 && boxes.shape(0) <= 4096, "boxes must hold 1..4096 targets, got ",
                 boxes.shape(0));
    std::vector<Box> parsed;
    for (py::ssize_t i = 0; i < boxes.shape(0); ++i) {
      const double* r = boxes.data(i, 0);
      parsed.push_back(to_box({r[0], r[1], r[2], r[3]}, f.view));
    }
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    tracker_.init(f.view, parsed);
  }

  py::tuple update(const py::handle& frame_obj) {
    if (size() == 0) fail("update() called before init(frame, boxes)");
    Frame f = to_frame(frame_obj);
    std::vector<TrackState> states;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      check_frame_size(f.view, tracker_.frame_height(), tracker_.frame_width());
      states = tracker_.update(f.view);
    }
    const py::ssize_t n = static_cast<py::ssize_t>(states.size());
    py::array_t<float> boxes({n, static_cast<py::ssize_t>(4)});
    py::array_t<float> scores(n);
    py::array_t<bool> lost(n), recovered(n);
    auto b = boxes.mutable_unchecked<2>();
    auto s = scores.mutable_unchecked<1>();
    auto l = lost.mutable_unchecked<1>();
    auto r = recovered.mutable_unchecked<1>();
    for (py::ssize_t i = 0; i < n; ++i) {
      const TrackState& st = states[i];
      b(i, 0) = st.box.x;
      b(i, 1) = st.box.y;
      b(i, 2) = st.box.w;
      b(i, 3) = st.box.h;
      s(i) = st.score;
      l(i) = st.lost;
      r(i) = st.recovered;
    }
    return py::make_tuple(boxes, scores, lost, recovered);
  }

  size_t size() {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    return tracker_.size();
  }

 private:
  static BatchResponseFn batch_response_for(const std::string& backend) {
    LANNER_CHECK(backend == "cpu" || backend == "cuda", "backend must be 'cpu' or 'cuda', got '", backend, "'");
    if (backend == "cpu") return {};
#ifdef LANNER_WITH_CUFFT
    return kcf_response_batch_cuda;
#else
    fail("backend 'cuda' needs a build with cuFFT (nvcc and the nvidia-cufft wheel at build time)");
#endif
  }

  MultiTracker tracker_;
  std::mutex mutex_;
};

py::array_t<float> check_stack(const py::handle& obj, const char* name, int ndim) {
  auto a = require_typed_array<float>(obj, name);
  LANNER_CHECK(a.ndim() == ndim, name, " must have ", ndim, " dimensions, got ", a.ndim());
  for (int d = 0; d < ndim; ++d) LANNER_CHECK(a.shape(d) > 0, name, " must not be empty");
  return py::array_t<float, py::array::c_style>::ensure(a);
}

py::array_t<float> features_py(const py::handle& patch_obj, int cell) {
  const int nd = require_typed_array<float>(patch_obj, "patch").ndim();
  LANNER_CHECK(nd == 2 || nd == 3, "patch must be (rows, cols) gray or (3, rows, cols) planes, got ndim=", nd);
  auto g = check_stack(patch_obj, "patch", nd);
  if (nd == 3) LANNER_CHECK(g.shape(0) == kPlanes, "patch planes must be 3 (gray, o1, o2), got ", g.shape(0));
  LANNER_CHECK(cell >= 1 && cell <= 8, "cell must be in [1, 8], got ", cell);
  const int rows = static_cast<int>(g.shape(nd - 2)), cols = static_cast<int>(g.shape(nd - 1));
  LANNER_CHECK(rows >= cell + 2 && cols >= cell + 2, "patch must be at least (cell + 2) px on each side, got ", rows,
               "x", cols);
  LANNER_CHECK(rows <= 4096 && cols <= 4096, "patch must be at most 4096 px on each side, got ", rows, "x", cols);
  std::vector<float> planes(static_cast<size_t>(kPlanes) * rows * cols, 0.f);
  std::copy(g.data(), g.data() + static_cast<size_t>(nd == 3 ? kPlanes : 1) * rows * cols, planes.begin());
  const int gh = (rows - 2) / cell, gw = (cols - 2) / cell;
  py::array_t<float> out({kChannels, gh, gw});
  float* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    extract_features(planes.data(), rows, cols, cell, o);
  }
  return out;
}

float psr_py(const py::handle& r_obj, int exclude) {
  auto r = check_stack(r_obj, "response", 2);
  LANNER_CHECK(exclude >= 0, "exclude must be >= 0, got ", exclude);
  return peak_to_sidelobe(r.data(), static_cast<int>(r.shape(0)), static_cast<int>(r.shape(1)), exclude);
}

struct StackShape {
  int n, c, h, w;
};

StackShape check_response_args(const py::array_t<float>& z, const py::array_t<float>& x, const py::array_t<float>& a,
                               const std::string& kernel, float sigma, bool batched) {
  const int off = batched ? 1 : 0;
  LANNER_CHECK(z.ndim() == x.ndim() && z.ndim() == 3 + off, "z and x must have ", 3 + off, " dimensions");
  for (int d = 0; d < z.ndim(); ++d) LANNER_CHECK(z.shape(d) == x.shape(d), "z and x must have the same shape");
  LANNER_CHECK(a.ndim() == 2 + off, "alpha must have ", 2 + off, " dimensions, got ", a.ndim());
  if (batched) LANNER_CHECK(a.shape(0) == z.shape(0), "alpha and z must hold the same number of targets");
  LANNER_CHECK(a.shape(off) == z.shape(off + 1) && a.shape(off + 1) == z.shape(off + 2),
               "alpha must be h x w like the feature maps");
  LANNER_CHECK(z.shape(off + 1) <= 512 && z.shape(off + 2) <= 512 && z.shape(off) <= 256,
               "feature maps must be at most 256 channels of 512 x 512");
  LANNER_CHECK(kernel == "gaussian" || kernel == "linear", "kernel must be 'gaussian' or 'linear', got '", kernel, "'");
  LANNER_CHECK(std::isfinite(sigma) && sigma > 0, "sigma must be > 0, got ", sigma);
  return {batched ? static_cast<int>(z.shape(0)) : 1, static_cast<int>(z.shape(off)),
          static_cast<int>(z.shape(off + 1)), static_cast<int>(z.shape(off + 2))};
}

py::array_t<float> response_py(const py::handle& zo, const py::handle& xo, const py::handle& ao,
                               const std::string& kernel, float sigma) {
  auto z = check_stack(zo, "z", 3), x = check_stack(xo, "x", 3), a = check_stack(ao, "alpha", 2);
  const StackShape s = check_response_args(z, x, a, kernel, sigma, false);
  py::array_t<float> out({s.h, s.w});
  float* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    kcf_response(z.data(), x.data(), a.data(), s.c, s.h, s.w, kernel == "gaussian", sigma, o);
  }
  return out;
}

#ifdef LANNER_WITH_CUFFT
py::array_t<float> response_batch_cuda_py(const py::handle& zo, const py::handle& xo, const py::handle& ao,
                                          const std::string& kernel, float sigma) {
  auto z = check_stack(zo, "z", 4), x = check_stack(xo, "x", 4), a = check_stack(ao, "alpha", 3);
  const StackShape s = check_response_args(z, x, a, kernel, sigma, true);
  LANNER_CHECK(s.n <= 4096, "at most 4096 targets per batch, got ", s.n);
  py::array_t<float> out({s.n, s.h, s.w});
  float* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    kcf_response_batch_cuda(z.data(), x.data(), a.data(), s.n, s.c, s.h, s.w, kernel == "gaussian", sigma, o);
  }
  return out;
}
#endif

}  // namespace

void register_tracking(py::module_& m) {
  py::class_<TrackerParams>(m, "TrackerParams", "Correlation-filter tracker parameters (see lanner.TrackerOptions).")
      .def(py::init<>())
      .def_readwrite("padding", &TrackerParams::padding)
      .def_readwrite("cell_size", &TrackerParams::cell_size)
      .def_readwrite("min_grid", &TrackerParams::min_grid)
      .def_readwrite("max_grid", &TrackerParams::max_grid)
      .def_readwrite("window_power", &TrackerParams::window_power)
      .def_readwrite("kernel", &TrackerParams::kernel)
      .def_readwrite("kernel_sigma", &TrackerParams::kernel_sigma)
      .def_readwrite("lambda_", &TrackerParams::lambda)
      .def_readwrite("output_sigma_factor", &TrackerParams::output_sigma_factor)
      .def_readwrite("learning_rate", &TrackerParams::learning_rate)
      .def_readwrite("num_scales", &TrackerParams::num_scales)
      .def_readwrite("scale_step", &TrackerParams::scale_step)
      .def_readwrite("scale_penalty", &TrackerParams::scale_penalty)
      .def_readwrite("lost_psr", &TrackerParams::lost_psr)
      .def_readwrite("good_psr", &TrackerParams::good_psr)
      .def_readwrite("recover_psr", &TrackerParams::recover_psr)
      .def_readwrite("miss_ratio", &TrackerParams::miss_ratio)
      .def_readwrite("peak_ratio", &TrackerParams::peak_ratio)
      .def_readwrite("recover_ratio", &TrackerParams::recover_ratio)
      .def_readwrite("recover_peak_ratio", &TrackerParams::recover_peak_ratio)
      .def_readwrite("snapshot_ratio", &TrackerParams::snapshot_ratio)
      .def_readwrite("miss_motion", &TrackerParams::miss_motion)
      .def_readwrite("lost_patience", &TrackerParams::lost_patience)
      .def_readwrite("redetect_spread", &TrackerParams::redetect_spread)
      .def_readwrite("redetect_radius", &TrackerParams::redetect_radius)
      .def_readwrite("num_threads", &TrackerParams::num_threads)
      .def("validate", &validate_params, "Raise ValueError when a parameter is out of range.");

  py::class_<PyTracker>(m, "CorrelationTracker", "One-target correlation-filter tracker (use lanner.Tracker).")
      .def(py::init<const TrackerParams&>(), py::arg("params"))
      .def("init", &PyTracker::init, py::arg("frame"), py::arg("box"))
      .def("update", &PyTracker::update, py::arg("frame"), "Returns ((x, y, w, h), psr, lost, recovered).");

  py::class_<PyMultiTracker>(m, "MultiCorrelationTracker", "N targets updated per call (use lanner.MultiTracker).")
      .def(py::init<const TrackerParams&, const std::string&>(), py::arg("params"), py::arg("backend") = "cpu")
      .def("init", &PyMultiTracker::init, py::arg("frame"), py::arg("boxes"))
      .def("update", &PyMultiTracker::update, py::arg("frame"),
           "Returns (boxes (N, 4) float32, psr (N,) float32, lost (N,) bool, recovered (N,) bool).")
      .def("__len__", &PyMultiTracker::size);

  // Test hooks: not part of the API (lanner never calls them).
  py::module_ testing = m.def_submodule("testing", "Test hooks of the native ops; not part of Lanner's API.");
  testing.def(
      "batched_cpu_multi_tracker",
      [](const TrackerParams& p) { return std::make_unique<PyMultiTracker>(p, cpu_batch_response(p.num_threads)); },
      py::arg("params"),
      "A MultiCorrelationTracker whose detection step takes the batched path (as device='cuda' does) with the CPU "
      "kcf_response: checks the batching without a GPU.");

  m.def("tracker_features", &features_py, py::arg("patch"), py::arg("cell"),
        "HOG (9 bins) + gray + 2 opponent-colour cell features of a float32 patch with a 1 px border, "
        "(rows, cols) gray or (3, rows, cols) [gray, o1, o2] -> (12, gh, gw).");
  m.def("tracker_psr", &psr_py, py::arg("response"), py::arg("exclude"), "Peak-to-sidelobe ratio of a response.");
  m.def("tracker_kcf_response", &response_py, py::arg("z"), py::arg("x"), py::arg("alpha"), py::arg("kernel"),
        py::arg("sigma"), "KCF detection response of z (c, h, w) against model x (c, h, w), alpha (h, w).");
#ifdef LANNER_WITH_CUFFT
  m.def("tracker_kcf_response_batch_cuda", &response_batch_cuda_py, py::arg("z"), py::arg("x"), py::arg("alpha"),
        py::arg("kernel"), py::arg("sigma"), "Batched KCF responses (n, c, h, w) on the GPU with cuFFT.");
#endif
}

}  // namespace tracking
}  // namespace lanner
