// Many targets in one frame: one CorrelationTracker per target, spread over worker
// threads, the frame's colour conversion shared when that is cheaper, and an optional
// batched detection step (all searching targets' windows in one call per grid size,
// on the GPU with cuFFT).
//
// Layout: the algorithm lives here and in cpu/multi_tracker.cpp; tracking.cpp only
// validates Python's arguments and dispatches to it.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "tracking/tracking.h"

namespace lanner {
namespace tracking {

// A batched detection step: n KCF responses (n x h x w) of features z (n x c x h x w)
// against models x (n x c x h x w) and alpha (n x h x w), all host arrays. Throws on error.
using BatchResponseFn = std::function<void(const float* z, const float* x, const float* alpha, int n, int c, int h,
                                           int w, bool gaussian, float sigma, float* response)>;

// Not thread-safe by itself: the caller serialises calls (the binding holds a mutex).
class MultiTracker {
 public:
  // batch_response empty: each target runs its own detection (the CPU path). Otherwise the
  // detection step of every searching target goes through it, one call per grid size.
  MultiTracker(const TrackerParams& params, BatchResponseFn batch_response);

  // Replaces earlier targets. Frame and boxes are validated by the caller.
  void init(const FrameView& frame, const std::vector<Box>& boxes);
  // One frame for every target; states in init order. Frame validated by the caller,
  // same size as at init.
  const std::vector<TrackState>& update(const FrameView& frame);
  size_t size() const { return trackers_.size(); }
  int frame_height() const { return height_; }
  int frame_width() const { return width_; }

 private:
  const float* shared_planes(const FrameView& v);
  void batched_update(const FrameView& v, const float* planes);
  template <typename Fn>
  void for_each(size_t n, Fn&& fn);

  TrackerParams params_;
  BatchResponseFn batch_response_;
  std::vector<std::unique_ptr<CorrelationTracker>> trackers_;
  std::vector<TrackState> states_;
  std::vector<float> planes_;
  int height_ = 0, width_ = 0;
};

// The CPU kcf_response() over a batch, one target after another on the worker threads: the
// batched step without a GPU (tests check the batching with it).
BatchResponseFn cpu_batch_response(int num_threads);

}  // namespace tracking
}  // namespace lanner
