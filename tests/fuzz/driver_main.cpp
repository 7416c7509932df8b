// Deterministic driver for the fuzz harnesses when libFuzzer is not available (gcc): runs
// each corpus file once, then random and mutated inputs for a bounded time. The input being
// run is saved to crash-<harness>-<hash> when the process dies (sanitizer report, abort,
// uncaught exception), so a failure found in CI replays with `fuzz_<name> crash-...`.
#include <fcntl.h>
#include <sanitizer/common_interface_defs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<uint8_t> current;  // the input being run, saved by the death handlers
std::string harness_name = "fuzz";

uint64_t splitmix(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

void save_current_input() {
  uint64_t hash = 1469598103934665603ULL;  // FNV-1a: a stable name for the same input
  for (uint8_t byte : current) hash = (hash ^ byte) * 1099511628211ULL;
  char name[256];
  std::snprintf(name, sizeof(name), "crash-%s-%016llx", harness_name.c_str(),
                static_cast<unsigned long long>(hash));
  const int fd = ::open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    if (!current.empty() && ::write(fd, current.data(), current.size()) < 0) {}
    ::close(fd);
  }
  std::fprintf(stderr, "%s: failing input (%zu bytes) saved to %s\n", harness_name.c_str(),
               current.size(), name);
}

void on_signal(int signal_number) {
  save_current_input();
  std::signal(signal_number, SIG_DFL);
  std::raise(signal_number);
}

void run(const std::vector<uint8_t>& input) {
  current = input;
  LLVMFuzzerTestOneInput(current.data(), current.size());
}

void mutate(std::vector<uint8_t>& input, uint64_t& rng, size_t max_len) {
  const uint64_t edits = 1 + splitmix(rng) % 8;
  for (uint64_t e = 0; e < edits; ++e) {
    const uint64_t what = splitmix(rng) % 4;
    if (what == 0 && !input.empty()) {
      input[splitmix(rng) % input.size()] = static_cast<uint8_t>(splitmix(rng));
    } else if (what == 1 && input.size() < max_len) {
      input.insert(input.begin() + static_cast<long>(splitmix(rng) % (input.size() + 1)),
                   static_cast<uint8_t>(splitmix(rng)));
    } else if (what == 2 && !input.empty()) {
      input.resize(splitmix(rng) % input.size());
    } else if (!input.empty()) {  // flip one bit
      input[splitmix(rng) % input.size()] ^= static_cast<uint8_t>(1u << (splitmix(rng) % 8));
    }
  }
}

std::vector<uint8_t> read_file(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

}  // namespace

int main(int argc, char** argv) {
  harness_name = std::filesystem::path(argv[0]).filename().string();
  double seconds = 10.0;
  uint64_t runs = UINT64_MAX, seed = 0;
  size_t max_len = 4096;
  std::vector<std::filesystem::path> paths;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s: %s needs a value\n", harness_name.c_str(), arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--seconds") seconds = std::stod(value());
    else if (arg == "--runs") runs = std::stoull(value());
    else if (arg == "--seed") seed = std::stoull(value());
    else if (arg == "--max-len") max_len = std::stoull(value());
    else paths.emplace_back(arg);
  }
  __sanitizer_set_death_callback(save_current_input);
  std::signal(SIGABRT, on_signal);
  std::signal(SIGSEGV, on_signal);
  std::signal(SIGFPE, on_signal);

  std::vector<std::vector<uint8_t>> corpus;
  for (const auto& path : paths) {
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_directory(path)) {
      for (const auto& entry : std::filesystem::directory_iterator(path)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
      std::sort(files.begin(), files.end());
    } else {
      files.push_back(path);
    }
    for (const auto& file : files) {
      corpus.push_back(read_file(file));
      run(corpus.back());
    }
  }
  const auto start = std::chrono::steady_clock::now();
  const auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  uint64_t rng = seed, done = 0;
  std::vector<uint8_t> input;
  for (; done < runs && elapsed() < seconds; ++done) {
    if (!corpus.empty() && splitmix(rng) % 2 == 0) {
      input = corpus[splitmix(rng) % corpus.size()];
      mutate(input, rng, max_len);
    } else {
      // Mostly short inputs: they decode to small configurations, where edge cases live.
      const size_t len = splitmix(rng) % 4 == 0 ? splitmix(rng) % (max_len + 1) : splitmix(rng) % 96;
      input.resize(len);
      for (uint8_t& byte : input) byte = static_cast<uint8_t>(splitmix(rng));
    }
    run(input);
  }
  std::printf("%s: %zu corpus files and %llu generated inputs in %.1f s (seed %llu), no failure\n",
              harness_name.c_str(), corpus.size(), static_cast<unsigned long long>(done), elapsed(),
              static_cast<unsigned long long>(seed));
  return 0;
}
