"""Step inputs read from a token store: the same :class:`StepInputs` as
:class:`hbt_fast.train.inputs.TokenizedCorpus` gives for the same pairs, with nothing per pair
in memory (a step gathers its rows' ids from the memory-mapped store).

Hard negatives: the first ``hard_negatives`` of each pair's negatives (all when None); each
gets the group the store recorded (that of the first pair whose passage has the same token
ids), else a group of its own that no query shares, as in the in-memory path.

Duplicates (``mask_duplicates``): the text ids are the store's own (texts are stored once, by
the digest of their token ids), so nothing is computed per text.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from hbt_fast.data.token_store import TokenStore, is_token_store
from hbt_fast.data.token_store.format import ranges
from hbt_fast.train.inputs import StepInputs, TokenizedCorpus, step_inputs

__all__ = ["StoreInputs", "open_store", "step_inputs_source", "wait_verified"]

COUNT_BLOCK = 1 << 20


def open_store(path) -> Optional[TokenStore]:
    """The token store at ``path``, or None when ``path`` is not a store folder. Sizes and the
    sampler's columns are checked now, the SHA-256 of the rest in the background (at 10^7 pairs
    the check reads ~4 GB): call :func:`wait_verified` before the first step."""
    if not is_token_store(path):
        return None
    store = TokenStore(path)
    store.verify(background=True)
    return store


def wait_verified(corpus) -> None:
    """Wait for the background checks of ``corpus``'s stores (one corpus or a source mix);
    raises the first store's error."""
    for part in getattr(corpus, "corpora", [corpus]):
        if isinstance(part, TokenStore):
            part.wait_verified()


def step_inputs_source(corpus, encoder, hard_negatives: Optional[int], mask_duplicates: bool = True):
    """What turns a sampler batch into :class:`StepInputs` for ``corpus``: a store is read as
    it is, any other corpus is tokenised in memory."""
    if isinstance(corpus, TokenStore):
        return StoreInputs(corpus, encoder, hard_negatives, mask_duplicates)
    return TokenizedCorpus(corpus, encoder, hard_negatives, mask_duplicates)


class _SelectedNegatives:
    """How many negatives a run uses (``len``, as of ``TokenizedCorpus.negative_ids``, which
    the model card reports); counted in blocks of rows, never held per negative."""

    def __init__(self, inputs: "StoreInputs"):
        pairs = len(inputs.store)
        self.length = sum(int(inputs.counts(np.arange(start, min(start + COUNT_BLOCK, pairs))).sum())
                          for start in range(0, pairs, COUNT_BLOCK))

    def __len__(self) -> int:
        return self.length


class StoreInputs:
    """Sampler batches to :class:`StepInputs` from ``store``, after checking that the store
    was prepared with ``encoder``'s tokenizer, prefixes and maximum lengths."""

    def __init__(self, store: TokenStore, encoder, hard_negatives: Optional[int] = None,
                 mask_duplicates: bool = True):
        store.check_tokenization(encoder.tokenizer, encoder.settings, run="the run's model")
        self.store, self.hard_negatives, self.mask_duplicates = store, hard_negatives, mask_duplicates
        self.corpus = store
        # Negatives of no pair's passage get groups past every pair's group.
        self.own_group = store.num_groups
        self.negative_ids = _SelectedNegatives(self)

    @property
    def has_negatives(self) -> bool:
        return len(self.negative_ids) > 0

    def counts(self, rows: np.ndarray) -> np.ndarray:
        offsets = self.store.negative_offsets
        counts = np.asarray(offsets[rows + 1]) - np.asarray(offsets[rows])
        return counts if self.hard_negatives is None else np.minimum(counts, self.hard_negatives)

    def step_inputs(self, query_rows: np.ndarray, passage_rows: np.ndarray) -> StepInputs:
        store = self.store
        query_rows = np.asarray(query_rows, dtype=np.int64)
        passage_rows = np.asarray(passage_rows, dtype=np.int64)
        query_ids = store.token_ids(store.query_text_ids[query_rows])
        texts = np.asarray(store.passage_text_ids[passage_rows])
        passage_ids = store.token_ids(texts)
        negatives = np.zeros(0, dtype=np.int64)
        if self.has_negatives:
            negatives = ranges(np.asarray(store.negative_offsets[passage_rows]), self.counts(passage_rows))
        elif not self.mask_duplicates:
            return StepInputs(query_ids, passage_ids, None, None)
        negative_texts = np.asarray(store.negative_text_ids[negatives])
        passage_ids += store.token_ids(negative_texts)
        recorded = np.asarray(store.negative_groups[negatives])
        negative_groups = np.where(recorded >= 0, recorded, self.own_group + negatives)
        groups = store.group_ids
        passage_groups = np.concatenate([np.asarray(groups[passage_rows]), negative_groups])
        texts = np.concatenate([texts, negative_texts]) if self.mask_duplicates else None
        return step_inputs(query_ids, passage_ids, groups[query_rows], passage_groups, texts)
