"""How ``TextEncoder.from_pretrained`` decides the settings and head of a model folder.

Later sources win: the defaults; a preset guessed from the name (only for a folder that says
nothing about itself); a sentence-transformers ``modules.json`` with its prompts; our own
``hbt_encoder.json``; an explicit ``preset``; ``prefixes=True``; explicit keyword settings.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Optional

from hbt_fast.data.files import read_json
from hbt_fast.models.sentence_transformers_format import SentenceTransformerLayout, read_layout
from hbt_fast.models.settings import PRESETS, STUDY_PREFIXES, EncoderSettings

__all__ = ["SETTINGS_FILE", "resolve", "tokenizer_and_settings"]

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


def _layout_settings(layout: SentenceTransformerLayout) -> dict:
    settings: dict = {"normalize": layout.normalize}
    if layout.pooling is not None:
        settings["pooling"] = layout.pooling
    if layout.query_prompt is not None:
        settings["query_prefix"] = layout.query_prompt
    if layout.passage_prompt is not None:
        settings["passage_prefix"] = layout.passage_prompt
    if layout.max_seq_length:
        # sentence-transformers truncates both sides at max_seq_length; never exceed it.
        defaults = EncoderSettings()
        settings["max_query_length"] = min(defaults.max_query_length, int(layout.max_seq_length))
        settings["max_passage_length"] = min(defaults.max_passage_length, int(layout.max_seq_length))
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
    if preset is None and layout is None and not saved:
        settings.update(_preset("labse" if "labse" in name_or_path.lower() else "xlmr"))
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


def tokenizer_and_settings(name_or_path: str, preset: Optional[str] = None, **overrides):
    """``(tokenizer, EncoderSettings)`` as :meth:`TextEncoder.from_pretrained` would load them
    for the same arguments, without loading the model (to prepare a token store)."""
    from transformers import AutoTokenizer

    name = str(name_or_path)
    settings, _, subfolder = resolve(name, preset, overrides)
    location = str(Path(name) / subfolder) if subfolder and Path(name).is_dir() else name
    return AutoTokenizer.from_pretrained(location), settings
