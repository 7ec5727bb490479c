// Boundary validation shared by every op: one place, messages that name
// what was expected and what arrived. std::invalid_argument maps to Python's
// ValueError through pybind11.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace lanner {

template <typename... Parts>
[[noreturn]] inline void fail(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  throw std::invalid_argument(os.str());
}

}  // namespace lanner

// LANNER_CHECK(condition, message parts...): ValueError (std::invalid_argument) with the parts
// streamed together when the condition is false. A macro, like TORCH_CHECK, so that the
// message parts (shape strings, dtype names) are only built on failure: an eager check
// formatted them on every call, ~10 us per small op call.
#define LANNER_CHECK(cond, ...)               \
  do {                                        \
    if (!(cond)) ::lanner::fail(__VA_ARGS__); \
  } while (0)
