// CPU kernels of the MTCNN pre/post-processing ops; see mtcnn.h.
#include "mtcnn/mtcnn.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace lanner::mtcnn {

namespace {

// Adaptive-average-pooling bins, as in PyTorch's AdaptiveAveragePooling:
// output cell i averages input [floor(i*in/out), ceil((i+1)*in/out)). Integer arithmetic,
// so the bins match torch exactly; the bins overlap when upsampling (out > in).
inline int bin_start(int i, int in, int out) { return static_cast<int>((int64_t{i} * in) / out); }
inline int bin_end(int i, int in, int out) {
  return static_cast<int>(((int64_t{i} + 1) * in + out - 1) / out);
}

}  // namespace

void integral_image_cpu(const uint8_t* image, int height, int width, uint32_t* table) {
  const int64_t stride = (int64_t{width} + 1) * 3;
  std::fill(table, table + stride, 0u);
  for (int y = 0; y < height; ++y) {
    const uint8_t* row = image + int64_t{y} * width * 3;
    const uint32_t* above = table + int64_t{y} * stride;
    uint32_t* cur = table + (int64_t{y} + 1) * stride;
    uint32_t run[3] = {0u, 0u, 0u};
    cur[0] = cur[1] = cur[2] = 0u;
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < 3; ++c) {
        run[c] += row[int64_t{x} * 3 + c];
        cur[(int64_t{x} + 1) * 3 + c] = above[(int64_t{x} + 1) * 3 + c] + run[c];
      }
    }
  }
}

void area_resize_normalize_cpu(const uint32_t* table, int width, int y0, int y1, int x0, int x1, int out_h,
                               int out_w, float* out) {
  const int in_h = y1 - y0;
  const int in_w = x1 - x0;
  const int64_t stride = (int64_t{width} + 1) * 3;
  const int64_t plane = int64_t{out_h} * out_w;
  std::vector<int> xs(out_w), xe(out_w);
  for (int j = 0; j < out_w; ++j) {
    xs[j] = x0 + bin_start(j, in_w, out_w);
    xe[j] = x0 + bin_end(j, in_w, out_w);
  }
  for (int i = 0; i < out_h; ++i) {
    const int ys = y0 + bin_start(i, in_h, out_h);
    const int ye = y0 + bin_end(i, in_h, out_h);
    const uint32_t* top = table + int64_t{ys} * stride;
    const uint32_t* bottom = table + int64_t{ye} * stride;
    for (int j = 0; j < out_w; ++j) {
      const auto area = static_cast<float>(int64_t{ye - ys} * (xe[j] - xs[j]));
      const int64_t a = int64_t{xs[j]} * 3;
      const int64_t b = int64_t{xe[j]} * 3;
      for (int c = 0; c < 3; ++c) {
        // Box sum from four corners; modular arithmetic undoes any wrap-around.
        const uint32_t sum = bottom[b + c] - bottom[a + c] - top[b + c] + top[a + c];
        out[c * plane + int64_t{i} * out_w + j] = (static_cast<float>(sum) / area - kPixelMean) * kPixelScale;
      }
    }
  }
}

int64_t generate_candidates_cpu(const float* prob, const float* reg, int map_h, int map_w, float scale,
                                float threshold, float* rows) {
  const int64_t plane = int64_t{map_h} * map_w;
  int64_t n = 0;
  for (int y = 0; y < map_h; ++y) {
    for (int x = 0; x < map_w; ++x) {
      const int64_t k = int64_t{y} * map_w + x;
      const float p = prob[k];
      if (!(p >= threshold)) continue;
      float* row = rows + n * 9;
      // Cell (x, y) of the map covers input pixels [stride*x + 1, stride*x + cell] at this
      // scale (facenet-pytorch's 1-based convention); divide by scale for image pixels.
      row[0] = std::floor((kStride * static_cast<float>(x) + 1.0f) / scale);
      row[1] = std::floor((kStride * static_cast<float>(y) + 1.0f) / scale);
      row[2] = std::floor((kStride * static_cast<float>(x) + kCellSize) / scale);
      row[3] = std::floor((kStride * static_cast<float>(y) + kCellSize) / scale);
      row[4] = p;
      for (int c = 0; c < 4; ++c) row[5 + c] = reg[c * plane + k];
      ++n;
    }
  }
  return n;
}

}  // namespace lanner::mtcnn
