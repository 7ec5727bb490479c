// A small fork-join helper for the native ops: fn(i) for i in [0, n), items handed out one at
// a time from a shared counter to `threads` threads (the caller's included). Threads are
// started per call (tens of microseconds), so it is meant for work of a millisecond or more.
// The first exception thrown by fn is rethrown in the caller once all threads have joined.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace lanner {

// `requested` threads, or the hardware's count when requested <= 0; never more than n.
inline size_t resolve_threads(int requested, size_t n) {
  size_t threads = requested > 0 ? static_cast<size_t>(requested) : std::thread::hardware_concurrency();
  return std::max<size_t>(1, std::min(threads, n));
}

template <typename Fn>
void parallel_for(size_t n, int requested_threads, Fn&& fn) {
  const size_t threads = resolve_threads(requested_threads, n);
  if (threads <= 1) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&]() {
    try {
      for (size_t i = next++; i < n; i = next++) fn(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

// A work item for parallel_for: rows [begin, end) of item `item` (an image, a pyramid level).
struct RowBand {
  int item;
  int begin, end;
};

// Appends the rows [begin, end) of `item` to `bands`, cut into bands of `rows` rows.
inline void append_row_bands(std::vector<RowBand>& bands, int item, int begin, int end, int rows = 32) {
  for (int r = begin; r < end; r += rows) bands.push_back({item, r, std::min(r + rows, end)});
}

}  // namespace lanner
