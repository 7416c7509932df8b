"""Token ids of a training corpus, computed once, and the inputs of one step.

The tokenizer runs once per text before training (:class:`TokenizedCorpus`); a step only looks
ids up and pads to the batch's longest row (``TextEncoder.embed_ids``), so tokenisation is off
the critical path.

Hard negatives: a pair's ``negatives`` (texts in its passage's language) are extra passages of
the step. Each gets the group of the training pair whose passage has the same text, if any (so
it is masked for that pair's query, for which it is a positive), else a group of its own that
no query shares.

Duplicates (``mask_duplicates``, the default): every passage (positive or negative) also gets a
text id, equal for equal token ids, and a query the text id of its positive, so a passage equal
to another row's positive is no negative of that row's query. The groups then go out as
``[n, 2]`` keys (group, text id) that :func:`hbt_fast.train.masking.joint_groups` turns into
the loss's group ids once the global batch is gathered. Ids are global: every rank derives them
from the whole corpus the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

__all__ = ["StepInputs", "TokenizedCorpus"]


@dataclass
class StepInputs:
    """One rank's share of a global batch, ready for :func:`hbt_fast.train.step.global_batch_gradients`."""

    query_ids: list  # token ids per query
    passage_ids: list  # positives (one per query), then hard negatives
    # [n] group ids, None when there are no hard negatives; with mask_duplicates [n, 2]
    # (group id, text id) keys, a query's text id being its positive's.
    query_groups: Optional[torch.Tensor]
    passage_groups: Optional[torch.Tensor]

    @property
    def negatives(self) -> int:
        return len(self.passage_ids) - len(self.query_ids)


class TokenizedCorpus:
    """``corpus`` tokenised by ``encoder`` (queries, passages and negatives), once.

    ``hard_negatives``: how many of each pair's negatives a step uses (None: all, 0: none);
    ``mask_duplicates``: give every passage a text id (see the module documentation)."""

    def __init__(self, corpus, encoder, hard_negatives: Optional[int] = None,
                 mask_duplicates: bool = True):
        self.corpus, self.mask_duplicates = corpus, mask_duplicates
        self.queries = encoder.tokenize_all(list(corpus.queries), "query")
        self.passages = encoder.tokenize_all(list(corpus.passages), "passage")
        offsets = np.asarray(corpus.negative_offsets, dtype=np.int64)
        counts = np.diff(offsets)
        if hard_negatives is not None:
            counts = np.minimum(counts, hard_negatives)
        # The first counts[i] negatives of pair i, without a Python loop over the pairs.
        self.negative_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        within = np.arange(self.negative_offsets[-1]) - np.repeat(self.negative_offsets[:-1], counts)
        selected = np.repeat(offsets[:-1], counts) + within
        flat = [corpus.negatives[i] for i in selected]
        self.negative_ids = encoder.tokenize_all(flat, "passage") if flat else []
        self.negative_groups = self._negative_groups(flat)
        if mask_duplicates:
            self.passage_text_ids, self.negative_text_ids = _text_ids(self.passages, self.negative_ids)

    def _negative_groups(self, texts: list) -> np.ndarray:
        group_of_passage = {}
        for text, group in zip(self.corpus.passages, self.corpus.group_ids.tolist()):
            group_of_passage.setdefault(text, group)
        own = int(self.corpus.group_ids.max()) + 1 if len(self.corpus) else 0
        return np.array([group_of_passage.get(text, own + i) for i, text in enumerate(texts)],
                        dtype=np.int64)

    @property
    def has_negatives(self) -> bool:
        return len(self.negative_ids) > 0

    def step_inputs(self, query_rows: np.ndarray, passage_rows: np.ndarray) -> StepInputs:
        query_ids = [self.queries[i] for i in query_rows]
        passage_ids = [self.passages[i] for i in passage_rows]
        negatives = np.zeros(0, dtype=np.int64)
        if self.has_negatives:
            negatives = np.concatenate([np.arange(self.negative_offsets[r], self.negative_offsets[r + 1])
                                        for r in passage_rows]).astype(np.int64)
        elif not self.mask_duplicates:
            return StepInputs(query_ids, passage_ids, None, None)
        passage_ids += [self.negative_ids[i] for i in negatives]
        groups = self.corpus.group_ids
        passage_groups = np.concatenate([groups[passage_rows], self.negative_groups[negatives]])
        texts = None
        if self.mask_duplicates:
            texts = np.concatenate([self.passage_text_ids[passage_rows], self.negative_text_ids[negatives]])
        return step_inputs(query_ids, passage_ids, groups[query_rows], passage_groups, texts)


def step_inputs(query_ids: list, passage_ids: list, query_groups: np.ndarray, passage_groups: np.ndarray,
                passage_texts: Optional[np.ndarray]) -> StepInputs:
    """:class:`StepInputs` with the groups as tensors, paired with the text ids when given (a
    query's text id is its positive's)."""
    query_groups = torch.as_tensor(np.asarray(query_groups), dtype=torch.int64)
    passage_groups = torch.as_tensor(np.asarray(passage_groups), dtype=torch.int64)
    if passage_texts is not None:
        texts = torch.as_tensor(np.asarray(passage_texts), dtype=torch.int64)
        query_groups = torch.stack([query_groups, texts[:len(query_ids)]], 1)
        passage_groups = torch.stack([passage_groups, texts], 1)
    return StepInputs(query_ids, passage_ids, query_groups, passage_groups)


def _text_ids(*token_lists) -> list:
    """For each list of token-id rows, an int64 array of text ids: rows with equal ids share one,
    across all the lists."""
    ids: dict = {}
    return [np.fromiter((ids.setdefault(tuple(row), len(ids)) for row in rows), dtype=np.int64, count=len(rows))
            for rows in token_lists]
