// Bindings of the C++ core as the private module _C (sampler, CPU loss): converts numpy
// buffers, releases the GIL around C++ work, and lets std::invalid_argument from the core
// surface as Python ValueError (pybind11's default map). The CUDA loss has its own module
// (_C_cuda.cpp), so that _C never depends on CUDA libraries (see cmake/cuda.cmake).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>

#include "build_config.hpp"
#include "common/check.hpp"
#include "loss/info_nce.hpp"
#include "sampler/hybrid_sampler.hpp"

namespace py = pybind11;

namespace {

template <typename T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

// Checks rank and (where given) each dimension of a numpy argument; -1 means any size.
template <typename T>
void check_shape(const CArray<T>& array, const char* name, std::initializer_list<int64_t> shape) {
  hbt::require(array.ndim() == static_cast<py::ssize_t>(shape.size()), name, " must have ",
               shape.size(), " dimensions, got ", array.ndim());
  int axis = 0;
  for (int64_t expected : shape) {
    hbt::require(expected < 0 || array.shape(axis) == expected, name, " has size ",
                 array.shape(axis), " in dimension ", axis, ", expected ", expected);
    ++axis;
  }
}

// ---------------------------------------------------------------- sampler
hbt::HybridSampler make_sampler(const CArray<int64_t>& languages, const CArray<int64_t>& groups,
                                int64_t batch_size, const std::string& mode, double alpha,
                                double lang_exponent, uint64_t seed, int64_t rank,
                                int64_t world_size, bool drop_last) {
  check_shape(languages, "languages", {-1});
  check_shape(groups, "groups", {languages.shape(0)});
  hbt::SamplerConfig config;
  config.batch_size = batch_size;
  config.mode = hbt::parse_sampler_mode(mode);
  config.alpha = alpha;
  config.lang_exponent = lang_exponent;
  config.seed = seed;
  config.rank = rank;
  config.world_size = world_size;
  config.drop_last = drop_last;
  py::gil_scoped_release release;
  return hbt::HybridSampler(languages.data(), groups.data(), languages.shape(0), config);
}

py::tuple sampler_batches(hbt::HybridSampler& sampler, int64_t start, int64_t count) {
  hbt::require(start >= 0 && count >= 0 && start + count <= sampler.num_batches(),
               "batches [", start, ", ", start + count, ") outside the epoch's ",
               sampler.num_batches(), " batches");
  const int64_t width = sampler.config().batch_size;
  py::array_t<int64_t> queries({count, width});
  py::array_t<int64_t> passages({count, width});
  int64_t* query_data = queries.mutable_data();
  int64_t* passage_data = passages.mutable_data();
  {
    py::gil_scoped_release release;
    sampler.batches(start, count, query_data, passage_data);
  }
  return py::make_tuple(queries, passages);
}

py::array_t<int64_t> sampler_batch_languages(const hbt::HybridSampler& sampler) {
  py::array_t<int64_t> languages(sampler.num_batches());
  int64_t* out = languages.mutable_data();
  for (int64_t k = 0; k < sampler.num_batches(); ++k) out[k] = sampler.batch_language(k);
  return languages;
}

void bind_sampler(py::module_& m) {
  py::class_<hbt::HybridSampler>(m, "HybridSampler")
      .def(py::init(&make_sampler), py::arg("languages"), py::arg("groups"),
           py::arg("batch_size"), py::arg("mode"), py::arg("alpha"), py::arg("lang_exponent"),
           py::arg("seed"), py::arg("rank"), py::arg("world_size"), py::arg("drop_last"))
      .def_property_readonly("num_batches", &hbt::HybridSampler::num_batches)
      .def_property_readonly("epoch", &hbt::HybridSampler::epoch)
      .def("set_epoch", &hbt::HybridSampler::set_epoch, py::call_guard<py::gil_scoped_release>())
      .def("batches", &sampler_batches)
      .def("batch_languages", &sampler_batch_languages)
      .def("xx_languages", &hbt::HybridSampler::xx_languages)
      .def("small_languages", &hbt::HybridSampler::small_languages)
      .def_property_readonly("num_cross_groups", &hbt::HybridSampler::num_cross_groups)
      .def_property_readonly("memory_bytes", &hbt::HybridSampler::memory_bytes);
}

// ---------------------------------------------------------------- loss
// Returns (loss, d loss / d scale, grad_q or None, grad_p or None).
template <typename T>
py::tuple info_nce(const CArray<T>& queries, const CArray<T>& passages,
                   const std::optional<CArray<int64_t>>& query_groups,
                   const std::optional<CArray<int64_t>>& passage_groups, double scale,
                   bool symmetric, bool compute_gradients, int num_threads, int64_t block_rows) {
  check_shape(queries, "q", {-1, -1});
  check_shape(passages, "p", {-1, queries.shape(1)});
  hbt::InfoNceInputs inputs;
  inputs.num_queries = queries.shape(0);
  inputs.num_passages = passages.shape(0);
  inputs.dim = queries.shape(1);
  if (query_groups) {
    check_shape(*query_groups, "query_groups", {inputs.num_queries});
    inputs.query_groups = query_groups->data();
  }
  if (passage_groups) {
    check_shape(*passage_groups, "passage_groups", {inputs.num_passages});
    inputs.passage_groups = passage_groups->data();
  }
  hbt::InfoNceOptions options;
  options.scale = scale;
  options.symmetric = symmetric;
  options.compute_gradients = compute_gradients;
  options.num_threads = num_threads;
  options.block_rows = block_rows;
  py::object grad_queries = py::none();
  py::object grad_passages = py::none();
  T* grad_queries_data = nullptr;
  T* grad_passages_data = nullptr;
  if (compute_gradients) {
    py::array_t<T> grad_q({inputs.num_queries, inputs.dim});
    py::array_t<T> grad_p({inputs.num_passages, inputs.dim});
    grad_queries_data = grad_q.mutable_data();
    grad_passages_data = grad_p.mutable_data();
    grad_queries = std::move(grad_q);
    grad_passages = std::move(grad_p);
  }
  hbt::InfoNceResult result;
  {
    py::gil_scoped_release release;
    result = hbt::info_nce<T>(queries.data(), passages.data(), inputs, options,
                              grad_queries_data, grad_passages_data);
  }
  return py::make_tuple(result.loss, result.grad_scale, grad_queries, grad_passages);
}

// One entry point per dtype; the Python wrapper picks the one matching the tensors.
template <typename T>
void def_info_nce(py::module_& m, const char* name) {
  m.def(name, &info_nce<T>, py::arg("q"), py::arg("p"), py::arg("query_groups"),
        py::arg("passage_groups"), py::arg("scale"), py::arg("symmetric"),
        py::arg("compute_gradients"), py::arg("num_threads"), py::arg("block_rows") = 0);
}

void bind_loss(py::module_& m) {
  def_info_nce<float>(m, "info_nce_float32");
  def_info_nce<double>(m, "info_nce_float64");
}

py::dict build_info() {
  py::dict info;
  info["sampler"] = "cpu";
  info["loss"] = hbt::info_nce_blas_name();
  info["loss_cuda_build"] = HBT_CUDA_BUILD_STATUS;
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "hbt_fast C++ core (private; use the hbt_fast package)";
  bind_sampler(m);
  bind_loss(m);
  m.def("build_info", &build_info);
}
