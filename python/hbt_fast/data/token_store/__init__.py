"""The memory-mapped token store: a training corpus tokenized once, read by the trainer
without holding any per-pair Python object (:mod:`.format` describes the layout).

``write_token_store`` (``hbt-fast prepare``) streams JSONL / Parquet / ``save_to_disk`` inputs
in chunks into a store; :class:`TokenStore` opens one memory-mapped, checks it, and serves the
sampler's label arrays and each batch's token ids.
"""

from hbt_fast.data.token_store.format import MANIFEST, tokenizer_fingerprint
from hbt_fast.data.token_store.reader import TokenStore, is_token_store
from hbt_fast.data.token_store.writer import DEFAULT_CHUNK_PAIRS, tokenize_texts, write_token_store

__all__ = ["DEFAULT_CHUNK_PAIRS", "MANIFEST", "TokenStore", "is_token_store", "tokenize_texts",
           "tokenizer_fingerprint", "write_token_store"]
