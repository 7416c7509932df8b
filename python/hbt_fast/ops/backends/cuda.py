"""The CUDA kernel (``hbt_fast._C_cuda``, optional) on CUDA float32/float16/bfloat16 tensors,
queued on the current stream without a host synchronisation. Every buffer, workspace included,
comes from torch's caching allocator (stream-ordered, and visible to its memory statistics).
The loss and d loss / d scale are float32; the gradients have the inputs' dtype."""

from __future__ import annotations

from typing import Optional, Union

import torch

from hbt_fast import _cuda

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _address(tensor: Optional[torch.Tensor]) -> int:
    return 0 if tensor is None else tensor.data_ptr()


def shape(module, q: torch.Tensor, p: torch.Tensor, *, symmetric: bool,
          compute_gradients: bool, block_size: Optional[int]):
    """The kernel's InfoNceCudaShape for these tensors."""
    return module.InfoNceCudaShape(
        num_queries=q.shape[0], num_passages=p.shape[0], dim=q.shape[1],
        dtype=getattr(module.CudaDtype, str(q.dtype).removeprefix("torch.")),
        symmetric=symmetric, compute_gradients=compute_gradients, block_rows=block_size or 0)


def run(q: torch.Tensor, p: torch.Tensor, scale: Union[float, torch.Tensor],
        query_groups: Optional[torch.Tensor], passage_groups: Optional[torch.Tensor], *,
        symmetric: bool, compute_gradients: bool, block_size: Optional[int]):
    module, _ = _cuda.backend()
    q, p = q.contiguous(), p.contiguous()
    scale = torch.as_tensor(scale, dtype=torch.float32, device=q.device).reshape(()).contiguous()
    kernel_shape = shape(module, q, p, symmetric=symmetric, compute_gradients=compute_gradients,
                         block_size=block_size)
    with torch.cuda.device(q.device):
        workspace = torch.empty(module.workspace_bytes(kernel_shape), dtype=torch.uint8,
                                device=q.device)
        result = torch.empty(2, dtype=torch.float32, device=q.device)
        grad_q = torch.empty_like(q) if compute_gradients else None
        grad_p = torch.empty_like(p) if compute_gradients else None
        buffers = module.InfoNceCudaBuffers()
        buffers.queries, buffers.passages = q.data_ptr(), p.data_ptr()
        buffers.query_groups = _address(query_groups)
        buffers.passage_groups = _address(passage_groups)
        buffers.scale, buffers.result = scale.data_ptr(), result.data_ptr()
        buffers.grad_queries, buffers.grad_passages = _address(grad_q), _address(grad_p)
        buffers.workspace, buffers.workspace_bytes = workspace.data_ptr(), workspace.numel()
        buffers.allow_tf32 = torch.backends.cuda.matmul.allow_tf32
        buffers.device = q.device.index
        buffers.stream = torch.cuda.current_stream(q.device).cuda_stream
        module.info_nce(kernel_shape, buffers)
    loss, grad_scale = result.unbind()
    if not compute_gradients:
        return loss, None, None, None
    return loss, grad_scale, grad_q, grad_p
