"""The gradient of one global batch, as a function: embed, gather, fused loss, backward, reduce.

With ``R`` processes each holding ``B / R`` queries of the global batch (and their passages and
hard negatives), :func:`global_batch_gradients`

1. embeds this rank's rows, in one pass with the graph kept or, with ``chunk_size``,
   GradCache-style (:mod:`hbt_fast.train.gradcache`: chunks without graph first);
2. all-gathers the embeddings (no autograd through the collective), computes the *global* loss
   on every rank and its gradient with respect to every embedding, and keeps its own rows' slice;
3. back-propagates that slice into the encoder. Under ``DistributedDataParallel`` (see
   :func:`data_parallel`) the parameter gradients are summed over ranks in buckets that overlap
   with the backward pass; GradCache chunks but the last run under ``no_sync``, so the reduction
   happens once per step.

The parameter gradients then equal those of one process computing the same global batch (up to
float rounding), whatever the number of ranks or chunks. Global passage order: every rank's
positives (rank order), then every rank's extra passages (hard negatives), as the loss expects.
Groups given as ``[n, K]`` keys (group and text id, see :mod:`hbt_fast.train.inputs`) are
gathered too and turned into the loss's group ids on the global batch
(:func:`hbt_fast.train.masking.joint_groups`), so a passage on one rank is masked for a query
on another.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.distributed as dist

from hbt_fast.train.gradcache import embed_without_graph, replay_backward
from hbt_fast.train.masking import joint_groups

__all__ = ["StepResult", "data_parallel", "global_batch_gradients", "world"]

Embed = Callable[[str, slice], torch.Tensor]  # (side, rows of this rank) -> embeddings


@dataclass
class StepResult:
    loss: float  # the global batch's loss (same on every rank)
    loss_seconds: float  # the fused loss's forward + backward on the gathered embeddings


def world() -> tuple:
    """(rank, world size) of the default process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def global_batch_gradients(
    embed: Embed, query_count: int, passage_count: int, loss_fn: Callable, *,
    query_groups: Optional[torch.Tensor] = None, passage_groups: Optional[torch.Tensor] = None,
    chunk_size: Optional[int] = None, ddp: Optional[torch.nn.parallel.DistributedDataParallel] = None,
    devices: Sequence[torch.device] = (),
) -> StepResult:
    """Accumulate the global batch's gradient into ``.grad`` of the encoder's parameters.

    ``embed("query" | "passage", rows)`` embeds a slice of this rank's queries (``query_count``)
    or passages (``passage_count >= query_count``: positives first, then hard negatives).
    ``loss_fn(q, p, query_groups, passage_groups)`` is the loss on the gathered batch; groups
    are this rank's ids [n] (gathered like the embeddings), or [n, K] keys that
    :func:`hbt_fast.train.masking.joint_groups` turns into ids once gathered (a passage leaves
    a query's softmax when they share any key). ``ddp``: the DistributedDataParallel
    module that ``embed`` runs (needed for more than one process: it reduces the gradients).
    ``devices``: CUDA devices whose random state GradCache replays.
    """
    if passage_count < query_count:
        raise ValueError(f"passage_count ({passage_count}) must be >= query_count ({query_count})")
    if world()[1] > 1 and ddp is None:
        raise ValueError("several processes need ddp=data_parallel(module) to reduce the gradients")
    no_sync = ddp.no_sync if ddp is not None else contextlib.nullcontext
    query_embed = lambda rows: embed("query", rows)  # noqa: E731
    passage_embed = lambda rows: embed("passage", rows)  # noqa: E731
    if chunk_size is None:
        with no_sync():  # one reduction, in the joint backward below
            queries = query_embed(slice(0, query_count))
        passages = passage_embed(slice(0, passage_count))
        result, query_grad, passage_grad = _loss_and_embedding_gradients(
            queries.detach(), passages.detach(), query_count, loss_fn, query_groups, passage_groups, devices)
        torch.autograd.backward([queries, passages], [query_grad.to(queries.dtype), passage_grad.to(passages.dtype)])
        return result
    query_cache = embed_without_graph(query_embed, query_count, chunk_size, devices=devices)
    passage_cache = embed_without_graph(passage_embed, passage_count, chunk_size, devices=devices)
    result, query_grad, passage_grad = _loss_and_embedding_gradients(
        query_cache.embeddings, passage_cache.embeddings, query_count, loss_fn, query_groups,
        passage_groups, devices)
    last = len(passage_cache.chunks) - 1
    replay_backward(query_embed, query_cache, query_grad, chunk_context=lambda i: no_sync())
    replay_backward(passage_embed, passage_cache, passage_grad,
                    chunk_context=lambda i: no_sync() if i < last else contextlib.nullcontext())
    return result


def _loss_and_embedding_gradients(queries, passages, query_count, loss_fn, query_groups,
                                  passage_groups, devices):
    """The global loss and its gradient with respect to this rank's embeddings."""
    rank, size = world()
    queries, passages = queries.float(), passages.float()
    gathered_q, q_rows = _gather_rows(queries, rank, size)
    positives, p_rows = _gather_rows(passages[:query_count], rank, size)
    negatives, n_rows = _gather_rows(passages[query_count:], rank, size)
    all_q = gathered_q.requires_grad_()
    all_p = torch.cat([positives, negatives]).requires_grad_()
    groups = ()
    if query_groups is not None or passage_groups is not None:
        if query_groups is None or passage_groups is None:
            raise ValueError("give both query_groups and passage_groups, or neither")
        groups = (_gather_rows(query_groups, rank, size)[0],
                  torch.cat([_gather_rows(passage_groups[:query_count], rank, size)[0],
                             _gather_rows(passage_groups[query_count:], rank, size)[0]]))
        if groups[0].ndim == 2:
            groups = joint_groups(*groups)
            groups = () if groups[0] is None else groups
    _synchronize(devices)
    started = time.perf_counter()
    loss = loss_fn(all_q, all_p, *groups)
    loss.backward()
    _synchronize(devices)  # so that the time is the loss's own on GPUs too
    seconds = time.perf_counter() - started
    offset = len(positives)
    passage_grad = torch.cat([all_p.grad[p_rows], all_p.grad[offset + n_rows.start:offset + n_rows.stop]])
    return StepResult(float(loss.detach()), seconds), all_q.grad[q_rows], passage_grad


def _gather_rows(local: torch.Tensor, rank: int, size: int):
    """All ranks' rows concatenated in rank order (any row count per rank), and this rank's slice."""
    if size == 1:
        return local, slice(0, len(local))
    counts = torch.zeros(size, dtype=torch.int64, device=local.device)
    counts[rank] = len(local)
    dist.all_reduce(counts)
    counts = counts.tolist()
    longest = max(counts)
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[:len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded.contiguous())
    start = sum(counts[:rank])
    return torch.cat([part[:count] for part, count in zip(parts, counts)]), slice(start, start + len(local))


def _synchronize(devices) -> None:
    for device in devices:
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)


def _allreduce_sum(process_group, bucket):
    """Sum, not DDP's default mean: each rank's gradient is its share of the *global* loss."""
    group = process_group if process_group is not None else dist.group.WORLD
    work = dist.all_reduce(bucket.buffer(), group=group, async_op=True)
    return work.get_future().then(lambda future: future.value()[0])


def _no_buffer_sync_at_forward() -> dict:
    """DDP's keyword for not re-broadcasting buffers at each forward: ``forward_sync_buffers``
    where torch has it (it deprecates ``broadcast_buffers``), else ``broadcast_buffers``."""
    parameters = inspect.signature(torch.nn.parallel.DistributedDataParallel.__init__).parameters
    if "forward_sync_buffers" in parameters:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


def data_parallel(module: torch.nn.Module, device: Optional[torch.device] = None, *,
                  find_unused_parameters: bool = False):
    """``module`` under DistributedDataParallel with summed (not averaged) gradient buckets.

    Buffers are not re-synchronised at every forward (GradCache runs many forwards per step).
    Every trainable parameter must take part in the forward (``TextEncoder`` loads no pooler
    its pooling ignores); pass ``find_unused_parameters=True`` for modules where some do not,
    at the cost of one autograd-graph traversal per forward."""
    device_ids = [device] if device is not None and torch.device(device).type == "cuda" else None
    wrapped = torch.nn.parallel.DistributedDataParallel(
        module, device_ids=device_ids, find_unused_parameters=find_unused_parameters,
        **_no_buffer_sync_at_forward())
    wrapped.register_comm_hook(None, _allreduce_sum)
    return wrapped
