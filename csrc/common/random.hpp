#pragma once
// Counter-based randomness that gives the same numbers on every platform and compiler:
// no std:: distributions (their output is implementation-defined), only 64-bit integer
// arithmetic. Every random decision is a pure function of (seed, stream, counters), which
// is what lets a sampler jump to any batch without replaying the ones before it.
#include <cstdint>

namespace hbt {

inline uint64_t mix64(uint64_t z) {  // SplitMix64 finaliser (Steele, Lea, Flood 2014)
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

inline uint64_t hash_combine(uint64_t seed, uint64_t value) {
  return mix64(seed ^ (value + 0x9E3779B97F4A7C15ULL + (seed << 6) + (seed >> 2)));
}

template <typename... Values>
uint64_t hash_key(uint64_t seed, Values... values) {
  uint64_t h = mix64(seed);
  ((h = hash_combine(h, static_cast<uint64_t>(values))), ...);
  return h;
}

// Uniform double in [0, 1) from the top 53 bits.
inline double to_unit(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }

// Sequential generator (SplitMix64) for shuffles.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() { return mix64(state_ += 0x9E3779B97F4A7C15ULL); }
  // Unbiased integer in [0, bound), bound < 2^32 (Lemire 2019, with rejection).
  uint32_t below(uint32_t bound) {
    uint64_t product = (next() >> 32) * bound;
    auto low = static_cast<uint32_t>(product);
    if (low < bound) {
      const uint32_t threshold = static_cast<uint32_t>(-bound) % bound;
      while (low < threshold) {
        product = (next() >> 32) * bound;
        low = static_cast<uint32_t>(product);
      }
    }
    return static_cast<uint32_t>(product >> 32);
  }

 private:
  uint64_t state_;
};

// Fisher-Yates shuffle of values[0, n).
template <typename T>
void shuffle(T* values, uint64_t n, Rng& rng) {
  for (uint64_t i = n; i > 1; --i) {
    const uint32_t j = rng.below(static_cast<uint32_t>(i));
    const T tmp = values[i - 1];
    values[i - 1] = values[j];
    values[j] = tmp;
  }
}

}  // namespace hbt
