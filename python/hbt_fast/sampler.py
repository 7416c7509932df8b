"""Language-stratified hybrid batch sampler (C++ core, numpy in, numpy out).

One *global batch* holds ``batch_size * world_size`` rows; rank ``r`` receives rows
``[r * batch_size, (r + 1) * batch_size)`` of it, so the ranks of one step share the batch
kind and language and together hold distinct groups (no false negatives once gathered).

Batch kinds
    X-X: one language; query row == passage row; all groups distinct. The language is drawn
    with weight ``n_lang ** lang_exponent`` (0: uniform as in the study, 1: proportional,
    0.3: XLM-R style smoothing); the draw is stratified, so over an epoch each language gets
    its share of X-X batches up to rounding, in random order.
    X-Y: distinct groups; per group a query row in language x and a passage row of the same
    group in language y != x. Groups present in only one language never appear in X-Y batches.
    hybrid: each batch is X-X with probability ``alpha``, else X-Y (independent per batch).

Epoch
    ``len(sampler)`` batches, the same on every rank: ``floor(P / (batch_size * world_size))``
    (``ceil`` with ``drop_last=False``; every batch is always full) where P is the number of
    pairs the mode can use: pairs of X-X-eligible languages (mode "xx"), pairs of groups in
    two or more languages (mode "xy"), or ``alpha * P_xx + (1 - alpha) * P_xy`` (hybrid). So
    the number of query slots in an epoch matches the number of usable pairs.

    X-Y coverage: layer r holds every cross-lingual group with more than r languages, and a
    group's query in layer r is its ((offset + r) mod count)-th language, with a random offset
    per group and pass. Each batch is cut from one layer (so its groups are distinct), and the
    batches of all layers come in a random order. One pass over the layers makes every pair of
    a cross-lingual group the query exactly once, except for each layer's remainder smaller
    than a global batch; mode "xy" uses about one pass per epoch, so each pair is used once,
    whatever the spread of languages per group.

    X-X coverage: within one language no pair repeats until all of its pairs were used (a
    pass). With ``lang_exponent=1`` a language's share of X-X batches matches its share of
    pairs, so each pair is used about once per epoch; other exponents deliberately over-sample
    small languages and under-sample large ones.

Small languages
    A language with fewer pairs than ``batch_size * world_size`` cannot fill an X-X batch
    with distinct groups. It is left out of X-X batches with a ``UserWarning`` naming it (its
    pairs still serve X-Y batches); if no language is large enough, or fewer cross-lingual
    groups than a global batch exist when X-Y batches are needed, construction fails with a
    ValueError. Pairs are never duplicated within a batch to pad it.

Determinism
    Every decision is a counter-based hash of (seed, epoch, position): the same seed and
    epoch give the same batches on every platform, and ``load_state_dict`` jumps to any batch
    without replaying earlier ones. As with ``torch.utils.data.DistributedSampler``, call
    ``set_epoch(e)`` before each epoch, or every epoch repeats epoch 0's order.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import warnings
from typing import Iterator, NamedTuple, Sequence

import numpy as np

from hbt_fast import _C

_MODES = ("xx", "xy", "hybrid")
_CHUNK_BATCHES = 64  # batches fetched from C++ per call while iterating


class Batch(tuple):
    """One rank's batch: unpacks as ``(query_rows, passage_rows)`` and says what kind it is.

    ``kind`` is "xx" (one language, query_rows == passage_rows) or "xy"; ``language`` is the
    language id of an X-X batch and -1 for an X-Y batch. A tuple subclass, so code written
    for plain ``(query_rows, passage_rows)`` tuples keeps working.
    """

    def __new__(cls, query_rows: np.ndarray, passage_rows: np.ndarray, language: int) -> "Batch":
        batch = super().__new__(cls, (query_rows, passage_rows))
        batch.language = int(language)
        return batch

    def __reduce__(self):
        return (Batch, (self[0], self[1], self.language))

    @property
    def query_rows(self) -> np.ndarray:
        return self[0]

    @property
    def passage_rows(self) -> np.ndarray:
        return self[1]

    @property
    def kind(self) -> str:
        return "xx" if self.language >= 0 else "xy"


class PairIds(NamedTuple):
    """Integer ids for pairs labelled with strings (see :func:`labels_to_ids`)."""

    languages: np.ndarray  # int64 [N], index into language_names
    groups: np.ndarray  # int64 [N], index into group_names
    language_names: np.ndarray  # sorted unique language labels
    group_names: np.ndarray  # sorted unique group labels


def labels_to_ids(languages: Sequence, groups: Sequence) -> PairIds:
    """Map per-pair language and group labels (any sortable values) to dense int64 ids."""
    language_labels = np.asarray(languages)
    group_labels = np.asarray(groups)
    if language_labels.ndim != 1 or group_labels.ndim != 1:
        raise ValueError("languages and groups must be 1-D sequences of labels")
    if len(language_labels) != len(group_labels):
        raise ValueError(
            f"languages and groups must have the same length, got {len(language_labels)} "
            f"and {len(group_labels)}"
        )
    language_names, language_ids = np.unique(language_labels, return_inverse=True)
    group_names, group_ids = np.unique(group_labels, return_inverse=True)
    return PairIds(
        language_ids.astype(np.int64), group_ids.astype(np.int64), language_names, group_names
    )


def _id_array(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f"{name} must hold integer ids, got dtype {array.dtype} (use labels_to_ids for strings)"
        )
    array = np.ascontiguousarray(array, dtype=np.int64)
    if array.size and array.min() < 0:
        row = int(np.argmax(array < 0))
        raise ValueError(f"{name} must be non-negative, got {array[row]} at row {row}")
    return array


def _integer(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


class HybridSampler:
    """Yields :class:`Batch` ``(query_rows, passage_rows)``: two np.int64 arrays of length
    ``batch_size``, with ``.kind`` ("xx" or "xy") and ``.language`` (X-X language id or -1).

    Args:
        languages: int array [N], language id of training pair i.
        groups: int array [N], parallel-group id of pair i (same id = same item in another
            language). Each (group, language) may occur once.
        batch_size: rows per rank.
        mode: "xx", "xy" or "hybrid".
        alpha: probability that a hybrid batch is X-X.
        lang_exponent: X-X language weight is ``n_lang ** lang_exponent``.
        seed: base seed; batches depend only on (seed, epoch, position).
        rank, world_size: this process's slice of each global batch.
        drop_last: epoch length rounds down (True) or up (False); batches are always full.

    See the module docstring for the exact definition of an epoch and of each batch kind.
    Each ``iter(sampler)`` starts at the epoch's first batch, or where ``load_state_dict``
    put it. A sampler is not thread-safe: give each thread (or DataLoader worker) its own.
    """

    def __init__(
        self,
        languages,
        groups,
        batch_size: int,
        *,
        mode: str = "hybrid",
        alpha: float = 0.5,
        lang_exponent: float = 0.0,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
    ) -> None:
        languages = _id_array(languages, "languages")
        groups = _id_array(groups, "groups")
        if len(languages) != len(groups):
            raise ValueError(
                f"languages and groups must have the same length, got {len(languages)} and {len(groups)}"
            )
        if len(languages) == 0:
            raise ValueError("languages and groups must not be empty")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if not isinstance(alpha, numbers.Real) or not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
        if not isinstance(lang_exponent, numbers.Real) or not math.isfinite(lang_exponent):
            raise ValueError(f"lang_exponent must be a finite number, got {lang_exponent!r}")
        self.batch_size = _integer(batch_size, "batch_size", 1)
        self.world_size = _integer(world_size, "world_size", 1)
        self.rank = _integer(rank, "rank", 0)
        if self.rank >= self.world_size:
            raise ValueError(f"rank must be < world_size={self.world_size}, got {self.rank}")
        self.seed = _integer(seed, "seed", 0)
        if self.seed >= 2**64:
            raise ValueError(f"seed must be < 2**64, got {self.seed}")
        self.mode, self.alpha, self.lang_exponent = mode, float(alpha), float(lang_exponent)
        self.drop_last = bool(drop_last)
        self.num_pairs = len(languages)
        # Resuming with other data must fail even when the number of pairs is the same.
        self._data_digest = hashlib.blake2b(languages.tobytes() + groups.tobytes(), digest_size=8).hexdigest()
        self._core = _C.HybridSampler(
            languages, groups, self.batch_size, mode, self.alpha, self.lang_exponent,
            self.seed, self.rank, self.world_size, self.drop_last,
        )
        self._position = 0
        self._resume_at = 0
        self._warn_small_languages()

    def _warn_small_languages(self) -> None:
        uses_xx = self.mode == "xx" or (self.mode == "hybrid" and self.alpha > 0)
        small = self._core.small_languages()
        if uses_xx and small:
            fate = "are never used" if self.mode == "xx" else "appear only in X-Y batches"
            warnings.warn(
                f"languages {small} have fewer than batch_size * world_size = "
                f"{self.batch_size * self.world_size} pairs, so they are left out of X-X "
                f"batches and their pairs {fate}",
                UserWarning,
                stacklevel=3,
            )

    def __len__(self) -> int:
        return self._core.num_batches

    @property
    def epoch(self) -> int:
        return self._core.epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields (from its first batch)."""
        self._core.set_epoch(_integer(epoch, "epoch", 0))
        self._position = self._resume_at = 0

    def __iter__(self) -> Iterator[Batch]:
        self._position, self._resume_at = self._resume_at, 0
        batch_languages = self._core.batch_languages().tolist()
        while self._position < len(self):
            count = min(_CHUNK_BATCHES, len(self) - self._position)
            queries, passages = self._core.batches(self._position, count)
            for query_rows, passage_rows in zip(queries, passages):
                language = batch_languages[self._position]
                self._position += 1
                yield Batch(query_rows, passage_rows, language)
        self._position = 0

    def epoch_batches(self) -> tuple[np.ndarray, np.ndarray]:
        """All batches of the current epoch at once: two int64 arrays [len(self), batch_size]."""
        return self._core.batches(0, len(self))

    def batch_languages(self) -> np.ndarray:
        """Per batch of the current epoch: its X-X language id, or -1 for an X-Y batch."""
        return self._core.batch_languages()

    @property
    def memory_bytes(self) -> int:
        """Bytes the C++ core holds: O(N) 32-bit row ids plus per-epoch plan and caches."""
        return self._core.memory_bytes

    @property
    def xx_languages(self) -> list[int]:
        """Language ids with enough pairs to form X-X batches."""
        return self._core.xx_languages()

    def _fingerprint(self) -> dict:
        return {
            "mode": self.mode, "alpha": self.alpha, "lang_exponent": self.lang_exponent,
            "seed": self.seed, "batch_size": self.batch_size, "world_size": self.world_size,
            "drop_last": self.drop_last, "num_pairs": self.num_pairs, "num_batches": len(self),
            "data_digest": self._data_digest,
        }

    def state_dict(self) -> dict:
        """Epoch and number of batches already yielded, plus the settings they depend on."""
        return {"epoch": self.epoch, "position": self._position, **self._fingerprint()}

    def load_state_dict(self, state: dict) -> None:
        """Resume at ``state["position"]`` of ``state["epoch"]`` without replaying batches."""
        missing = {"epoch", "position"} - set(state)
        if missing:
            raise ValueError(f"state is missing {sorted(missing)}")
        for key, value in self._fingerprint().items():
            if key in state and state[key] != value:
                raise ValueError(
                    f"state was saved with {key}={state[key]!r} but this sampler has {key}={value!r}"
                )
        position = _integer(state["position"], "state['position']", 0)
        if position > len(self):
            raise ValueError(f"state['position'] must be <= {len(self)}, got {position}")
        self.set_epoch(state["epoch"])
        self._position = self._resume_at = position

    def __repr__(self) -> str:
        return (
            f"HybridSampler(num_pairs={self.num_pairs}, batch_size={self.batch_size}, "
            f"mode={self.mode!r}, alpha={self.alpha}, lang_exponent={self.lang_exponent}, "
            f"seed={self.seed}, rank={self.rank}, world_size={self.world_size}, len={len(self)})"
        )


class HybridBatchSampler:
    """``torch.utils.data.DataLoader`` ``batch_sampler`` over a dataset of pairs.

    Each batch is a list of ``(query_row, passage_row)`` tuples; pair it with
    :class:`PairDataset` (or any dataset whose ``__getitem__`` takes such a tuple)::

        loader = DataLoader(PairDataset(queries, passages),
                            batch_sampler=HybridBatchSampler(sampler), collate_fn=...)
    """

    def __init__(self, sampler: HybridSampler) -> None:
        if not isinstance(sampler, HybridSampler):
            raise TypeError(f"sampler must be a HybridSampler, got {type(sampler).__name__}")
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for query_rows, passage_rows in self.sampler:
            yield list(zip(query_rows.tolist(), passage_rows.tolist()))


class PairDataset:
    """Map-style dataset: index ``(query_row, passage_row)`` -> ``(query_text, passage_text)``."""

    def __init__(self, queries: Sequence[str], passages: Sequence[str]) -> None:
        if len(queries) != len(passages):
            raise ValueError(
                f"queries and passages must have the same length, got {len(queries)} and {len(passages)}"
            )
        self.queries, self.passages = queries, passages

    def __len__(self) -> int:
        return len(self.queries)

    def __getitem__(self, index: tuple[int, int]) -> tuple[str, str]:
        query_row, passage_row = index
        return self.queries[query_row], self.passages[passage_row]
