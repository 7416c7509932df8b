"""Which passages leave a query's softmax: the loss's one group id per row, from several keys.

The fused loss (:func:`hbt_fast.losses.info_nce`) leaves passage j out of query i's softmax when
``query_groups[i] == passage_groups[j]`` (j != i). Training knows two reasons for it, each a key
per row:

- the pair group (parallel items; a hard negative carries the group of the first pair whose
  passage is the same text): the sampler keeps a batch's groups distinct, so this key matters
  for hard negatives only;
- the text id (same token ids after the tokenizer's normalisation, prefixes included; a query's
  is its positive's): a passage equal to another row's positive is no negative of that row's
  query (``mask_duplicates``).

One id per row can only say "masked when the ids match", which is a partition, while "masked
when either key matches" is not transitive. :func:`joint_groups` gives the finest partition that
contains it: rows sharing a key value, directly or through a chain of rows, get one id. That is
exactly the OR of the keys unless a chain joins two rows that share no key, which takes a text
that is the passage of pairs of two groups g and h in the batch plus a hard negative recorded
with g: that negative then also leaves the softmax of h's query, whose answer g shares.
"""

from __future__ import annotations

import functools
from typing import Optional, Tuple

import torch

__all__ = ["joint_groups"]


def joint_groups(query_keys: torch.Tensor, passage_keys: torch.Tensor
                 ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """One group id per query ([B]) and per passage ([M]) from ``[B, K]`` and ``[M, K]`` integer
    keys (column k of both in one id space, the columns in separate ones): rows that share a
    value in any column, directly or through other rows, get the same id.

    ``(None, None)`` when the ids would leave no passage out of any query's softmax (every
    passage's id distinct, each query's that of its own positive), so the loss can skip its
    group test."""
    if query_keys.ndim != 2 or passage_keys.ndim != 2 or query_keys.shape[1] != passage_keys.shape[1]:
        raise ValueError(f"query_keys and passage_keys must be [B, K] and [M, K], got "
                         f"{tuple(query_keys.shape)} and {tuple(passage_keys.shape)}")
    count = len(query_keys)
    ids = _components(torch.cat([query_keys, passage_keys]))
    query_ids, passage_ids = ids[:count], ids[count:]
    if (torch.unique(passage_ids).numel() == len(passage_ids)
            and torch.equal(query_ids, passage_ids[:count])):
        return None, None
    return query_ids, passage_ids


def _components(keys: torch.Tensor) -> torch.Tensor:
    """The connected component of each row of ``keys`` [n, K], rows linked through shared values
    (per column): a node per distinct (column, value), a row joins its K nodes, and every node
    takes the smallest label among its rows' nodes until nothing changes (a few rounds: the
    label jumps along the chain it has found)."""
    columns, offset = [], 0  # each row's node in each column
    for column in keys.unbind(1):
        values, inverse = torch.unique(column, return_inverse=True)
        columns.append(inverse + offset)
        offset += len(values)
    label = torch.arange(offset, device=keys.device)
    while True:
        row_label = functools.reduce(torch.minimum, [label[nodes] for nodes in columns])
        joined = label
        for nodes in columns:
            joined = joined.scatter_reduce(0, nodes, row_label, reduce="amin")
        joined = joined[joined]  # a label is a node of the same component: follow it
        if torch.equal(joined, label):
            return label[columns[0]]
        label = joined
