// CPU kernels of the MTCNN pre/post-processing ops; see mtcnn.h.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "common/parallel.h"
#include "mtcnn/mtcnn.h"

namespace lanner::mtcnn {

namespace {

// Adaptive-average-pooling bins, as in PyTorch's AdaptiveAveragePooling: output cell i
// averages input [floor(i * in / out), ceil((i + 1) * in / out)) (the bins overlap when the
// division is not exact, and when upsampling). Computed for every i at once with one
// division, by carrying the remainder: exactly torch's integer bins.
void bins(int in, int out, int offset, int* start, int* end) {
  const int64_t step = in / out, rem = in % out;
  int64_t q = 0, r = 0;  // floor(i * in / out) and the remainder (i * in) % out
  for (int i = 0; i < out; ++i) {
    start[i] = offset + static_cast<int>(q);
    q += step;
    r += rem;
    if (r >= out) {
      ++q;
      r -= out;
    }
    end[i] = offset + static_cast<int>(q + (r > 0 ? 1 : 0));  // ceil((i + 1) * in / out)
  }
}

}  // namespace

// Table rows row_begin + 1 .. row_end (and row 0 when row_begin is 0) from image rows
// [row_begin, row_end). The column sums of the rows above the band are summed first (a
// vectorised pass over bytes), so every band writes its final values at once.
void integral_band(const uint8_t* image, int width, int64_t row_stride, int64_t pixel_stride,
                   const int64_t channel_offset[3], int row_begin, int row_end, uint32_t* table) {
  const int64_t stride = (int64_t{width} + 1) * 3;
  if (row_begin == 0) std::fill(table, table + stride, 0u);
  // Column sums first (one vectorisable add per byte for packed rows), then each table row is
  // the running sum of the column sums along the row: three independent scalar chains.
  // Packed 3- or 4-channel rows (OpenCV's BGR/BGRA, RGB) are summed in their own layout and
  // the channel order applied when reading the column sums; other layouts (grayscale, views
  // with gaps) are gathered pixel by pixel into RGB column sums.
  int64_t max_offset = 0;
  bool in_pixel = true;
  for (int c = 0; c < 3; ++c) {
    in_pixel = in_pixel && channel_offset[c] >= 0 && channel_offset[c] < pixel_stride;
    max_offset = std::max(max_offset, channel_offset[c]);
  }
  const bool packed = (pixel_stride == 3 || pixel_stride == 4) && in_pixel;
  const int64_t per_pixel = packed ? pixel_stride : 3;
  const int64_t r0 = packed ? channel_offset[0] : 0;
  const int64_t r1 = packed ? channel_offset[1] : 1;
  const int64_t r2 = packed ? channel_offset[2] : 2;
  const int64_t row_values = int64_t{width} * per_pixel;
  // A packed row is read as one run of bytes, up to the last colour byte of its last pixel
  // (never an alpha or padding byte past it, which the array need not own).
  const int64_t row_read = packed ? (int64_t{width} - 1) * pixel_stride + max_offset + 1 : 0;
  thread_local std::vector<uint32_t> column;
  column.assign(static_cast<size_t>(row_values), 0u);
  uint32_t* col = column.data();
  const auto add_row = [&](int y) {
    const uint8_t* row = image + int64_t{y} * row_stride;
    if (packed) {
      for (int64_t k = 0; k < row_read; ++k) col[k] += row[k];
    } else {
      for (int x = 0; x < width; ++x) {
        const uint8_t* px = row + int64_t{x} * pixel_stride;
        col[3 * int64_t{x}] += px[channel_offset[0]];
        col[3 * int64_t{x} + 1] += px[channel_offset[1]];
        col[3 * int64_t{x} + 2] += px[channel_offset[2]];
      }
    }
  };
  for (int y = 0; y < row_begin; ++y) add_row(y);
  for (int y = row_begin; y < row_end; ++y) {
    add_row(y);
    uint32_t* cur = table + (int64_t{y} + 1) * stride;
    uint32_t s0 = 0u, s1 = 0u, s2 = 0u;
    cur[0] = cur[1] = cur[2] = 0u;
    for (int x = 0; x < width; ++x) {
      const uint32_t* c = col + int64_t{x} * per_pixel;
      s0 += c[r0];
      s1 += c[r1];
      s2 += c[r2];
      uint32_t* dst = cur + (int64_t{x} + 1) * 3;
      dst[0] = s0;
      dst[1] = s1;
      dst[2] = s2;
    }
  }
}

void integral_image_cpu(const uint8_t* image, int height, int width, int64_t row_stride, int64_t pixel_stride,
                        const int64_t channel_offset[3], int num_threads, uint32_t* table) {
  // Bands of rows written concurrently; each band first sums the columns above it, which
  // costs a few percent of a written row per row (no second pass over the table).
  constexpr int kMinBandRows = 64;
  const auto most = static_cast<size_t>(std::max(1, height / kMinBandRows));
  const int bands = static_cast<int>(resolve_threads(num_threads, most));
  std::vector<int> edge(bands + 1);
  for (int b = 0; b <= bands; ++b) edge[b] = static_cast<int>(int64_t{height} * b / bands);
  parallel_for(bands, bands, [&](size_t b) {
    integral_band(image, width, row_stride, pixel_stride, channel_offset, edge[b], edge[b + 1], table);
  });
}

// Cloned per instruction set (picked at load time): the division pass vectorises to 16, 8
// or 4 lanes; every clone computes the same floats.
__attribute__((target_clones("avx512f", "avx2", "default"))) void area_resize_normalize_cpu(
    const uint32_t* table, int width, int y0, int y1, int x0, int x1, int out_h, int out_w, int row_begin, int row_end,
    float* out, int64_t out_row_stride, int64_t out_plane_stride) {
  const int64_t stride = (int64_t{width} + 1) * 3;
  const int64_t plane = out_plane_stride;
  // Per output column: the bin's table offsets and width; per output row: its bin rows;
  // per row being written: the channel sums.
  thread_local std::vector<int> cs, ce, rs, re;
  thread_local std::vector<int64_t> xa, xb;
  thread_local std::vector<float> kw;
  thread_local std::vector<uint32_t> sums;
  cs.resize(out_w);
  ce.resize(out_w);
  rs.resize(out_h);
  re.resize(out_h);
  xa.resize(out_w);
  xb.resize(out_w);
  kw.resize(out_w);
  sums.resize(size_t{3} * out_w);
  bins(x1 - x0, out_w, x0, cs.data(), ce.data());
  bins(y1 - y0, out_h, y0, rs.data(), re.data());
  for (int j = 0; j < out_w; ++j) {
    xa[j] = int64_t{cs[j]} * 3;
    xb[j] = int64_t{ce[j]} * 3;
    kw[j] = static_cast<float>(ce[j] - cs[j]);
  }
  uint32_t* s0 = sums.data();
  uint32_t* s1 = s0 + out_w;
  uint32_t* s2 = s1 + out_w;
  const float* kwp = kw.data();
  // The table rows of a small output (a crop) are far apart in a large table, so each
  // corner read would miss the cache: prefetch the corners of the bin rows ahead.
  constexpr int kAhead = 2;
  const bool small = out_w <= 64;
  const auto prefetch_row = [&](int table_row) {
    const uint32_t* r = table + int64_t{table_row} * stride;
    for (int j = 0; j < out_w; ++j) {
      __builtin_prefetch(r + xa[j]);
      __builtin_prefetch(r + xb[j] + 2);
    }
  };
  if (small) {
    for (int i = row_begin; i < std::min(row_end, row_begin + kAhead); ++i) {
      prefetch_row(rs[i]);
      prefetch_row(re[i]);
    }
  }
  for (int i = row_begin; i < row_end; ++i) {
    if (small && i + kAhead < row_end) prefetch_row(re[i + kAhead]);
    const float kh = static_cast<float>(re[i] - rs[i]);
    const uint32_t* top = table + int64_t{rs[i]} * stride;
    const uint32_t* bottom = table + int64_t{re[i]} * stride;
    for (int j = 0; j < out_w; ++j) {
      // Box sums from four corners; modular arithmetic undoes any wrap-around.
      const int64_t a = xa[j], b = xb[j];
      s0[j] = bottom[b] - bottom[a] - top[b] + top[a];
      s1[j] = bottom[b + 1] - bottom[a + 1] - top[b + 1] + top[a + 1];
      s2[j] = bottom[b + 2] - bottom[a + 2] - top[b + 2] + top[a + 2];
    }
    // torch's adaptive average pooling divides the float sum by the bin height, then by its
    // width (sum / kh / kw): the same two float divisions give bit-identical means.
    float* o0 = out + int64_t{i} * out_row_stride;
    float* o1 = o0 + plane;
    float* o2 = o1 + plane;
    for (int j = 0; j < out_w; ++j) o0[j] = (static_cast<float>(s0[j]) / kh / kwp[j] - kPixelMean) * kPixelScale;
    for (int j = 0; j < out_w; ++j) o1[j] = (static_cast<float>(s1[j]) / kh / kwp[j] - kPixelMean) * kPixelScale;
    for (int j = 0; j < out_w; ++j) o2[j] = (static_cast<float>(s2[j]) / kh / kwp[j] - kPixelMean) * kPixelScale;
  }
}

void fill_canvas_gaps_cpu(const std::vector<std::pair<int, int>>& sizes,
                          const std::vector<std::pair<int, int>>& offsets, int canvas_h, int canvas_w, int row_begin,
                          int row_end, float* canvas) {
  const int64_t plane = int64_t{canvas_h} * canvas_w;
  std::vector<std::pair<int, int>> spans;  // the level columns [x0, x1) of a row
  for (int y = row_begin; y < row_end; ++y) {
    spans.clear();
    for (size_t s = 0; s < sizes.size(); ++s) {
      const auto [oy, ox] = offsets[s];
      if (y >= oy && y < oy + sizes[s].first) spans.emplace_back(ox, ox + sizes[s].second);
    }
    std::sort(spans.begin(), spans.end());
    spans.emplace_back(canvas_w, canvas_w);
    int x = 0;
    for (const auto& [x0, x1] : spans) {
      for (int c = 0; c < 3; ++c) {
        float* row = canvas + c * plane + int64_t{y} * canvas_w;
        std::fill(row + x, row + x0, 0.0f);
      }
      x = x1;
    }
  }
}

namespace {

// P-Net's face probability: the softmax of its two logits (not face, face), as torch computes
// it (the larger logit subtracted, the exponentials, their sum).
inline float face_probability(float not_face, float face) {
  const float m = std::max(not_face, face);
  const float e0 = std::exp(not_face - m);
  const float e1 = std::exp(face - m);
  return e1 / (e0 + e1);
}

// The softmax is 1 / (1 + exp(-margin)) with margin = face - not_face, increasing in the
// margin, so a cell whose margin is below the margin of probability (threshold - 1e-6) cannot
// reach the threshold: the float softmax is within a few ulps (< 1e-6) of the exact one. The
// cheap margin test skips the exponentials on all but the candidate cells.
inline float margin_bound(float threshold) {
  const double t = std::min(static_cast<double>(threshold), 1.0) - 1e-6;
  if (!(t > 0.0)) return -INFINITY;
  return static_cast<float>(std::log(t / (1.0 - t)));
}

}  // namespace

void generate_candidates_cpu(const float* maps, int map_h, int map_w, int y0, int x0, int win_h, int win_w, float scale,
                             float threshold, std::vector<float>& rows) {
  const int64_t plane = int64_t{map_h} * map_w;
  const float* reg = maps + 2 * plane;
  const float bound = margin_bound(threshold);
  // Per row: the margin test for every cell (a vectorised pass into a byte mask, zero-padded
  // to whole 8-byte words), then the softmax on the cells that pass it, skipping empty words.
  thread_local std::vector<uint8_t> pass;
  pass.assign(static_cast<size_t>(win_w) + 8, 0);
  uint8_t* m = pass.data();
  for (int y = 0; y < win_h; ++y) {
    const int64_t row = (int64_t{y0} + y) * map_w + x0;
    const float* l0 = maps + row;
    const float* l1 = maps + plane + row;
    for (int x = 0; x < win_w; ++x) m[x] = l1[x] - l0[x] >= bound ? 1 : 0;
    for (int x8 = 0; x8 < win_w; x8 += 8) {
      uint64_t word;
      std::memcpy(&word, m + x8, sizeof word);
      if (word == 0) continue;
      for (int x = x8; x < std::min(x8 + 8, win_w); ++x) {
        if (!m[x]) continue;
        const float p = face_probability(l0[x], l1[x]);
        if (!(p >= threshold)) continue;
        // Cell (x, y) of the map covers input pixels [stride*x + 1, stride*x + cell] at this
        // scale (facenet-pytorch's 1-based convention); divide by scale for image pixels.
        const int64_t k = row + x;
        rows.insert(rows.end(), {std::floor((kStride * static_cast<float>(x) + 1.0f) / scale),
                                 std::floor((kStride * static_cast<float>(y) + 1.0f) / scale),
                                 std::floor((kStride * static_cast<float>(x) + kCellSize) / scale),
                                 std::floor((kStride * static_cast<float>(y) + kCellSize) / scale), p, reg[k],
                                 reg[plane + k], reg[2 * plane + k], reg[3 * plane + k]});
      }
    }
  }
}

}  // namespace lanner::mtcnn
