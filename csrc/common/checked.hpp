#pragma once
// Overflow-checked integer arithmetic: a result that does not fit throws
// std::invalid_argument naming what was computed, instead of wrapping (undefined for signed
// types) and failing later in a division or an allocation.
#include <cstdint>
#include <limits>

#include "common/check.hpp"

namespace hbt {

template <typename T, typename... What>
T checked_mul(T a, T b, const What&... what) {
  T result;
  if (__builtin_mul_overflow(a, b, &result)) {
    fail(what..., " = ", a, " * ", b, " overflows a ", sizeof(T) * 8, "-bit integer");
  }
  return result;
}

template <typename T, typename... What>
T checked_add(T a, T b, const What&... what) {
  T result;
  if (__builtin_add_overflow(a, b, &result)) {
    fail(what..., " = ", a, " + ", b, " overflows a ", sizeof(T) * 8, "-bit integer");
  }
  return result;
}

// `value` converted to To, or an error naming it when it does not fit.
template <typename To, typename From, typename... What>
To checked_cast(From value, const What&... what) {
  To result;
  if (__builtin_add_overflow(value, From{0}, &result)) {
    fail(what..., " = ", value, " does not fit in ", sizeof(To) * 8, " bits");
  }
  return result;
}

}  // namespace hbt
