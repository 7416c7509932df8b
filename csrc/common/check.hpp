#pragma once
// Argument checks for the C++ core. A failed check throws std::invalid_argument,
// which the bindings turn into Python's ValueError; the core never aborts.
//
// Messages are built with std::to_chars, not iostreams: an ostream formats numbers through the
// process's global C++ locale (a host program that sets one gets "1,024" in our messages), and
// in a module linked against a static libstdc++ next to the process's shared one its locale
// facets are not set up: numbers vanished from messages, or the process crashed (seen with a
// GCC 13 toolchain on a GPU machine).
#include <charconv>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

namespace hbt {

namespace detail {

inline void append(std::string& out, std::string_view text) { out += text; }

// Without it a string literal would take the bool overload (pointer to bool is a standard
// conversion, to string_view a user-defined one).
inline void append(std::string& out, const char* text) { out += text; }

inline void append(std::string& out, char c) { out += c; }

inline void append(std::string& out, bool value) { out += value ? "true" : "false"; }

// Integers in decimal; floating point as an ostream's default would print them ("%g", 6
// significant digits: 0.05, 1e-09, inf, nan).
template <typename Number,
          std::enable_if_t<std::is_arithmetic_v<Number> && !std::is_same_v<Number, bool> &&
                               !std::is_same_v<Number, char>,
                           int> = 0>
void append(std::string& out, Number value) {
  char digits[64];
  std::to_chars_result written;
  if constexpr (std::is_floating_point_v<Number>) {
    written = std::to_chars(digits, digits + sizeof digits, value, std::chars_format::general, 6);
  } else {
    written = std::to_chars(digits, digits + sizeof digits, value);
  }
  out.append(digits, written.ptr);
}

}  // namespace detail

template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::string message;
  (detail::append(message, parts), ...);
  throw std::invalid_argument(message);
}

template <typename... Parts>
void require(bool condition, const Parts&... parts) {
  if (!condition) fail(parts...);
}

}  // namespace hbt
