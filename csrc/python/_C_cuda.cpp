// Bindings of the optional CUDA loss as the private module _C_cuda. The shape and the buffers
// are typed classes (hbt::InfoNceCudaShape, hbt::InfoNceCudaBuffers): Python fills them from
// torch tensors (device addresses from data_ptr(), the stream's raw handle) and allocates every
// buffer itself (see hbt_fast/ops/backends/cuda.py); the core checks the values.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "loss/info_nce_cuda.hpp"

namespace py = pybind11;

namespace {

void bind_shape(py::module_& m) {
  py::enum_<hbt::CudaDtype>(m, "CudaDtype")
      .value("float32", hbt::CudaDtype::kFloat32)
      .value("float16", hbt::CudaDtype::kFloat16)
      .value("bfloat16", hbt::CudaDtype::kBFloat16);
  using Shape = hbt::InfoNceCudaShape;
  py::class_<Shape>(m, "InfoNceCudaShape")
      .def(py::init([](int64_t num_queries, int64_t num_passages, int64_t dim,
                       hbt::CudaDtype dtype, bool symmetric, bool compute_gradients,
                       int64_t block_rows) {
             Shape shape;
             shape.num_queries = num_queries;
             shape.num_passages = num_passages;
             shape.dim = dim;
             shape.dtype = dtype;
             shape.symmetric = symmetric;
             shape.compute_gradients = compute_gradients;
             shape.block_rows = block_rows;
             return shape;
           }),
           py::kw_only(), py::arg("num_queries"), py::arg("num_passages"), py::arg("dim"),
           py::arg("dtype") = hbt::CudaDtype::kFloat32, py::arg("symmetric") = false,
           py::arg("compute_gradients") = true, py::arg("block_rows") = 0)
      .def_readwrite("num_queries", &Shape::num_queries)
      .def_readwrite("num_passages", &Shape::num_passages)
      .def_readwrite("dim", &Shape::dim)
      .def_readwrite("dtype", &Shape::dtype)
      .def_readwrite("symmetric", &Shape::symmetric)
      .def_readwrite("compute_gradients", &Shape::compute_gradients)
      .def_readwrite("block_rows", &Shape::block_rows);
}

void bind_buffers(py::module_& m) {
  using Buffers = hbt::InfoNceCudaBuffers;
  py::class_<Buffers>(m, "InfoNceCudaBuffers")
      .def(py::init<>())
      .def_readwrite("queries", &Buffers::queries)
      .def_readwrite("passages", &Buffers::passages)
      .def_readwrite("query_groups", &Buffers::query_groups)
      .def_readwrite("passage_groups", &Buffers::passage_groups)
      .def_readwrite("scale", &Buffers::scale)
      .def_readwrite("result", &Buffers::result)
      .def_readwrite("grad_queries", &Buffers::grad_queries)
      .def_readwrite("grad_passages", &Buffers::grad_passages)
      .def_readwrite("workspace", &Buffers::workspace)
      .def_readwrite("workspace_bytes", &Buffers::workspace_bytes)
      .def_readwrite("device", &Buffers::device)
      .def_readwrite("stream", &Buffers::stream)
      .def_readwrite("allow_tf32", &Buffers::allow_tf32);
}

void bind_cuda_loss(py::module_& m) {
  bind_shape(m);
  bind_buffers(m);
  m.def("workspace_bytes", &hbt::info_nce_cuda_workspace_bytes, py::arg("shape"),
        "Bytes of workspace info_nce needs for this shape.");
  m.def("block_rows", &hbt::info_nce_cuda_block_rows, py::arg("shape"));
  m.def("info_nce", &hbt::info_nce_cuda, py::arg("shape"), py::arg("buffers"),
        py::call_guard<py::gil_scoped_release>(),
        "Queues the loss on buffers.stream and returns without waiting.");
  m.def("runtime_problem", &hbt::cuda_runtime_problem,
        py::call_guard<py::gil_scoped_release>());
  m.def("build_description", &hbt::info_nce_cuda_build_description);
}

}  // namespace

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "hbt_fast CUDA loss (private, optional; use the hbt_fast package)";
  bind_cuda_loss(m);
}
