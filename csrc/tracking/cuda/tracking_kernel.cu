// Batched KCF detection responses for many targets on the GPU (cuFFT).
// Same maths as kcf_response() in cpu/tracking_kernel.cpp, one launch per step
// for all n targets: r2c of the n*c feature maps of z and x, per-target channel
// sum of zf * conj(xf), (Gaussian kernel: c2r, exp, r2c), times alphaf, c2r.
#include <cuda_runtime.h>
#include <cufft.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "common/cuda_util.cuh"
#include "tracking/tracking.h"

namespace lanner {
namespace tracking {
namespace {

void cufft_check(cufftResult r, const char* what) {
  if (r != CUFFT_SUCCESS) throw std::runtime_error(std::string("cuFFT error in ") + what + ": " + std::to_string(r));
}

struct PlanGuard {
  cufftHandle h = 0;
  bool made = false;
  ~PlanGuard() {
    if (made) cufftDestroy(h);
  }
};

void make_plan(PlanGuard& g, int h, int w, int batch, cufftType type) {
  int dims[2] = {h, w};
  cufft_check(cufftPlanMany(&g.h, 2, dims, nullptr, 1, 0, nullptr, 1, 0, type, batch), "cufftPlanMany");
  g.made = true;
}

// Sum of squares of each of n stacks of `len` floats (one block per stack).
__global__ void energy_kernel(const float* x, int len, float* out) {
  __shared__ float partial[256];
  const float* s = x + static_cast<size_t>(blockIdx.x) * len;
  float acc = 0;
  for (int i = threadIdx.x; i < len; i += blockDim.x) acc += s[i] * s[i];
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int step = blockDim.x / 2; step > 0; step /= 2) {
    if (threadIdx.x < step) partial[threadIdx.x] += partial[threadIdx.x + step];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}

// acc[t][f] = sum_l zf[t][l][f] * conj(xf[t][l][f]) * scale
__global__ void cross_spectrum_kernel(const cufftComplex* zf, const cufftComplex* xf, int n, int c, int nf, float scale,
                                      cufftComplex* acc) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= n * nf) return;
  const int t = idx / nf, f = idx % nf;
  float re = 0, im = 0;
  for (int l = 0; l < c; ++l) {
    const size_t o = (static_cast<size_t>(t) * c + l) * nf + f;
    const cufftComplex a = zf[o], b = xf[o];
    re += a.x * b.x + a.y * b.y;
    im += a.y * b.x - a.x * b.y;
  }
  acc[idx] = make_cuFloatComplex(re * scale, im * scale);
}

// k = exp(-max(0, (zz + xx - 2 xy / hw) / (hw c)) / sigma^2), in place.
__global__ void gaussian_kernel(float* k, const float* zz, const float* xx, int n, int hw, int c, float sigma) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= n * hw) return;
  const int t = idx / hw;
  const float numel = static_cast<float>(hw) * c;
  const float d = fmaxf(0.f, (zz[t] + xx[t] - 2.f * k[idx] / hw) / numel);
  k[idx] = expf(-d / (sigma * sigma));
}

__global__ void multiply_kernel(cufftComplex* a, const cufftComplex* b, int count) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= count) return;
  a[idx] = cuCmulf(a[idx], b[idx]);
}

__global__ void scale_kernel(float* a, int count, float s) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx < count) a[idx] *= s;
}

int blocks(size_t count) {
  return static_cast<int>((count + 255) / 256);
}

}  // namespace

void kcf_response_batch_cuda(const float* z, const float* x, const float* alpha, int n, int c, int h, int w,
                             bool gaussian, float sigma, float* response) {
  const int hw = h * w, nf = h * (w / 2 + 1);
  const size_t feat = static_cast<size_t>(n) * c * hw, feat_f = static_cast<size_t>(n) * c * nf;
  DeviceBuffer<float> dz(feat), dx(feat), dalpha(static_cast<size_t>(n) * hw), dk(static_cast<size_t>(n) * hw);
  DeviceBuffer<float> dzz(n), dxx(n);
  DeviceBuffer<cufftComplex> dzf(feat_f), dxf(feat_f), dacc(static_cast<size_t>(n) * nf),
      dkf(static_cast<size_t>(n) * nf);
  cuda_check(cudaMemcpy(dz.get(), z, feat * sizeof(float), cudaMemcpyHostToDevice), "copy z");
  cuda_check(cudaMemcpy(dx.get(), x, feat * sizeof(float), cudaMemcpyHostToDevice), "copy x");
  cuda_check(cudaMemcpy(dalpha.get(), alpha, static_cast<size_t>(n) * hw * sizeof(float), cudaMemcpyHostToDevice),
             "copy alpha");

  PlanGuard fwd_feat, fwd_one, inv_one;
  make_plan(fwd_feat, h, w, n * c, CUFFT_R2C);
  make_plan(fwd_one, h, w, n, CUFFT_R2C);
  make_plan(inv_one, h, w, n, CUFFT_C2R);

  energy_kernel<<<n, 256>>>(dz.get(), c * hw, dzz.get());
  energy_kernel<<<n, 256>>>(dx.get(), c * hw, dxx.get());
  cufft_check(cufftExecR2C(fwd_feat.h, dz.get(), dzf.get()), "r2c z");
  cufft_check(cufftExecR2C(fwd_feat.h, dx.get(), dxf.get()), "r2c x");
  const float scale = gaussian ? 1.f : 1.f / (static_cast<float>(hw) * c);
  cross_spectrum_kernel<<<blocks(static_cast<size_t>(n) * nf), 256>>>(dzf.get(), dxf.get(), n, c, nf, scale,
                                                                      dacc.get());
  if (gaussian) {
    cufft_check(cufftExecC2R(inv_one.h, dacc.get(), dk.get()), "c2r xy");
    gaussian_kernel<<<blocks(static_cast<size_t>(n) * hw), 256>>>(dk.get(), dzz.get(), dxx.get(), n, hw, c, sigma);
    cufft_check(cufftExecR2C(fwd_one.h, dk.get(), dacc.get()), "r2c k");
  }
  // dacc now holds kzf; alphaf into dkf, product, inverse.
  cufft_check(cufftExecR2C(fwd_one.h, dalpha.get(), dkf.get()), "r2c alpha");
  multiply_kernel<<<blocks(static_cast<size_t>(n) * nf), 256>>>(dacc.get(), dkf.get(), n * nf);
  cufft_check(cufftExecC2R(inv_one.h, dacc.get(), dk.get()), "c2r response");
  scale_kernel<<<blocks(static_cast<size_t>(n) * hw), 256>>>(dk.get(), n * hw, 1.f / hw);
  cuda_check(cudaGetLastError(), "kernel launch");
  cuda_check(cudaMemcpy(response, dk.get(), static_cast<size_t>(n) * hw * sizeof(float), cudaMemcpyDeviceToHost),
             "copy response");
}

}  // namespace tracking
}  // namespace lanner
