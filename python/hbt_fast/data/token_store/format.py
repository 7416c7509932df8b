"""The token store's on-disk layout, shared by its writer and its reader.

A store is a folder of 1-D ``.npy`` files and a ``manifest.json`` written last:

==========================  ======  =====================================================
file                        dtype   content
==========================  ======  =====================================================
``tokens.npy``              uint32  the token ids of every distinct text, end to end
``text_offsets.npy``        int64   text ``t`` is ``tokens[text_offsets[t]:text_offsets[t + 1]]``
``queries.npy``             int64   the text id of each pair's query
``passages.npy``            int64   the text id of each pair's passage
``languages.npy``           int64   each pair's language id (index into the manifest's languages)
``groups.npy``              int64   each pair's group id (rank of its label among all labels)
``negative_offsets.npy``    int64   pair ``i``'s negatives are ``negatives[o[i]:o[i + 1]]``
``negatives.npy``           int64   the text id of each hard negative
``negative_groups.npy``     int64   the group of the first pair whose passage is that text, or -1
``group_names.jsonl``       text    the group labels, one JSON string per line, in id order
==========================  ======  =====================================================

Texts are identified by their token ids (a 128-bit BLAKE2b digest computed while preparing):
two texts that tokenize alike share one text id, so duplicate passages can be recognised.
Language and group ids are those :func:`hbt_fast.sampler.labels_to_ids` gives the same pairs
(sorted labels; groups compared as strings, as :class:`hbt_fast.data.PairCorpus` does).

The manifest records the format version, a digest of the inputs' bytes and one of the pairs'
content (as :class:`hbt_fast.data.PairCorpus` digests them), the tokenizer (name and a
fingerprint of everything that decides its ids), prefixes and maximum lengths, the counts, the
language labels, and each file's size and SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

__all__ = ["ARRAYS", "FORMAT", "GROUP_NAMES", "MANIFEST", "VERSION", "AppendableArray",
           "file_sha256", "ranges", "tokenizer_fingerprint"]

FORMAT = "hbt_fast token store"
VERSION = 1
MANIFEST = "manifest.json"
GROUP_NAMES = "group_names.jsonl"
# name -> dtype; lengths are in the manifest.
ARRAYS = {
    "tokens": "<u4", "text_offsets": "<i8", "queries": "<i8", "passages": "<i8",
    "languages": "<i8", "groups": "<i8", "negative_offsets": "<i8", "negatives": "<i8",
    "negative_groups": "<i8",
}
NPY_HEADER_BYTES = 128  # a 1-D array of any length up to 2**63 has a 128-byte .npy v1.0 header
HASH_BLOCK = 1 << 22


def _npy_header(dtype: str, length: int) -> bytes:
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": dtype, "fortran_order": False, "shape": (int(length),)})
    header = buffer.getvalue()
    assert len(header) == NPY_HEADER_BYTES, len(header)
    return header


class AppendableArray:
    """A 1-D ``.npy`` file written by appending blocks; the header gets the length at close.

    The header's size does not depend on the length (see ``NPY_HEADER_BYTES``), so it is
    written once as a placeholder and overwritten in place."""

    def __init__(self, path: Path, dtype: str):
        self.path, self.dtype, self.length = Path(path), np.dtype(dtype), 0
        self.handle = open(self.path, "wb")
        self.handle.write(_npy_header(self.dtype.str, 0))

    def append(self, values) -> None:
        block = np.ascontiguousarray(values, dtype=self.dtype)
        self.handle.write(block.tobytes())
        self.length += len(block)

    def abandon(self) -> None:
        """Close without completing (the file is about to be removed)."""
        self.handle.close()

    def close(self) -> int:
        self.handle.seek(0)
        self.handle.write(_npy_header(self.dtype.str, self.length))
        self.handle.flush()
        self.handle.close()
        return self.length


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    """SHA-256 of what decides a tokenizer's ids: its vocabulary, normaliser, pre-tokeniser,
    model, post-processor and added tokens (a fast tokenizer's ``tokenizer.json`` without the
    truncation and padding state that calls change), and its truncation side."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        described = json.loads(backend.to_str())
        for state in ("truncation", "padding"):
            described.pop(state, None)
    else:  # a slow (Python) tokenizer: its class and vocabulary
        described = {"class": type(tokenizer).__name__,
                     "vocab": sorted(tokenizer.get_vocab().items()),
                     "special": {k: str(v) for k, v in tokenizer.special_tokens_map.items()}}
    described["truncation_side"] = getattr(tokenizer, "truncation_side", "right")
    text = json.dumps(described, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])`` without a loop."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    ends = np.cumsum(lengths)
    return np.repeat(starts - (ends - lengths), lengths) + np.arange(ends[-1] if len(ends) else 0)
