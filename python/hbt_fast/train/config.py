"""Every setting of a training run, written once.

:class:`TrainConfig`'s fields carry their help text in ``metadata``; ``hbt-fast train`` builds
its flags from them (:func:`add_config_arguments`) and a TOML file uses the same keys, so a
default, a range or a help line exists in exactly one place. :meth:`TrainConfig.validate`
checks types (TOML values arrive untyped: ``batch_size = true`` is refused, not trained at 1) and
ranges (each field's :class:`Bounds`, which say why; every integer fits 64 bits, every float is
finite), before anything is loaded.

Fields marked ``free`` (logging, progress, checkpoint cadence) may change when a run is
resumed; any other change must be named in ``override`` or the resume is refused. Fields marked
``fixed`` cannot change on resume at all (the sampler's position or the checkpoint's model
depends on them), so naming them in ``override`` is refused up front.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

from hbt_fast.evaluate.keys import higher_is_better
from hbt_fast.evaluate.lareqa import metric_names as lareqa_metric_names
from hbt_fast.models.settings import PRESETS as PRESET_SETTINGS

__all__ = ["EVAL_METRICS", "EVAL_TASKS", "MAX_INT", "MODES", "PRESETS", "REPORT_TO", "Bounds",
           "TrainConfig", "add_config_arguments", "coerce_settings", "config_differences",
           "flag_name", "parse_eval_spec", "path_locations"]

MODES = ("xx", "xy", "hybrid", "mixed")
PRESETS = tuple(PRESET_SETTINGS)
REPORT_TO = ("jsonl", "tensorboard", "none")
EVAL_TASKS = ("xquad-r", "mlqa-r")
# Metrics evaluate_lareqa reports, and whether a higher value is better (owned by evaluate).
EVAL_METRICS = {name: higher_is_better(name) for name in lareqa_metric_names()}


# Steps, seeds and counts are 64-bit integers in torch and in the C++ sampler.
MAX_INT = 2**63 - 1
# The sampler's position and the checkpoint's model depend on these: resume cannot change them.
SAMPLER_FIXED = "the sampler's saved position in its epoch depends on it"
MODEL_FIXED = ("a resumed run continues the checkpoint's model, with the pooling and prompts it was "
               "trained with")


@dataclass(frozen=True)
class Bounds:
    """The values a numeric setting accepts; ``why`` says what breaks outside them."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False  # low itself is excluded
    high_open: bool = False
    why: str = ""

    def admit(self, value) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or value < self.high or (not self.high_open and value == self.high)

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{self.low}, {self.high}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        return f"{'<' if self.high_open else '<='} {self.high}"


def setting(help: str, default=dataclasses.MISSING, *, choices=None, free=False, flag=None,
            flag_help: Optional[str] = None, bounds: Optional[Bounds] = None,
            fixed: Optional[str] = None, path=False):
    """A TrainConfig field: ``help`` for ``--help``; ``free``: may change on resume; ``fixed``:
    why it can never change on resume; ``bounds``: its range; ``path``: names a file or folder.
    A setting that is on by default has a flag that turns it off (``flag``, e.g.
    ``--no-progress``) and ``flag_help`` saying what that flag does."""
    if default is True and not (flag and flag_help):
        raise TypeError("a setting on by default needs flag= and flag_help= for the flag that "
                        "turns it off")
    metadata = {"help": help, "choices": choices, "free": free, "flag": flag, "bounds": bounds,
                "fixed": fixed, "path": path, "flag_help": flag_help}
    if default is dataclasses.MISSING:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


NON_NEGATIVE = Bounds(low=0)
AT_LEAST_ONE = Bounds(low=1)
DEFAULT_ALPHA = 0.5


@dataclass
class TrainConfig:
    """Every setting of a run; ``hbt-fast train`` flags and TOML keys use these names."""

    model: str = setting("Hugging Face name or local path (or a model saved by hbt-fast train)",
                         fixed=MODEL_FIXED, path=True)
    train: str = setting("training pairs: JSONL (group/lang/query/passage[/negatives]), Parquet, "
                         "a datasets.save_to_disk folder, or a token store (hbt-fast prepare)", path=True)
    output: str = setting("run folder: checkpoints, logs, run_config.json, model/ and best/", path=True)
    columns: tuple = setting("where the training data keeps each field, comma-separated field=column "
                             "(e.g. query=question,lang=language)", ())
    preset: Optional[str] = setting("pooling preset (default: the saved model's, else from the name)",
                                    None, choices=PRESETS, fixed=MODEL_FIXED)
    mode: str = setting("batch kinds", "hybrid", choices=MODES, fixed=SAMPLER_FIXED)
    # Default None, replaced by 0.5 at construction: an alpha given with another mode is refused.
    alpha: float = setting("probability of an X-X batch, mode hybrid only (default 0.5)", None,
                           bounds=Bounds(0, 1), fixed=SAMPLER_FIXED)
    # Any finite exponent: the sampler weighs languages in log space.
    lang_exponent: float = setting("X-X language weight n_lang ** e (0: uniform)", 0.0, fixed=SAMPLER_FIXED)
    batch_size: int = setting("global batch size over all ranks", 100, bounds=AT_LEAST_ONE,
                              fixed=SAMPLER_FIXED)
    hard_negatives: Optional[int] = setting(
        "hard negatives per query taken from the pairs' 'negatives' (default: all listed; 0: none)", None,
        bounds=NON_NEGATIVE)
    lr: float = setting("AdamW learning rate", 3e-5, bounds=Bounds(
        0, 1, low_open=True, why="AdamW moves each weight by about lr per step: larger rates destroy the "
                                 "model, and beyond 3e37 the step overflows float32"))
    weight_decay: float = setting("AdamW weight decay", 0.01, bounds=NON_NEGATIVE)
    temperature: float = setting("InfoNCE temperature", 0.05, bounds=Bounds(
        1e-4, why="the logits are similarities / temperature, so 1 / temperature must stay finite "
                  "in float16 (at most 65504)"))
    symmetric: bool = setting("add the passage->query direction to the loss", False)
    steps: Optional[int] = setting("number of optimisation steps", None, bounds=AT_LEAST_ONE)
    epochs: Optional[float] = setting("number of sampler epochs (instead of --steps)", None, bounds=Bounds(
        0, MAX_INT, low_open=True, why="the run's step count is a 64-bit integer"))
    warmup: float = setting("fraction of the steps with linear warm-up", 0.1, bounds=Bounds(0, 1, high_open=True))
    max_grad_norm: float = setting("gradient clipping norm, 0 to disable", 1.0, bounds=NON_NEGATIVE)
    bf16: Optional[bool] = setting("bf16 autocast (default: on for CUDA devices that support it)", None)
    gradient_checkpointing: bool = setting("recompute activations in the backward pass", False)
    chunk_size: Optional[int] = setting("GradCache: embed at most this many rows per forward pass", None,
                                        bounds=AT_LEAST_ONE)
    freeze_word_embeddings: bool = setting("keep the word embedding matrix fixed", False)
    length_buckets: bool = setting("embed each side in sub-batches of similar length (fewer padded "
                                   "positions; the same embeddings up to rounding)", True, free=True,
                                   flag="--no-length-buckets", flag_help=(
                                       "embed each side as one batch padded to its longest text, "
                                       "as most trainers do (default: sub-batches of similar "
                                       "length, fewer padded positions, the same embeddings up to "
                                       "rounding)"))
    prefixes: bool = setting('prepend the study\'s "Query: " / "Passage: "', False, fixed=MODEL_FIXED)
    query_prefix: Optional[str] = setting('text prepended to queries, e.g. "query: "', None, fixed=MODEL_FIXED)
    passage_prefix: Optional[str] = setting('text prepended to passages, e.g. "passage: "', None,
                                            fixed=MODEL_FIXED)
    max_query_length: Optional[int] = setting(
        "query tokens (default: the model's maximum length, as sentence-transformers)", None,
        bounds=Bounds(2))
    max_passage_length: Optional[int] = setting(
        "passage tokens (default: the model's maximum length, as sentence-transformers)", None,
        bounds=Bounds(2))
    seed: int = setting("seed of sampler and initialisation", 0, bounds=NON_NEGATIVE, fixed=SAMPLER_FIXED)
    eval: Optional[str] = setting("periodic evaluation, xquad-r:DIR or mlqa-r:DIR", None, free=True)
    eval_every: int = setting("evaluate every N steps (0: at the end only)", 0, free=True, bounds=NON_NEGATIVE)
    eval_metric: str = setting("metric that picks best/", "multi/map@20", choices=tuple(EVAL_METRICS))
    save_every: int = setting("checkpoint every N steps (0: at the end only)", 0, free=True, bounds=NON_NEGATIVE)
    keep_checkpoints: int = setting("how many step checkpoints to keep", 2, free=True, bounds=AT_LEAST_ONE)
    log_every: int = setting("write a log line every N steps", 1, free=True, bounds=AT_LEAST_ONE)
    report_to: str = setting("where scalars go besides the console", "jsonl", choices=REPORT_TO, free=True)
    resume: bool = setting("continue from OUTPUT/checkpoints (the newest intact checkpoint)", False,
                           free=True)
    override: tuple = setting("on resume, settings allowed to differ from the saved run, "
                              "comma-separated (e.g. lr,temperature)", (), free=True)
    progress: bool = setting("show a progress bar", True, free=True, flag="--no-progress",
                             flag_help="hide the progress bar (it is shown by default)")

    def __post_init__(self):
        self._alpha_given = self.alpha is not None
        if self.alpha is None:
            self.alpha = DEFAULT_ALPHA

    def validate(self, name=str) -> None:
        """Types, then ranges; raises ``TypeError`` / ``ValueError`` naming the setting as
        ``name(setting)`` spells it (the command line passes one that gives its flags)."""
        check_types(self, name)
        check_values(self, name)


def _field_types() -> dict:
    return typing.get_type_hints(TrainConfig)


def _expected(hint) -> tuple:
    """(base type, optional?) of a field's annotation."""
    args = typing.get_args(hint)
    if type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return hint, False


def flag_name(setting_name: str) -> str:
    """The ``hbt-fast train`` flag of a setting (``--batch-size`` for ``batch_size``)."""
    return TrainConfig.__dataclass_fields__[setting_name].metadata["flag"] or \
        "--" + setting_name.replace("_", "-")


def check_types(config: TrainConfig, spell=str) -> None:
    for name in _field_types():
        setattr(config, name, coerce_setting(name, getattr(config, name), spell))


def coerce_setting(name: str, value, spell=str):
    """``value`` as setting ``name`` holds it (an int where a float goes becomes a float, a
    comma-separated string where a list goes becomes a tuple); TypeError when it has another type.
    Messages name the setting as ``spell(name)``."""
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
        raise TypeError(f"{spell(name)} must be {kind}, got {value!r} ({type(value).__name__})")
    return value


def check_values(c: TrainConfig, spell=str) -> None:
    for name, spec in TrainConfig.__dataclass_fields__.items():
        _check_value(spell(name), getattr(c, name), spec.metadata)
    if (c.steps is None) == (c.epochs is None):
        raise ValueError(f"give exactly one of {spell('steps')} and {spell('epochs')}")
    if c.mode != "hybrid" and c._alpha_given:
        raise ValueError(f"{spell('alpha')} applies to {spell('mode')} 'hybrid' only; {spell('mode')} "
                         f"{c.mode!r} never mixes batch kinds, so leave {spell('alpha')} out")
    if c.prefixes and (c.query_prefix is not None or c.passage_prefix is not None):
        raise ValueError(f"{spell('prefixes')} (the study's shorthand) and {spell('query_prefix')}/"
                         f"{spell('passage_prefix')} exclude each other")
    for entry in c.columns:
        field_name, equals, column = entry.partition("=")
        if not equals or not field_name or not column:
            raise ValueError(f"{spell('columns')} entries must look like field=column, got {entry!r}")
    c.override = tuple(name.replace("-", "_") for name in c.override)
    _check_override(c.override, spell)
    if c.eval is not None:
        parse_eval_spec(c.eval, spell)


def _check_value(name: str, value, metadata: Mapping) -> None:
    """One setting (``name`` as messages spell it) against its choices and bounds; integers
    fit 64 bits, floats are finite."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    choices = metadata["choices"]
    if choices and value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    bounds = metadata["bounds"]
    if bounds is not None and not bounds.admit(value):
        why = f" ({bounds.why})" if bounds.why else ""
        raise ValueError(f"{name} must be {bounds}{why}, got {value}")
    if isinstance(value, int) and not isinstance(value, bool) and not -MAX_INT - 1 <= value <= MAX_INT:
        raise ValueError(f"{name} must be at most {MAX_INT} (a signed 64-bit integer), got {value}")


def _check_override(names: tuple, spell=str) -> None:
    fields = TrainConfig.__dataclass_fields__
    unknown = sorted(set(names) - set(fields))
    if unknown:
        raise ValueError(f"{spell('override')} names unknown settings: {unknown}")
    for name in names:
        reason = fields[name].metadata["fixed"]
        if reason:
            raise ValueError(f"{spell('override')}: {spell(name)} cannot change when resuming ({reason}); "
                             "start a new run to change it")


def parse_eval_spec(spec: str, spell=str) -> tuple:
    task, _, directory = spec.partition(":")
    if task not in EVAL_TASKS or not directory:
        raise ValueError(f"{spell('eval')} must look like 'xquad-r:DIR' or 'mlqa-r:DIR', got {spec!r}")
    return task, Path(directory)


def config_differences(saved: dict, config: TrainConfig, saved_locations: Optional[dict] = None) -> list:
    """Names of the settings (not ``free``) whose value differs from a saved run's. Path settings
    compare the locations they name (``saved_locations``: the saved run's :func:`path_locations`),
    so ``run`` and ``/home/me/run`` are the same output."""
    current, defaults = dataclasses.asdict(config), _defaults()
    locations, saved_locations = path_locations(config), saved_locations or {}
    changed = []
    for name, spec in TrainConfig.__dataclass_fields__.items():
        if spec.metadata["free"]:
            continue
        before = saved.get(name, defaults[name])
        if isinstance(before, list):
            before = tuple(before)
        if spec.metadata["path"] and isinstance(before, str):
            same = saved_locations.get(name, _location(before)) == locations[name]
        else:
            same = before == current[name]
        if not same:
            changed.append(name)
    return changed


def path_locations(config: TrainConfig) -> dict:
    """Each path setting as the absolute, resolved path it names where that exists (a model name
    on the Hub stays as written): what a resume compares, whatever the spelling or folder."""
    return {name: _location(getattr(config, name))
            for name, spec in TrainConfig.__dataclass_fields__.items() if spec.metadata["path"]}


def _location(value: str) -> str:
    path = Path(value)
    return str(path.resolve()) if path.exists() else value


def _defaults() -> dict:
    return dataclasses.asdict(TrainConfig(model="", train="", output=""))


def coerce_settings(values: Mapping) -> dict:
    """Settings from a mapping whose keys may spell ``_`` as ``-`` (a TOML file), each
    type-checked (:func:`coerce_setting`). Two keys for one setting (``batch-size`` and
    ``batch_size``) are refused: one of them would be dropped without a word."""
    settings, keys = {}, {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name in keys:
            raise ValueError(f"{keys[name]!r} and {key!r} both set {name}; keep one")
        keys[name] = key
        settings[name] = coerce_setting(name, value)
    return settings


def _parse_list(text: str) -> tuple:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, from its type and metadata (``--batch-size`` for
    ``batch_size``). Flags have no argparse default, so that only given flags reach the config
    (a TOML file fills the rest, then the dataclass defaults)."""
    for name, hint in _field_types().items():
        spec = TrainConfig.__dataclass_fields__[name]
        meta = spec.metadata
        flag = flag_name(name)
        base, optional = _expected(hint)
        text = meta["help"]
        if spec.default is not dataclasses.MISSING and not isinstance(spec.default, (bool, tuple, type(None))):
            text += f" (default {spec.default})"
        if meta["bounds"] is not None:
            text += f"; {meta['bounds']}"
        if base is bool and optional:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, help=text)
        elif base is bool and spec.default:
            parser.add_argument(flag, dest=name, action="store_false", help=meta["flag_help"])
        elif base is bool:
            parser.add_argument(flag, dest=name, action="store_true", help=meta["help"])
        elif base is tuple:
            parser.add_argument(flag, dest=name, type=_parse_list, help=text)
        else:
            if meta["choices"]:
                text += f"; one of {', '.join(meta['choices'])}"
            parser.add_argument(flag, dest=name, type=base, choices=meta["choices"], help=text,
                                metavar=name.upper())
