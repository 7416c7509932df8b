"""GradCache: the gradient of a large contrastive batch with the memory of one chunk.

Gao et al., "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup" (2021,
arXiv 2101.06983). The loss couples every embedding of a batch, but its gradient with respect to
the encoder factorises through the embeddings, so a step runs in three phases:

1. :func:`embed_without_graph`: embed the batch chunk by chunk under ``no_grad`` and remember
   each chunk's random state (:class:`RandomState`);
2. the caller computes the loss on the whole detached batch and its gradient with respect to the
   embeddings (cheap: ``[n, d]``);
3. :func:`replay_backward`: re-embed each chunk with its recorded random state (so dropout draws
   the same masks and the replayed embeddings equal the cached ones) and back-propagate that
   chunk's slice of the embedding gradient into the encoder.

Only one chunk's activations are alive at a time, and the parameter gradients equal those of the
full batch up to float rounding. This module is the one implementation shared by the trainer
(:mod:`hbt_fast.train.step`) and the sentence-transformers cached loss. It knows nothing about
models or losses: an ``embed(rows)`` callable maps a ``slice`` of the batch to embeddings.

Example (runnable)::

    >>> import torch
    >>> from hbt_fast.train.gradcache import embed_without_graph, replay_backward
    >>> encoder = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Dropout(0.1))
    >>> inputs = torch.randn(10, 8)
    >>> embed = lambda rows: encoder(inputs[rows])
    >>> cache = embed_without_graph(embed, len(inputs), chunk_size=3)   # 4 chunks
    >>> embeddings = cache.embeddings.requires_grad_()
    >>> loss = embeddings.square().sum()
    >>> loss.backward()
    >>> replay_backward(embed, cache, embeddings.grad)                  # fills encoder .grad
    >>> encoder[0].weight.grad.shape
    torch.Size([4, 8])

Distributed data parallel: pass ``chunk_context=lambda i: ddp.no_sync() if i < last else
contextlib.nullcontext()`` so gradients are reduced once, by the last chunk's backward (both
forward and backward of a chunk run inside its context, as ``no_sync`` requires).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator, Optional, Sequence

import torch

from hbt_fast._checks import check_integer

__all__ = ["EmbeddingCache", "RandomState", "chunk_slices", "embed_without_graph", "replay_backward"]

Embed = Callable[[slice], torch.Tensor]


class RandomState:
    """The CPU generator and the given CUDA devices' generators at one moment.

    ``with state.replay():`` runs its body from that state and afterwards puts the generators
    back where they were, so replaying a chunk does not change later random draws.
    """

    def __init__(self, cpu: torch.Tensor, devices: Sequence[int], device_states: Sequence[torch.Tensor]):
        self.cpu = cpu
        self.devices = list(devices)
        self.device_states = list(device_states)

    @classmethod
    def capture(cls, devices: Sequence[torch.device] = ()) -> "RandomState":
        """Snapshot now. ``devices``: the CUDA devices whose generators the work uses (CPU
        devices in the list are ignored; the CPU generator is always captured)."""
        indices = sorted({torch.device(d).index or 0 for d in devices if torch.device(d).type == "cuda"})
        states = [torch.cuda.get_rng_state(i) for i in indices]
        return cls(torch.get_rng_state(), indices, states)

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        with torch.random.fork_rng(devices=self.devices):
            torch.set_rng_state(self.cpu)
            for index, state in zip(self.devices, self.device_states):
                torch.cuda.set_rng_state(state, index)
            yield


def chunk_slices(count: int, chunk_size: Optional[int]) -> list:
    """``count`` rows cut into consecutive slices of at most ``chunk_size`` rows (one slice
    for ``None``; no slice for ``count == 0``)."""
    count = check_integer(count, "count", minimum=0)
    chunk_size = check_integer(max(count, 1) if chunk_size is None else chunk_size, "chunk_size")
    return [slice(start, min(start + chunk_size, count)) for start in range(0, count, chunk_size)]


@dataclass
class EmbeddingCache:
    """Phase 1's result: detached embeddings of the whole batch, and per chunk its rows and the
    random state its forward pass started from."""

    embeddings: torch.Tensor
    chunks: list
    states: list


def embed_without_graph(embed: Embed, count: int, chunk_size: Optional[int], *,
                        devices: Sequence[torch.device] = ()) -> EmbeddingCache:
    """Embed rows ``0 .. count-1`` chunk by chunk under ``no_grad``.

    ``embed(rows)`` returns the embeddings ``[rows.stop - rows.start, d]`` of a slice of the
    batch; ``devices`` are the CUDA devices whose random state must be replayed."""
    chunks = chunk_slices(count, chunk_size)
    if not chunks:
        raise ValueError("embed_without_graph needs count >= 1 rows")
    states, parts = [], []
    with torch.no_grad():
        for rows in chunks:
            states.append(RandomState.capture(devices))
            part = embed(rows)
            _check_chunk(part, rows)
            parts.append(part.detach())
    return EmbeddingCache(torch.cat(parts), chunks, states)


def replay_backward(embed: Embed, cache: EmbeddingCache, gradient: torch.Tensor, *,
                    chunk_context: Optional[Callable[[int], ContextManager]] = None) -> None:
    """Re-embed every chunk from its recorded random state and back-propagate
    ``gradient[rows]`` (the loss's gradient with respect to ``cache.embeddings``) through it.

    ``chunk_context(i)``, if given, is entered around chunk ``i``'s forward and backward (for
    example ``DistributedDataParallel.no_sync`` for all chunks but the last)."""
    if tuple(gradient.shape) != tuple(cache.embeddings.shape):
        raise ValueError(f"gradient has shape {tuple(gradient.shape)}, but the cached embeddings "
                         f"have {tuple(cache.embeddings.shape)}")
    for index, (rows, state) in enumerate(zip(cache.chunks, cache.states)):
        context = chunk_context(index) if chunk_context is not None else contextlib.nullcontext()
        with context, state.replay():
            part = embed(rows)
            _check_chunk(part, rows)
            part.backward(gradient[rows].to(part.dtype))


def _check_chunk(part: torch.Tensor, rows: slice) -> None:
    if not isinstance(part, torch.Tensor) or part.ndim != 2 or len(part) != rows.stop - rows.start:
        shape = tuple(part.shape) if isinstance(part, torch.Tensor) else type(part).__name__
        raise ValueError(f"embed({rows}) must return a 2-d tensor with {rows.stop - rows.start} rows, "
                         f"got {shape}")
