// Bindings of the optional CUDA loss as the private module _C_cuda (raw device addresses).
#include <pybind11/pybind11.h>

#include <cstdint>

#include "loss/info_nce_cuda.hpp"

namespace py = pybind11;

namespace {

// ---------------------------------------------------------------- CUDA loss
// Tensors arrive as device addresses (torch's data_ptr()), the stream as its raw handle; the
// caller allocates every buffer (see hbt_fast/losses/_fused.py).
hbt::InfoNceCudaShape cuda_shape(int64_t num_queries, int64_t num_passages, int64_t dim,
                                 int dtype, bool symmetric, bool compute_gradients,
                                 int64_t block_rows) {
  hbt::InfoNceCudaShape shape;
  shape.num_queries = num_queries;
  shape.num_passages = num_passages;
  shape.dim = dim;
  shape.dtype = static_cast<hbt::CudaDtype>(dtype);  // checked by the core
  shape.symmetric = symmetric;
  shape.compute_gradients = compute_gradients;
  shape.block_rows = block_rows;
  return shape;
}

size_t cuda_workspace_bytes(int64_t num_queries, int64_t num_passages, int64_t dim, int dtype,
                            bool symmetric, bool compute_gradients, int64_t block_rows) {
  return hbt::info_nce_cuda_workspace_bytes(cuda_shape(
      num_queries, num_passages, dim, dtype, symmetric, compute_gradients, block_rows));
}

void cuda_info_nce(uintptr_t q, uintptr_t p, uintptr_t query_groups, uintptr_t passage_groups,
                   uintptr_t scale, uintptr_t result, uintptr_t grad_q, uintptr_t grad_p,
                   uintptr_t workspace, size_t workspace_bytes, int64_t num_queries,
                   int64_t num_passages, int64_t dim, int dtype, bool symmetric,
                   bool compute_gradients, int64_t block_rows, bool allow_tf32, int device,
                   uintptr_t stream) {
  const hbt::InfoNceCudaShape shape = cuda_shape(num_queries, num_passages, dim, dtype, symmetric,
                                                 compute_gradients, block_rows);
  hbt::InfoNceCudaBuffers buffers;
  buffers.queries = q;
  buffers.passages = p;
  buffers.query_groups = query_groups;
  buffers.passage_groups = passage_groups;
  buffers.scale = scale;
  buffers.result = result;
  buffers.grad_queries = grad_q;
  buffers.grad_passages = grad_p;
  buffers.workspace = workspace;
  buffers.workspace_bytes = workspace_bytes;
  buffers.device = device;
  buffers.stream = stream;
  buffers.allow_tf32 = allow_tf32;
  py::gil_scoped_release release;
  hbt::info_nce_cuda(shape, buffers);
}

void bind_cuda_loss(py::module_& m) {
  m.def("workspace_bytes", &cuda_workspace_bytes, py::kw_only(), py::arg("num_queries"),
        py::arg("num_passages"), py::arg("dim"), py::arg("dtype"), py::arg("symmetric"),
        py::arg("compute_gradients"), py::arg("block_rows") = 0);
  m.def("info_nce", &cuda_info_nce, py::kw_only(), py::arg("q"), py::arg("p"),
        py::arg("query_groups"), py::arg("passage_groups"), py::arg("scale"), py::arg("result"),
        py::arg("grad_q"), py::arg("grad_p"), py::arg("workspace"), py::arg("workspace_bytes"),
        py::arg("num_queries"), py::arg("num_passages"), py::arg("dim"), py::arg("dtype"),
        py::arg("symmetric"), py::arg("compute_gradients"), py::arg("block_rows"),
        py::arg("allow_tf32"), py::arg("device"), py::arg("stream"));
  m.def("runtime_problem", &hbt::cuda_runtime_problem,
        py::call_guard<py::gil_scoped_release>());
  m.def("build_description", &hbt::info_nce_cuda_build_description);
}
}  // namespace

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "hbt_fast CUDA loss (private, optional; use the hbt_fast package)";
  bind_cuda_loss(m);
}
