"""``HybridTrainer``: sentence-transformers' trainer on hybrid (X-X / X-Y) batches.

    from hbt_fast.integrations.sentence_transformers import HybridTrainer
    trainer = HybridTrainer(model=model, args=args, train_dataset=pairs, loss=loss,
                            mode="hybrid", alpha=0.5, lang_exponent=0.0)
    trainer.train()

``pairs`` is a ``datasets.Dataset`` with one row per (query, passage) pair and the columns
``query``, ``passage``, ``language`` (or ``lang``, as ``hbt-fast split-lareqa`` writes it) and
``group`` (rows of one group are the same item in other languages); optional
``negative_columns`` hold hard negatives of the row's passage (other columns named like hard
negatives are never read, with a warning naming them). Every
batch is drawn by :class:`hbt_fast.HybridSampler` over these rows. An X-Y batch joins the query
of one row with the passage (and negatives) of another row of the same group, by index, at
collation time, so no cross product of a group's languages is ever built: the data loader's
dataset has exactly as many rows as ``pairs``. Language and group columns are read by the
sampler only and never reach the model (they are dropped from ``eval_dataset`` too).

Everything else is the stock trainer: ``per_device_train_batch_size`` is the sampler's batch
size, ``seed`` (or ``data_seed``) its seed, ``dataloader_drop_last`` its ``drop_last``; the
Trainer calls ``set_epoch`` every epoch. Under several processes (torchrun / accelerate) each
process builds the sampler with its own rank, so the ranks of a step share the batch kind and
language and hold disjoint groups; the batches are not re-sharded by accelerate. Checkpoints
carry ``hybrid_sampler.json``; resuming checks it against this run's sampler and data (a
change would silently alter the batches) and continues that epoch's batch sequence. The model
card lists the sampler's mode, alpha and language exponent among the hyperparameters. Each
training log (console, TensorBoard, W&B ...) carries the share of each batch kind so far,
``batches/xx_share`` / ``batches/xy_share`` (``batches/mixed_share`` in mode "mixed"), as
``hbt-fast train`` logs them.

Several sources: ``train_dataset`` may be a ``datasets.DatasetDict`` (or a dict of Datasets),
one source per split; each batch then comes from one source, drawn by
:class:`hbt_fast.MultiSourceSampler` with ``source_kinds`` (per source "xx", "xy" or "both")
and ``source_weights`` ("proportional", "uniform", or one number per source), given as dicts
by split name or lists in the DatasetDict's order. A dict of losses keyed by split name
applies per source, as in sentence-transformers' multi-dataset training.

Label and text columns are read once as whole Arrow arrays (:mod:`.columns`): no Python
object per row is made before training.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

try:
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.base.training_args import BatchSamplers
except ImportError as error:
    raise ImportError(
        "hbt_fast.integrations.sentence_transformers.HybridTrainer needs sentence-transformers "
        "with its training extra (pip install 'sentence-transformers[train]')"
    ) from error

from accelerate.data_loader import prepare_data_loader
from torch.utils.data import DataLoader
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from hbt_fast.sampler import HybridBatchSampler, HybridSampler, MultiSourceSampler
from hbt_fast.data.files import write_text_atomically
from hbt_fast.integrations.sentence_transformers.columns import (LabelIds, check_texts, column_values,
                                                                 pair_ids, shared_ids)
from hbt_fast.integrations.sentence_transformers.pair_rows import PairRows, SourceRows

__all__ = ["HybridTrainer", "SAMPLER_STATE_NAME"]

SAMPLER_STATE_NAME = "hybrid_sampler.json"
_TEXT_TYPES = ("string", "large_string")
#: the language column's names: HybridTrainer's, and hbt-fast's pairs (split-lareqa, JSONL)
_LANGUAGE_COLUMNS = ("language", "lang")
# "negative", "negatives", "negative_2", "hard_negative", "neg", "neg_1", "hard_negs" ...
_NEGATIVE_LIKE = re.compile(r"negative|(^|[^a-z])(hard_?)?negs?(_?\d+)?([^a-z]|$)", re.IGNORECASE)


class HybridTrainer(SentenceTransformerTrainer):
    """``SentenceTransformerTrainer`` whose training batches come from ``HybridSampler``.

    Args (besides those of ``SentenceTransformerTrainer``):
        mode: "xx", "xy", "hybrid" or "mixed" (see :class:`hbt_fast.HybridSampler`).
        alpha: probability that a hybrid batch is X-X.
        lang_exponent: X-X language weight ``n_lang ** lang_exponent``.
        query_column, passage_column: text columns of ``train_dataset``.
        language_column, group_column: labels (any sortable values) the sampler reads; the
            language column defaults to ``language``, or ``lang`` where only that exists.
        negative_columns: text columns with hard negatives of the row's passage, passed to the
            loss after the passage (in an X-Y batch, those of the passage's row).
        source_kinds, source_weights: with a DatasetDict (several sources), per source the
            batches it serves and the weights (see the module docstring).
    """

    def __init__(self, model=None, args=None, train_dataset=None, eval_dataset=None, loss=None,
                 *, mode: str = "hybrid", alpha: float = 0.5, lang_exponent: float = 0.0,
                 query_column: str = "query", passage_column: str = "passage",
                 language_column: Optional[str] = None, group_column: str = "group",
                 negative_columns: Sequence[str] = (), source_kinds=None, source_weights="proportional",
                 **kwargs) -> None:
        if isinstance(negative_columns, str):
            negative_columns = [negative_columns]
        self.hybrid_settings = {"mode": mode, "alpha": alpha, "lang_exponent": lang_exponent}
        self._text_columns = [query_column, passage_column, *negative_columns]
        language_column = _language_column(train_dataset, language_column)
        self._label_columns = [language_column, group_column]
        self._sources = _sources(train_dataset)
        for name, dataset in self._sources:
            _check_train_dataset(dataset, self._text_columns, self._label_columns, _where(name))
            _warn_unused_negatives(dataset, [*self._text_columns, *self._label_columns])
        self._pair_ids = _source_pair_ids(self._sources, language_column, group_column)
        self.source_settings = _source_settings(self._sources, source_kinds, source_weights)
        super().__init__(model=model, args=args, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, loss=loss, **kwargs)
        if self.args.batch_sampler != BatchSamplers.BATCH_SAMPLER:
            raise ValueError(
                f"args.batch_sampler={self.args.batch_sampler!r} would be ignored: HybridTrainer "
                "draws its batches with hbt_fast.HybridSampler (set mode, alpha, lang_exponent "
                "on HybridTrainer); leave batch_sampler at its default"
            )
        parts = [PairRows(dataset, query_column, passage_column, negative_columns) for _, dataset in self._sources]
        if len(parts) == 1:
            self._pairs = parts[0]
        else:  # each row names its split when sentence-transformers routes losses or prompts by it
            named = self.should_dataset_name_column_be_added(train_dataset, self.args, self.loss)
            self._pairs = SourceRows(parts, [name for name, _ in self._sources] if named else None)
        self._resume_from = None
        self._kinds_of_epoch: dict = {}
        self.hybrid_sampler = self._build_sampler()  # now, so that bad settings fail here
        self.model.model_card_data.add_tags("hybrid-batch-training")
        self.add_callback(_SamplerCardCallback(
            {**self.hybrid_settings, **{f"source_{k}": v for k, v in (self.source_settings or {}).items()}},
            type(self.hybrid_sampler).__name__))

    def _build_sampler(self):
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        settings = dict(**self.hybrid_settings, seed=seed, rank=self.args.process_index,
                        world_size=self.args.world_size, drop_last=self.args.dataloader_drop_last)
        if self.source_settings is None:
            ids = self._pair_ids[0]
            return HybridSampler(ids.languages, ids.groups, self.args.train_batch_size, **settings)
        return MultiSourceSampler([(ids.languages, ids.groups) for ids in self._pair_ids],
                                  self.args.train_batch_size, names=[name for name, _ in self._sources],
                                  **self.source_settings, **settings)

    def train(self, resume_from_checkpoint=None, trial=None, ignore_keys_for_eval=None, **kwargs):
        if resume_from_checkpoint is True:
            self._resume_from = get_last_checkpoint(self.args.output_dir)
        elif resume_from_checkpoint:
            self._resume_from = str(resume_from_checkpoint)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, trial=trial,
                             ignore_keys_for_eval=ignore_keys_for_eval, **kwargs)

    def get_train_dataloader(self):
        if self.train_dataset is None:
            raise ValueError("Training requires specifying a train_dataset to the HybridTrainer.")
        if self.hybrid_sampler.batch_size != self.args.train_batch_size:  # auto_find_batch_size
            self.hybrid_sampler = self._build_sampler()
        if self._resume_from is not None:
            self._restore_sampler(self._resume_from)
            self._resume_from = None
        args = self.args
        loader = DataLoader(
            self._pairs, batch_sampler=HybridBatchSampler(self.hybrid_sampler),
            collate_fn=self.data_collator, num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory,
            persistent_workers=args.dataloader_persistent_workers,
            prefetch_factor=args.dataloader_prefetch_factor,
        )
        # One process's view: the sampler already slices each global batch by rank, so
        # accelerate must not shard the batches again (it would deal whole batches to ranks).
        self._train_dataloader = prepare_data_loader(
            loader, device=args.device, num_processes=1, process_index=0, put_on_device=True)
        return self._train_dataloader

    def _restore_sampler(self, checkpoint: str) -> None:
        path = Path(checkpoint) / SAMPLER_STATE_NAME
        if not path.is_file():
            raise ValueError(
                f"resume_from_checkpoint: {path} does not exist; HybridTrainer resumes only from "
                "checkpoints it wrote (the sampler's position and settings are needed)"
            )
        try:
            # Checks settings and data; the Trainer's set_epoch and batch skipping then
            # replay this epoch up to the saved position (batches depend on position only).
            self.hybrid_sampler.load_state_dict(json.loads(path.read_text(encoding="utf-8")))
        except ValueError as error:
            raise ValueError(f"cannot resume from {checkpoint}: {error}") from None

    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if self.args.should_save and folder.is_dir():
            write_text_atomically(folder / SAMPLER_STATE_NAME,
                                  json.dumps(self._sampler_state(), indent=2) + "\n")

    def _sampler_state(self) -> dict:
        """The sampler state at the Trainer's position (the live one runs ahead by what the data
        loader prefetched), by the Trainer's own epoch arithmetic."""
        epoch, position = self._trained_position()
        return {**self.hybrid_sampler.state_dict(), "epoch": epoch, "position": position}

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs:  # a training log (not an evaluation's)
            logs = {**logs, **self._batch_kind_shares()}
        super().log(logs, *args, **kwargs)

    def _batch_kind_shares(self) -> dict:
        """Each batch kind's share of the batches trained so far (the same on every process:
        the sampler's batches depend on epoch and position only)."""
        epoch, position = self._trained_position()
        counts = Counter()
        for earlier in range(epoch):
            counts.update(self._batch_kinds(earlier))
        counts.update(self._batch_kinds(epoch)[:position])
        total = sum(counts.values())
        if not total:
            return {}
        mode = self.hybrid_sampler.mode
        kinds = {"xx": ("xx",), "xy": ("xy",), "mixed": ("mixed",)}.get(mode, ("xx", "xy"))
        return {f"batches/{kind}_share": counts[kind] / total for kind in kinds}

    def _batch_kinds(self, epoch: int) -> list:
        """The kind of each batch of ``epoch``, the last few epochs' kept."""
        key = (epoch, len(self.hybrid_sampler), self.hybrid_sampler.batch_size)
        if key not in self._kinds_of_epoch:
            if len(self._kinds_of_epoch) > 2:
                self._kinds_of_epoch.clear()
            other = "mixed" if self.hybrid_sampler.mode == "mixed" else "xy"
            self._kinds_of_epoch[key] = ["xx" if language >= 0 else other for language in
                                         self.hybrid_sampler.batch_languages(epoch).tolist()]
        return self._kinds_of_epoch[key]

    def _trained_position(self) -> tuple:
        """``(epoch, batches of it trained)`` at the Trainer's global step, by the Trainer's own
        epoch arithmetic (the live sampler runs ahead by what the data loader prefetched)."""
        batches, accumulation = len(self.hybrid_sampler), self.args.gradient_accumulation_steps
        steps_per_epoch = max(math.ceil(batches / accumulation), 1)
        epoch, step = divmod(self.state.global_step, steps_per_epoch)
        return epoch, min(step * accumulation, batches)

    def preprocess_dataset(self, dataset=None, dataset_name=None):
        if dataset_name == "eval" and dataset is not None:
            dataset = _without_columns(dataset, self._label_columns)
        return super().preprocess_dataset(dataset, dataset_name=dataset_name)


class _SamplerCardCallback(TrainerCallback):
    """Adds the sampler's settings to the model card's hyperparameters (after the card's own
    callback has filled them from the training arguments at the start of training)."""

    def __init__(self, settings: dict, sampler: str = "HybridSampler") -> None:
        self.entries = {"batch_sampler": f"hbt_fast.{sampler}",
                        **{f"hybrid_{name}": value for name, value in settings.items()}}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        card = model.model_card_data
        card.all_hyperparameters.update(self.entries)
        card.non_default_hyperparameters.update(self.entries)


def _sources(train_dataset) -> list:
    """``[(split name or None, Dataset)]``: one source, or one per split of a DatasetDict."""
    from datasets import Dataset, DatasetDict

    if train_dataset is None:
        raise ValueError("train_dataset is required: HybridTrainer draws its batches from its rows")
    if isinstance(train_dataset, Dataset):
        return [(None, train_dataset)]
    if isinstance(train_dataset, (dict, DatasetDict)) and train_dataset:
        for name, dataset in train_dataset.items():
            if not isinstance(dataset, Dataset):
                raise TypeError(f"train_dataset[{name!r}] must be a datasets.Dataset of pair rows (the "
                                f"sampler needs random access to every row), got {type(dataset).__name__}")
        return list(train_dataset.items())
    raise TypeError(
        f"train_dataset must be a datasets.Dataset of pair rows, or a DatasetDict of them (one per "
        f"source; the sampler needs random access to every row), got {type(train_dataset).__name__}"
    )


def _where(name) -> str:
    return "train_dataset" if name is None else f"train_dataset[{name!r}]"


def _check_train_dataset(dataset, text_columns: Sequence[str], label_columns: Sequence[str],
                         where: str) -> None:
    for column in [*text_columns, *label_columns]:
        if column not in dataset.column_names:
            raise ValueError(f"{where} has no column {column!r} (columns: "
                             f"{dataset.column_names}); pass its name, e.g. language_column='lang'")
    for column in text_columns:
        dtype = getattr(dataset.features[column], "dtype", None)
        if dtype not in _TEXT_TYPES:
            raise TypeError(f"{where} column {column!r} must hold strings, got {dataset.features[column]}")
        check_texts(column_values(dataset, column), column, where)


def _source_pair_ids(sources: list, language_column: str, group_column: str) -> list:
    """Each source's ids (Arrow kernels, no Python object per row); languages in one id space."""
    ids = [pair_ids(dataset, language_column, group_column, _where(name)) for name, dataset in sources]
    if len(ids) > 1:
        languages, _ = shared_ids([LabelIds(i.languages, i.language_names) for i in ids], "language")
        ids = [i._replace(languages=shared) for i, shared in zip(ids, languages)]
    return ids


def _language_column(dataset, given: Optional[str]) -> str:
    """``given``, else whichever of ``language`` / ``lang`` the dataset (of several sources:
    the first) has."""
    if isinstance(dataset, dict) and dataset:  # a DatasetDict: every source has the same columns
        dataset = next(iter(dataset.values()))
    names = getattr(dataset, "column_names", None)
    if given is not None or not isinstance(names, list):
        return given or _LANGUAGE_COLUMNS[0]  # the dataset's own check reports what is wrong
    present = [name for name in _LANGUAGE_COLUMNS if name in names]
    if len(present) != 1:
        problem = "both" if present else "neither"
        raise ValueError(f"train_dataset has {problem} of the columns 'language' and 'lang' "
                         f"(columns: {names}); name the one with the languages, e.g. "
                         "language_column='lang'")
    return present[0]


def _holds_texts(feature) -> bool:
    """A text column, or one of lists of texts."""
    inner = getattr(feature, "feature", None)
    return getattr(feature, "dtype", None) in _TEXT_TYPES or \
        getattr(inner, "dtype", None) in _TEXT_TYPES


def _warn_unused_negatives(dataset, used: Sequence[str]) -> None:
    """One warning naming the text columns that look like hard negatives but are never read."""
    unused = [name for name in dataset.column_names if name not in used
              and _NEGATIVE_LIKE.search(name) and _holds_texts(dataset.features[name])]
    if unused:
        warnings.warn(
            f"train_dataset columns {unused} look like hard negatives but are not in "
            f"negative_columns, so the loss never sees them; pass negative_columns={unused} to "
            "train with them (one text column per negative: split a column of lists first), or "
            "remove them to silence this", UserWarning, stacklevel=3)


def _by_source(value, sources: list, what: str) -> list:
    """A per-source setting given as a dict by split name, or as a list in the splits' order."""
    names = [name for name, _ in sources]
    if isinstance(value, dict):
        unknown, missing = sorted(set(value) - set(names)), [n for n in names if n not in value]
        if unknown or missing:
            raise ValueError(f"{what} names the splits {sorted(value)}, train_dataset has {names}: "
                             f"give one value per split")
        return [value[name] for name in names]
    return value


def _source_settings(sources: list, kinds, weights):
    """The MultiSourceSampler's kinds and weights, None for one source."""
    if len(sources) == 1:
        if kinds is not None or weights != "proportional":
            raise ValueError("source_kinds and source_weights apply to several sources: pass a "
                             "DatasetDict with one split per source")
        return None
    return {"kinds": _by_source(kinds, sources, "source_kinds"),
            "weights": weights if isinstance(weights, str) else _by_source(weights, sources, "source_weights")}


def _without_columns(dataset, columns: Sequence[str]):
    names = dataset.column_names
    if isinstance(names, dict):  # DatasetDict
        return type(dataset)({key: _without_columns(part, columns) for key, part in dataset.items()})
    present = [column for column in columns if names is not None and column in names]
    return dataset.remove_columns(present) if present else dataset
