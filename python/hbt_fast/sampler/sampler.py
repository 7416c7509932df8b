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
    mixed (mode "mixed" only; the contrastive multilingual fine-tuning baseline): query row ==
    passage row, as in X-X, but the rows of one batch come from all languages shuffled
    together, and all groups of the global batch are distinct (so no parallel translation of
    a query is among its negatives). Every group takes part, including groups in one
    language.

    ``alpha`` applies to mode "hybrid" only and ``lang_exponent`` to X-X batches only (modes
    "xx" and "hybrid"); the other modes ignore them (they are still validated and recorded in
    the state). In mode "mixed" a language's share of rows is its share of pairs.

Epoch
    ``len(sampler)`` batches, the same on every rank: ``floor(P / (batch_size * world_size))``
    (``ceil`` with ``drop_last=False``; every batch is always full) where P is the number of
    pairs the mode can use: pairs of X-X-eligible languages (mode "xx"), pairs of groups in
    two or more languages (mode "xy"), ``alpha * P_xx + (1 - alpha) * P_xy`` (hybrid), or all
    pairs (mixed). So the number of query slots in an epoch matches the number of usable pairs.

    X-Y coverage: layer r holds every cross-lingual group with more than r languages, and a
    group's query in layer r is its ((offset + r) mod count)-th language, with a random offset
    per group and pass. Each batch is cut from one layer (so its groups are distinct), and the
    batches of all layers come in a random order. One pass over the layers makes every pair of
    a cross-lingual group the query exactly once, except for each layer's remainder smaller
    than a global batch; mode "xy" uses about one pass per epoch, so each pair is used once,
    whatever the spread of languages per group.

    Mixed coverage: the same layers over all groups (layer 0 holds every group), with the
    group's row in layer r as both query and passage, so an epoch uses each pair once up to
    the same remainders, whatever the spread of languages per group.

    X-X coverage: within one language no pair repeats until all of its pairs were used (a
    pass). With ``lang_exponent=1`` a language's share of X-X batches matches its share of
    pairs, so each pair is used about once per epoch; other exponents deliberately over-sample
    small languages and under-sample large ones.

Small languages
    A language with fewer pairs than ``batch_size * world_size`` cannot fill an X-X batch
    with distinct groups. It is left out of X-X batches with a ``UserWarning`` naming it (its
    pairs still serve X-Y batches); if no language is large enough, or fewer cross-lingual
    groups than a global batch exist when X-Y batches are needed, or (mode "mixed") fewer
    groups than a global batch, construction fails with a ValueError. Mode "mixed" has no
    small languages. Pairs are never duplicated within a batch to pad it.

Batches
    Iteration yields :class:`Batch` objects: tuples ``(query_rows, passage_rows)`` (two
    np.int64 arrays of length ``batch_size``) with ``.kind`` ("xx", "xy" or "mixed") and
    ``.language`` (the X-X language id, -1 for X-Y and mixed) as attributes, so the trainer
    never re-derives the kind.

Iterators and threads
    Every ``iter(sampler)`` is an independent iterator with its own position (nested loops and
    ``zip(iter(s), iter(s))`` work). The index is immutable after construction, so several
    threads may iterate one sampler or call :meth:`HybridSampler.epoch_batches` at once and
    get the same batches as one thread; only ``set_epoch`` / ``load_state_dict`` change what
    later iterations yield. One iterator object is not meant to be advanced from two threads
    (it stays memory-safe, but which thread gets which batch is then up to the scheduler).

Resume state (kept by the C++ core)
    ``state_dict()`` is the epoch, the number of batches the newest iterator has handed out,
    and the settings and data digest they depend on; ``load_state_dict`` makes the next
    iteration start there. A new iteration starts at the epoch's first batch otherwise.

Determinism
    Every decision is a counter-based hash of (seed, epoch, position): the same seed and
    epoch give the same batches on every platform, and ``load_state_dict`` jumps to any batch
    without replaying earlier ones. As with ``torch.utils.data.DistributedSampler``, call
    ``set_epoch(e)`` before each epoch, or every epoch repeats epoch 0's order.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np

import hbt_fast._C as _C
from hbt_fast._checks import check_flag, check_integer, is_real
from hbt_fast.sampler._stock_trainer_guard import RefusesStockTrainer

# A struct sequence built in C++ (like os.stat_result); named hbt_fast.sampler.Batch.
Batch = _C.Batch

_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = (0, 2**64 - 1)
# Settings a state records beside epoch and position, as (state key, SamplerConfig field).
_CONFIG_KEYS = ("mode", "alpha", "lang_exponent", "seed", "batch_size", "world_size", "drop_last")


def _id_array(values, name: str) -> np.ndarray:
    """Ids as int64, or uint64 when passed so (their values are the core's to check)."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f"{name} must hold integer ids, got dtype {array.dtype} (use labels_to_ids for labels)"
        )
    dtype = np.uint64 if array.dtype == np.uint64 else np.int64
    return np.ascontiguousarray(array, dtype=dtype)


def _int(value, name: str, bounds=_INT64) -> int:
    """An integer the core can take (int64, or uint64 for seeds); the core checks its value."""
    value = check_integer(value, name, minimum=None, not_integer=TypeError)
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{name} must be in [{bounds[0]}, {bounds[1]}], got {value}")
    return value


def _real(value, name: str) -> float:
    if not is_real(value):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def _str(value, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    return value


class HybridSampler(RefusesStockTrainer):
    """Yields :class:`Batch` ``(query_rows, passage_rows)``: two np.int64 arrays of length
    ``batch_size``, with ``.kind`` ("xx", "xy" or "mixed") and ``.language`` (X-X language id
    or -1).

    Args:
        languages: int array [N], language id of training pair i.
        groups: int array [N], parallel-group id of pair i (same id = same item in another
            language). Each (group, language) may occur once.
        batch_size: rows per rank.
        mode: "xx", "xy", "hybrid" or "mixed".
        alpha: probability that a hybrid batch is X-X (mode "hybrid" only; ignored otherwise).
        lang_exponent: X-X language weight is ``n_lang ** lang_exponent`` (modes "xx" and
            "hybrid"; ignored by "xy" and "mixed").
        seed: base seed; batches depend only on (seed, epoch, position).
        rank, world_size: this process's slice of each global batch.
        drop_last: epoch length rounds down (True) or up (False); batches are always full.

    See the module docstring for the exact definition of an epoch and of each batch kind,
    and for iterators, threads and the resume state. Arguments of the wrong type raise
    TypeError here; values are checked by the C++ core (ValueError naming the argument).
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
        config = _C.SamplerConfig(
            batch_size=_int(batch_size, "batch_size"), mode=_str(mode, "mode"),
            alpha=_real(alpha, "alpha"), lang_exponent=_real(lang_exponent, "lang_exponent"),
            seed=_int(seed, "seed", _UINT64), rank=_int(rank, "rank"),
            world_size=_int(world_size, "world_size"),
            drop_last=check_flag(drop_last, "drop_last"),
        )
        self._core = _C.HybridSampler(languages, groups, config)
        self.num_pairs = len(languages)
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

    # Settings, as the core holds them.
    batch_size = property(lambda self: self._core.config.batch_size)
    mode = property(lambda self: self._core.config.mode)
    alpha = property(lambda self: self._core.config.alpha)
    lang_exponent = property(lambda self: self._core.config.lang_exponent)
    seed = property(lambda self: self._core.config.seed)
    rank = property(lambda self: self._core.config.rank)
    world_size = property(lambda self: self._core.config.world_size)
    drop_last = property(lambda self: self._core.config.drop_last)

    def __len__(self) -> int:
        return self._core.num_batches

    @property
    def epoch(self) -> int:
        return self._core.epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields (from its first batch)."""
        self._core.set_epoch(_int(epoch, "epoch"))

    def __iter__(self) -> Iterator[Batch]:
        return iter(self._core)

    def epoch_batches(self) -> tuple[np.ndarray, np.ndarray]:
        """All batches of the current epoch at once: two int64 arrays [len(self), batch_size]."""
        queries, passages, _ = self._core.batches(self._core.epoch, 0, len(self))
        return queries, passages

    def batch_languages(self, epoch: int | None = None) -> np.ndarray:
        """Per batch of ``epoch`` (default: the current one): its X-X language id, or -1 for an
        X-Y or mixed batch. Any epoch, without changing the current one."""
        return self._core.batch_languages(self._core.epoch if epoch is None else _int(epoch, "epoch"))

    @property
    def memory_bytes(self) -> int:
        """Bytes the C++ core holds: O(N) 32-bit row ids, plus one iterator's plan and caches."""
        return self._core.memory_bytes

    @property
    def xx_languages(self) -> list[int]:
        """Language ids with enough pairs to form X-X batches."""
        return self._core.xx_languages()

    def state_dict(self) -> dict:
        """Epoch and number of batches already yielded, plus the settings they depend on."""
        state = self._core.get_state()
        return {
            "epoch": state.epoch, "position": state.position,
            **{key: getattr(state.config, key) for key in _CONFIG_KEYS},
            "num_pairs": state.num_pairs, "num_batches": state.num_batches,
            "data_digest": state.data_digest,
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume at ``state["position"]`` of ``state["epoch"]`` without replaying batches.

        Settings and data digest in ``state`` must equal this sampler's (keys left out are
        not compared); the core names the first that differs."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        missing = {"epoch", "position"} - set(state)
        if missing:
            raise ValueError(f"state is missing {sorted(missing)}")
        saved = self._core.get_state()  # this sampler's values for every key not given
        saved.epoch = _int(state["epoch"], "state['epoch']")
        saved.position = _int(state["position"], "state['position']")
        config = saved.config
        converters = {"mode": _str, "alpha": _real, "lang_exponent": _real, "drop_last": check_flag}
        for key in _CONFIG_KEYS:
            if key in state:
                convert = converters.get(key, _int)
                bounds = (_UINT64,) if key == "seed" else ()
                setattr(config, key, convert(state[key], f"state[{key!r}]", *bounds))
        saved.config = config
        for key in ("num_pairs", "num_batches"):
            if key in state:
                setattr(saved, key, _int(state[key], f"state[{key!r}]"))
        if "data_digest" in state:
            saved.data_digest = _str(state["data_digest"], "state['data_digest']")
        self._core.set_state(saved)

    def __repr__(self) -> str:
        return (
            f"HybridSampler(num_pairs={self.num_pairs}, batch_size={self.batch_size}, "
            f"mode={self.mode!r}, alpha={self.alpha}, lang_exponent={self.lang_exponent}, "
            f"seed={self.seed}, rank={self.rank}, world_size={self.world_size}, len={len(self)})"
        )
