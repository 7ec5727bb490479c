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

template <typename... Parts>
inline void check(bool ok, const Parts&... parts) {
  if (!ok) fail(parts...);
}

}  // namespace lanner
