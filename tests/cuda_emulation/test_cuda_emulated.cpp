// The CUDA loss (csrc/loss/info_nce_cuda.cu and its kernels, unmodified) run end to end on the
// CPU through the host emulator, against the C++ info_nce<double> on the same rounded inputs.
//
//   test_cuda_emulated [NAME_SUBSTRING]   runs the cases whose name contains the argument
//
// The stub's cuBLAS reads no C for beta = 0 only where the caller gave beta on the host, unless
// HBT_EMULATED_BETA_ZERO=specification (cublas_stub.hpp).
// Exit status 0 when every check passed; each failed check prints one line.
#include "cuda_emulation.hpp"
// After the emulator: HBT_LAUNCH and the CUDA keywords are its own. Included (not linked) so
// that the host code's internals (take_column_logs) are reachable.
#include "loss/info_nce_cuda.cu"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cublas_stub.hpp"
#include "loss/info_nce.hpp"

namespace {

using hbt::CudaDtype;

const auto kStream = reinterpret_cast<cudaStream_t>(uintptr_t{0x5a5a});
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

int failures = 0;

void check(bool ok, const std::string& what) {
  if (ok) return;
  ++failures;
  std::fprintf(stderr, "FAIL %s\n", what.c_str());
}

const char* name_of(CudaDtype dtype) {
  switch (dtype) {
    case CudaDtype::kFloat16: return "float16";
    case CudaDtype::kBFloat16: return "bfloat16";
    default: return "float32";
  }
}

size_t bytes_of(CudaDtype dtype) { return dtype == CudaDtype::kFloat32 ? 4 : 2; }

// Device memory (the emulator's: NaN-filled, registered) for one call.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : data_(hbt_emu::device_malloc(bytes)) {}
  ~DeviceBuffer() { hbt_emu::device_free(data_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return data_; }
  uintptr_t address() const { return reinterpret_cast<uintptr_t>(data_); }

 private:
  void* data_;
};

void write_values(CudaDtype dtype, void* out, const std::vector<double>& values) {
  for (size_t i = 0; i < values.size(); ++i) {
    const auto value = static_cast<float>(values[i]);
    switch (dtype) {
      case CudaDtype::kFloat16: static_cast<__half*>(out)[i] = __float2half_rn(value); break;
      case CudaDtype::kBFloat16:
        static_cast<__nv_bfloat16*>(out)[i] = __float2bfloat16_rn(value);
        break;
      default: static_cast<float*>(out)[i] = value;
    }
  }
}

std::vector<double> read_values(CudaDtype dtype, const void* in, size_t n) {
  std::vector<double> values(n);
  for (size_t i = 0; i < n; ++i) {
    switch (dtype) {
      case CudaDtype::kFloat16: values[i] = __half2float(static_cast<const __half*>(in)[i]); break;
      case CudaDtype::kBFloat16:
        values[i] = __bfloat162float(static_cast<const __nv_bfloat16*>(in)[i]);
        break;
      default: values[i] = static_cast<const float*>(in)[i];
    }
  }
  return values;
}

// Values as the kernel sees them: rounded to dtype.
std::vector<double> rounded(CudaDtype dtype, const std::vector<double>& values) {
  std::vector<char> buffer(values.size() * bytes_of(dtype));
  write_values(dtype, buffer.data(), values);
  return read_values(dtype, buffer.data(), values.size());
}

struct Case {
  std::string name;
  int64_t num_queries, num_passages, dim;
  CudaDtype dtype;
  bool symmetric;
  int num_groups;  // 0: no groups
  int64_t block_rows;
  double scale;
  bool gradients = true;
};

struct Inputs {
  std::vector<double> queries, passages;  // rounded to the case's dtype
  std::vector<int64_t> query_groups, passage_groups;
};

struct Outcome {
  double loss = 0, grad_scale = 0;
  std::vector<double> grad_queries, grad_passages;
};

std::vector<double> unit_rows(int64_t rows, int64_t dim, std::mt19937_64& random) {
  std::normal_distribution<double> normal;
  std::vector<double> values(rows * dim);
  for (int64_t r = 0; r < rows; ++r) {
    double norm = 0;
    for (int64_t d = 0; d < dim; ++d) norm += std::pow(values[r * dim + d] = normal(random), 2);
    for (int64_t d = 0; d < dim; ++d) values[r * dim + d] /= std::sqrt(norm);
  }
  return values;
}

Inputs random_inputs(const Case& c, uint64_t seed = 1) {
  std::mt19937_64 random(seed);
  Inputs in;
  in.queries = rounded(c.dtype, unit_rows(c.num_queries, c.dim, random));
  in.passages = rounded(c.dtype, unit_rows(c.num_passages, c.dim, random));
  if (c.num_groups > 0) {
    std::uniform_int_distribution<int64_t> group(0, c.num_groups - 1);
    for (int64_t i = 0; i < c.num_queries; ++i) in.query_groups.push_back(group(random));
    for (int64_t j = 0; j < c.num_passages; ++j) in.passage_groups.push_back(group(random));
  }
  return in;
}

// info_nce_cuda end to end on emulated device buffers (NaN-filled where nothing writes).
Outcome run_cuda(const Case& c, const Inputs& in, double scale) {
  hbt::InfoNceCudaShape shape;
  shape.num_queries = c.num_queries;
  shape.num_passages = c.num_passages;
  shape.dim = c.dim;
  shape.dtype = c.dtype;
  shape.symmetric = c.symmetric;
  shape.compute_gradients = c.gradients;
  shape.block_rows = c.block_rows;
  const size_t element = bytes_of(c.dtype);
  DeviceBuffer queries(in.queries.size() * element), passages(in.passages.size() * element);
  write_values(c.dtype, queries.get(), in.queries);
  write_values(c.dtype, passages.get(), in.passages);
  const bool grouped = !in.query_groups.empty();
  DeviceBuffer query_groups(in.query_groups.size() * 8), passage_groups(in.passage_groups.size() * 8);
  std::copy(in.query_groups.begin(), in.query_groups.end(),
            static_cast<int64_t*>(query_groups.get()));
  std::copy(in.passage_groups.begin(), in.passage_groups.end(),
            static_cast<int64_t*>(passage_groups.get()));
  DeviceBuffer scale_buffer(sizeof(float)), result(2 * sizeof(float));
  *static_cast<float*>(scale_buffer.get()) = static_cast<float>(scale);
  DeviceBuffer grad_queries(in.queries.size() * element), grad_passages(in.passages.size() * element);
  const size_t workspace_bytes = hbt::info_nce_cuda_workspace_bytes(shape);
  DeviceBuffer workspace(workspace_bytes);

  hbt::InfoNceCudaBuffers buffers;
  buffers.queries = queries.address();
  buffers.passages = passages.address();
  buffers.query_groups = grouped ? query_groups.address() : 0;
  buffers.passage_groups = grouped ? passage_groups.address() : 0;
  buffers.scale = scale_buffer.address();
  buffers.result = result.address();
  buffers.grad_queries = c.gradients ? grad_queries.address() : 0;
  buffers.grad_passages = c.gradients ? grad_passages.address() : 0;
  buffers.workspace = workspace.address();
  buffers.workspace_bytes = workspace_bytes;
  buffers.stream = reinterpret_cast<uintptr_t>(kStream);
  hbt_emu::clear_streams();
  hbt::info_nce_cuda(shape, buffers);
  bool on_stream = !hbt_emu::recorded_streams().empty();
  for (const cudaStream_t stream : hbt_emu::recorded_streams()) on_stream &= stream == kStream;
  check(on_stream, c.name + ": every launch, memset and product on the caller's stream");

  Outcome out;
  const auto* values = static_cast<const float*>(result.get());
  out.loss = values[0];
  out.grad_scale = values[1];
  if (c.gradients) {
    out.grad_queries = read_values(c.dtype, grad_queries.get(), in.queries.size());
    out.grad_passages = read_values(c.dtype, grad_passages.get(), in.passages.size());
  }
  return out;
}

Outcome run_reference(const Case& c, const Inputs& in, double scale) {
  hbt::InfoNceInputs inputs;
  inputs.num_queries = c.num_queries;
  inputs.num_passages = c.num_passages;
  inputs.dim = c.dim;
  inputs.query_groups = in.query_groups.empty() ? nullptr : in.query_groups.data();
  inputs.passage_groups = in.passage_groups.empty() ? nullptr : in.passage_groups.data();
  hbt::InfoNceOptions options;
  options.scale = scale;
  options.symmetric = c.symmetric;
  options.compute_gradients = c.gradients;
  Outcome out;
  out.grad_queries.resize(in.queries.size());
  out.grad_passages.resize(in.passages.size());
  const hbt::InfoNceResult result =
      hbt::info_nce<double>(in.queries.data(), in.passages.data(), inputs, options,
                            out.grad_queries.data(), out.grad_passages.data());
  out.loss = result.loss;
  out.grad_scale = result.grad_scale;
  return out;
}

// Row tolerance of the gradients: 16-bit gradients of the logits and outputs round to 2^-8
// (bfloat16) or 2^-11 (float16) of a row's size.
double row_tolerance(CudaDtype dtype) {
  switch (dtype) {
    case CudaDtype::kFloat16: return 4e-3;
    case CudaDtype::kBFloat16: return 2e-2;
    default: return 1e-4;
  }
}

void check_scalar(const std::string& what, double got, double want, double rtol) {
  char line[256];
  std::snprintf(line, sizeof line, "%s: got %.9g, want %.9g (rtol %g)", what.c_str(), got,
                want, rtol);
  check(std::abs(got - want) <= rtol * std::abs(want) + 1e-7, line);
}

// Each element within rtol of its own magnitude plus its row's largest (as the GPU tests).
void check_rows(const std::string& what, const std::vector<double>& got,
                const std::vector<double>& want, int64_t dim, double rtol) {
  double largest = 0;
  for (const double w : want) largest = std::max(largest, std::abs(w));
  int64_t bad = 0, first_bad_row = -1;
  for (size_t row = 0; row * dim < want.size(); ++row) {
    double row_scale = 0;
    for (int64_t d = 0; d < dim; ++d) row_scale = std::max(row_scale, std::abs(want[row * dim + d]));
    for (int64_t d = 0; d < dim; ++d) {
      const size_t i = row * dim + d;
      const double bound = rtol * (std::abs(want[i]) + row_scale) + 1e-3 * rtol * largest;
      if (!(std::abs(got[i] - want[i]) <= bound)) {
        ++bad;
        if (first_bad_row < 0) first_bad_row = static_cast<int64_t>(row);
      }
    }
  }
  check(bad == 0, what + ": " + std::to_string(bad) + " elements outside the row tolerance, " +
                      "first in row " + std::to_string(first_bad_row));
}

void check_against_reference(const Case& c) {
  const Inputs in = random_inputs(c);
  const Outcome got = run_cuda(c, in, c.scale);
  const Outcome want = run_reference(c, in, c.scale);
  check_scalar(c.name + " loss", got.loss, want.loss, 1e-4);
  if (!c.gradients) return;
  check_scalar(c.name + " d loss / d scale", got.grad_scale, want.grad_scale, 1e-4);
  check_rows(c.name + " grad_q", got.grad_queries, want.grad_queries, c.dim,
             row_tolerance(c.dtype));
  check_rows(c.name + " grad_p", got.grad_passages, want.grad_passages, c.dim,
             row_tolerance(c.dtype));
}

bool all_nan(const std::vector<double>& values) {
  for (const double v : values)
    if (!std::isnan(v)) return false;
  return true;
}

void check_all_nan(const std::string& what, const Outcome& out) {
  check(std::isnan(out.loss) && std::isnan(out.grad_scale) && all_nan(out.grad_queries) &&
            all_nan(out.grad_passages),
        what + ": loss, d loss / d scale and every gradient entry NaN (loss " +
            std::to_string(out.loss) + ")");
}

const CudaDtype kDtypes[] = {CudaDtype::kFloat32, CudaDtype::kFloat16, CudaDtype::kBFloat16};

std::vector<Case> parity_cases() {
  struct Shape {
    const char* name;
    int64_t num_queries, num_passages, dim;
    bool symmetric;
    int num_groups;
    int64_t block_rows;
    double scale;
    bool gradients;
  };
  const Shape shapes[] = {
      {"B=1", 1, 1, 8, false, 0, 0, 20, true},
      {"B=1 symmetric groups extra negatives", 1, 5, 8, true, 2, 0, 1, true},
      {"M=B symmetric", 37, 37, 16, true, 0, 0, 20, true},
      {"groups extra negatives partial blocks", 37, 60, 16, false, 5, 8, 80, true},
      {"symmetric groups several row blocks", 64, 150, 24, true, 10, 16, 33, true},
      {"rows over two gradient chunks", 20, 1300, 16, true, 4, 7, 20, true},
      {"default block rows", 50, 70, 8, true, 0, 0, 10, true},
      {"loss only", 40, 90, 8, true, 6, 16, 20, false},
  };
  std::vector<Case> cases;
  for (const CudaDtype dtype : kDtypes)
    for (const Shape& s : shapes)
      cases.push_back({std::string(name_of(dtype)) + " " + s.name, s.num_queries,
                       s.num_passages, s.dim, dtype, s.symmetric, s.num_groups, s.block_rows,
                       s.scale, s.gradients});
  return cases;
}

// NaN or inf in q, p or the scale, in every dtype: everything NaN.
void check_non_finite_inputs(CudaDtype dtype) {
  const Case c{std::string(name_of(dtype)) + " non-finite", 9, 13, 8, dtype, true, 3, 4, 20};
  for (const double bad : {kNaN, kInf, -kInf}) {
    const std::string value = std::isnan(bad) ? "nan" : bad > 0 ? "inf" : "-inf";
    Inputs in = random_inputs(c);
    in.queries[4 * c.dim + 2] = bad;
    check_all_nan(c.name + " " + value + " in q", run_cuda(c, in, c.scale));
    in = random_inputs(c);
    in.passages[11 * c.dim + 2] = bad;
    check_all_nan(c.name + " " + value + " in p", run_cuda(c, in, c.scale));
    check_all_nan(c.name + " " + value + " scale", run_cuda(c, random_inputs(c), bad));
  }
}

// Finite inputs, one similarity (q[2] . p[5] ~ 6e38) past float32's range: NaN, not inf.
void check_overflowing_similarity(CudaDtype dtype, bool symmetric) {
  const Case c{std::string(name_of(dtype)) + (symmetric ? " symmetric" : "") +
                   " overflowing similarity",
               6, 8, 8, dtype, symmetric, 0, 0, 20};
  Inputs in = random_inputs(c);
  for (int64_t j = 0; j < c.num_passages; ++j) in.passages[j * c.dim] = 0;
  in.queries[2 * c.dim] = 3e38;
  in.passages[5 * c.dim] = 2;
  in.queries = rounded(dtype, in.queries);
  check_all_nan(c.name, run_cuda(c, in, c.scale));
}

// s_ii = 1, s_ij = a: each softmax all but ~7e-5 on its positive. d loss / d scale is then a
// cancellation that loses ~3 digits in float32 unless summed relative to the row's top.
void check_peaked_softmax(CudaDtype dtype, bool symmetric) {
  const int64_t num = 64;
  const double a = 0.3125;
  const Case c{std::string(name_of(dtype)) + (symmetric ? " symmetric" : "") +
                   " peaked softmax",
               num, num, num, dtype, symmetric, 0, 0, 20};
  Inputs in;
  in.queries.assign(num * num, 0.0);
  in.passages.assign(num * num, a);
  for (int64_t i = 0; i < num; ++i) {
    in.queries[i * num + i] = 1;
    in.passages[i * num + i] = 1;
  }
  const Outcome got = run_cuda(c, in, c.scale);
  const Outcome want = run_reference(c, in, c.scale);
  check_scalar(c.name + " d loss / d scale", got.grad_scale, want.grad_scale, 2e-5);
}

// More queries than column_log_kernel's capped grid has threads (4096 x 256), through the
// host code's own launch (take_column_logs).
void check_column_logs_beyond_the_grid() {
  const int64_t n = int64_t{4096} * 256 + 1000;
  DeviceBuffer sums(n * sizeof(float));
  auto* values = static_cast<float*>(sums.get());
  for (int64_t j = 0; j < n; ++j) values[j] = static_cast<float>(j % 13 + 1);
  hbt::take_column_logs(values, n, kStream);
  int64_t wrong = 0, first = -1;
  for (int64_t j = 0; j < n; ++j)
    if (values[j] != std::log(static_cast<float>(j % 13 + 1))) {
      ++wrong;
      if (first < 0) first = j;
    }
  check(wrong == 0, "column logs of B = " + std::to_string(n) + ": " + std::to_string(wrong) +
                        " columns not logged, the first " + std::to_string(first));
}

// The emulator itself: every thread of every block runs exactly once, also when consecutive
// launches differ in size (a worker idle in a 1-thread block must not take a later block's job
// for the generation it saw, nor run one job twice).
void check_every_thread_runs_once() {
  constexpr int kLaunches = 4000;
  constexpr int kThreads = 256;
  std::vector<std::atomic<int>> runs(kThreads);
  int64_t wrong = 0;
  for (int launch = 0; launch < kLaunches; ++launch) {
    const int threads = launch % 2 == 0 ? 1 : kThreads;
    for (auto& count : runs) count = 0;
    hbt_emu::run_grid(dim3(1), dim3(threads), [&] { ++runs[hbt_emu::this_thread().thread_index.x]; });
    for (int t = 0; t < kThreads; ++t) wrong += runs[t] != (t < threads ? 1 : 0);
  }
  check(wrong == 0, "pool: " + std::to_string(wrong) + " threads ran other than once in " +
                        std::to_string(kLaunches) + " launches of 1 and 256 threads");
}

}  // namespace

int main(int argc, char** argv) {
  const std::string filter = argc > 1 ? argv[1] : "";
  const auto selected = [&](const std::string& name) {
    return name.find(filter) != std::string::npos;
  };
  // HBT_EMULATED_BETA_ZERO=specification: C is never read for beta 0 (cuBLAS's documented
  // behaviour); the default is the pessimistic reading (see cublas_stub.hpp).
  const char* beta_zero = std::getenv("HBT_EMULATED_BETA_ZERO");
  hbt_emu::set_beta_zero_mode(beta_zero != nullptr && std::string(beta_zero) == "specification"
                                  ? hbt_emu::BetaZero::kSpecification
                                  : hbt_emu::BetaZero::kPessimistic);
  int run = 0;
  const auto step = [&](const std::string& name, const std::function<void()>& body) {
    if (!selected(name)) return;
    ++run;
    const int before = failures;
    body();
    std::printf("%s %s\n", failures == before ? "ok  " : "FAIL", name.c_str());
    std::fflush(stdout);
  };
  for (const Case& c : parity_cases()) step(c.name, [&] { check_against_reference(c); });
  for (const CudaDtype dtype : kDtypes) {
    step(std::string(name_of(dtype)) + " non-finite inputs and scale",
         [&] { check_non_finite_inputs(dtype); });
    for (const bool symmetric : {false, true})
      step(std::string(name_of(dtype)) + (symmetric ? " symmetric" : "") + " peaked softmax",
           [&] { check_peaked_softmax(dtype, symmetric); });
  }
  for (const CudaDtype dtype : {CudaDtype::kFloat32, CudaDtype::kBFloat16})
    for (const bool symmetric : {false, true})
      step(std::string(name_of(dtype)) + (symmetric ? " symmetric" : "") +
               " overflowing similarity",
           [&] { check_overflowing_similarity(dtype, symmetric); });
  step("column logs beyond the grid", check_column_logs_beyond_the_grid);
  step("every thread runs once", check_every_thread_runs_once);
  if (run == 0) {
    std::fprintf(stderr, "no case matches '%s'\n", filter.c_str());
    return 2;
  }
  std::printf("%d cases, %d failed checks\n", run, failures);
  return failures == 0 ? 0 : 1;
}
