#pragma once
// Argument checks for the C++ core. A failed check throws std::invalid_argument,
// which the bindings turn into Python's ValueError; the core never aborts.
#include <sstream>
#include <stdexcept>
#include <string>

namespace hbt {

template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream message;
  (message << ... << parts);
  throw std::invalid_argument(message.str());
}

template <typename... Parts>
void require(bool condition, const Parts&... parts) {
  if (!condition) fail(parts...);
}

}  // namespace hbt
