"""Text encoders: a Hugging Face transformer turned into a query/passage embedder.

:class:`TextEncoder` serves training (``embed`` / ``embed_ids`` return torch embeddings with
grad) and evaluation (``encode_queries`` / ``encode_passages`` return float32 numpy arrays,
batched, under ``no_grad``, cached).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from hbt_fast._checks import check_flag, check_integer
from hbt_fast.models.buckets import DEFAULT_CALL_COST, length_buckets
from hbt_fast.models.head import PoolingHead
from hbt_fast.models.loading import SETTINGS_FILE, model_max_length, resolve
from hbt_fast.data.long_texts import token_ids
from hbt_fast.models.sentence_transformers_format import write_layout
from hbt_fast.models.transformer import load_transformer, saved_state
from hbt_fast.models.settings import SIDES, EncoderSettings

__all__ = ["TextEncoder"]


def _check_texts(texts) -> list:
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a list of strings, not a single string or other values")
    return list(texts)


def _check_side(side: str) -> None:
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")


def pad_ids(ids: Sequence[Sequence[int]], pad_id: Optional[int], *, left: bool = False) -> dict:
    """``input_ids`` / ``attention_mask`` tensors padded to the longest row, as the tokenizer
    pads (``left`` for tokenizers whose padding side is left)."""
    if pad_id is None:
        raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token")
    longest = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), longest), dtype=torch.long)
    for i, row in enumerate(ids):
        span = slice(longest - len(row), longest) if left else slice(0, len(row))
        input_ids[i, span] = torch.as_tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


class TextEncoder(torch.nn.Module):
    """A transformer + tokenizer + pooling head, with separate query and passage sides.

    ``encode_*`` results are cached by ``(side, text)``; the cache is cleared whenever the module
    switches between train and eval mode, and by :meth:`clear_cache`.
    """

    def __init__(self, model, tokenizer, settings: Optional[EncoderSettings] = None, *,
                 dense=(), freeze_word_embeddings: bool = False, batch_size: int = 64,
                 show_progress: bool = True, cache: bool = True,
                 bucket_cost: Optional[int] = DEFAULT_CALL_COST):
        super().__init__()
        batch_size = check_integer(batch_size, "batch_size")
        freeze_word_embeddings = check_flag(freeze_word_embeddings, "freeze_word_embeddings")
        bucket_cost = check_integer(bucket_cost, "bucket_cost", minimum=0, optional=True)
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings or EncoderSettings()
        self.head = PoolingHead(self.settings.pooling, self.settings.normalize, dense)
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.use_cache = cache
        self.bucket_cost = bucket_cost
        self._cache: dict = {}
        if freeze_word_embeddings:
            # Most of a multilingual model's parameters are its vocabulary; freezing them halves a
            # CPU step and keeps rare-language tokens where pre-training put them.
            self.model.get_input_embeddings().weight.requires_grad_(False)

    @property
    def settings(self) -> EncoderSettings:
        return self._settings

    @settings.setter
    def settings(self, value: EncoderSettings) -> None:
        """Unset maximum lengths become the model's own (:attr:`model_max_length`)."""
        if not isinstance(value, EncoderSettings):
            raise TypeError(f"settings must be an EncoderSettings, got {type(value).__name__}")
        if value.max_query_length is None or value.max_passage_length is None:
            value = value.with_model_length(self.model_max_length)
        self._settings = value
        head = getattr(self, "head", None)
        if head is not None:
            head.pooling, head.normalize = value.pooling, value.normalize
            self.clear_cache()

    @property
    def model_max_length(self) -> int:
        """The model's own maximum length, as sentence-transformers decides it for a model that
        declares none (:func:`hbt_fast.models.loading.model_max_length`)."""
        return model_max_length(self.tokenizer, getattr(self.model, "config", None))

    @property
    def freeze_word_embeddings(self) -> bool:
        return not self.model.get_input_embeddings().weight.requires_grad

    # ------------------------------------------------------------------ construction / saving
    @classmethod
    def from_pretrained(cls, name_or_path, *, preset: Optional[str] = None,
                        query_prefix: Optional[str] = None, passage_prefix: Optional[str] = None,
                        freeze_word_embeddings: bool = False, batch_size: int = 64,
                        show_progress: bool = True, cache: bool = True, device=None,
                        bucket_cost: Optional[int] = DEFAULT_CALL_COST, **settings):
        """Load a hub name or a folder: ours (``hbt_encoder.json``), a sentence-transformers one
        (``modules.json``: pooling, Dense layers, normalisation and prompts are read), or a bare
        transformer.

        ``preset`` is one of :data:`hbt_fast.models.PRESETS` (``"xlmr"``, ``"labse"``, ``"e5"``,
        ``"bge-m3"``, ``"paraphrase-multilingual"``); without one, the name's preset fills in what
        the folder's own files do not say. An explicit preset replaces the folder's own pooling
        head (and its prompts, where the preset has some). Maximum lengths are the model's own,
        as sentence-transformers decides them (:mod:`hbt_fast.models.loading`), unless set.
        ``prefixes=True``
        adds the study's "Query: " / "Passage: "; ``query_prefix`` / ``passage_prefix`` and any
        other :class:`EncoderSettings` field override by keyword. ``bucket_cost``: see
        :meth:`embed_ids`.
        """
        from transformers import AutoTokenizer

        name = str(name_or_path)
        encoder_settings, dense, subfolder = resolve(
            name, preset, {**settings, "query_prefix": query_prefix, "passage_prefix": passage_prefix})
        location = str(Path(name) / subfolder) if subfolder and Path(name).is_dir() else name
        model = load_transformer(location, encoder_settings.pooling)
        tokenizer = AutoTokenizer.from_pretrained(location)
        encoder = cls(model, tokenizer, encoder_settings, dense=dense,
                      freeze_word_embeddings=freeze_word_embeddings, batch_size=batch_size,
                      show_progress=show_progress, cache=cache, bucket_cost=bucket_cost)
        encoder.eval()
        if device is not None:
            encoder.to(device)
        return encoder

    load = from_pretrained

    def save(self, directory) -> Path:
        """Write model, tokenizer and ``hbt_encoder.json`` to ``directory``, plus the module
        files that let ``sentence_transformers.SentenceTransformer(directory)`` load the same
        encoder (prefixes become its "query" / "document" prompts)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # An unused pooler is left out (and the folder says so), so no loader reports it.
        self.model.save_pretrained(directory, state_dict=saved_state(self.model, self.settings.pooling))
        self.tokenizer.save_pretrained(directory)
        (directory / SETTINGS_FILE).write_text(
            json.dumps(asdict(self.settings), indent=2) + "\n", encoding="utf-8")
        write_layout(directory, self.settings, self.model, self.head.dense)
        return directory

    # ------------------------------------------------------------------ embedding
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dim(self) -> int:
        return self.head.output_dim or int(self.model.config.hidden_size)

    def tokenize_all(self, texts: Sequence[str], side: str) -> list:
        """Token ids per text: the side's prefix applied, truncated to the side's maximum
        length, special tokens added, no padding (for pre-tokenising a corpus once)."""
        _check_side(side)
        texts = _check_texts(texts)
        if not texts:
            return []
        prefix = self.settings.prefix(side)
        # Cut first: the tokenizer would process a 50 MB text whole before truncating it.
        return token_ids(self.tokenizer, [prefix + t for t in texts], self.settings.max_length(side))

    def embed_ids(self, ids: Sequence[Sequence[int]], side: str = "passage") -> torch.Tensor:
        """Embeddings ``[len(ids), dim]`` with gradients, from :meth:`tokenize_all` output;
        the same result as :meth:`embed` on the texts.

        Rows are embedded in sub-batches of similar length, each padded to its own longest row
        (:mod:`hbt_fast.models.buckets`; ``bucket_cost``, the price of one more sub-batch in
        padded token positions, sets how eagerly; None pads the whole batch to its longest row).
        The embeddings equal those of one padded batch up to float rounding."""
        _check_side(side)
        if len(ids) == 0:
            return torch.zeros((0, self.dim), device=self.device)
        if any(len(row) == 0 for row in ids):
            raise ValueError("ids must not contain empty rows")
        if self.bucket_cost is None or len(ids) == 1:
            return self._embed_padded(ids)
        buckets = length_buckets([len(row) for row in ids], self.bucket_cost)
        if len(buckets) == 1:
            return self._embed_padded(ids)
        parts = [self._embed_padded([ids[i] for i in rows]) for rows in buckets]
        order = torch.as_tensor(np.concatenate(buckets), device=self.device)
        return torch.cat(parts).index_select(0, torch.argsort(order))

    def _embed_padded(self, ids: Sequence[Sequence[int]]) -> torch.Tensor:
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        batch = {k: v.to(self.device) for k, v in
                 pad_ids(ids, self.tokenizer.pad_token_id, left=left).items()}
        outputs = self.model(**batch)
        return self.head(outputs, batch["attention_mask"])

    def embed(self, texts: Sequence[str], side: str = "passage") -> torch.Tensor:
        """Embeddings ``[len(texts), dim]`` as a torch tensor that carries gradients."""
        return self.embed_ids(self.tokenize_all(texts, side), side)

    def forward(self, texts: Sequence[str], side: str = "passage") -> torch.Tensor:
        return self.embed(texts, side)

    # ------------------------------------------------------------------ evaluation API
    def encode_queries(self, texts: Sequence[str], batch_size: Optional[int] = None) -> np.ndarray:
        return self.encode(texts, "query", batch_size=batch_size)

    def encode_passages(self, texts: Sequence[str], batch_size: Optional[int] = None) -> np.ndarray:
        return self.encode(texts, "passage", batch_size=batch_size)

    def encode(self, texts: Sequence[str], side: str, *, batch_size: Optional[int] = None):
        """float32 ``[len(texts), dim]``, in batches under ``no_grad``; repeated texts and
        texts seen before (cache) are encoded once."""
        _check_side(side)
        texts = _check_texts(texts)
        batch_size = batch_size or self.batch_size
        todo = list(dict.fromkeys(t for t in texts if (side, t) not in self._cache))
        # Batches of similar length waste less padding.
        todo.sort(key=len, reverse=True)
        fresh = {}
        if todo:
            from tqdm.auto import tqdm

            with torch.no_grad():
                for start in tqdm(range(0, len(todo), batch_size), desc=f"encode {side} texts",
                                  disable=not self.show_progress, leave=False):
                    chunk = todo[start : start + batch_size]
                    vectors = self.embed(chunk, side).float().cpu().numpy()
                    fresh.update(zip(chunk, vectors))
        if self.use_cache:
            self._cache.update(((side, t), v) for t, v in fresh.items())
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        lookup = lambda t: fresh[t] if t in fresh else self._cache[(side, t)]  # noqa: E731
        return np.stack([lookup(t) for t in texts]).astype(np.float32, copy=False)

    def clear_cache(self) -> None:
        self._cache.clear()

    def train(self, mode: bool = True):
        # Cached embeddings belong to the weights they were computed with.
        self.clear_cache()
        return super().train(mode)
