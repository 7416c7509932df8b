"""Every setting of a training run, written once.

:class:`TrainConfig`'s fields carry their help text in ``metadata``; ``hbt-fast train`` builds
its flags from them (:func:`add_config_arguments`) and a TOML file uses the same keys, so a
default or a help line exists in exactly one place. :meth:`TrainConfig.validate` checks types
(TOML values arrive untyped: ``batch_size = true`` is refused, not trained at 1) and ranges,
including non-finite floats, before anything is loaded.

Fields marked ``free`` (logging, progress, checkpoint cadence) may change when a run is
resumed; any other change must be named in ``override`` or the resume is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

__all__ = ["EVAL_METRICS", "EVAL_TASKS", "MODES", "PRESETS", "REPORT_TO", "TrainConfig",
           "add_config_arguments", "config_differences", "parse_eval_spec"]

MODES = ("xx", "xy", "hybrid")
PRESETS = ("xlmr", "labse", "e5")
REPORT_TO = ("jsonl", "tensorboard", "none")
EVAL_TASKS = ("xquad-r", "mlqa-r")
# Metrics evaluate_lareqa reports, and whether a higher value is better.
EVAL_METRICS = {"mono/map@20": True, "mono/recall@1": True, "cross/map@20": True,
                "cross/recall@1": True, "multi/map@20": True, "multi/recall@10": True,
                "multi/rank_distance": False}


def setting(help: str, default=dataclasses.MISSING, *, choices=None, free=False, flag=None):
    """A TrainConfig field: ``help`` for ``--help``; ``free``: may change on resume."""
    metadata = {"help": help, "choices": choices, "free": free, "flag": flag}
    if default is dataclasses.MISSING:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Every setting of a run; ``hbt-fast train`` flags and TOML keys use these names."""

    model: str = setting("Hugging Face name or local path (or a model saved by hbt-fast train)")
    train: str = setting("training pairs: JSONL (group/lang/query/passage[/negatives]), Parquet, "
                         "a datasets.save_to_disk folder, or a token store (hbt-fast prepare)")
    output: str = setting("run folder: checkpoints, logs, run_config.json, model/ and best/")
    columns: tuple = setting("where the training data keeps each field, comma-separated field=column "
                             "(e.g. query=question,lang=language)", ())
    preset: Optional[str] = setting("pooling preset (default: the saved model's, else from the name)",
                                    None, choices=PRESETS)
    mode: str = setting("batch kinds", "hybrid", choices=MODES)
    alpha: float = setting("probability of an X-X batch in hybrid mode", 0.5)
    lang_exponent: float = setting("X-X language weight n_lang ** e (0: uniform)", 0.0)
    batch_size: int = setting("global batch size over all ranks", 100)
    hard_negatives: Optional[int] = setting(
        "hard negatives per query taken from the pairs' 'negatives' (default: all listed; 0: none)", None)
    lr: float = setting("AdamW learning rate", 3e-5)
    weight_decay: float = setting("AdamW weight decay", 0.01)
    temperature: float = setting("InfoNCE temperature", 0.05)
    symmetric: bool = setting("add the passage->query direction to the loss", False)
    steps: Optional[int] = setting("number of optimisation steps", None)
    epochs: Optional[float] = setting("number of sampler epochs (instead of --steps)", None)
    warmup: float = setting("fraction of the steps with linear warm-up", 0.1)
    max_grad_norm: float = setting("gradient clipping norm, 0 to disable", 1.0)
    bf16: Optional[bool] = setting("bf16 autocast (default: on for CUDA devices that support it)", None)
    gradient_checkpointing: bool = setting("recompute activations in the backward pass", False)
    chunk_size: Optional[int] = setting("GradCache: embed at most this many rows per forward pass", None)
    freeze_word_embeddings: bool = setting("keep the word embedding matrix fixed", False)
    length_buckets: bool = setting("embed each side in sub-batches of similar length (fewer padded "
                                   "positions; the same embeddings up to rounding)", True, free=True,
                                   flag="--no-length-buckets")
    prefixes: bool = setting('prepend the study\'s "Query: " / "Passage: "', False)
    query_prefix: Optional[str] = setting('text prepended to queries, e.g. "query: "', None)
    passage_prefix: Optional[str] = setting('text prepended to passages, e.g. "passage: "', None)
    max_query_length: int = setting("query tokens", 64)
    max_passage_length: int = setting("passage tokens", 256)
    seed: int = setting("seed of sampler and initialisation", 0)
    eval: Optional[str] = setting("periodic evaluation, xquad-r:DIR or mlqa-r:DIR", None, free=True)
    eval_every: int = setting("evaluate every N steps (0: at the end only)", 0, free=True)
    eval_metric: str = setting("metric that picks best/", "multi/map@20", choices=tuple(EVAL_METRICS))
    save_every: int = setting("checkpoint every N steps (0: at the end only)", 0, free=True)
    keep_checkpoints: int = setting("how many step checkpoints to keep", 2, free=True)
    log_every: int = setting("write a log line every N steps", 1, free=True)
    report_to: str = setting("where scalars go besides the console", "jsonl", choices=REPORT_TO, free=True)
    resume: bool = setting("continue from OUTPUT/checkpoints (the newest intact checkpoint)", False,
                           free=True)
    override: tuple = setting("on resume, settings allowed to differ from the saved run, "
                              "comma-separated (e.g. lr,temperature)", (), free=True)
    progress: bool = setting("show a progress bar", True, free=True, flag="--no-progress")

    def validate(self) -> None:
        """Types, then ranges; raises ``TypeError`` / ``ValueError`` naming the setting."""
        check_types(self)
        check_values(self)


def _field_types() -> dict:
    return typing.get_type_hints(TrainConfig)


def _expected(hint) -> tuple:
    """(base type, optional?) of a field's annotation."""
    args = typing.get_args(hint)
    if type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return hint, False


def check_types(config: TrainConfig) -> None:
    for name in _field_types():
        setattr(config, name, coerce_setting(name, getattr(config, name)))


def coerce_setting(name: str, value):
    """``value`` as setting ``name`` holds it (an int where a float goes becomes a float, a
    comma-separated string where a list goes becomes a tuple); TypeError when it has another type."""
    hints = _field_types()
    if name not in hints:
        raise ValueError(f"unknown training setting {name!r}")
    base, optional = _expected(hints[name])
    if value is None and optional:
        return value
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is tuple and isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    if base is tuple and isinstance(value, str):
        return _parse_list(value)
    if type(value) is not base:  # exact: a bool is not an int here
        kind = f"{base.__name__} or none" if optional else base.__name__
        raise TypeError(f"{name} must be {kind}, got {value!r} ({type(value).__name__})")
    return value


def check_values(c: TrainConfig) -> None:
    for name, hint in _field_types().items():
        value = getattr(c, name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")
        choices = TrainConfig.__dataclass_fields__[name].metadata["choices"]
        if choices and value is not None and value not in choices:
            raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    if (c.steps is None) == (c.epochs is None):
        raise ValueError("give exactly one of steps and epochs")
    _at_least(c, 1, "steps", "batch_size", "log_every", "keep_checkpoints", "chunk_size")
    # lang_exponent may be negative (favouring small languages): the sampler checks its range.
    _at_least(c, 0, "eval_every", "save_every", "hard_negatives", "seed", "weight_decay", "max_grad_norm")
    _at_least(c, 2, "max_query_length", "max_passage_length")
    for name in ("epochs", "temperature", "lr"):
        if not getattr(c, name) is None and not getattr(c, name) > 0:
            raise ValueError(f"{name} must be > 0, got {getattr(c, name)}")
    if not 0 <= c.alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {c.alpha}")
    if not 0 <= c.warmup < 1:
        raise ValueError(f"warmup must be in [0, 1), got {c.warmup}")
    if c.prefixes and (c.query_prefix is not None or c.passage_prefix is not None):
        raise ValueError("prefixes (the study's shorthand) and query_prefix/passage_prefix exclude each other")
    for entry in c.columns:
        field_name, equals, column = entry.partition("=")
        if not equals or not field_name or not column:
            raise ValueError(f"columns entries must look like field=column, got {entry!r}")
    c.override = tuple(name.replace("-", "_") for name in c.override)
    unknown = sorted(set(c.override) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise ValueError(f"override names unknown settings: {unknown}")
    if c.eval is not None:
        parse_eval_spec(c.eval)


def _at_least(config: TrainConfig, minimum, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value is not None and value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value}")


def parse_eval_spec(spec: str) -> tuple:
    task, _, directory = spec.partition(":")
    if task not in EVAL_TASKS or not directory:
        raise ValueError(f"eval must look like 'xquad-r:DIR' or 'mlqa-r:DIR', got {spec!r}")
    return task, Path(directory)


def config_differences(saved: dict, config: TrainConfig) -> list:
    """Names of the settings (not ``free``) whose value differs from a saved run's."""
    current = dataclasses.asdict(config)
    changed = []
    for name, spec in TrainConfig.__dataclass_fields__.items():
        if spec.metadata["free"]:
            continue
        before = saved.get(name, spec.default)
        if isinstance(before, list):
            before = tuple(before)
        if before != current[name]:
            changed.append(name)
    return changed


def _parse_list(text: str) -> tuple:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, from its type and metadata (``--batch-size`` for
    ``batch_size``). Flags have no argparse default, so that only given flags reach the config
    (a TOML file fills the rest, then the dataclass defaults)."""
    for name, hint in _field_types().items():
        spec = TrainConfig.__dataclass_fields__[name]
        meta = spec.metadata
        flag = meta["flag"] or "--" + name.replace("_", "-")
        base, optional = _expected(hint)
        text = meta["help"]
        if spec.default is not dataclasses.MISSING and not isinstance(spec.default, (bool, tuple, type(None))):
            text += f" (default {spec.default})"
        if base is bool and optional:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, help=text)
        elif base is bool:
            action = "store_false" if spec.default else "store_true"
            parser.add_argument(flag, dest=name, action=action, help=meta["help"])
        elif base is tuple:
            parser.add_argument(flag, dest=name, type=_parse_list, help=text)
        else:
            if meta["choices"]:
                text += f"; one of {', '.join(meta['choices'])}"
            parser.add_argument(flag, dest=name, type=base, choices=meta["choices"], help=text,
                                metavar=name.upper())
