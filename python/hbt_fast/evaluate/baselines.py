"""Model-free encoders: reproducible baselines for tests, benchmarks and smoke runs.

:class:`HashedNgramEncoder` embeds a text as signed, hashed character n-gram counts
(sublinear, L2-normalised). It uses integer arithmetic only, so its embeddings are identical on
every platform, and it is vectorised over the whole list of texts.
"""

from __future__ import annotations

import numpy as np

from hbt_fast._checks import is_integer

__all__ = ["HashedNgramEncoder"]

_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio) for multiplicative hashing


class HashedNgramEncoder:
    """Signed feature hashing of lower-cased character n-grams into ``dim`` buckets."""

    def __init__(self, dim: int = 512, ngram_sizes=(1, 2, 3)):
        if not is_integer(dim) or dim < 2 or dim & (dim - 1):
            raise ValueError(f"dim must be a power of two >= 2, got {dim!r}")
        ngram_sizes = tuple(ngram_sizes)
        if not ngram_sizes or any(not is_integer(n) or n < 1 for n in ngram_sizes):
            raise ValueError(f"ngram_sizes must be positive integers, got {ngram_sizes!r}")
        self.dim = dim = int(dim)
        self.ngram_sizes = tuple(map(int, ngram_sizes))
        self._bits = np.uint64(dim.bit_length() - 1)

    def encode(self, texts) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not a single string")
        texts = [t.lower() for t in texts]
        counts = np.zeros((len(texts), self.dim), dtype=np.float64)
        if not texts:
            return counts.astype(np.float32)
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
        codes = codes.astype(np.uint64)
        text_of = np.repeat(np.arange(len(texts)), lengths)
        with np.errstate(over="ignore"):
            for size in self.ngram_sizes:
                if codes.size < size:
                    continue
                starts = np.arange(codes.size - size + 1)
                inside = text_of[starts] == text_of[starts + size - 1]
                value = np.full(starts.size, np.uint64(size))
                for offset in range(size):
                    value = (value * _MIX) ^ codes[starts + offset]
                value = value * _MIX
                bucket = (value >> (np.uint64(64) - self._bits)).astype(np.int64)
                sign = np.where((value >> np.uint64(31)) & np.uint64(1), 1.0, -1.0)
                flat = text_of[starts[inside]] * self.dim + bucket[inside]
                counts += np.bincount(
                    flat, weights=sign[inside], minlength=len(texts) * self.dim
                ).reshape(len(texts), self.dim)
        features = np.sign(counts) * np.log1p(np.abs(counts))
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        return (features / np.maximum(norms, 1e-12)).astype(np.float32)

    encode_queries = encode
    encode_passages = encode
