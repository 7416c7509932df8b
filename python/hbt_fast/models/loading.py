"""How ``TextEncoder.from_pretrained`` decides the settings and head of a model folder.

Later sources win: the defaults; a preset guessed from the name (its prompts always, its pooling
only for a folder that says nothing about itself); a sentence-transformers ``modules.json`` with
its prompts and lengths; our own ``hbt_encoder.json``; an explicit ``preset``;
``prefixes=True``; explicit keyword settings.

Maximum lengths follow sentence-transformers: what the folder's ``sentence_bert_config.json``
declares, else :func:`model_max_length` (the tokenizer's ``model_max_length``, capped at the
model's position embeddings), for queries and passages alike unless set.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Optional

from hbt_fast._checks import is_integer
from hbt_fast.data.files import read_json
from hbt_fast.models.sentence_transformers_format import SentenceTransformerLayout, read_layout
from hbt_fast.models.settings import PRESETS, STUDY_PREFIXES, EncoderSettings, preset_for_name

__all__ = ["SETTINGS_FILE", "model_max_length", "resolve", "tokenization"]

SETTINGS_FILE = "hbt_encoder.json"


def _saved_settings(name_or_path: str) -> dict:
    """The settings of ``hbt_encoder.json``, checked as EncoderSettings checks them; errors
    name the file."""
    path = Path(name_or_path) / SETTINGS_FILE
    if not path.is_file():
        return {}
    saved = read_json(path)
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(saved).__name__}")
    known = {f.name for f in fields(EncoderSettings)}
    saved = {key: value for key, value in saved.items() if key in known}
    try:
        EncoderSettings(**saved)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None
    return saved


def model_max_length(tokenizer, config=None) -> int:
    """The model's own maximum length, as sentence-transformers' ``Transformer`` decides it
    for a folder that declares none: the tokenizer's ``model_max_length``, capped at
    ``config.max_position_embeddings`` where the config has one (-1 means none)."""
    lengths = [getattr(tokenizer, "model_max_length", None),
               getattr(config, "max_position_embeddings", None)]
    lengths = [int(n) for n in lengths if is_integer(n) and n != -1]
    if not lengths:
        raise ValueError("neither the tokenizer (model_max_length) nor the model's config "
                         "(max_position_embeddings) gives a maximum length; set "
                         "max_query_length and max_passage_length")
    return min(lengths)


def _layout_settings(layout: SentenceTransformerLayout) -> dict:
    settings: dict = {"normalize": layout.normalize}
    if layout.pooling is not None:
        settings["pooling"] = layout.pooling
    # sentence-transformers 6 saves every model with empty prompts: only where one is not
    # empty do they say anything (then an empty one is a choice, as BGE's empty passage prompt).
    if layout.query_prompt or layout.passage_prompt:
        settings["query_prefix"] = layout.query_prompt or ""
        settings["passage_prefix"] = layout.passage_prompt or ""
    # Unset: the model's own length (TextEncoder fills it in from tokenizer and config).
    for name, length in (("max_query_length", layout.query_length),
                         ("max_passage_length", layout.document_length)):
        if length or layout.max_seq_length:
            settings[name] = length or layout.max_seq_length
    return settings


def _preset(preset: str) -> dict:
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    return PRESETS[preset]


def resolve(name_or_path: str, preset: Optional[str], overrides: dict):
    """``(EncoderSettings, dense layers, transformer subfolder)`` for ``name_or_path``."""
    layout = read_layout(name_or_path)
    saved = _saved_settings(name_or_path)
    settings: dict = {}
    if preset is None:
        guessed = PRESETS[preset_for_name(name_or_path)]
        # A folder's own files say how it pools; its prompts may be missing (multilingual-e5).
        settings.update({key: value for key, value in guessed.items() if key.endswith("_prefix")})
        if layout is None and not saved:
            settings.update(guessed)
    if layout is not None:
        settings.update(_layout_settings(layout))
    settings.update(saved)
    if preset is not None:
        settings.update(_preset(preset))
    if overrides.pop("prefixes", False):
        settings.update(STUDY_PREFIXES)
    # None means "keep the saved or preset value", so callers can pass optional settings through.
    overrides = {k: v for k, v in overrides.items() if v is not None}
    known = {f.name for f in fields(EncoderSettings)}
    unknown = set(overrides) - known
    if unknown:
        raise TypeError(f"unknown encoder settings: {sorted(unknown)}")
    settings.update(overrides)
    if "pooling" not in settings:
        raise ValueError(f"{name_or_path}: modules.json has no Pooling module; pass a preset "
                         f"({', '.join(sorted(PRESETS))}) or pooling=...")
    resolved = EncoderSettings(**{k: v for k, v in settings.items() if k in known})
    dense = [] if layout is None or preset is not None else list(layout.dense)
    if dense and saved.get("pooling") == "pooler":
        # Our own save writes the model's pooler as the first Dense; it is not a second layer.
        dense = dense[1:]
    return resolved, dense, (layout.transformer_path if layout is not None else "")


def tokenization(name_or_path: str, preset: Optional[str], overrides: dict):
    """``(tokenizer, EncoderSettings)`` of a model, its maximum lengths decided as
    ``TextEncoder.from_pretrained`` decides them, without loading the weights (for tokenizing
    a corpus ahead of training)."""
    from transformers import AutoConfig, AutoTokenizer

    settings, _, subfolder = resolve(name_or_path, preset, overrides)
    location = str(Path(name_or_path) / subfolder) if subfolder and Path(name_or_path).is_dir() \
        else name_or_path
    tokenizer = AutoTokenizer.from_pretrained(location)
    config = AutoConfig.from_pretrained(location)
    return tokenizer, settings.with_model_length(model_max_length(tokenizer, config))
