"""The training data of a run: one corpus per source of ``TrainConfig.train``, and several
sources joined into one :class:`SourceMix` that a :class:`~hbt_fast.sampler.MultiSourceSampler`
draws from.

A source is a token store given as it is (``hbt-fast prepare``), or files (JSONL, Parquet,
``save_to_disk`` folders, glob patterns) prepared into a store in the run folder:
``OUTPUT/token_store`` (``token_store-N`` for source N of several), with the run's tokenizer,
prefixes and maximum lengths, in the bounded memory of :func:`write_token_store`. Training then
reads the store memory-mapped, exactly as from a prepared store. A later start of the run
(``--resume``, or a start again after a kill) reuses that store when the files (their bytes,
by SHA-256), the column mapping and the tokenization are the same, and prepares it again
otherwise; a preparation that was killed leaves only its temporary folder, which the next one
removes before starting over. What ``--resume`` compares is the pairs' content digest, the same
whichever way the pairs were read.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Optional

import numpy as np

from hbt_fast.data.token_store import TokenStore, is_token_store, write_token_store
from hbt_fast.data.token_store.sources import expand_inputs, inputs_digest
from hbt_fast.sampler import HybridSampler, MultiSourceSampler
from hbt_fast.train import components as parts
from hbt_fast.train.config import TrainConfig, source_names, training_sources
from hbt_fast.train.inputs import StepInputs
from hbt_fast.train.store_inputs import open_store, step_inputs_source

__all__ = ["RUN_STORE", "SourceMix", "SourceMixInputs", "check_training_data", "describe_sources",
           "make_sampler", "read_training_data", "run_store_name", "step_inputs_for"]

RUN_STORE = "token_store"


def run_store_name(index: int, sources: int) -> str:
    """The folder in the run folder that source ``index`` (of ``sources``) is prepared into."""
    return RUN_STORE if sources == 1 else f"{RUN_STORE}-{index + 1}"


# ------------------------------------------------------------------ reading


def read_training_data(config: TrainConfig, output: Path, *, corpus=None, encoder=None, rank: int = 0,
                       world_size: int = 1):
    """The run's training corpus: ``corpus`` as given (one corpus, or a list with one per source
    of ``config.train``), else each source opened or prepared (rank 0 prepares, every rank
    opens); several sources become one :class:`SourceMix`."""
    names = source_names(config)
    if corpus is not None and not isinstance(corpus, (list, tuple)):
        return corpus
    if corpus is not None:
        corpora = list(corpus)
        if len(corpora) != len(names):
            raise ValueError(f"corpus holds {len(corpora)} corpora, but train names {len(names)} "
                             "source(s); give one corpus per source")
    else:
        corpora = _source_corpora(config, Path(output), encoder, rank, world_size)
    if len(corpora) == 1:
        return corpora[0]
    return SourceMix(corpora, names, list(config.source_kinds) or ["both"] * len(corpora))


def _source_corpora(config: TrainConfig, output: Path, encoder, rank: int, world_size: int) -> list:
    sources = training_sources(config)
    columns = dict(entry.split("=", 1) for entry in config.columns) or None
    tokenization = None
    corpora = []
    for index, paths in enumerate(sources):
        store = open_store(paths[0]) if len(paths) == 1 else None
        if store is not None:
            if config.columns:
                raise ValueError(f"columns apply when a store is prepared; {paths[0]} is a prepared "
                                 "token store (give columns to hbt-fast prepare)")
            corpora.append(store)
            continue
        if tokenization is None:
            tokenization = _tokenization(config, encoder)
        folder = output / run_store_name(index, len(sources))
        work = (lambda: _prepare_in_run_folder(paths, folder, *tokenization, config, columns)) \
            if rank == 0 else None
        parts.on_all_ranks(work, world_size, ValueError(
            f"preparing {' '.join(paths)} into {folder} failed on rank 0"))
        corpora.append(TokenStore(folder))
    return corpora


def _tokenization(config: TrainConfig, encoder) -> tuple:
    """``(tokenizer, EncoderSettings)`` the run's encoder has (``encoder``, or the one
    :func:`hbt_fast.train.components.load_encoder` loads for ``config``)."""
    from hbt_fast.models.loading import tokenization

    if encoder is not None:
        return encoder.tokenizer, encoder.settings
    return tokenization(config.model, config.preset, {
        "prefixes": config.prefixes, "query_prefix": config.query_prefix,
        "passage_prefix": config.passage_prefix, "max_query_length": config.max_query_length,
        "max_passage_length": config.max_passage_length})


def _prepare_in_run_folder(paths: list, folder: Path, tokenizer, settings, config: TrainConfig,
                           columns: Optional[dict]) -> None:
    digest = inputs_digest(expand_inputs(paths), columns)
    if _reusable(folder, digest, tokenizer, settings):
        return
    write_token_store(paths, folder, tokenizer, settings, tokenizer_name=config.model, columns=columns,
                      progress=config.progress, source_digest=digest)


def _reusable(folder: Path, digest: str, tokenizer, settings) -> bool:
    """Whether the store in ``folder`` was prepared from inputs with ``digest`` and this
    tokenization, and is intact."""
    if not is_token_store(folder):
        return False
    try:
        store = TokenStore(folder, verify=True)
    except ValueError as error:
        warnings.warn(f"the token store the run prepared is damaged ({error}); preparing it again",
                      UserWarning, stacklevel=2)
        return False
    try:
        store.check_tokenization(tokenizer, settings)
    except ValueError:
        return False  # e.g. a resume that overrides the maximum lengths
    return store.source_digest == digest


# ------------------------------------------------------------------ several sources


def _group_span(corpus) -> int:
    """Group ids a corpus's steps may use: its groups, then one per negative of no pair
    (:mod:`hbt_fast.train.inputs`, :mod:`hbt_fast.train.store_inputs`)."""
    if isinstance(corpus, TokenStore):
        return corpus.num_groups + len(corpus.negative_text_ids)
    groups = np.asarray(corpus.group_ids)
    return (int(groups.max()) + 1 if len(groups) else 0) + len(corpus.negatives)


class SourceMix:
    """Several corpora as one: rows numbered source after source, one language id space (the
    sorted union of the sources' languages) and group ids offset per source, so that no group
    of one source is ever taken for a group of another."""

    def __init__(self, corpora: list, names: list, kinds: list):
        self.corpora, self.names, self.kinds = corpora, names, kinds
        self.language_names = sorted(set().union(*(corpus.language_names for corpus in corpora)))
        self._language_maps = [np.searchsorted(self.language_names, corpus.language_names).astype(np.int64)
                               for corpus in corpora]
        self.row_offsets = np.concatenate([[0], np.cumsum([len(corpus) for corpus in corpora])])
        self.group_offsets = np.concatenate([[0], np.cumsum([_group_span(corpus) for corpus in corpora])])
        self.digest = hashlib.sha256("\0".join(corpus.digest for corpus in corpora).encode()).hexdigest()

    def __len__(self) -> int:
        return int(self.row_offsets[-1])

    def language_ids(self, index: int) -> np.ndarray:
        """Source ``index``'s language ids in the shared id space (its own array when they agree)."""
        local = self.corpora[index].language_ids
        mapping = self._language_maps[index]
        return local if np.array_equal(mapping, np.arange(len(mapping))) else mapping[np.asarray(local)]

    def languages_of(self, kind: str) -> list:
        """Languages of the sources that serve ``kind`` ("xx" or "xy") batches."""
        return sorted(set().union(*(corpus.language_names for corpus, served in zip(self.corpora, self.kinds)
                                    if served in ("both", kind))))


class SourceMixInputs:
    """:class:`StepInputs` of a :class:`SourceMix` batch (whose rows are of one source), from
    that source's own inputs, with its group ids offset."""

    def __init__(self, mix: SourceMix, encoder, hard_negatives: Optional[int], mask_duplicates: bool = True):
        self.mix = mix
        # A batch's rows are of one source, so its text ids never meet another source's.
        self.parts = [step_inputs_source(corpus, encoder, hard_negatives, mask_duplicates)
                      for corpus in mix.corpora]
        self.negative_ids = range(sum(len(part.negative_ids) for part in self.parts))  # its length

    def step_inputs(self, query_rows: np.ndarray, passage_rows: np.ndarray) -> StepInputs:
        offsets = self.mix.row_offsets
        source = int(np.searchsorted(offsets, query_rows[0], side="right")) - 1
        inputs = self.parts[source].step_inputs(np.asarray(query_rows) - offsets[source],
                                                np.asarray(passage_rows) - offsets[source])
        shift = int(self.mix.group_offsets[source])
        if inputs.query_groups is not None:
            inputs.query_groups = inputs.query_groups + shift
            inputs.passage_groups = inputs.passage_groups + shift
        return inputs


def step_inputs_for(corpus, encoder, hard_negatives: Optional[int], mask_duplicates: bool = True):
    """What turns a sampler batch into :class:`StepInputs` for the run's corpus."""
    if isinstance(corpus, SourceMix):
        return SourceMixInputs(corpus, encoder, hard_negatives, mask_duplicates)
    return step_inputs_source(corpus, encoder, hard_negatives, mask_duplicates)


# ------------------------------------------------------------------ checks, sampler, description


def check_training_data(corpus, config: TrainConfig) -> None:
    """Stop before training when a source cannot serve the batches asked of it (naming it)."""
    if not isinstance(corpus, SourceMix):
        parts.check_corpus_for_mode(corpus, config.mode, config.alpha)
        return
    for source, name, kind in zip(corpus.corpora, corpus.names, corpus.kinds):
        if kind == "xy" or (kind == "both" and config.mode in ("xy", "hybrid")):
            parts.check_corpus_for_mode(source, "xy" if kind == "xy" else config.mode, config.alpha,
                                        source=f"{name} (kind {kind})")


def make_sampler(corpus, config: TrainConfig, rank: int, world_size: int):
    """A :class:`HybridSampler` over one source, a :class:`MultiSourceSampler` over several."""
    settings = dict(mode=config.mode, alpha=config.alpha, lang_exponent=config.lang_exponent,
                    seed=config.seed, rank=rank, world_size=world_size)
    batch_size = config.batch_size // world_size
    if not isinstance(corpus, SourceMix):
        return HybridSampler(corpus.language_ids, corpus.group_ids, batch_size, **settings)
    weights = config.source_weights
    return MultiSourceSampler(
        [(corpus.language_ids(i), source.group_ids) for i, source in enumerate(corpus.corpora)],
        batch_size, kinds=corpus.kinds, weights=list(weights) if isinstance(weights, tuple) else weights,
        names=corpus.names, **settings)


def describe_sources(corpus, sampler) -> Optional[list]:
    """Per source of several: its paths, kind, pairs, languages, and batches per epoch by kind
    (``run_config.json``, the model card); None for one source."""
    if not isinstance(corpus, SourceMix):
        return None
    batches = [{} for _ in corpus.corpora]
    for (source, kind, _), count in zip(sampler.subs, sampler.counts):
        batches[source][kind] = int(count)
    return [{"name": name, "kind": kind, "pairs": len(source), "languages": list(source.language_names),
             "digest": source.digest, "batches_per_epoch": per_kind}
            for name, kind, source, per_kind in zip(corpus.names, corpus.kinds, corpus.corpora, batches)]
