"""The sentence-transformers model folder, both ways, without importing sentence-transformers.

Reading: ``modules.json`` lists Transformer -> Pooling -> Dense* -> Normalize; Pooling's
``config.json`` (the sentence-transformers 6 ``pooling_mode`` key or the older
``pooling_mode_*_token(s)`` booleans), each Dense's config and weights, and the prompts of
``config_sentence_transformers.json`` ("document" in sentence-transformers 6 / MTEB 2, "passage"
in older folders, both read). Writing: the same layout, prompts keyed "query" and "document".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Optional

import torch

from hbt_fast.data.files import read_json
from hbt_fast.models.head import Dense, activation_from_name
from hbt_fast.models.settings import EncoderSettings
from hbt_fast.models.transformer import loads_without_pooler

__all__ = ["SentenceTransformerLayout", "read_layout", "write_layout"]

# sentence-transformers' Pooling concatenates modes in this order; the legacy boolean keys map
# onto it.
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken",
}
_PASSAGE_PROMPT_KEYS = ("document", "passage")


@dataclass
class SentenceTransformerLayout:
    """What a ``modules.json`` folder says beyond the transformer weights."""

    transformer_path: str = ""
    pooling: Optional[str] = None
    normalize: bool = False
    dense: list = field(default_factory=list)
    query_prompt: Optional[str] = None
    passage_prompt: Optional[str] = None
    #: the length sentence_bert_config.json sets for both sides (None: the tokenizer's
    #: model_max_length capped at the model's positions decides)
    max_seq_length: Optional[int] = None
    query_length: Optional[int] = None
    document_length: Optional[int] = None


def _fetch(name_or_path: str, filename: str) -> Optional[Path]:
    """A file of a local folder or a (cached) hub repository, None when it has no such file."""
    local = Path(name_or_path)
    if local.is_dir():
        return local / filename if (local / filename).is_file() else None
    from transformers.utils import cached_file

    found = cached_file(name_or_path, filename, _raise_exceptions_for_missing_entries=False,
                        _raise_exceptions_for_connection_errors=False)
    return Path(found) if found else None


def _read_config(path: Path, kind=dict):
    """A JSON file whose top level is a ``kind``; every error names the file."""
    value = read_json(path)
    if not isinstance(value, kind):
        raise ValueError(f"{path}: expected a JSON {'list' if kind is list else 'object'}, "
                         f"got {type(value).__name__}")
    return value


def _option(config: dict, key: str, kinds, path: Path, default=None):
    """``config[key]`` (or ``default``) when None or one of ``kinds``, else an error naming the
    file; a bool is not an int here."""
    value = config.get(key, default)
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if value is None or (isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool))):
        return value
    raise ValueError(f"{path}: {key!r} must be {' or '.join(k.__name__ for k in kinds)}, "
                     f"got {value!r}")


def _module_folder(name_or_path: str, entry_path: object, modules_path: Path) -> str:
    """A module's folder from ``modules.json``, refused unless it lies inside the model folder
    (a relative path without ``..``, and, in a local folder, not a link leading out of it)."""
    if not isinstance(entry_path, str):
        raise ValueError(f"{modules_path}: a module's 'path' must be a string, got {entry_path!r}")
    relative = PurePosixPath(entry_path)
    outside = (relative.is_absolute() or ".." in relative.parts or "\\" in entry_path
               or "\0" in entry_path or PureWindowsPath(entry_path).drive)
    local = Path(name_or_path)
    if not outside and local.is_dir():  # a link inside the folder may lead out of it
        root = local.resolve()
        target = (root / entry_path).resolve()
        outside = target != root and root not in target.parents
    if outside:
        raise ValueError(f"{modules_path}: module path {entry_path!r} leads outside the model "
                         "folder; every module must lie inside it")
    return relative.as_posix() if entry_path else ""


def _pooling_mode(config: dict, path: Path) -> str:
    mode = _option(config, "pooling_mode", (str, list), path)
    if mode is None:
        for key in _LEGACY_POOLING_KEYS:
            _option(config, key, bool, path)
        modes = [m for key, m in _LEGACY_POOLING_KEYS.items() if config.get(key)] or ["mean"]
    else:
        modes = [mode] if isinstance(mode, str) else list(mode)
    if not all(isinstance(m, str) for m in modes):
        raise ValueError(f"{path}: 'pooling_mode' must be a mode name, got {mode!r}")
    if len(modes) != 1:
        raise ValueError(f"{path}: concatenated pooling modes {modes} are not supported; "
                         "use a single mode")
    if _option(config, "include_prompt", bool, path, True) is False:
        raise ValueError(f"{path}: include_prompt=false (prompt tokens left out of pooling) is "
                         "not supported")
    return modes[0]


def _dense_options(config: dict, path: Path) -> dict:
    """Dense's arguments from its ``config.json``, checked (nothing is allocated here)."""
    if _option(config, "use_residual", bool, path):
        raise ValueError(f"{path}: Dense with use_residual is not supported")
    for key in ("module_input_name", "module_output_name"):
        if config.get(key, "sentence_embedding") not in (None, "sentence_embedding"):
            raise ValueError(f"{path}: Dense {key}={config[key]!r} is not supported "
                             "(only the sentence embedding)")
    sizes = {}
    for key in ("in_features", "out_features"):
        sizes[key] = _option(config, key, int, path)
        if sizes[key] is None or sizes[key] < 1:
            raise ValueError(f"{path}: {key!r} must be a positive integer, got "
                             f"{config.get(key)!r}")
    activation = _option(config, "activation_function", str, path) or \
        "torch.nn.modules.linear.Identity"
    try:
        activation_from_name(activation)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return {**sizes, "bias": _option(config, "bias", bool, path, True), "activation": activation}


def _dense_weights(name_or_path: str, folder: str) -> tuple:
    """``(path, state dict)`` of a Dense module: safetensors, or a pickled ``.bin`` read with
    ``weights_only`` (tensors only: a pickle that would run code is refused)."""
    weights = _fetch(name_or_path, f"{folder}/model.safetensors".lstrip("/"))
    try:
        if weights is not None:
            from safetensors.torch import load_file

            return weights, load_file(str(weights))
        weights = _fetch(name_or_path, f"{folder}/pytorch_model.bin".lstrip("/"))
        if weights is None:
            raise ValueError(f"{name_or_path}: Dense module {folder!r} has no weights "
                             "(model.safetensors or pytorch_model.bin)")
        return weights, torch.load(str(weights), map_location="cpu", weights_only=True)
    except ValueError:
        raise
    except Exception as error:  # SafetensorError, UnpicklingError, RuntimeError, EOFError...
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{weights}: not readable Dense weights (only tensors are loaded, "
                         f"never pickled code): {reason}") from None


def _read_dense(name_or_path: str, folder: str) -> Dense:
    config_path = _fetch(name_or_path, f"{folder}/config.json".lstrip("/"))
    if config_path is None:
        raise ValueError(f"{name_or_path}: Dense module {folder!r} has no config.json")
    options = _dense_options(_read_config(config_path), config_path)
    weights, state = _dense_weights(name_or_path, folder)
    if not isinstance(state, dict):
        raise ValueError(f"{weights}: expected a dict of tensors, got {type(state).__name__}")
    state = {k: v for k, v in state.items() if k.startswith("linear.")}
    # Checked before the layer exists: config.json alone must not decide what gets allocated.
    expected = (options["out_features"], options["in_features"])
    found = tuple(getattr(state.get("linear.weight"), "shape", ()))
    if found != expected:
        raise ValueError(f"{weights}: linear.weight has shape {list(found)}, but {config_path} "
                         f"says out_features x in_features = {list(expected)}")
    dense = Dense(options["in_features"], options["out_features"], bias=options["bias"],
                  activation=options["activation"])
    try:
        dense.load_state_dict(state)
    except RuntimeError as error:  # a missing or surplus bias
        raise ValueError(f"{weights}: does not match {config_path}: "
                         f"{' '.join(str(error).split())}") from None
    return dense


def _length(config: dict, key: str, path: Path) -> Optional[int]:
    length = _option(config, key, int, path)
    if length is not None and length < 1:
        raise ValueError(f"{path}: {key!r} must be a positive integer, got {length}")
    return length


def _read_transformer_lengths(layout: SentenceTransformerLayout, name_or_path: str,
                              folder: str) -> None:
    """The lengths the Transformer module's ``sentence_bert_config.json`` declares, as
    sentence-transformers reads them: the tokenizer arguments' ``model_max_length`` (its
    ``processor_kwargs``, ``tokenizer_args`` before 6), else ``max_seq_length`` (written before
    6); ``query_length`` / ``document_length`` (6) for ``encode_query`` / ``encode_document``."""
    path = _fetch(name_or_path, f"{folder}/sentence_bert_config.json".lstrip("/"))
    if path is None:
        return
    config = _read_config(path)
    length = _length(config, "max_seq_length", path)
    # The old key replaces the new one where both are present, as sentence-transformers has it.
    key = "tokenizer_args" if "tokenizer_args" in config else "processor_kwargs"
    arguments = _option(config, key, dict, path) or {}
    if arguments.get("model_max_length") is not None:
        length = _length(arguments, "model_max_length", path)
    layout.max_seq_length = length
    layout.query_length = _length(config, "query_length", path)
    layout.document_length = _length(config, "document_length", path)


def _prompts(name_or_path: str) -> dict:
    path = _fetch(name_or_path, "config_sentence_transformers.json")
    if path is None:
        return {}
    prompts = _option(_read_config(path), "prompts", dict, path) or {}
    for key, prompt in prompts.items():
        if not isinstance(prompt, str):
            raise ValueError(f"{path}: prompt {key!r} must be a string, got {prompt!r}")
    return prompts


def _module_entry(entry: object, number: int, modules_path: Path) -> tuple:
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise ValueError(f"{modules_path}: module {number} must be an object with a string "
                         f"'type', got {entry!r}")
    return entry["type"], entry.get("path", "")


def read_layout(name_or_path: str) -> Optional[SentenceTransformerLayout]:
    """The sentence-transformers layout of a model folder, or None when it has no modules.json.

    A folder may come from anywhere: module paths must stay inside it, Dense activations come
    from :data:`hbt_fast.models.head.ACTIVATIONS`, weights are read as tensors only, and a
    malformed file is a ValueError naming it."""
    modules_path = _fetch(name_or_path, "modules.json")
    if modules_path is None:
        return None
    layout = SentenceTransformerLayout()
    for number, entry in enumerate(_read_config(modules_path, list)):
        module_type, entry_path = _module_entry(entry, number, modules_path)
        kind, folder = module_type.rsplit(".", 1)[-1], _module_folder(name_or_path, entry_path,
                                                                       modules_path)
        if kind == "Transformer":
            layout.transformer_path = folder
            _read_transformer_lengths(layout, name_or_path, folder)
        elif kind == "Pooling":
            config_path = _fetch(name_or_path, f"{folder}/config.json".lstrip("/"))
            config = _read_config(config_path) if config_path else {}
            layout.pooling = _pooling_mode(config, config_path or modules_path)
        elif kind == "Dense":
            layout.dense.append(_read_dense(name_or_path, folder))
        elif kind == "Normalize":
            layout.normalize = True
        else:
            raise ValueError(f"{modules_path}: module type {module_type!r} is not supported "
                             "(supported: Transformer, Pooling, Dense, Normalize)")
    prompts = _prompts(name_or_path)
    layout.query_prompt = prompts.get("query")
    layout.passage_prompt = next((prompts[k] for k in _PASSAGE_PROMPT_KEYS if k in prompts), None)
    return layout


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def _write_dense(folder: Path, dense: Dense) -> None:
    from safetensors.torch import save_file

    _write_json(folder / "config.json", {
        "in_features": int(dense.linear.in_features), "out_features": int(dense.linear.out_features),
        "bias": dense.linear.bias is not None, "activation_function": dense.activation_name,
    })
    state = {k: v.detach().cpu().contiguous() for k, v in dense.state_dict().items()
             if k.startswith("linear.")}
    save_file(state, str(folder / "model.safetensors"))


def _pooler_as_dense(model) -> Dense:
    pooler = model.pooler.dense
    dense = Dense(int(pooler.in_features), int(pooler.out_features))
    dense.linear.load_state_dict(pooler.state_dict())
    return dense


def write_layout(directory: Path, settings: EncoderSettings, model, dense=()) -> None:
    """sentence-transformers' module files for this encoder: Transformer -> Pooling -> Dense*
    -> Normalize. The ``pooler`` pooling becomes CLS + a tanh Dense holding the model's pooler
    weights, which is how sentence-transformers ships LaBSE."""
    dim = int(model.config.hidden_size)
    pooling = "cls" if settings.pooling == "pooler" else settings.pooling
    dense = ([_pooler_as_dense(model)] if settings.pooling == "pooler" else []) + list(dense)
    modules = [("", "Transformer"), ("1_Pooling", "Pooling")]
    # The legacy boolean keys are read by every sentence-transformers release (6 converts them).
    _write_json(directory / "1_Pooling" / "config.json", {
        "word_embedding_dimension": dim,
        **{key: pooling == mode for key, mode in _LEGACY_POOLING_KEYS.items()},
        "include_prompt": True,
    })
    for layer in dense:
        folder = f"{len(modules)}_Dense"
        _write_dense(directory / folder, layer)
        modules.append((folder, "Dense"))
    if settings.normalize:
        modules.append((f"{len(modules)}_Normalize", "Normalize"))
    _write_json(directory / "modules.json", [
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (path, kind) in enumerate(modules)])
    # Every sentence-transformers release reads max_seq_length (for both sides) and model_args.
    transformer_config = {"max_seq_length": settings.max_passage_length, "do_lower_case": False}
    if loads_without_pooler(model, settings.pooling):
        # Saved without it: built with one, it would be random and reported MISSING.
        transformer_config["model_args"] = {"add_pooling_layer": False}
    _write_json(directory / "sentence_bert_config.json", transformer_config)
    _write_json(directory / "config_sentence_transformers.json", {
        "prompts": {"query": settings.query_prefix, "document": settings.passage_prefix},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine" if settings.normalize else "dot",
    })
