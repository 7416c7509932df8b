// Bindings of the C++ core as the private module _C (sampler, CPU loss): converts numpy
// buffers, releases the GIL around C++ work, and lets std::invalid_argument from the core
// surface as Python ValueError (pybind11's default map). The CUDA loss has its own module
// (_C_cuda.cpp), so that _C never depends on CUDA libraries (see cmake/cuda.cmake).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <memory>
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
// Batch is a struct sequence (the kind of tuple os.stat_result is): it unpacks as
// (query_rows, passage_rows) and carries kind and language as attributes only, so code
// written for plain pairs keeps working. Built here because a Python tuple subclass with an
// attribute dict costs about five times as much per batch.
PyStructSequence_Field batch_fields[] = {
    {"query_rows", "int64 [batch_size]: rows whose queries form the batch"},
    {"passage_rows", "int64 [batch_size]: rows whose passages are the positives"},
    {"kind", "'xx' (one language, query_rows == passage_rows), 'xy' or 'mixed' "
             "(query_rows == passage_rows, any languages)"},
    {"language", "language id of an X-X batch, -1 for an X-Y or mixed batch"},
    {nullptr, nullptr}};
PyStructSequence_Desc batch_desc = {
    "hbt_fast.sampler.Batch",
    "One rank's batch: unpacks as (query_rows, passage_rows); .kind is 'xx', 'xy' or 'mixed', "
    ".language the X-X language id or -1.",
    batch_fields, 2};
PyTypeObject* batch_type = nullptr;

// A mixed batch, like an X-Y one, has no single language (-1): the sampler's mode tells them apart.
py::object make_batch(PyObject* query_rows, PyObject* passage_rows, int64_t language, hbt::SamplerMode mode) {
  static PyObject* const xx = PyUnicode_InternFromString("xx");
  static PyObject* const xy = PyUnicode_InternFromString("xy");
  static PyObject* const mixed = PyUnicode_InternFromString("mixed");
  PyObject* batch = PyStructSequence_New(batch_type);
  if (batch == nullptr) throw py::error_already_set();
  PyObject* kind = language >= 0 ? xx : (mode == hbt::SamplerMode::kMixed ? mixed : xy);
  Py_INCREF(kind);
  PyStructSequence_SetItem(batch, 0, query_rows);  // steals the references
  PyStructSequence_SetItem(batch, 1, passage_rows);
  PyStructSequence_SetItem(batch, 2, kind);
  PyStructSequence_SetItem(batch, 3, PyLong_FromLongLong(language));
  return py::reinterpret_steal<py::object>(batch);
}

// One Python iteration over an epoch: fetches batches from its own cursor in chunks and
// reports each handed-out position to the sampler (the resume state lives in C++).
class BatchIterator {
 public:
  explicit BatchIterator(std::shared_ptr<hbt::HybridSampler> sampler)
      : sampler_(std::move(sampler)), cursor_(sampler_->begin_iteration()) {}

  py::object next() {
    if (next_ == chunk_.size()) refill();
    if (chunk_.empty()) {  // the epoch is over: the next iteration starts at its first batch
      sampler_->record_position(cursor_.ticket(), 0);
      throw py::stop_iteration();
    }
    py::object batch = std::move(chunk_[next_++]);
    sampler_->record_position(cursor_.ticket(), cursor_.position() - (chunk_.size() - next_));
    return batch;
  }

 private:
  static constexpr int64_t kChunkBatches = 64;

  void refill() {
    chunk_.clear();
    next_ = 0;
    const int64_t count = std::min(kChunkBatches, cursor_.remaining());
    if (count == 0) return;
    const int64_t width = sampler_->config().batch_size;
    py::array_t<int64_t> queries({count, width});
    py::array_t<int64_t> passages({count, width});
    std::vector<int64_t> languages(count);
    cursor_.next(count, queries.mutable_data(), passages.mutable_data(), languages.data());
    chunk_.reserve(count);
    for (int64_t k = 0; k < count; ++k) {  // rows are views into the chunk arrays
      PyObject* query_rows = PySequence_GetItem(queries.ptr(), k);
      PyObject* passage_rows = PySequence_GetItem(passages.ptr(), k);
      if (query_rows == nullptr || passage_rows == nullptr) throw py::error_already_set();
      chunk_.push_back(make_batch(query_rows, passage_rows, languages[k], sampler_->config().mode));
    }
  }

  std::shared_ptr<hbt::HybridSampler> sampler_;
  hbt::EpochCursor cursor_;
  std::vector<py::object> chunk_;
  size_t next_ = 0;
};

// Ids arrive as int64 or uint64 arrays (Python converts every other integer dtype to int64);
// the core checks their values, so uint64 ids >= 2**63 are reported as passed.
template <typename LanguageId, typename GroupId>
hbt::HybridSampler* new_sampler(const py::array& languages, const py::array& groups,
                                const hbt::SamplerConfig& config) {
  const auto l = CArray<LanguageId>::ensure(languages);
  const auto g = CArray<GroupId>::ensure(groups);
  check_shape(l, "languages", {-1});
  check_shape(g, "groups", {-1});
  hbt::require(l.shape(0) == g.shape(0), "languages and groups must have the same length, got ",
               l.shape(0), " and ", g.shape(0));
  py::gil_scoped_release release;
  return new hbt::HybridSampler(l.data(), g.data(), l.shape(0), config);
}

hbt::HybridSampler* make_sampler(const py::array& languages, const py::array& groups,
                                 const hbt::SamplerConfig& config) {
  const bool unsigned_languages = languages.dtype().equal(py::dtype::of<uint64_t>());
  const bool unsigned_groups = groups.dtype().equal(py::dtype::of<uint64_t>());
  if (unsigned_languages && unsigned_groups) return new_sampler<uint64_t, uint64_t>(languages, groups, config);
  if (unsigned_languages) return new_sampler<uint64_t, int64_t>(languages, groups, config);
  if (unsigned_groups) return new_sampler<int64_t, uint64_t>(languages, groups, config);
  return new_sampler<int64_t, int64_t>(languages, groups, config);
}

py::tuple sampler_batches(const hbt::HybridSampler& sampler, int64_t epoch, int64_t start,
                          int64_t count) {
  hbt::require(count >= 0 && count <= sampler.num_batches(), "count must be in [0, ",
               sampler.num_batches(), "], got ", count);
  const int64_t width = sampler.config().batch_size;
  py::array_t<int64_t> queries({count, width});
  py::array_t<int64_t> passages({count, width});
  py::array_t<int64_t> languages(count);
  int64_t* query_data = queries.mutable_data();
  int64_t* passage_data = passages.mutable_data();
  int64_t* language_data = languages.mutable_data();
  {
    py::gil_scoped_release release;
    sampler.batches(epoch, start, count, query_data, passage_data, language_data);
  }
  return py::make_tuple(queries, passages, languages);
}

py::array_t<int64_t> sampler_batch_languages(const hbt::HybridSampler& sampler, int64_t epoch) {
  py::array_t<int64_t> languages(sampler.num_batches());
  int64_t* out = languages.mutable_data();
  py::gil_scoped_release release;
  const hbt::EpochCursor cursor(sampler, epoch, 0);
  for (int64_t k = 0; k < sampler.num_batches(); ++k) out[k] = cursor.batch_language(k);
  return languages;
}

void bind_sampler_config(py::module_& m) {
  py::class_<hbt::SamplerConfig>(m, "SamplerConfig")
      .def(py::init([](int64_t batch_size, const std::string& mode, double alpha,
                       double lang_exponent, uint64_t seed, int64_t rank, int64_t world_size,
                       bool drop_last) {
             hbt::SamplerConfig config;
             config.batch_size = batch_size;
             config.mode = hbt::parse_sampler_mode(mode);
             config.alpha = alpha;
             config.lang_exponent = lang_exponent;
             config.seed = seed;
             config.rank = rank;
             config.world_size = world_size;
             config.drop_last = drop_last;
             config.validate();
             return config;
           }),
           py::kw_only(), py::arg("batch_size"), py::arg("mode") = "hybrid",
           py::arg("alpha") = 0.5, py::arg("lang_exponent") = 0.0, py::arg("seed") = 0,
           py::arg("rank") = 0, py::arg("world_size") = 1, py::arg("drop_last") = true)
      .def_readwrite("batch_size", &hbt::SamplerConfig::batch_size)
      .def_property(
          "mode", [](const hbt::SamplerConfig& c) { return hbt::sampler_mode_name(c.mode); },
          [](hbt::SamplerConfig& c, const std::string& mode) { c.mode = hbt::parse_sampler_mode(mode); })
      .def_readwrite("alpha", &hbt::SamplerConfig::alpha)
      .def_readwrite("lang_exponent", &hbt::SamplerConfig::lang_exponent)
      .def_readwrite("seed", &hbt::SamplerConfig::seed)
      .def_readwrite("rank", &hbt::SamplerConfig::rank)
      .def_readwrite("world_size", &hbt::SamplerConfig::world_size)
      .def_readwrite("drop_last", &hbt::SamplerConfig::drop_last)
      .def("validate", &hbt::SamplerConfig::validate);

  py::class_<hbt::SamplerState>(m, "SamplerState")
      .def_readwrite("epoch", &hbt::SamplerState::epoch)
      .def_readwrite("position", &hbt::SamplerState::position)
      .def_readwrite("config", &hbt::SamplerState::config)
      .def_readwrite("num_pairs", &hbt::SamplerState::num_pairs)
      .def_readwrite("num_batches", &hbt::SamplerState::num_batches)
      .def_readwrite("data_digest", &hbt::SamplerState::data_digest);
}

void bind_sampler(py::module_& m) {
  batch_type = PyStructSequence_NewType(&batch_desc);
  if (batch_type == nullptr) throw py::error_already_set();
  m.add_object("Batch", py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(batch_type)));
  bind_sampler_config(m);

  py::class_<BatchIterator>(m, "BatchIterator")
      .def("__iter__", [](py::object self) { return self; })
      .def("__next__", &BatchIterator::next);

  using Sampler = hbt::HybridSampler;
  py::class_<Sampler, std::shared_ptr<Sampler>>(m, "HybridSampler")
      .def(py::init(&make_sampler), py::arg("languages"), py::arg("groups"), py::arg("config"))
      .def_property_readonly("num_batches", &Sampler::num_batches)
      .def_property_readonly("config", &Sampler::config)
      .def_property_readonly("epoch", &Sampler::epoch)
      .def("set_epoch", &Sampler::set_epoch, py::arg("epoch"))
      .def("get_state", &Sampler::state)
      .def("set_state", &Sampler::set_state, py::arg("state"))
      .def("__iter__", [](std::shared_ptr<Sampler> self) { return BatchIterator(std::move(self)); })
      .def("batches", &sampler_batches, py::arg("epoch"), py::arg("start"), py::arg("count"))
      .def("batch_languages", &sampler_batch_languages, py::arg("epoch"))
      .def("xx_languages", &Sampler::xx_languages)
      .def("small_languages", &Sampler::small_languages)
      .def_property_readonly("num_cross_groups", &Sampler::num_cross_groups)
      .def_property_readonly("memory_bytes", &Sampler::memory_bytes);
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
