// CUDA runtime helpers shared by every op's kernels (include from .cu files only): one error
// check and one owning device buffer, so that error messages and ownership rules are the same
// everywhere.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <stdexcept>
#include <string>

namespace lanner {

// Throws std::runtime_error ("CUDA error in <what>: <CUDA's message>") unless err is
// cudaSuccess. The error is read back first so that a non-sticky error does not resurface in
// the next, unrelated call.
inline void cuda_check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(err));
  }
}

// An owning device allocation of `count` elements of T, freed on every exit path (exceptions
// included); no allocation for count 0 (get() is then nullptr). Not copyable.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t count) : count_(count) {
    if (count_ > 0) cuda_check(cudaMalloc(&ptr_, count_ * sizeof(T)), "cudaMalloc");
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return ptr_; }
  size_t size() const { return count_; }

 private:
  T* ptr_ = nullptr;
  size_t count_;
};

}  // namespace lanner
