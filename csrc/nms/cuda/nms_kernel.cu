// CUDA greedy NMS: the bitmask scheme (as in torchvision's nms_kernel.cu), with
// the sequential reduction kept on the device (cf. pytorch/vision#8766: copying
// the N x N/64 mask to the host dominated past ~30k boxes, vision#8713).
//
//   1. sort on the device: score descending, stable, so ties keep the lower
//      index first (cub radix sort; -0.0 folded into +0.0 first);
//   2. mask kernel: for every pair i < j of the first m ranked boxes, bit j of
//      row i says "i suppresses j" (same class, overlap > threshold), computed
//      with the shared box_overlap() in double, no FMA, so decisions match the
//      CPU bit for bit;
//   3. reduction kernel: one block walks the rows in rank order, keeping a row
//      when its bit is clear in the running "removed" mask (shared memory) and
//      OR-ing its mask row in; it stops at max_output;
//   4. only the kept count and kept indices come back to the host.
//
// Per-class NMS needs no coordinate offsets (torchvision adds class * max
// coordinate, which costs float precision): the mask kernel compares class ids.
#include <cub/cub.cuh>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/cuda_util.cuh"
#include "nms/nms.h"

namespace lanner {
namespace {

constexpr int kBitsPerWord = 64;               // one mask word covers 64 columns
constexpr int kReduceThreads = 256;            // threads of the single reduction block
constexpr size_t kMaxSharedBytes = 48 * 1024;  // default dynamic shared memory per block

struct RankedBox {
  double x1, y1, x2, y2, area;
  int64_t class_id;
};

__global__ void make_sort_keys(const float* scores, int n, bool has_threshold, double score_threshold, float* keys,
                               int32_t* rows) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float s = scores[i];
  // Filtered boxes sink below every finite score; the host knows how many pass.
  const bool pass = !has_threshold || static_cast<double>(s) > score_threshold;
  keys[i] = pass ? s + 0.0f : -INFINITY;
  rows[i] = i;
}

__global__ void gather_ranked(const float* boxes, const int64_t* class_ids, const int32_t* rows, int m,
                              RankedBox* ranked) {
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= m) return;
  const int32_t r = rows[k];
  const double x1 = boxes[4 * r], y1 = boxes[4 * r + 1], x2 = boxes[4 * r + 2], y2 = boxes[4 * r + 3];
  ranked[k] = {x1, y1, x2, y2, box_area(x1, y1, x2, y2), class_ids != nullptr ? class_ids[r] : 0};
}

// Block (col_block, row_block), 64 threads: thread t fills the mask word of
// row row_block*64+t for columns col_block*64 .. +63 (only columns j > row).
__global__ void suppression_mask(const RankedBox* ranked, int m, int col_blocks, double threshold, OverlapMode mode,
                                 unsigned long long* mask) {
  const int row_block = blockIdx.y, col_block = blockIdx.x;
  if (col_block < row_block) return;  // never read by the reduction
  const int row_size = min(m - row_block * kBitsPerWord, kBitsPerWord);
  const int col_size = min(m - col_block * kBitsPerWord, kBitsPerWord);
  __shared__ RankedBox cols[kBitsPerWord];
  if (threadIdx.x < col_size) cols[threadIdx.x] = ranked[col_block * kBitsPerWord + threadIdx.x];
  __syncthreads();
  if (threadIdx.x >= row_size) return;
  const int i = row_block * kBitsPerWord + threadIdx.x;
  const RankedBox a = ranked[i];
  unsigned long long bits = 0;
  const int start = (row_block == col_block) ? threadIdx.x + 1 : 0;
  for (int c = start; c < col_size; ++c) {
    const RankedBox& b = cols[c];
    if (a.class_id == b.class_id &&
        box_overlap(a.x1, a.y1, a.x2, a.y2, a.area, b.x1, b.y1, b.x2, b.y2, b.area, mode) > threshold) {
      bits |= 1ULL << c;
    }
  }
  mask[static_cast<size_t>(i) * col_blocks + col_block] = bits;
}

// One block: greedy pass over the rows in rank order. `removed` lives in
// dynamic shared memory (col_blocks words). Writes kept rank positions to
// `kept` and their count to *n_kept.
__global__ void reduce_mask(const unsigned long long* mask, int m, int col_blocks, int limit, int32_t* kept,
                            int* n_kept) {
  extern __shared__ unsigned long long removed[];
  for (int w = threadIdx.x; w < col_blocks; w += blockDim.x) removed[w] = 0;
  __syncthreads();
  int count = 0;  // identical in every thread
  for (int i = 0; i < m && count < limit; ++i) {
    const int word = i / kBitsPerWord;
    // Every thread reads the same bit, so the branch is uniform and `count`
    // stays identical. A thread may run ahead into the next kept row's OR loop
    // while others still read here: that row only sets bits of higher ranks,
    // so the bits being read do not change (and 64-bit shared words do not tear).
    if (removed[word] & (1ULL << (i % kBitsPerWord))) continue;
    if (threadIdx.x == 0) kept[count] = i;
    ++count;
    const unsigned long long* row = mask + static_cast<size_t>(i) * col_blocks;
    for (int w = word + threadIdx.x; w < col_blocks; w += blockDim.x) removed[w] |= row[w];
    __syncthreads();
  }
  if (threadIdx.x == 0) *n_kept = count;
}

__global__ void kept_rows(const int32_t* kept, const int32_t* rows, int n, int64_t* out) {
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k < n) out[k] = rows[kept[k]];
}

int blocks_for(int n, int threads) {
  return (n + threads - 1) / threads;
}

}  // namespace

std::vector<int64_t> nms_cuda(const BoxesView& in, const NmsParams& p) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    cudaGetLastError();
    throw std::runtime_error("device='cuda' requested, but no CUDA device is usable (lanner.has_cuda() is False)");
  }
  const int n = static_cast<int>(in.n);
  // How many boxes pass the score threshold (the host has the scores anyway).
  int m = n;
  if (p.score_threshold) {
    m = 0;
    for (int i = 0; i < n; ++i) m += static_cast<double>(in.scores[i]) > *p.score_threshold;
  }
  const int limit = p.max_output ? static_cast<int>(std::min<int64_t>(*p.max_output, m)) : m;
  if (m == 0 || limit == 0) return {};
  const int col_blocks = blocks_for(m, kBitsPerWord);
  if (static_cast<size_t>(col_blocks) * sizeof(unsigned long long) > kMaxSharedBytes || col_blocks > 65535) {
    throw std::invalid_argument("device='cuda' handles at most " +
                                std::to_string(kMaxSharedBytes / sizeof(unsigned long long) * kBitsPerWord) +
                                " boxes after the score threshold, got " + std::to_string(m) + "; use device='cpu'");
  }

  DeviceBuffer<float> d_boxes(static_cast<size_t>(n) * 4), d_scores(n), d_keys(n), d_keys_sorted(n);
  DeviceBuffer<int64_t> d_classes(in.class_ids != nullptr ? n : 0);
  DeviceBuffer<int32_t> d_rows(n), d_rows_sorted(n);
  cuda_check(cudaMemcpy(d_boxes.get(), in.boxes, sizeof(float) * 4 * n, cudaMemcpyHostToDevice), "copy boxes");
  cuda_check(cudaMemcpy(d_scores.get(), in.scores, sizeof(float) * n, cudaMemcpyHostToDevice), "copy scores");
  if (in.class_ids != nullptr) {
    cuda_check(cudaMemcpy(d_classes.get(), in.class_ids, sizeof(int64_t) * n, cudaMemcpyHostToDevice),
               "copy class_ids");
  }

  constexpr int kThreads = 256;
  make_sort_keys<<<blocks_for(n, kThreads), kThreads>>>(d_scores.get(), n, p.score_threshold.has_value(),
                                                        p.score_threshold.value_or(0.0), d_keys.get(), d_rows.get());
  cuda_check(cudaGetLastError(), "make_sort_keys");
  size_t temp_bytes = 0;
  cuda_check(cub::DeviceRadixSort::SortPairsDescending(nullptr, temp_bytes, d_keys.get(), d_keys_sorted.get(),
                                                       d_rows.get(), d_rows_sorted.get(), n),
             "radix sort (size query)");
  DeviceBuffer<unsigned char> d_temp(temp_bytes);
  cuda_check(cub::DeviceRadixSort::SortPairsDescending(d_temp.get(), temp_bytes, d_keys.get(), d_keys_sorted.get(),
                                                       d_rows.get(), d_rows_sorted.get(), n),
             "radix sort");

  DeviceBuffer<RankedBox> d_ranked(m);
  gather_ranked<<<blocks_for(m, kThreads), kThreads>>>(
      d_boxes.get(), in.class_ids != nullptr ? d_classes.get() : nullptr, d_rows_sorted.get(), m, d_ranked.get());
  cuda_check(cudaGetLastError(), "gather_ranked");

  DeviceBuffer<unsigned long long> d_mask(static_cast<size_t>(m) * col_blocks);
  const dim3 grid(col_blocks, col_blocks);
  suppression_mask<<<grid, kBitsPerWord>>>(d_ranked.get(), m, col_blocks, p.iou_threshold, p.mode, d_mask.get());
  cuda_check(cudaGetLastError(), "suppression_mask");

  DeviceBuffer<int32_t> d_kept(limit);
  DeviceBuffer<int> d_count(1);
  reduce_mask<<<1, kReduceThreads, col_blocks * sizeof(unsigned long long)>>>(d_mask.get(), m, col_blocks, limit,
                                                                              d_kept.get(), d_count.get());
  cuda_check(cudaGetLastError(), "reduce_mask");
  int count = 0;
  cuda_check(cudaMemcpy(&count, d_count.get(), sizeof(int), cudaMemcpyDeviceToHost), "copy kept count");
  std::vector<int64_t> out(static_cast<size_t>(count));
  if (count == 0) return out;
  DeviceBuffer<int64_t> d_out(count);
  kept_rows<<<blocks_for(count, kThreads), kThreads>>>(d_kept.get(), d_rows_sorted.get(), count, d_out.get());
  cuda_check(cudaGetLastError(), "kept_rows");
  cuda_check(cudaMemcpy(out.data(), d_out.get(), sizeof(int64_t) * count, cudaMemcpyDeviceToHost), "copy kept rows");
  return out;
}

}  // namespace lanner
