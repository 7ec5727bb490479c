// Correlation-filter tracker for small, blurred, low-resolution targets.
//
// Kernelized correlation filter (Henriques et al., "High-Speed Tracking with
// Kernelized Correlation Filters", TPAMI 2015) on HOG + gray + opponent-colour
// cells, with a small multi-scale search (Li & Zhu, SAMF, ECCV-W 2014), a
// confidence from the peak-to-sidelobe ratio (Bolme et al., MOSSE, CVPR 2010)
// judged against its running mean (Wang et al., LMCF, CVPR 2017), a learning rate
// scaled by that confidence and a lost / re-detection state machine (the model is
// frozen, 9 windows around a velocity-coasted prediction are searched). Tiny
// targets (8 px) are resampled to a minimum working template size.
//
// Layout: this header declares the op; tracking.cpp validates and registers it
// with pybind11; cpu/tracking_kernel.cpp holds the CPU kernels (FFTW3f);
// multi_tracker.h / cpu/multi_tracker.cpp track many targets per frame;
// cuda/tracking_kernel.cu the batched cuFFT response for many targets.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lanner {
namespace tracking {

// Every tuned constant with its unit. Validated by validate_params().
struct TrackerParams {
  float padding = 2.5f;              // search window = target size * (1 + padding)
  int cell_size = 0;                 // HOG cell in template px; 0 = auto (2 below 24 px targets, else 4)
  int min_grid = 24;                 // feature grid side (cells, geometric mean) at least this
  int max_grid = 32;                 // ... and at most this (caps the cost of large targets)
  float window_power = 1.0f;         // feature window = Hann^power (> 1 favours the target centre)
  std::string kernel = "gaussian";   // "gaussian" (KCF) or "linear" (DCF)
  float kernel_sigma = 0.5f;         // Gaussian kernel bandwidth (feature units)
  float lambda = 1e-4f;              // ridge regularisation
  float output_sigma_factor = 0.1f;  // label std = factor * sqrt(target area), in cells
  float learning_rate = 0.02f;       // model interpolation factor at full confidence
  int num_scales = 3;                // scales searched per frame (odd)
  float scale_step = 1.05f;          // ratio between neighbouring scales
  float scale_penalty = 0.985f;      // peak multiplier for a scale change (prefers no change)
  // Confidence. The PSR of a well-tracked target depends on its texture, so the
  // thresholds are relative to the running mean PSR of confident frames (as LMCF,
  // Wang et al. CVPR 2017, does with APCE), with absolute floors.
  float lost_psr = 4.0f;            // below this PSR a frame always counts as a miss
  float miss_ratio = 0.45f;         // ... and below miss_ratio * min(mean PSR, 2 * good_psr) too
  float peak_ratio = 0.4f;          // a peak below peak_ratio * mean peak is a miss too (0 = off)
  float good_psr = 10.0f;           // full learning rate at/above this PSR
  float recover_psr = 6.0f;         // a lost target is re-acquired at/above this PSR
  float recover_ratio = 0.6f;       // ... and at/above recover_ratio * min(mean PSR, 2 * good_psr)
  float recover_peak_ratio = 0.6f;  // ... and its peak at/above this * mean peak (0 = off)
  float snapshot_ratio = 1.0f;      // confident frames with PSR >= this * mean PSR save the model;
                                    // a lost target is searched with the saved model (0 = off)
  float miss_motion = 1.0f;         // fraction of the peak displacement followed on a miss
  int lost_patience = 3;            // consecutive misses before the target is declared lost
  float redetect_spread = 0.6f;     // while lost, extra windows at +-spread * window size
  float redetect_radius = 0.0f;     // ... in rings out to this many window sizes, 8 windows
                                    // per frame in turn (0 or < spread: the 8 neighbours only)
  int num_threads = 0;              // MultiTracker worker threads; 0 = hardware concurrency
};

void validate_params(const TrackerParams& p);

// A read-only 8-bit frame, HxW (channels == 1) or HxWx3 BGR (channels == 3),
// C-contiguous. Validated at the boundary before any kernel sees it.
struct FrameView {
  const uint8_t* data = nullptr;
  int height = 0;
  int width = 0;
  int channels = 0;
};

struct Box {
  float x = 0, y = 0, w = 0, h = 0;  // top-left corner and size, pixels
};

struct TrackState {
  Box box;
  float score = 0;         // peak-to-sidelobe ratio of the chosen response
  bool lost = false;       // lost_patience consecutive misses (PSR below the miss threshold)
  bool recovered = false;  // this frame re-acquired a lost target
};

// Building blocks (exposed for the NumPy oracle tests).
//
// The tracker samples three float planes: gray (0..255) and two opponent colours
// o1 = (R - G) / 255, o2 = (R + G - 2B) / 510 (zero for gray frames).
// Features per cell: HOG (9 unsigned orientation bins of the gray plane, central
// differences, magnitude split linearly between the two nearest bins, summed per
// cell, each cell divided by the RMS energy of its 3x3 cell neighbourhood, clipped
// at 0.5), the gray cell mean / 255 - 0.5, and the o1 and o2 cell means: 12
// channels. `planes` holds the 3 planes of (rows, cols) with a one pixel border:
// rows = grid_h * cell + 2. Output: kChannels x grid_h x grid_w.
constexpr int kHogBins = 9;
constexpr int kPlanes = 3;
constexpr int kChannels = kHogBins + 3;
void extract_features(const float* planes, int rows, int cols, int cell, float* out);

// Peak-to-sidelobe ratio of a h x w response: (peak - mean) / std over the
// cells farther than `exclude` cells (Chebyshev, cyclic) from the peak.
float peak_to_sidelobe(const float* response, int h, int w, int exclude);

// Stateless KCF detection response (h x w) of features z against a model
// (x, alpha in the spatial domain), all kChannels-or-c channel stacks of h x w.
// Used by the oracle tests and the CUDA parity tests.
void kcf_response(const float* z, const float* x, const float* alpha, int c, int h, int w, bool gaussian, float sigma,
                  float* response);

class CorrelationTracker {
 public:
  explicit CorrelationTracker(const TrackerParams& params);
  ~CorrelationTracker();
  CorrelationTracker(const CorrelationTracker&) = delete;
  CorrelationTracker& operator=(const CorrelationTracker&) = delete;

  // `planes` (optional, may be null): the frame already converted with
  // pixel_planes() into kPlanes planes of H x W, shared by a MultiTracker.
  // Frame and box are validated by the caller.
  void init(const FrameView& frame, const float* planes, const Box& box);
  TrackState update(const FrameView& frame, const float* planes);
  bool initialized() const;
  // A batched detection step (MultiTracker with a batch backend): while searching()
  // (initialised, not lost), search_windows() writes the search_count() windows'
  // features z (search_count x kChannels x h x w, h x w = grid_height() x grid_width())
  // and the model x (kChannels x h x w) and alpha (h x w); update_from_responses()
  // then finishes the frame from their kcf_response() maps (search_count x h x w).
  bool searching() const;
  int search_count() const;
  int grid_height() const;
  int grid_width() const;
  void search_windows(const FrameView& frame, const float* planes, float* z, float* x, float* alpha);
  TrackState update_from_responses(const FrameView& frame, const float* planes, const float* responses);
  // Frame pixels the next update() resamples (all its windows, a rough count): a
  // MultiTracker converts the whole frame once only when that is cheaper.
  double sampled_pixels() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// BGR (or gray) pixel -> gray in [0, 255] and two opponent colours; one formula
// shared by every path so that single and multi-target tracking agree bit for bit.
inline void pixel_planes(const uint8_t* px, int channels, float* out) {
  if (channels == 1) {
    out[0] = static_cast<float>(px[0]);
    out[1] = out[2] = 0.f;
    return;
  }
  const float b = px[0], g = px[1], r = px[2];
  out[0] = 0.114f * b + 0.587f * g + 0.299f * r;
  out[1] = (r - g) * (1.f / 255.f);
  out[2] = (r + g - 2.f * b) * (1.f / 510.f);
}

#ifdef LANNER_WITH_CUFFT
// Batched KCF responses on the GPU with cuFFT: n targets, each c x h x w.
// Host arrays in, host array out (n x h x w). Throws std::runtime_error on CUDA errors.
void kcf_response_batch_cuda(const float* z, const float* x, const float* alpha, int n, int c, int h, int w,
                             bool gaussian, float sigma, float* response);
#endif

}  // namespace tracking
}  // namespace lanner
