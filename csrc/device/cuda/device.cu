#include <cuda_runtime.h>

namespace lanner {

int cuda_device_count() {
  int n = 0;
  // No driver or no device is not an error for callers: it means "no CUDA".
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error state
    return 0;
  }
  return n;
}

}  // namespace lanner
