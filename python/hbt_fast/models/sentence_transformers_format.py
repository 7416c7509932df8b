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
from pathlib import Path
from typing import Optional

import torch

from hbt_fast.models.head import Dense
from hbt_fast.models.settings import EncoderSettings

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
    max_seq_length: Optional[int] = None


def _fetch(name_or_path: str, filename: str) -> Optional[Path]:
    """A file of a local folder or a (cached) hub repository, None when it has no such file."""
    local = Path(name_or_path)
    if local.is_dir():
        return local / filename if (local / filename).is_file() else None
    from transformers.utils import cached_file

    found = cached_file(name_or_path, filename, _raise_exceptions_for_missing_entries=False,
                        _raise_exceptions_for_connection_errors=False)
    return Path(found) if found else None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: line {error.lineno}: invalid JSON ({error.msg})") from None


def _pooling_mode(config: dict, path: Path) -> str:
    mode = config.get("pooling_mode")
    if mode is None:
        modes = [m for key, m in _LEGACY_POOLING_KEYS.items() if config.get(key)] or ["mean"]
    else:
        modes = [mode] if isinstance(mode, str) else list(mode)
    if len(modes) != 1:
        raise ValueError(f"{path}: concatenated pooling modes {modes} are not supported; "
                         "use a single mode")
    if config.get("include_prompt", True) is False:
        raise ValueError(f"{path}: include_prompt=false (prompt tokens left out of pooling) is "
                         "not supported")
    return modes[0]


def _read_dense(name_or_path: str, folder: str) -> Dense:
    config_path = _fetch(name_or_path, f"{folder}/config.json")
    if config_path is None:
        raise ValueError(f"{name_or_path}: Dense module {folder!r} has no config.json")
    config = _read_json(config_path)
    if config.get("use_residual"):
        raise ValueError(f"{config_path}: Dense with use_residual is not supported")
    for key in ("module_input_name", "module_output_name"):
        if config.get(key, "sentence_embedding") not in (None, "sentence_embedding"):
            raise ValueError(f"{config_path}: Dense {key}={config[key]!r} is not supported "
                             "(only the sentence embedding)")
    dense = Dense(int(config["in_features"]), int(config["out_features"]),
                  bias=bool(config.get("bias", True)),
                  activation=config.get("activation_function") or "torch.nn.modules.linear.Identity")
    weights = _fetch(name_or_path, f"{folder}/model.safetensors")
    if weights is not None:
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        weights = _fetch(name_or_path, f"{folder}/pytorch_model.bin")
        if weights is None:
            raise ValueError(f"{name_or_path}: Dense module {folder!r} has no weights")
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
    dense.load_state_dict({k: v for k, v in state.items() if k.startswith("linear.")})
    return dense


def read_layout(name_or_path: str) -> Optional[SentenceTransformerLayout]:
    """The sentence-transformers layout of a model folder, or None when it has no modules.json."""
    modules_path = _fetch(name_or_path, "modules.json")
    if modules_path is None:
        return None
    layout = SentenceTransformerLayout()
    for entry in _read_json(modules_path):
        kind, folder = entry["type"].rsplit(".", 1)[-1], entry.get("path", "")
        if kind == "Transformer":
            layout.transformer_path = folder
            config = _fetch(name_or_path, f"{folder}/sentence_bert_config.json".lstrip("/"))
            if config is not None:
                layout.max_seq_length = _read_json(config).get("max_seq_length")
        elif kind == "Pooling":
            config_path = _fetch(name_or_path, f"{folder}/config.json")
            layout.pooling = _pooling_mode(_read_json(config_path) if config_path else {},
                                           modules_path)
        elif kind == "Dense":
            layout.dense.append(_read_dense(name_or_path, folder))
        elif kind == "Normalize":
            layout.normalize = True
        else:
            raise ValueError(f"{modules_path}: module type {entry['type']!r} is not supported "
                             "(supported: Transformer, Pooling, Dense, Normalize)")
    prompts_path = _fetch(name_or_path, "config_sentence_transformers.json")
    prompts = (_read_json(prompts_path).get("prompts") or {}) if prompts_path else {}
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
    _write_json(directory / "sentence_bert_config.json",
                {"max_seq_length": settings.max_passage_length, "do_lower_case": False})
    _write_json(directory / "config_sentence_transformers.json", {
        "prompts": {"query": settings.query_prefix, "document": settings.passage_prefix},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine" if settings.normalize else "dot",
    })
