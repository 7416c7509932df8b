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
from typing import Mapping, Optional, Union

from hbt_fast._checks import is_real
from hbt_fast.evaluate.keys import higher_is_better
from hbt_fast.evaluate.lareqa import metric_names as lareqa_metric_names
from hbt_fast.models.settings import PRESETS as PRESET_SETTINGS
from hbt_fast.sampler.mixture import WEIGHTINGS as SOURCE_WEIGHTINGS
from hbt_fast.sampler.mixture import check_kinds, check_weights

__all__ = ["EVAL_METRICS", "EVAL_TASKS", "MAX_INT", "MODES", "PRESETS", "REPORT_TO", "Bounds",
           "TrainConfig", "add_config_arguments", "coerce_settings", "config_differences",
           "flag_name", "parse_eval_spec", "path_locations", "source_names", "training_sources"]

MODES = ("xx", "xy", "hybrid", "mixed")
PRESETS = tuple(PRESET_SETTINGS)
# Destinations of the logged scalars; wandb and mlflow go through transformers' integrations.
REPORT_TO = ("jsonl", "tensorboard", "wandb", "mlflow", "none")
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
            fixed: Optional[str] = None, path=False, parse=None, repeated=False,
            absent=dataclasses.MISSING):
    """A TrainConfig field: ``help`` for ``--help``; ``free``: may change on resume; ``fixed``:
    why it can never change on resume; ``bounds``: its range; ``path``: names a file or folder
    (or several); ``parse(name, value)``: the value a flag, a TOML value or an argument stands
    for (instead of the type's own rule); ``repeated``: the flag may be given several times,
    each time with one or more values; ``flag``: its command-line flag, or several (the first
    is the one ``--help`` lists first), when not ``--`` + the name with dashes. A setting that
    is on by default has a flag that turns it off (``flag``, e.g. ``--no-progress``) and
    ``flag_help`` saying what that flag does. ``absent``: what a run saved by a version without
    this setting did, when that is not the default (a resume compares against it, so turning a
    new default on is named, not silently applied to an old run)."""
    if default is True and not (flag and flag_help):
        raise TypeError("a setting on by default needs flag= and flag_help= for the flag that "
                        "turns it off")
    metadata = {"help": help, "choices": choices, "free": free, "flag": flag, "bounds": bounds,
                "fixed": fixed, "path": path, "parse": parse, "repeated": repeated, "flag_help": flag_help,
                "absent": absent}
    if default is dataclasses.MISSING:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


def _parse_sources(name: str, value):
    """``train``: one path (a str), else a tuple of sources, each a path or a tuple of paths
    (several files of one source). ``--train A B --train C`` arrives as ``[[A, B], [C]]``."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and value:
        sources = []
        for source in value:
            if isinstance(source, str):
                sources.append(source)
            elif isinstance(source, (list, tuple)) and source and all(isinstance(p, str) for p in source):
                sources.append(source[0] if len(source) == 1 else tuple(source))
            else:
                break
        else:
            return sources[0] if len(sources) == 1 and isinstance(sources[0], str) else tuple(sources)
    raise TypeError(f"{name} must be a path, or a list of sources, each a path or a list of paths; "
                    f"got {value!r} ({type(value).__name__})")


def _parse_weights(name: str, value):
    """``source_weights``: "proportional", "uniform", or numbers ("1,3" on the command line)."""
    if isinstance(value, str) and value.strip() in SOURCE_WEIGHTINGS:
        return value.strip()
    if isinstance(value, str):
        try:
            return tuple(float(part) for part in value.split(","))
        except ValueError:
            raise ValueError(f"{name} must be {' or '.join(SOURCE_WEIGHTINGS)}, or one number per "
                             f"source separated by commas; got {value!r}") from None
    if isinstance(value, (list, tuple)) and value and all(
            is_real(v) for v in value):
        return tuple(float(v) for v in value)
    raise TypeError(f"{name} must be {' or '.join(SOURCE_WEIGHTINGS)} or a list of numbers, got "
                    f"{value!r} ({type(value).__name__})")


NON_NEGATIVE = Bounds(low=0)
AT_LEAST_ONE = Bounds(low=1)
DEFAULT_ALPHA = 0.5


@dataclass
class TrainConfig:
    """Every setting of a run; ``hbt-fast train`` flags and TOML keys use these names."""

    model: str = setting("Hugging Face name or local path (or a model saved by hbt-fast train)",
                         fixed=MODEL_FIXED, path=True)
    train: Union[str, tuple] = setting(
        "training pairs: JSONL (group/lang/query/passage[/negatives]), Parquet, a datasets.save_to_disk "
        "folder or a glob of these, prepared into a token store in OUTPUT (reused on resume); or a token "
        "store (hbt-fast prepare). Several paths after one --train are one source; each --train is a "
        "source of its own (see source_kinds, source_weights)", path=True, parse=_parse_sources,
        repeated=True)
    output: str = setting("run folder: checkpoints, logs, run_config.json, model/ and best/", path=True)
    columns: tuple = setting("where the training data keeps each field, comma-separated field=column "
                             "(e.g. query=question,lang=language)", ())
    source_kinds: tuple = setting(
        "with several sources, per source the batches it serves: xx, xy or both (comma-separated; "
        "default both for each)", (), fixed=SAMPLER_FIXED)
    source_weights: Union[str, tuple] = setting(
        "with several sources, how the batches of one kind are split between the sources serving it: "
        "proportional (to their batches per epoch), uniform, or one number per source (comma-separated)",
        "proportional", fixed=SAMPLER_FIXED, parse=_parse_weights)
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
    mask_duplicates: bool = setting("leave a passage out of a query's softmax when it has the same token ids "
                                    "as the query's positive (a duplicate text is no negative)", True,
                                    flag="--no-mask-duplicates", flag_help=(
                                        "keep passages with the same token ids as a query's positive "
                                        "among its negatives, as sentence-transformers does (default: "
                                        "they leave its softmax)"), absent=False)
    steps: Optional[int] = setting("number of optimisation steps", None, bounds=AT_LEAST_ONE)
    epochs: Optional[float] = setting("number of sampler epochs (instead of --steps)", None, bounds=Bounds(
        0, MAX_INT, low_open=True, why="the run's step count is a 64-bit integer"))
    warmup: float = setting("fraction of the steps with linear warm-up", 0.1, bounds=Bounds(0, 1, high_open=True))
    max_grad_norm: float = setting("gradient clipping norm, 0 to disable", 1.0, bounds=NON_NEGATIVE)
    bf16: Optional[bool] = setting("bf16 autocast (default: on for CUDA devices that support it)", None)
    fp16: bool = setting("float16 autocast with a gradient scaler (CUDA devices only; excludes bf16)", False)
    gradient_accumulation_steps: int = setting(
        "sampler batches per optimiser update: each batch keeps its own in-batch negatives and loss, "
        "the update uses the mean of their gradients (as transformers does)", 1, bounds=AT_LEAST_ONE,
        flag=("--gradient-accumulation-steps", "--grad-accum"))
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
    report_to: tuple = setting("where scalars go besides the console, comma-separated (none: nowhere)",
                               ("jsonl",), choices=REPORT_TO, free=True)
    hub_model_id: Optional[str] = setting("at the end, push OUTPUT/model to this Hugging Face Hub repository "
                                          "(user/name; needs a token)", None, free=True,
                                          flag=("--push-to-hub", "--hub-model-id"))
    hub_private_repo: bool = setting("create the Hub repository as private", False, free=True)
    card_datasets: tuple = setting("Hub dataset ids the training data comes from, comma-separated: the "
                                   "model card's datasets", (), free=True)
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
    flag = TrainConfig.__dataclass_fields__[setting_name].metadata["flag"]
    if isinstance(flag, tuple):  # several spellings: the first is the one --help lists first
        return flag[0]
    return flag or "--" + setting_name.replace("_", "-")


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
    parse = TrainConfig.__dataclass_fields__[name].metadata["parse"]
    if parse is not None:
        return parse(name, value)
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
    if c.fp16 and c.bf16:
        raise ValueError(f"{spell('fp16')} and {spell('bf16')} exclude each other; choose one autocast precision")
    if "none" in c.report_to and len(c.report_to) > 1:
        raise ValueError(f"{spell('report_to')} 'none' excludes every destination, got {','.join(c.report_to)}")
    for name, repo_id in [("hub_model_id", c.hub_model_id)] + [("card_datasets", d) for d in c.card_datasets]:
        if repo_id is not None:
            _check_repo_id(spell(name), repo_id)
    if c.prefixes and (c.query_prefix is not None or c.passage_prefix is not None):
        raise ValueError(f"{spell('prefixes')} (the study's shorthand) and {spell('query_prefix')}/"
                         f"{spell('passage_prefix')} exclude each other")
    for entry in c.columns:
        field_name, equals, column = entry.partition("=")
        if not equals or not field_name or not column:
            raise ValueError(f"{spell('columns')} entries must look like field=column, got {entry!r}")
    c.override = tuple(name.replace("-", "_") for name in c.override)
    _check_override(c.override, spell)
    _check_sources(c)
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
    for one in value if isinstance(value, tuple) else (value,):  # a list setting: each entry
        if choices and one not in choices:
            raise ValueError(f"{name} must be one of {list(choices)}, got {one!r}")
    bounds = metadata["bounds"]
    if bounds is not None and not bounds.admit(value):
        why = f" ({bounds.why})" if bounds.why else ""
        raise ValueError(f"{name} must be {bounds}{why}, got {value}")
    if isinstance(value, int) and not isinstance(value, bool) and not -MAX_INT - 1 <= value <= MAX_INT:
        raise ValueError(f"{name} must be at most {MAX_INT} (a signed 64-bit integer), got {value}")


def training_sources(config: TrainConfig) -> list:
    """``config.train`` as one list of paths (or glob patterns) per source."""
    train = config.train
    if isinstance(train, str):
        return [[train]]
    return [[source] if isinstance(source, str) else list(source) for source in train]


def source_names(config: TrainConfig) -> list:
    """How messages, run_config.json and the model card name each source."""
    sources = training_sources(config)
    if len(sources) == 1:
        return [" ".join(sources[0])]
    return [f"source {i + 1} ({' '.join(paths)})" for i, paths in enumerate(sources)]


def _check_sources(c: TrainConfig) -> None:
    count = len(training_sources(c))
    if c.source_kinds and len(c.source_kinds) != count:
        raise ValueError(f"source_kinds gives {len(c.source_kinds)} kind(s) {list(c.source_kinds)} for "
                         f"{count} source(s) in train; give one per source")
    check_weights(list(c.source_weights) if isinstance(c.source_weights, tuple) else c.source_weights,
                  count, "source_weights")
    check_kinds(c.source_kinds or ["both"] * count, c.mode, c.alpha, source_names(c), "source_kinds")


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


def _check_repo_id(name: str, repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"{name}: {repo_id!r} is not a Hub repository id ({' '.join(str(error).split())})") from None


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
        before = saved_setting(saved, name, defaults)
        if spec.metadata["path"] and isinstance(before, (str, list, tuple)):
            same = _as_json(saved_locations.get(name, _location(before))) == _as_json(locations[name])
        else:
            same = _as_json(before) == _as_json(current[name])
        if not same:
            changed.append(name)
    return changed


def saved_setting(saved: dict, name: str, defaults: Optional[dict] = None):
    """Setting ``name`` of a saved run's config: as saved, else (a version without that setting
    saved it) what that version did: the setting's ``absent`` value, or its default."""
    if name in saved:
        return saved[name]
    absent = TrainConfig.__dataclass_fields__[name].metadata["absent"]
    if absent is not dataclasses.MISSING:
        return absent
    return (defaults or _defaults())[name]


def path_locations(config: TrainConfig) -> dict:
    """Each path setting as the absolute, resolved path it names where that exists (a model name
    on the Hub stays as written): what a resume compares, whatever the spelling or folder."""
    return {name: _location(getattr(config, name))
            for name, spec in TrainConfig.__dataclass_fields__.items() if spec.metadata["path"]}


def _location(value):
    """The resolved path (a list of them, for several) that ``value`` names."""
    if isinstance(value, (list, tuple)):
        return [_location(item) for item in value]
    path = Path(value)
    return str(path.resolve()) if path.exists() else value


def _as_json(value):
    """Tuples as lists, as a JSON round trip turns them, so saved and current values compare."""
    return [_as_json(item) for item in value] if isinstance(value, (list, tuple)) else value


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
        flags = meta["flag"] or "--" + name.replace("_", "-")
        flags = (flags,) if isinstance(flags, str) else flags
        base, optional = _expected(hint)
        text = meta["help"]
        if spec.default is not dataclasses.MISSING and not isinstance(spec.default, (bool, tuple, type(None))):
            text += f" (default {spec.default})"
        if meta["bounds"] is not None:
            text += f"; {meta['bounds']}"
        if meta["repeated"]:
            parser.add_argument(*flags, dest=name, action="append", nargs="+", metavar="PATH", help=text)
        elif meta["parse"] is not None:  # the text as given; parse reads it
            parser.add_argument(*flags, dest=name, help=text, metavar=name.upper())
        elif base is bool and optional:
            parser.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, help=text)
        elif base is bool and spec.default:
            parser.add_argument(*flags, dest=name, action="store_false", help=meta["flag_help"])
        elif base is bool:
            parser.add_argument(*flags, dest=name, action="store_true", help=meta["help"])
        elif base is tuple:
            if meta["choices"]:
                text += f"; each one of {', '.join(meta['choices'])}"
            parser.add_argument(*flags, dest=name, type=_parse_list, help=text)
        else:
            if meta["choices"]:
                text += f"; one of {', '.join(meta['choices'])}"
            parser.add_argument(*flags, dest=name, type=base, choices=meta["choices"], help=text,
                                metavar=name.upper())
