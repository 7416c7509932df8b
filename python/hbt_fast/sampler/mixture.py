"""Batches from several sources of pairs, each batch drawn from one source by the C++ sampler.

``MultiSourceSampler`` holds one :class:`~hbt_fast.sampler.HybridSampler` per (source, batch
kind) and decides, batch by batch, which of them serves the next batch. Rows are numbered
across the sources (source ``i``'s row ``r`` is ``offsets[i] + r``); a batch never mixes
sources, so groups of two sources never meet in one batch.

Batch kinds per source
    ``kinds[i]`` is ``"xx"`` (the source serves X-X batches only), ``"xy"`` (X-Y only) or
    ``"both"`` (whatever the mode draws). Mode "hybrid" draws an X-X batch with probability
    ``alpha``, else an X-Y batch; modes "xx", "xy" and "mixed" draw one kind, which every
    source must serve (mode "mixed" takes ``"both"`` only). So X-X batches may come from one
    source (XQuAD-R's 11 languages) and X-Y batches from another (Tatoeba's 100+).

Weights
    ``alpha`` splits the batches between the kinds; ``weights`` split a kind's batches between
    the sources that serve it: ``"proportional"`` to their batches per epoch in that kind
    (their usable pairs, so an epoch passes once over each), ``"uniform"``, or one positive
    number per source.

Epoch
    ``len(sampler)`` batches: the sum of the sources' epochs in the drawn kind, or
    ``round(alpha * L_xx + (1 - alpha) * L_xy)`` in mode "hybrid" (as one
    :class:`HybridSampler` counts its epoch). Each (source, kind) gets a fixed number of the
    epoch's batches (its share, by largest remainder) in an order drawn from (seed, epoch), so
    the shares are exact in every epoch. A source that gets more batches than its own epoch
    holds continues into its next epoch (a small source is over-sampled, never with a
    repeat inside one of its epochs), one that gets fewer continues where it stopped in the
    next epoch: each source is one endless stream of its sampler's epochs.

Determinism, ranks and resume
    Everything is a function of (seed, epoch, position), as for :class:`HybridSampler`; every
    rank draws the same source and kind for a step and its sub-sampler slices the global batch
    by rank. ``state_dict()`` / ``load_state_dict()`` resume mid-epoch without replaying
    batches; the state records each sub-sampler's settings and data digest.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Optional, Union

import numpy as np

import hbt_fast._C as _C
from hbt_fast._checks import check_flag, is_real
from hbt_fast.sampler._stock_trainer_guard import RefusesStockTrainer
from hbt_fast.sampler.sampler import (_UINT64, Batch, HybridSampler, _id_array, _int, _real,
                                      _str)

__all__ = ["KINDS", "MultiSourceSampler", "WEIGHTINGS", "check_kinds", "check_weights"]

KINDS = ("xx", "xy", "both")
WEIGHTINGS = ("proportional", "uniform")
_MASK = (1 << 64) - 1
_KIND_NAMES = {"xx": "X-X", "xy": "X-Y", "mixed": "mixed"}
_SEED_TAGS = {"xx": 1, "xy": 2, "mixed": 3}
_SCHEDULE_TAG = 0x7363686564756C65


def _mix(value: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit value from any 64-bit input."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


def _mix_array(values: np.ndarray) -> np.ndarray:
    """:func:`_mix` of every uint64 in ``values`` (numpy's uint64 arithmetic wraps, as C's)."""
    values = values + np.uint64(0x9E3779B97F4A7C15)
    values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))


def _largest_remainder(shares: np.ndarray, total: int) -> np.ndarray:
    """Integers summing to ``total``, each within 1 of ``shares * total`` (shares sum to 1);
    ties go to the earlier entry."""
    exact = shares * total
    counts = np.floor(exact).astype(np.int64)
    missing = total - int(counts.sum())
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:missing]] += 1
    return counts


def _drawn_kinds(mode: str, alpha: float) -> dict:
    """Probability of each batch kind the mode draws."""
    if mode == "hybrid":
        return {kind: p for kind, p in (("xx", alpha), ("xy", 1.0 - alpha)) if p > 0}
    return {mode: 1.0}


def check_weights(weights, count: int, name: str = "weights"):
    """``weights`` checked: one of :data:`WEIGHTINGS`, or ``count`` finite numbers > 0 (a list)."""
    if isinstance(weights, str):
        if weights not in WEIGHTINGS:
            raise ValueError(f"{name} must be one of {list(WEIGHTINGS)} or one number per source, "
                             f"got {weights!r}")
        return weights
    if not isinstance(weights, Sequence):
        raise TypeError(f"{name} must be a string or a sequence of numbers, got {type(weights).__name__}")
    values = [_real(weight, f"{name}[]") for weight in weights]
    if len(values) != count:
        raise ValueError(f"{name} must give one number per source ({count}), got {len(values)}: {values}")
    for index, value in enumerate(values):
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name}[{index}] must be a finite number > 0, got {value}")
    return values


def check_kinds(kinds: Sequence[str], mode: str, alpha: float, names: Sequence[str],
                setting: str = "kinds") -> None:
    """Refuse source kinds the mode cannot use, naming the source: a kind the mode never draws,
    a source that would serve no batch, a drawn kind that no source serves."""
    for name, kind in zip(names, kinds):
        if kind not in KINDS:
            raise ValueError(f"{setting}: {name} has kind {kind!r}; kinds are {list(KINDS)}")
        if mode in ("xx", "xy") and kind not in (mode, "both"):
            raise ValueError(f"{setting}: {name} serves {_KIND_NAMES[kind]} batches only, but mode "
                             f"{mode!r} draws {_KIND_NAMES[mode]} batches only; give it kind "
                             f"{mode!r} or 'both', or use mode 'hybrid'")
        if mode == "mixed" and kind != "both":
            raise ValueError(f"{setting}: mode 'mixed' draws mixed batches, which are neither X-X nor "
                             f"X-Y; {name} has kind {kind!r}: give every source kind 'both'")
    drawn = _drawn_kinds(mode, alpha)
    for name, kind in zip(names, kinds):
        if kind != "both" and kind not in drawn:
            raise ValueError(f"{setting}: {name} serves {_KIND_NAMES[kind]} batches only, and mode "
                             f"{mode!r} with alpha {alpha} draws none: change its kind or alpha, or "
                             "leave the source out")
    for kind in drawn:
        if not any(served in ("both", kind) for served in kinds):
            served = ", ".join(f"{name} ({_KIND_NAMES[k]} only)" for name, k in zip(names, kinds))
            raise ValueError(
                f"{setting}: mode {mode!r} draws {_KIND_NAMES[kind]} batches"
                + (f" (alpha {alpha})" if mode == "hybrid" else "")
                + f", but no source serves them: {served}; give a source kind {kind!r} or 'both'"
                + (", or change alpha" if mode == "hybrid" else ""))


class _Stream:
    """One sub-sampler read as the endless sequence of its epochs, from stream position ``start``."""

    def __init__(self, sampler: HybridSampler, start: int):
        self.sampler, self.length = sampler, len(sampler)
        self.epoch, self.index = divmod(start, self.length)
        self.iterator = None

    def next(self) -> Batch:
        if self.iterator is None or self.index == self.length:
            if self.index == self.length:
                self.epoch, self.index = self.epoch + 1, 0
            self.sampler.load_state_dict({"epoch": self.epoch, "position": self.index})
            self.iterator = iter(self.sampler)
        self.index += 1
        return next(self.iterator)


class MultiSourceSampler(RefusesStockTrainer):
    """Yields :class:`Batch` ``(query_rows, passage_rows)`` over several sources of pairs,
    each batch from one source (see the module docstring).

    Args:
        sources: one ``(languages, groups)`` pair of int arrays per source, as
            :class:`HybridSampler` takes them; language ids are shared by all sources (a
            batch's ``.language`` is one of them), group ids are each source's own.
        batch_size, mode, alpha, lang_exponent, seed, rank, world_size, drop_last: as for
            :class:`HybridSampler`.
        kinds: per source "xx", "xy" or "both" (default: "both" for every source).
        weights: "proportional", "uniform", or one positive number per source.
        names: per source, how messages name it (default "source 1", "source 2", ...).
    """

    def __init__(self, sources: Sequence, batch_size: int, *, kinds: Optional[Sequence[str]] = None,
                 weights: Union[str, Sequence[float]] = "proportional", mode: str = "hybrid",
                 alpha: float = 0.5, lang_exponent: float = 0.0, seed: int = 0, rank: int = 0,
                 world_size: int = 1, drop_last: bool = True,
                 names: Optional[Sequence[str]] = None) -> None:
        sources = [self._source(source, i) for i, source in enumerate(sources)]
        if not sources:
            raise ValueError("sources must hold at least one (languages, groups) pair")
        self.names = self._names(names, len(sources))
        config = _C.SamplerConfig(
            batch_size=_int(batch_size, "batch_size"), mode=_str(mode, "mode"),
            alpha=_real(alpha, "alpha"), lang_exponent=_real(lang_exponent, "lang_exponent"),
            seed=_int(seed, "seed", _UINT64), rank=_int(rank, "rank"),
            world_size=_int(world_size, "world_size"), drop_last=check_flag(drop_last, "drop_last"))
        config.validate()
        self._config = config
        self.kinds = self._kinds(kinds, len(sources), config.mode)
        self.weighting = check_weights(weights, len(sources))
        self.offsets = np.concatenate([[0], np.cumsum([len(languages) for languages, _ in sources])])
        self.num_pairs = int(self.offsets[-1])
        self._build_sub_samplers(sources)
        self._allocate()
        self._epoch, self._start, self._position = 0, 0, 0
        self._ticket = 0
        self._schedule_cache: tuple = (None, None)

    # ------------------------------------------------------------------ arguments
    @staticmethod
    def _source(source, index: int) -> tuple:
        if not isinstance(source, Sequence) or isinstance(source, str) or len(source) != 2:
            raise TypeError(f"sources[{index}] must be a (languages, groups) pair of arrays, "
                            f"got {type(source).__name__}")
        return (_id_array(source[0], f"sources[{index}] languages"),
                _id_array(source[1], f"sources[{index}] groups"))

    @staticmethod
    def _names(names, count: int) -> list:
        if names is None:
            return [f"source {i + 1}" for i in range(count)]
        names = [_str(name, "names[]") for name in names]
        if len(names) != count:
            raise ValueError(f"names must name each of the {count} sources, got {len(names)}")
        return names

    def _kinds(self, kinds, count: int, mode: str) -> list:
        if kinds is None:
            kinds = ["both"] * count
        elif isinstance(kinds, str):
            raise TypeError(f"kinds must be a sequence with one kind per source, got {kinds!r}")
        kinds = [_str(kind, "kinds[]") for kind in kinds]
        if len(kinds) != count:
            raise ValueError(f"kinds must give one kind per source ({count}), got {len(kinds)}: {kinds}")
        check_kinds(kinds, mode, self._config.alpha, self.names)
        return kinds

    # ------------------------------------------------------------------ construction
    def _sub_seed(self, source: int, kind: str) -> int:
        """A seed of its own per (source, kind): two alike sources do not draw alike."""
        return _mix(_mix(self._config.seed ^ _mix(source)) ^ _mix(_SEED_TAGS[kind]))

    def _build_sub_samplers(self, sources: list) -> None:
        """One HybridSampler per (source, drawn kind the source serves)."""
        config = self._config
        self.kind_shares = _drawn_kinds(config.mode, config.alpha)
        self.subs: list = []  # (source index, kind, HybridSampler)
        for index, ((languages, groups), served) in enumerate(zip(sources, self.kinds)):
            for kind in self.kind_shares:
                if served in ("both", kind):
                    self.subs.append((index, kind, self._sub_sampler(index, kind, languages, groups)))

    def _sub_sampler(self, index: int, kind: str, languages, groups) -> HybridSampler:
        config = self._config
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                sampler = HybridSampler(
                    languages, groups, config.batch_size, mode=kind, alpha=config.alpha,
                    lang_exponent=config.lang_exponent, seed=self._sub_seed(index, kind),
                    rank=config.rank, world_size=config.world_size, drop_last=config.drop_last)
            except ValueError as error:
                raise ValueError(f"{self.names[index]} cannot serve {_KIND_NAMES[kind]} batches: "
                                 f"{error}") from None
        for warning in caught:
            warnings.warn(f"{self.names[index]} ({_KIND_NAMES[kind]} batches): {warning.message}",
                          warning.category, stacklevel=4)
        return sampler

    def _allocate(self) -> None:
        """Batches per epoch, and the share of each sub-sampler."""
        lengths = np.array([len(sampler) for _, _, sampler in self.subs], dtype=np.float64)
        kinds = [kind for _, kind, _ in self.subs]
        per_kind = {kind: sum(length for length, k in zip(lengths, kinds) if k == kind)
                    for kind in self.kind_shares}
        if self._config.mode == "hybrid":
            total = self._config.alpha * per_kind.get("xx", 0.0) + (1 - self._config.alpha) * per_kind.get("xy", 0.0)
        else:
            total = per_kind[self._config.mode]
        self.num_batches = max(int(round(total)), 1)
        if self.weighting == "proportional":
            weights = lengths
        elif self.weighting == "uniform":
            weights = np.ones(len(self.subs))
        else:
            weights = np.array([self.weighting[source] for source, _, _ in self.subs])
        within = np.array([weights[j] / sum(w for w, k in zip(weights, kinds) if k == kind)
                           for j, kind in enumerate(kinds)])
        self.shares = within * np.array([self.kind_shares[kind] for kind in kinds])
        self.counts = _largest_remainder(self.shares, self.num_batches)
        for (source, kind, _), count in zip(self.subs, self.counts):
            if count == 0:
                warnings.warn(f"{self.names[source]} gets no {_KIND_NAMES[kind]} batch in an epoch of "
                              f"{self.num_batches} batches (its weight is too small); it is never used "
                              "there", UserWarning, stacklevel=3)

    # ------------------------------------------------------------------ settings
    batch_size = property(lambda self: self._config.batch_size)
    mode = property(lambda self: self._config.mode)
    alpha = property(lambda self: self._config.alpha)
    lang_exponent = property(lambda self: self._config.lang_exponent)
    seed = property(lambda self: self._config.seed)
    rank = property(lambda self: self._config.rank)
    world_size = property(lambda self: self._config.world_size)
    drop_last = property(lambda self: self._config.drop_last)

    def __len__(self) -> int:
        return self.num_batches

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields (from its first batch)."""
        epoch = _int(epoch, "epoch")
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch, self._start, self._position = epoch, 0, 0

    def schedule(self, epoch: int) -> np.ndarray:
        """Per batch of ``epoch``: the index (into :attr:`subs`) of the sub-sampler serving it."""
        cached_epoch, cached = self._schedule_cache
        if cached_epoch == epoch:
            return cached
        slots = np.repeat(np.arange(len(self.subs), dtype=np.int32), self.counts)
        base = _mix(_mix(self._config.seed ^ _SCHEDULE_TAG) ^ _mix(epoch))
        keys = _mix_array(np.arange(self.num_batches, dtype=np.uint64) ^ np.uint64(base))
        schedule = slots[np.argsort(keys, kind="stable")]
        self._schedule_cache = (epoch, schedule)
        return schedule

    def source_of_batches(self, epoch: Optional[int] = None) -> np.ndarray:
        """Per batch of ``epoch`` (default: the current one): the index of its source."""
        sources = np.array([source for source, _, _ in self.subs], dtype=np.int64)
        return sources[self.schedule(self._epoch if epoch is None else _int(epoch, "epoch"))]

    def __iter__(self) -> Iterator[Batch]:
        """The current epoch's batches, from the position ``load_state_dict`` set (this
        iteration only; the next starts at the epoch's first batch, as :class:`HybridSampler`)."""
        self._ticket += 1
        start, self._start = self._start, 0
        return self._batches(self._epoch, start, self._ticket)

    def _batches(self, epoch: int, start: int, ticket: int) -> Iterator[Batch]:
        schedule = self.schedule(epoch)
        taken = np.bincount(schedule[:start], minlength=len(self.subs)).astype(np.int64)
        streams: dict = {}
        for position in range(start, self.num_batches):
            j = int(schedule[position])
            if j not in streams:
                streams[j] = _Stream(self.subs[j][2], epoch * int(self.counts[j]) + int(taken[j]))
            batch = streams[j].next()
            offset = self.offsets[self.subs[j][0]]
            if ticket == self._ticket:
                self._position = position + 1
            yield Batch((batch[0] + offset, batch[1] + offset, batch.kind, batch.language))
        if ticket == self._ticket:
            self._position = 0

    @property
    def memory_bytes(self) -> int:
        return sum(sampler.memory_bytes for _, _, sampler in self.subs) + 4 * self.num_batches

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict:
        """Epoch and batches already yielded, the settings and each sub-sampler's settings and
        data digest (plain values: JSON and ``torch.load(weights_only=True)`` read it)."""
        config = self._config
        return {
            "epoch": self._epoch, "position": self._position, "num_batches": self.num_batches,
            "mode": config.mode, "alpha": config.alpha, "lang_exponent": config.lang_exponent,
            "seed": config.seed, "batch_size": config.batch_size, "world_size": config.world_size,
            "drop_last": config.drop_last, "kinds": list(self.kinds),
            "weights": self.weighting if isinstance(self.weighting, str) else list(self.weighting),
            "counts": [int(c) for c in self.counts],
            "sub_samplers": [{key: value for key, value in sampler.state_dict().items()
                              if key not in ("epoch", "position")} for _, _, sampler in self.subs],
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume at ``state["position"]`` of ``state["epoch"]``; every setting, share and
        sub-sampler (settings and data digest) in ``state`` must equal this sampler's."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        missing = {"epoch", "position"} - set(state)
        if missing:
            raise ValueError(f"state is missing {sorted(missing)}")
        epoch = _int(state["epoch"], "state['epoch']")
        position = _int(state["position"], "state['position']")
        mine = self.state_dict()
        for key in ("num_batches", "mode", "alpha", "lang_exponent", "seed", "batch_size", "world_size",
                    "drop_last", "kinds", "weights", "counts"):
            if key in state and _plain(state[key]) != _plain(mine[key]):
                raise ValueError(f"state[{key!r}] is {state[key]!r}, this sampler has {mine[key]!r}")
        saved_subs = state.get("sub_samplers")
        if saved_subs is not None:
            if not isinstance(saved_subs, list) or len(saved_subs) != len(self.subs):
                raise ValueError(f"state['sub_samplers'] must describe {len(self.subs)} sub-samplers")
            for (source, kind, sampler), saved in zip(self.subs, saved_subs):
                try:  # checks its settings and data; the streams set their own positions
                    sampler.load_state_dict({**saved, "epoch": 0, "position": 0})
                except (TypeError, ValueError) as error:
                    raise ValueError(f"{self.names[source]} ({_KIND_NAMES[kind]} batches): {error}") from None
        if epoch < 0 or not 0 <= position <= self.num_batches:
            raise ValueError(f"state: epoch {epoch} must be >= 0 and position {position} within the "
                             f"epoch's {self.num_batches} batches")
        self._epoch, self._start, self._position = epoch, position, position

    def __repr__(self) -> str:
        return (f"MultiSourceSampler(sources={len(self.names)}, kinds={self.kinds}, "
                f"weights={self.weighting!r}, batch_size={self.batch_size}, mode={self.mode!r}, "
                f"alpha={self.alpha}, seed={self.seed}, rank={self.rank}, world_size={self.world_size}, "
                f"len={len(self)})")


def _plain(value):
    """Numbers as floats and sequences as lists, so a JSON round trip compares equal."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if is_real(value):
        return float(value)
    return value
