#pragma once
// Decodes a fuzzer's bytes into typed arguments. Reading past the end yields zeros, so every
// byte string is a valid input and short inputs mean small, simple cases.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace hbt_fuzz {

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  size_t remaining() const { return size_ - offset_; }

  template <typename T>
  T raw() {  // sizeof(T) bytes as they are: every bit pattern, NaN and infinities included
    unsigned char bytes[sizeof(T)] = {};
    const size_t n = remaining() < sizeof(T) ? remaining() : sizeof(T);
    if (n > 0) std::memcpy(bytes, data_ + offset_, n);
    offset_ += n;
    T value;
    std::memcpy(&value, bytes, sizeof(T));
    return value;
  }

  bool boolean() { return raw<uint8_t>() & 1u; }

  // An integer in [low, high]; one byte decides the scale so that small values are common.
  int64_t in_range(int64_t low, int64_t high) {
    const auto span = static_cast<uint64_t>(high) - static_cast<uint64_t>(low);
    if (span == 0) return low;
    const uint8_t scale = raw<uint8_t>() % 4;
    uint64_t bits = scale == 0 ? raw<uint8_t>() : scale == 1 ? raw<uint16_t>()
                  : scale == 2 ? raw<uint32_t>() : raw<uint64_t>();
    if (span != UINT64_MAX) bits %= span + 1;
    return static_cast<int64_t>(static_cast<uint64_t>(low) + bits);
  }

  // Either a value from `usual` or any 8-byte pattern (about one time in eight).
  template <size_t N>
  double real(const double (&usual)[N]) {
    const uint8_t pick = raw<uint8_t>();
    if (pick % 8 == 7) return raw<double>();
    return usual[pick % N];
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t offset_ = 0;
};

// An invariant the harness checks; a violation aborts, and the driver saves the input.
inline void fuzz_check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "fuzz_check failed: %s\n", what);
    std::abort();
  }
}

}  // namespace hbt_fuzz
