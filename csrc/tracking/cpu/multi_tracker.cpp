// MultiTracker: N CorrelationTrackers per frame (see multi_tracker.h).
#include "tracking/multi_tracker.h"

#include <algorithm>
#include <map>
#include <utility>

#include "common/parallel.h"

namespace lanner {
namespace tracking {

MultiTracker::MultiTracker(const TrackerParams& params, BatchResponseFn batch_response)
    : params_(params), batch_response_(std::move(batch_response)) {
  validate_params(params);
}

template <typename Fn>
void MultiTracker::for_each(size_t n, Fn&& fn) {
  parallel_for(n, params_.num_threads, std::forward<Fn>(fn));
}

void MultiTracker::init(const FrameView& frame, const std::vector<Box>& boxes) {
  trackers_.clear();
  for (size_t i = 0; i < boxes.size(); ++i) trackers_.push_back(std::make_unique<CorrelationTracker>(params_));
  states_.assign(boxes.size(), TrackState{});
  try {
    for_each(trackers_.size(), [&](size_t i) { trackers_[i]->init(frame, nullptr, boxes[i]); });
  } catch (...) {
    trackers_.clear();  // never half initialised: update() then says "before init"
    states_.clear();
    throw;
  }
  height_ = frame.height;
  width_ = frame.width;
}

const std::vector<TrackState>& MultiTracker::update(const FrameView& frame) {
  const float* planes = shared_planes(frame);
  if (!batch_response_)
    for_each(trackers_.size(), [&](size_t i) { states_[i] = trackers_[i]->update(frame, planes); });
  else
    batched_update(frame, planes);
  return states_;
}

// The frame's planes (gray, opponent colours), converted once for all targets (in row bands
// over the worker threads) when the targets' windows together would convert more pixels than
// the frame holds; else null: each target converts its own windows. The values are the same
// either way (pixel_planes), so are the results.
const float* MultiTracker::shared_planes(const FrameView& v) {
  const size_t n = static_cast<size_t>(v.height) * v.width;
  double sampled = 0;
  for (const auto& t : trackers_) sampled += t->sampled_pixels();
  if (sampled < static_cast<double>(n)) return nullptr;
  planes_.resize(kPlanes * n);
  std::vector<RowBand> bands;
  append_row_bands(bands, 0, 0, v.height);
  for_each(bands.size(), [&](size_t k) {
    const size_t y0 = static_cast<size_t>(bands[k].begin), y1 = static_cast<size_t>(bands[k].end);
    float px[kPlanes];
    for (size_t i = y0 * v.width; i < y1 * v.width; ++i) {
      pixel_planes(v.data + i * v.channels, v.channels, px);
      for (int q = 0; q < kPlanes; ++q) planes_[q * n + i] = px[q];
    }
  });
  return planes_.data();
}

// One frame with batched detection: targets that are searching (not lost) export their
// windows, grouped by grid size; each group's responses come from one batch_response_ call;
// the targets then finish the frame from them. Lost targets run their own re-detection.
void MultiTracker::batched_update(const FrameView& v, const float* planes) {
  std::map<std::pair<int, int>, std::vector<size_t>> groups;
  std::vector<size_t> own;
  for (size_t i = 0; i < trackers_.size(); ++i) {
    if (trackers_[i]->searching())
      groups[{trackers_[i]->grid_height(), trackers_[i]->grid_width()}].push_back(i);
    else
      own.push_back(i);
  }
  for_each(own.size(), [&](size_t j) { states_[own[j]] = trackers_[own[j]]->update(v, planes); });
  const bool gaussian = params_.kernel == "gaussian";
  for (const auto& [grid, members] : groups) {
    const size_t hw = static_cast<size_t>(grid.first) * grid.second;
    const size_t stack = kChannels * hw;
    const size_t windows_per = static_cast<size_t>(trackers_[members[0]]->search_count());
    const size_t windows = members.size() * windows_per;
    std::vector<float> z(windows * stack), x(windows * stack), alpha(windows * hw), response(windows * hw);
    for_each(members.size(), [&](size_t j) {
      const size_t first = j * windows_per;
      trackers_[members[j]]->search_windows(v, planes, z.data() + first * stack, x.data() + first * stack,
                                            alpha.data() + first * hw);
      for (size_t s = 1; s < windows_per; ++s) {  // the same model for every scale
        std::copy(x.data() + first * stack, x.data() + (first + 1) * stack, x.data() + (first + s) * stack);
        std::copy(alpha.data() + first * hw, alpha.data() + (first + 1) * hw, alpha.data() + (first + s) * hw);
      }
    });
    batch_response_(z.data(), x.data(), alpha.data(), static_cast<int>(windows), kChannels, grid.first, grid.second,
                    gaussian, params_.kernel_sigma, response.data());
    for_each(members.size(), [&](size_t j) {
      states_[members[j]] =
          trackers_[members[j]]->update_from_responses(v, planes, response.data() + j * windows_per * hw);
    });
  }
}

BatchResponseFn cpu_batch_response(int num_threads) {
  return [num_threads](const float* z, const float* x, const float* alpha, int n, int c, int h, int w, bool gaussian,
                       float sigma, float* response) {
    const size_t hw = static_cast<size_t>(h) * w, stack = static_cast<size_t>(c) * hw;
    parallel_for(static_cast<size_t>(n), num_threads, [&](size_t i) {
      kcf_response(z + i * stack, x + i * stack, alpha + i * hw, c, h, w, gaussian, sigma, response + i * hw);
    });
  };
}

}  // namespace tracking
}  // namespace lanner
