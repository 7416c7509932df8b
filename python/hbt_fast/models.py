"""Text encoders: a Hugging Face transformer turned into a query/passage embedder.

:class:`TextEncoder` serves training (``embed`` returns torch embeddings with grad) and
evaluation (``encode_queries`` / ``encode_passages`` return float32 numpy arrays, batched, under
``no_grad``, cached). Presets follow the study:

* ``xlmr``: mean pooling over non-padding tokens, L2-normalised (cosine similarity);
* ``labse``: the [CLS] token through LaBSE's dense pooler (``pooler_output`` in Hugging Face),
  L2-normalised, as LaBSE ships.

A saved encoder is a plain ``save_pretrained`` directory (model + tokenizer) plus
``hbt_encoder.json`` holding the pooling, normalisation, prefix and length settings.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

__all__ = ["EncoderSettings", "PRESETS", "SETTINGS_FILE", "STUDY_PREFIXES", "TextEncoder"]

SETTINGS_FILE = "hbt_encoder.json"
POOLINGS = ("mean", "cls", "pooler")
SIDES = ("query", "passage")
#: the prefixes used in the reference study
STUDY_PREFIXES = {"query_prefix": "Query: ", "passage_prefix": "Passage: "}


@dataclass
class EncoderSettings:
    """Everything besides the weights that decides an embedding."""

    pooling: str = "mean"
    normalize: bool = True
    query_prefix: str = ""
    passage_prefix: str = ""
    max_query_length: int = 64
    max_passage_length: int = 256

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        for name in ("max_query_length", "max_passage_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ValueError(f"{name} must be an integer >= 2, got {value!r}")
        for name in ("query_prefix", "passage_prefix"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a string")


PRESETS = {
    "xlmr": {"pooling": "mean", "normalize": True},
    "labse": {"pooling": "pooler", "normalize": True},
}


def _settings_for(name_or_path: str, preset: Optional[str], overrides: dict) -> EncoderSettings:
    settings: dict = {}
    settings_file = Path(name_or_path) / SETTINGS_FILE
    if settings_file.is_file():
        settings.update(json.loads(settings_file.read_text(encoding="utf-8")))
    if preset is None and not settings:
        preset = "labse" if "labse" in str(name_or_path).lower() else "xlmr"
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
        settings.update(PRESETS[preset])
    if overrides.pop("prefixes", False):
        settings.update(STUDY_PREFIXES)
    # None means "keep the saved or preset value", so callers can pass optional settings through.
    overrides = {k: v for k, v in overrides.items() if v is not None}
    known = {f.name for f in fields(EncoderSettings)}
    unknown = set(overrides) - known
    if unknown:
        raise TypeError(f"unknown encoder settings: {sorted(unknown)}")
    settings.update(overrides)
    return EncoderSettings(**{k: v for k, v in settings.items() if k in known})


class TextEncoder(torch.nn.Module):
    """A transformer + tokenizer + pooling, with separate query and passage sides.

    ``encode_*`` results are cached by ``(side, text)``; the cache is cleared whenever the module
    switches between train and eval mode, and by :meth:`clear_cache`.
    """

    def __init__(
        self,
        model,
        tokenizer,
        settings: Optional[EncoderSettings] = None,
        *,
        batch_size: int = 64,
        show_progress: bool = True,
        cache: bool = True,
    ):
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings or EncoderSettings()
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.use_cache = cache
        self._cache: dict = {}

    # ------------------------------------------------------------------ construction / saving
    @classmethod
    def from_pretrained(cls, name_or_path, *, preset: Optional[str] = None, batch_size=64,
                        show_progress=True, cache=True, device=None, **settings):
        """Load a hub name or a directory (a saved TextEncoder keeps its settings).

        ``preset`` is ``"xlmr"`` or ``"labse"`` (default: from the saved settings, else guessed
        from the name); ``prefixes=True`` adds the study's "Query: " / "Passage: " prefixes; any
        :class:`EncoderSettings` field can be overridden by keyword.
        """
        from transformers import AutoModel, AutoTokenizer

        encoder_settings = _settings_for(str(name_or_path), preset, dict(settings))
        model = AutoModel.from_pretrained(str(name_or_path))
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
        encoder = cls(model, tokenizer, encoder_settings, batch_size=batch_size,
                      show_progress=show_progress, cache=cache)
        encoder.eval()
        if device is not None:
            encoder.to(device)
        return encoder

    load = from_pretrained

    def save(self, directory) -> Path:
        """Write model, tokenizer and ``hbt_encoder.json`` to ``directory``, plus the module
        files that let ``sentence_transformers.SentenceTransformer(directory)`` load the same
        encoder (prefixes become its "query" / "passage" prompts)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        (directory / SETTINGS_FILE).write_text(
            json.dumps(asdict(self.settings), indent=2) + "\n", encoding="utf-8"
        )
        write_sentence_transformers_modules(directory, self.settings, self.model)
        return directory

    # ------------------------------------------------------------------ embedding
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def _tokenize(self, texts: Sequence[str], side: str):
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a list of strings")
        s = self.settings
        prefix = s.query_prefix if side == "query" else s.passage_prefix
        max_length = s.max_query_length if side == "query" else s.max_passage_length
        batch = self.tokenizer(
            [prefix + t for t in texts], padding=True, truncation=True,
            max_length=max_length, return_tensors="pt",
        )
        return {k: v.to(self.device) for k, v in batch.items()}

    def _pool(self, outputs, attention_mask: torch.Tensor) -> torch.Tensor:
        pooling = self.settings.pooling
        if pooling == "pooler":
            pooled = getattr(outputs, "pooler_output", None)
            if pooled is None:
                raise ValueError("pooling='pooler' needs a model with a pooler layer")
        elif pooling == "cls":
            pooled = outputs.last_hidden_state[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(outputs.last_hidden_state.dtype)
            summed = (outputs.last_hidden_state * mask).sum(dim=1)
            pooled = summed / mask.sum(dim=1).clamp(min=1.0)
        if self.settings.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled

    def embed(self, texts: Sequence[str], side: str = "passage") -> torch.Tensor:
        """Embeddings ``[len(texts), dim]`` as a torch tensor that carries gradients."""
        if len(texts) == 0:
            return torch.zeros((0, self.dim), device=self.device)
        batch = self._tokenize(texts, side)
        outputs = self.model(**batch)
        return self._pool(outputs, batch["attention_mask"])

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
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not a single string")
        texts = list(texts)
        batch_size = batch_size or self.batch_size
        todo = list(dict.fromkeys(t for t in texts if (side, t) not in self._cache))
        # Batches of similar length waste less padding.
        todo.sort(key=len, reverse=True)
        fresh = {}
        if todo:
            from tqdm.auto import tqdm

            with torch.no_grad():
                for start in tqdm(range(0, len(todo), batch_size), desc=f"encode {side}s",
                                  disable=not self.show_progress, leave=False):
                    chunk = todo[start : start + batch_size]
                    vectors = self.embed(chunk, side).float().cpu().numpy()
                    fresh.update(zip(chunk, vectors))
        if self.use_cache:
            self._cache.update(((side, t), v) for t, v in fresh.items())
        lookup = lambda t: fresh[t] if t in fresh else self._cache[(side, t)]  # noqa: E731
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([lookup(t) for t in texts]).astype(np.float32, copy=False)

    def clear_cache(self) -> None:
        self._cache.clear()

    def train(self, mode: bool = True):
        # Cached embeddings belong to the weights they were computed with.
        self.clear_cache()
        return super().train(mode)


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def write_sentence_transformers_modules(directory: Path, settings: EncoderSettings, model) -> None:
    """sentence-transformers' module layout for this encoder: Transformer -> Pooling (mean or
    CLS) -> Dense with tanh (the ``pooler`` preset: the model's own pooler weights, as LaBSE
    ships in sentence-transformers) -> Normalize."""
    dim = int(model.config.hidden_size)
    modules = [("", "Transformer"), ("1_Pooling", "Pooling")]
    _write_json(directory / "1_Pooling" / "config.json", {
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": settings.pooling in ("cls", "pooler"),
        "pooling_mode_mean_tokens": settings.pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    })
    if settings.pooling == "pooler":
        from safetensors.torch import save_file

        dense = model.pooler.dense
        _write_json(directory / "2_Dense" / "config.json", {
            "in_features": dim, "out_features": int(dense.out_features), "bias": True,
            "activation_function": "torch.nn.modules.activation.Tanh",
        })
        save_file({"linear.weight": dense.weight.detach().cpu().contiguous(),
                   "linear.bias": dense.bias.detach().cpu().contiguous()},
                  str(directory / "2_Dense" / "model.safetensors"))
        modules.append(("2_Dense", "Dense"))
    if settings.normalize:
        modules.append((f"{len(modules)}_Normalize", "Normalize"))
    _write_json(directory / "modules.json", [
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (path, kind) in enumerate(modules)])
    _write_json(directory / "sentence_bert_config.json",
                {"max_seq_length": settings.max_passage_length, "do_lower_case": False})
    _write_json(directory / "config_sentence_transformers.json", {
        "prompts": {"query": settings.query_prefix, "passage": settings.passage_prefix},
        "default_prompt_name": None, "similarity_fn_name": "cosine" if settings.normalize else "dot",
    })

