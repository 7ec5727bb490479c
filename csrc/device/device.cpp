// Device discovery: whether the CUDA kernels were built and a device is usable.
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace lanner {

#ifdef LANNER_WITH_CUDA
int cuda_device_count();  // cuda/device.cu
#else
int cuda_device_count() {
  return 0;
}
#endif

void register_device(py::module_& m) {
  m.def("cuda_device_count", &cuda_device_count,
        "Number of usable CUDA devices (0 when built without CUDA or no driver/device).");
}

}  // namespace lanner
