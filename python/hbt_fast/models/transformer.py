"""Loading and saving the transformer of an encoder: weights read as tensors only, and the
pooler layer (BERT / XLM-R ``add_pooling_layer``) kept only where the pooling uses it.

A pooler nobody uses costs nothing but noise: loaded without one, a checkpoint that holds it
makes transformers print an UNEXPECTED-keys report; loaded with one, a checkpoint without it
makes it print a MISSING-keys report (and initialise it randomly). So the checkpoint's own keys
decide how it is loaded, an unused pooler is dropped after loading, a save leaves it out, and
the saved folder tells sentence-transformers to build the transformer without it.
"""

from __future__ import annotations

import inspect
import json
import pickle
import re
from pathlib import Path
from typing import Optional

__all__ = ["checkpoint_has_pooler", "load_transformer", "loads_without_pooler", "optional_pooler",
           "saved_state", "weights_file"]

_POOLER_KEY = re.compile(r"^(\w+\.)?pooler\.")  # "pooler.dense.weight", "bert.pooler.dense.bias"


def weights_file(location: str) -> str:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (Path(location) / name).is_file():
            return str(Path(location) / name)
    return location


def _local_or_cached(location: str, filename: str) -> Optional[Path]:
    local = Path(location)
    if local.is_dir():
        return local / filename if (local / filename).is_file() else None
    from transformers.utils import cached_file

    found = cached_file(location, filename, _raise_exceptions_for_missing_entries=False,
                        _raise_exceptions_for_connection_errors=False)
    return Path(found) if found else None


def _checkpoint_keys(location: str) -> Optional[list]:
    """The tensor names of a safetensors checkpoint (one file or an index of shards), read
    from its header or index; None for other formats or unreadable files (the loader reports
    those)."""
    index = _local_or_cached(location, "model.safetensors.index.json")
    try:
        if index is not None:
            return list(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
        single = _local_or_cached(location, "model.safetensors")
        if single is None:
            return None
        from safetensors import safe_open

        with safe_open(str(single), framework="pt") as handle:
            return list(handle.keys())
    except Exception:  # noqa: BLE001 - the loader that follows names what is wrong with it
        return None


def checkpoint_has_pooler(location: str) -> Optional[bool]:
    """Whether the checkpoint holds pooler weights; None when that cannot be told cheaply."""
    keys = _checkpoint_keys(location)
    return None if keys is None else any(_POOLER_KEY.match(key) for key in keys)


def optional_pooler(model) -> bool:
    """Whether the architecture's pooler is optional (its ``add_pooling_layer`` argument)."""
    return hasattr(model, "pooler") and \
        "add_pooling_layer" in inspect.signature(type(model).__init__).parameters


def _from_pretrained(location: str, pooling: str):
    from transformers import AutoModel

    if pooling == "pooler":
        return AutoModel.from_pretrained(location)
    if checkpoint_has_pooler(location):
        model = AutoModel.from_pretrained(location)
        if optional_pooler(model):
            model.pooler = None  # what add_pooling_layer=False builds
        return model
    try:
        return AutoModel.from_pretrained(location, add_pooling_layer=False)
    except TypeError as error:
        if "add_pooling_layer" not in str(error):
            raise
        return AutoModel.from_pretrained(location)  # an architecture without a pooler option


def load_transformer(location: str, pooling: str):
    """The transformer of ``location``, with its pooler only when ``pooling`` is "pooler";
    unreadable weights (damaged, or pickles holding more than tensors, which are never run)
    are a ValueError naming the weights file."""
    from safetensors import SafetensorError

    try:
        return _from_pretrained(location, pooling)
    except (pickle.UnpicklingError, SafetensorError) as error:
        reason = str(error).splitlines()[0]
        raise ValueError(f"{weights_file(location)}: not readable transformer weights (only "
                         f"tensors are loaded, never pickled code): {reason}") from None


def saved_state(model, pooling: str) -> Optional[dict]:
    """The state dict to save: without the pooler when the pooling does not use it and the
    architecture can be built without one; None (the whole model) otherwise."""
    if pooling == "pooler" or not optional_pooler(model) or getattr(model, "pooler") is None:
        return None
    return {key: value for key, value in model.state_dict().items() if not _POOLER_KEY.match(key)}


def loads_without_pooler(model, pooling: str) -> bool:
    """Whether a save of ``model`` leaves its pooler out (so loaders must not build one)."""
    return pooling != "pooler" and optional_pooler(model)
