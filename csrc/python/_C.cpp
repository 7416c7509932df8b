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
#include <vector>

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
// What Python hands the loss: the arrays (kept alive here) behind hbt::InfoNceInputs. Python
// converts tensors to C-contiguous float32/float64 and int64 arrays; sizes are checked by the
// core (hbt::info_nce), dtypes here.
struct LossArrays {
  py::array q;
  py::array p;
  std::optional<CArray<int64_t>> query_groups;
  std::optional<CArray<int64_t>> passage_groups;
};

// loss and grad_scale are 0-dim arrays of the inputs' dtype (torch.from_numpy takes them
// without the cost of building a tensor from a Python float).
struct LossOutputs {
  py::object loss;
  py::object grad_scale;
  py::object grad_q = py::none();
  py::object grad_p = py::none();
};

bool is_float(const py::array& array, char kind_size) {
  return array.dtype().kind() == 'f' && array.itemsize() == kind_size;
}

LossArrays make_loss_arrays(py::array q, py::array p, std::optional<CArray<int64_t>> query_groups,
                            std::optional<CArray<int64_t>> passage_groups) {
  for (const auto& [name, array] : {std::pair<const char*, const py::array&>{"q", q}, {"p", p}}) {
    if (!(is_float(array, 4) || is_float(array, 8)))
      throw py::type_error(std::string(name) + " must be a float32 or float64 array, got " +
                           py::str(array.dtype()).cast<std::string>());
    if (!(array.flags() & py::array::c_style))
      throw py::type_error(std::string(name) + " must be C-contiguous");
    hbt::require(array.ndim() == 2, name, " must have 2 dimensions, got ", array.ndim());
  }
  if (q.itemsize() != p.itemsize())
    throw py::type_error("q and p must have the same dtype");
  hbt::require(p.shape(1) == q.shape(1), "p has size ", p.shape(1),
               " in dimension 1, expected the queries' dimension ", q.shape(1));
  if (query_groups) check_shape(*query_groups, "query_groups", {q.shape(0)});
  if (passage_groups) check_shape(*passage_groups, "passage_groups", {p.shape(0)});
  return {std::move(q), std::move(p), std::move(query_groups), std::move(passage_groups)};
}

hbt::InfoNceInputs core_inputs(const LossArrays& arrays) {
  hbt::InfoNceInputs inputs;
  inputs.num_queries = arrays.q.shape(0);
  inputs.num_passages = arrays.p.shape(0);
  inputs.dim = arrays.q.shape(1);
  if (arrays.query_groups) inputs.query_groups = arrays.query_groups->data();
  if (arrays.passage_groups) inputs.passage_groups = arrays.passage_groups->data();
  return inputs;
}

template <typename T>
LossOutputs run_info_nce(const LossArrays& arrays, const hbt::InfoNceOptions& options) {
  const hbt::InfoNceInputs inputs = core_inputs(arrays);
  LossOutputs outputs;
  T* grad_q_data = nullptr;
  T* grad_p_data = nullptr;
  if (options.compute_gradients && inputs.num_queries >= 1 && inputs.dim >= 1) {
    py::array_t<T> grad_q({inputs.num_queries, inputs.dim});
    py::array_t<T> grad_p({inputs.num_passages, inputs.dim});
    grad_q_data = grad_q.mutable_data();
    grad_p_data = grad_p.mutable_data();
    outputs.grad_q = std::move(grad_q);
    outputs.grad_p = std::move(grad_p);
  }
  const T* q = static_cast<const T*>(arrays.q.data());
  const T* p = static_cast<const T*>(arrays.p.data());
  hbt::InfoNceResult result;
  {
    py::gil_scoped_release release;
    result = hbt::info_nce<T>(q, p, inputs, options, grad_q_data, grad_p_data);
  }
  py::array_t<T> loss(std::vector<py::ssize_t>{});
  py::array_t<T> grad_scale(std::vector<py::ssize_t>{});
  *loss.mutable_data() = static_cast<T>(result.loss);
  *grad_scale.mutable_data() = static_cast<T>(result.grad_scale);
  outputs.loss = std::move(loss);
  outputs.grad_scale = std::move(grad_scale);
  return outputs;
}

LossOutputs info_nce(const LossArrays& arrays, const hbt::InfoNceOptions& options) {
  return arrays.q.itemsize() == 4 ? run_info_nce<float>(arrays, options)
                                  : run_info_nce<double>(arrays, options);
}

// d loss / d sims overwrites sims (a writable C-contiguous [B, M] array) with gradients.
template <typename T>
LossOutputs run_from_similarities(py::array& sims, const LossArrays& groups,
                                  const hbt::InfoNceOptions& options) {
  hbt::InfoNceInputs inputs = core_inputs(groups);
  inputs.num_queries = sims.shape(0);
  inputs.num_passages = sims.shape(1);
  T* data = static_cast<T*>(sims.mutable_data());
  hbt::InfoNceResult result;
  {
    py::gil_scoped_release release;
    result = hbt::info_nce_from_similarities<T>(data, inputs, options);
  }
  LossOutputs outputs;
  py::array_t<T> loss(std::vector<py::ssize_t>{});
  py::array_t<T> grad_scale(std::vector<py::ssize_t>{});
  *loss.mutable_data() = static_cast<T>(result.loss);
  *grad_scale.mutable_data() = static_cast<T>(result.grad_scale);
  outputs.loss = std::move(loss);
  outputs.grad_scale = std::move(grad_scale);
  return outputs;
}

LossOutputs info_nce_from_similarities(py::array sims,
                                       std::optional<CArray<int64_t>> query_groups,
                                       std::optional<CArray<int64_t>> passage_groups,
                                       const hbt::InfoNceOptions& options) {
  if (!(is_float(sims, 4) || is_float(sims, 8)))
    throw py::type_error("sims must be a float32 or float64 array, got " +
                         py::str(sims.dtype()).cast<std::string>());
  if (!(sims.flags() & py::array::c_style) || !sims.writeable())
    throw py::type_error("sims must be a writable C-contiguous array");
  hbt::require(sims.ndim() == 2, "sims must have 2 dimensions, got ", sims.ndim());
  LossArrays groups;
  groups.q = sims;
  groups.p = sims;
  if (query_groups) check_shape(*query_groups, "query_groups", {sims.shape(0)});
  if (passage_groups) check_shape(*passage_groups, "passage_groups", {sims.shape(1)});
  groups.query_groups = std::move(query_groups);
  groups.passage_groups = std::move(passage_groups);
  return sims.itemsize() == 4 ? run_from_similarities<float>(sims, groups, options)
                              : run_from_similarities<double>(sims, groups, options);
}

void bind_loss(py::module_& m) {
  py::class_<hbt::InfoNceOptions>(m, "InfoNceOptions")
      .def(py::init([](double scale, bool symmetric, bool compute_gradients, int num_threads,
                       int64_t block_rows) {
             hbt::InfoNceOptions options;
             options.scale = scale;
             options.symmetric = symmetric;
             options.compute_gradients = compute_gradients;
             options.num_threads = num_threads;
             options.block_rows = block_rows;
             return options;
           }),
           py::kw_only(), py::arg("scale") = 20.0, py::arg("symmetric") = false,
           py::arg("compute_gradients") = true, py::arg("num_threads") = 1,
           py::arg("block_rows") = 0)
      .def_readwrite("scale", &hbt::InfoNceOptions::scale)
      .def_readwrite("symmetric", &hbt::InfoNceOptions::symmetric)
      .def_readwrite("compute_gradients", &hbt::InfoNceOptions::compute_gradients)
      .def_readwrite("num_threads", &hbt::InfoNceOptions::num_threads)
      .def_readwrite("block_rows", &hbt::InfoNceOptions::block_rows);
  py::class_<LossArrays>(m, "InfoNceInputs")
      .def(py::init(&make_loss_arrays), py::arg("q"), py::arg("p"),
           py::arg("query_groups") = py::none(), py::arg("passage_groups") = py::none())
      .def_readonly("q", &LossArrays::q)
      .def_readonly("p", &LossArrays::p)
      .def_readonly("query_groups", &LossArrays::query_groups)
      .def_readonly("passage_groups", &LossArrays::passage_groups);
  py::class_<LossOutputs>(m, "InfoNceOutputs")
      .def_readonly("loss", &LossOutputs::loss)
      .def_readonly("grad_scale", &LossOutputs::grad_scale)
      .def_readonly("grad_q", &LossOutputs::grad_q)
      .def_readonly("grad_p", &LossOutputs::grad_p);
  m.def("info_nce", &info_nce, py::arg("inputs"), py::arg("options"),
        "Loss, d loss / d scale and (with options.compute_gradients) the gradients of q and p.");
  m.def("info_nce_from_similarities", &info_nce_from_similarities, py::arg("sims"),
        py::arg("query_groups"), py::arg("passage_groups"), py::arg("options"),
        "Loss and d loss / d scale from sims [B, M] = q p^T; with options.compute_gradients, "
        "sims is overwritten with d loss / d sims.");
  m.def("info_nce_block_rows",
        [](const LossArrays& arrays, const hbt::InfoNceOptions& options) {
          return hbt::info_nce_block_rows(core_inputs(arrays), options, arrays.q.itemsize());
        },
        py::arg("inputs"), py::arg("options"));
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
