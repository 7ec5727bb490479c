// CPU kernels of the MTCNN pre/post-processing ops; see mtcnn.h.
#include "mtcnn/mtcnn.h"

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

void area_resize_normalize_cpu(const uint8_t* image, int64_t row_stride, int channels, int y0, int y1, int x0,
                               int x1, int out_h, int out_w, float* out, float* scratch) {
  const int in_h = y1 - y0;
  const int in_w = x1 - x0;
  // Pass 1: average along x for every input row -> scratch (in_h x out_w x channels).
  // Separable: the mean over a rectangle is the mean over rows of the row means.
  std::vector<int> xs(out_w), xe(out_w);
  for (int j = 0; j < out_w; ++j) {
    xs[j] = x0 + bin_start(j, in_w, out_w);
    xe[j] = x0 + bin_end(j, in_w, out_w);
  }
  for (int r = 0; r < in_h; ++r) {
    const uint8_t* row = image + (int64_t{y0} + r) * row_stride;
    float* dst = scratch + int64_t{r} * out_w * channels;
    for (int j = 0; j < out_w; ++j) {
      const float inv = 1.0f / static_cast<float>(xe[j] - xs[j]);
      for (int c = 0; c < channels; ++c) {
        float sum = 0.0f;
        for (int x = xs[j]; x < xe[j]; ++x) sum += static_cast<float>(row[int64_t{x} * channels + c]);
        dst[j * channels + c] = sum * inv;
      }
    }
  }
  // Pass 2: average along y, normalise, write planar.
  const int64_t plane = int64_t{out_h} * out_w;
  for (int i = 0; i < out_h; ++i) {
    const int ys = bin_start(i, in_h, out_h);
    const int ye = bin_end(i, in_h, out_h);
    const float inv = 1.0f / static_cast<float>(ye - ys);
    for (int j = 0; j < out_w; ++j) {
      for (int c = 0; c < channels; ++c) {
        float sum = 0.0f;
        for (int r = ys; r < ye; ++r) sum += scratch[(int64_t{r} * out_w + j) * channels + c];
        out[c * plane + int64_t{i} * out_w + j] = (sum * inv - kPixelMean) * kPixelScale;
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
