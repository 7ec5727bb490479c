// The one pybind11 module, lanner._C. Each op folder registers its own functions.
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace lanner {
void register_device(py::module_& m);
void register_nms(py::module_& m);
namespace mtcnn {
void register_mtcnn(py::module_& m);
}  // namespace mtcnn
namespace tracking {
void register_tracking(py::module_& m);
}
namespace face {
void register_face(py::module_& m);
}  // namespace face
}  // namespace lanner

PYBIND11_MODULE(_C, m) {
  m.doc() = "Lanner native ops (C++, optional CUDA)";
#ifdef LANNER_WITH_CUDA
  m.attr("built_with_cuda") = true;
#else
  m.attr("built_with_cuda") = false;
#endif
#ifdef LANNER_WITH_CUFFT
  m.attr("built_with_cufft") = true;  // the tracker's batched CUDA path
#else
  m.attr("built_with_cufft") = false;
#endif
  lanner::register_device(m);
  lanner::register_nms(m);
  lanner::mtcnn::register_mtcnn(m);
  lanner::tracking::register_tracking(m);
  lanner::face::register_face(m);
}
