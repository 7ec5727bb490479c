// MTCNN pre/post-processing ops (Zhang et al., "Joint Face Detection and Alignment using
// Multi-task Cascaded Convolutional Networks", IEEE SPL 2016), matching facenet-pytorch 2.6.0:
//   * area resize + normalisation of the image pyramid and of candidate crops (torch's
//     interpolate(mode="area") == adaptive average pooling, then (x - 127.5) * 0.0078125);
//   * P-Net candidate generation from its logit and regression maps (the softmax on candidates only).
// Validation lives in mtcnn.cpp; the kernels below assume validated, contiguous inputs.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace lanner::mtcnn {

// Mean pixel value and scale applied after resizing: (x - 127.5) / 128.
constexpr float kPixelMean = 127.5f;
constexpr float kPixelScale = 0.0078125f;
// P-Net geometry: 12x12 receptive field ("cell"), output stride 2 px.
constexpr int kCellSize = 12;
constexpr int kStride = 2;

// Summed-area table of a uint8 image with any strides: pixel (y, x) starts at
// image + y * row_stride + x * pixel_stride and its red, green and blue values lie at
// channel_offset[0..2] from there (all three 0 for grayscale; 2, 1, 0 for BGR). `table` is
// (height + 1) x (width + 1) x 3 RGB, table[y][x][c] = sum of image[<y][<x][c], kept modulo
// 2^32 (unsigned wrap-around is well defined; a box sum is exact while the true sum is below
// 2^32, i.e. for boxes under 16.8 Mpx).
//
// Bands of rows are summed over num_threads threads (<= 0: one per core).
void integral_image_cpu(const uint8_t* image, int height, int width, int64_t row_stride, int64_t pixel_stride,
                        const int64_t channel_offset[3], int num_threads, uint32_t* table);

// Area-resizes the rectangle [y0, y1) x [x0, x1) of the image behind `table` (row stride
// (width + 1) * 3) to out_h x out_w -- each output pixel is the mean of its adaptive-average-
// pooling bin, bit-identical to torch's interpolate(mode="area") on the float image -- and
// writes output rows [row_begin, row_end) of it normalised and planar to `out`: value (c, i, j)
// at out[c * out_plane_stride + i * out_row_stride + j] (out_h * out_w and out_w for a dense
// 3 x out_h x out_w block; larger to write into a canvas). Calls on disjoint row ranges, or
// disjoint rectangles of one canvas, may run concurrently.
void area_resize_normalize_cpu(const uint32_t* table, int width, int y0, int y1, int x0, int x1, int out_h, int out_w,
                               int row_begin, int row_end, float* out, int64_t out_row_stride,
                               int64_t out_plane_stride);

// Zeroes the cells of a planar (3, canvas_h, canvas_w) canvas that no level covers, in canvas
// rows [row_begin, row_end): level i is sizes[i] = (h, w) at offsets[i] = (y, x). Calls on
// disjoint row ranges may run concurrently with each other and with the levels' writes.
void fill_canvas_gaps_cpu(const std::vector<std::pair<int, int>>& sizes,
                          const std::vector<std::pair<int, int>>& offsets, int canvas_h, int canvas_w, int row_begin,
                          int row_end, float* canvas);

// P-Net's maps: (6, map_h, map_w) planes -- the two face logits (not face, face), then the
// four box regressions. Candidates are the cells of the window [y0, y0 + win_h) x
// [x0, x0 + win_w) whose face probability (softmax of the logits) is >= threshold.

// Appends one row of 9 floats per candidate to `rows`, in row-major cell order: x1, y1, x2, y2
// (input-image pixels, from the cell's position in the window), probability, reg0..reg3.
void generate_candidates_cpu(const float* maps, int map_h, int map_w, int y0, int x0, int win_h, int win_w, float scale,
                             float threshold, std::vector<float>& rows);

}  // namespace lanner::mtcnn
