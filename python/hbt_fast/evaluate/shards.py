"""Passage embeddings in shards on disk: encoded once, resumed after a kill, searched shard by
shard in memory bounded by one shard plus the queries.

A cache folder holds the passage embeddings of one corpus:

* ``passages-00000.npy``, ``passages-00001.npy``, ...: 2-D ``.npy`` files (float32 or float16);
  shard ``i`` holds rows ``[i * shard_rows, (i + 1) * shard_rows)`` (the last one fewer);
* ``manifest.json``: format, version, dtype, rows per shard, dimension, the encoder's identity
  and, per finished shard, its rows, bytes and SHA-256, and the SHA-256 of the passages it
  encodes.

A shard is written under a temporary name and renamed, then the manifest is rewritten (also
through a temporary name): a run killed at any moment leaves its finished shards listed and
nothing half-written under a real name, and the next run keeps them and encodes the rest.

Checks (each refusal is a ValueError naming the file):

* opening: the manifest must be one (format, version, entries of the right types), written with
  the same dtype, rows per shard and encoder identity (class, model name, settings, a digest of
  the weights of a torch module); a folder holding other files and no manifest is refused;
* resuming shard ``i``: its passages must be those the manifest recorded, else the corpus
  changed and the cache is refused; a listed shard whose file is missing or has another size is
  encoded again, with a warning naming it; the first shard kept is checked against the encoder
  by encoding a few of its passages again (catches another model saved under the same name);
* searching: each shard's size, ``.npy`` header and SHA-256 against the manifest.

Exact search (:func:`search_shards`) feeds the shards, regridded, to
:class:`~hbt_fast.evaluate.search.ExactTopK`, so its scores and ids equal those of
:func:`~hbt_fast.evaluate.search.search` over the same embeddings held in memory, bit for bit
(float16 shards: over the embeddings rounded to float16). ``"ivf"`` / ``"hnsw"`` build one
index per shard and merge the per-shard top-k; their recall against exact search is measured on
a query sample in the same pass.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import re
import sys
import warnings
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from hbt_fast._checks import check_integer, is_integer
from hbt_fast._outputs import LOCK_FILE, FolderLock
from hbt_fast.data.files import atomic_output, read_manifest, write_text_atomically
from hbt_fast.data.token_store.format import file_sha256
from hbt_fast.evaluate._common import l2_normalize
from hbt_fast.evaluate.driver import ENCODE_CHUNK
from hbt_fast.evaluate.search import (INDEX_KINDS, PASSAGE_BLOCK, ExactTopK, SearchResult,
                                      _build_approximate_index, _chunked,
                                      _order_by_score_then_index, as_embeddings, recall_against,
                                      recall_sample_rows)

__all__ = ["DEFAULT_SHARD_ROWS", "DTYPES", "EmbeddingShards", "encoder_identity", "search_shards",
           "texts_sha256"]

FORMAT = "hbt_fast embedding shards"
VERSION = 1
MANIFEST = "manifest.json"
DTYPES = ("float32", "float16")
DEFAULT_SHARD_ROWS = 100_000
#: passages of the first kept shard encoded again to check the encoder
PROBE_ROWS = 8
_SHARD_NAME = re.compile(r"passages-(\d{5,})\.npy")
_TEMPORARY = re.compile(r"\.(passages-\d{5,}\.npy|manifest\.json)\.tmp-\d+")


def texts_sha256(texts: Sequence[str]) -> str:
    """SHA-256 of a list of texts (each one's UTF-8 length, then its bytes)."""
    digest = hashlib.sha256()
    for text in texts:
        raw = text.encode("utf-8", "surrogatepass")
        digest.update(len(raw).to_bytes(8, "little"))
        digest.update(raw)
    return digest.hexdigest()


def _weights_sha256(module, torch) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def encoder_identity(encoder) -> dict:
    """What the manifest records of the encoder: its class, model name, settings and (a torch
    module) a digest of its weights."""
    kind = type(encoder)
    identity = {"class": f"{kind.__module__}.{kind.__qualname__}"}
    name = getattr(getattr(encoder, "model", None), "name_or_path", None)
    if isinstance(name, str):
        identity["model"] = name
    settings = getattr(encoder, "settings", None)
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        identity["settings"] = dataclasses.asdict(settings)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(encoder, torch.nn.Module):
        identity["weights_sha256"] = _weights_sha256(encoder, torch)
    return json.loads(json.dumps(identity))  # as the manifest will read back


def _check_dtype(dtype) -> str:
    if dtype not in DTYPES:
        raise ValueError(f"embedding dtype must be one of {DTYPES}, got {dtype!r}")
    return dtype


class EmbeddingShards:
    """The shards of one cache folder, held (locked) until :meth:`close` (or the ``with`` block
    ends). Shards are produced in order by :meth:`ensure`, then :meth:`finish` records the
    corpus' size; :meth:`shards` reads them back, checked."""

    def __init__(self, folder, *, dtype: str = "float32", shard_rows: int = DEFAULT_SHARD_ROWS,
                 identity: Optional[dict] = None):
        self.folder = Path(folder)
        self.dtype, self.shard_rows = _check_dtype(dtype), check_integer(shard_rows, "shard_rows")
        self.identity = identity or {}
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = FolderLock(self.folder, owner="embedding cache").acquire()
        try:
            self.manifest = self._open_manifest()
        except BaseException:
            self._lock.release()
            raise
        self._entries = {int(_SHARD_NAME.fullmatch(e["file"]).group(1)): e
                         for e in self.manifest["shards"]}
        self._probed = False
        self._next = 0

    def __enter__(self) -> "EmbeddingShards":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._lock.release()

    @property
    def rows(self) -> Optional[int]:
        return self.manifest["rows"]

    @property
    def dim(self) -> Optional[int]:
        return self.manifest["dim"]

    def path(self, index: int) -> Path:
        return self.folder / f"passages-{index:05d}.npy"

    # ------------------------------------------------------------------ opening
    def _open_manifest(self) -> dict:
        path = self.folder / MANIFEST
        if not path.is_file():
            foreign = sorted(p.name for p in self.folder.iterdir()
                             if p.name != LOCK_FILE and not _TEMPORARY.fullmatch(p.name))
            if foreign:
                raise ValueError(f"embedding cache {self.folder} holds {foreign[0]} but no {MANIFEST}: "
                                 "it is not an embedding cache; choose an empty or new folder")
            manifest = {"format": FORMAT, "version": VERSION, "dtype": self.dtype,
                        "shard_rows": self.shard_rows, "dim": None, "rows": None,
                        "encoder": self.identity, "shards": []}
            self._write_manifest(manifest)
        else:
            manifest = _checked_manifest(path)
            self._refuse_other_settings(manifest)
        for stale in self.folder.iterdir():  # left by a killed run
            if _TEMPORARY.fullmatch(stale.name):
                stale.unlink()
        return manifest

    def _refuse_other_settings(self, manifest: dict) -> None:
        ours = {"dtype": self.dtype, "shard_rows": self.shard_rows}
        differences = [f"{key} {manifest[key]} (cache) vs {value} (this run)"
                       for key, value in ours.items() if manifest[key] != value]
        cached = manifest["encoder"]
        differences += [f"encoder {key} {_short(cached.get(key))} (cache) vs "
                        f"{_short(self.identity.get(key))} (this run)"
                        for key in sorted({*cached, *self.identity})
                        if cached.get(key) != self.identity.get(key)]
        if differences:
            raise ValueError(f"embedding cache {self.folder} was written with other settings: "
                             f"{'; '.join(differences)}; choose another folder or delete this one")

    def _write_manifest(self, manifest: dict) -> None:
        write_text_atomically(self.folder / MANIFEST, json.dumps(manifest, indent=1) + "\n")

    # ------------------------------------------------------------------ writing
    def ensure(self, index: int, texts: Sequence[str],
               encode: Callable[[Sequence[str]], np.ndarray]) -> bool:
        """Make shard ``index`` hold the embeddings of ``texts`` (shards come in order):
        keep the cached one, or encode ``texts`` with ``encode``, called on chunks of
        :data:`~hbt_fast.evaluate.driver.ENCODE_CHUNK` texts (float ``[n, d]``, checked).
        Returns whether the shard was kept."""
        if index != self._next:
            raise ValueError(f"shards come in order: expected shard {self._next}, got {index}")
        self._next += 1
        digest = texts_sha256(texts)
        entry = self._entries.get(index)
        if entry is not None:
            if entry["texts_sha256"] != digest or entry["rows"] != len(texts):
                first = index * self.shard_rows
                raise ValueError(
                    f"embedding cache {self.folder}: {entry['file']} encodes other passages than rows "
                    f"{first}..{first + len(texts) - 1} of this corpus (it changed since); choose "
                    "another folder or delete this one")
            problem = self._file_problem(entry)
            if problem is None:
                if not self._probed:
                    self._check_encoder(entry, texts, encode)
                return True
            warnings.warn(f"embedding cache {self.folder}: {entry['file']} {problem}; encoding its "
                          "passages again", UserWarning, stacklevel=2)
        self._write_shard(index, texts, encode, digest)
        return False

    def _file_problem(self, entry: dict) -> Optional[str]:
        path = self.folder / entry["file"]
        if not path.is_file():
            return "is missing"
        size = path.stat().st_size
        if size != entry["bytes"]:
            return f"has {size} bytes, the manifest says {entry['bytes']} (truncated)"
        return None

    def _check_encoder(self, entry: dict, texts: Sequence[str], encode) -> None:
        """Encode the shard's first passages again: another model saved under the same name
        gives other embeddings."""
        self._probed = True
        cached = self._verified(entry)[:PROBE_ROWS].astype(np.float32)
        fresh = encode(list(texts[:PROBE_ROWS])).astype(self.dtype).astype(np.float32)
        # Same model: rounding only (batch padding, at most an ulp of float16: 1e-3 of the
        # largest value); another model differs by far more.
        scale = max(float(np.abs(cached).max()), 1e-12)
        difference = float(np.abs(fresh - cached).max()) if fresh.shape == cached.shape else np.inf
        if difference > 2e-3 * scale:
            raise ValueError(
                f"embedding cache {self.folder}: {entry['file']} was encoded by another encoder (its "
                f"first {len(cached)} passages differ from this encoder's by up to {difference:.3g}); "
                "choose another folder or delete this one")

    def _write_shard(self, index: int, texts: Sequence[str], encode, texts_digest: str) -> None:
        """Encode ``texts`` chunk by chunk straight into the shard's file: memory holds one
        chunk of embeddings, not the shard."""
        path, digest, dim = self.path(index), hashlib.sha256(), self.manifest["dim"]
        with atomic_output(path, "wb") as handle:
            for start in range(0, len(texts), ENCODE_CHUNK):
                chunk = texts[start:start + ENCODE_CHUNK]
                first = index * self.shard_rows + start
                part = as_embeddings(encode(chunk), len(chunk),
                                     name=f"passages {first}..{first + len(chunk) - 1}")
                if start == 0 and dim is None:
                    dim = part.shape[1]
                if part.shape[1] != dim:
                    raise ValueError(f"embedding cache {self.folder}: the encoder gives dimension "
                                     f"{part.shape[1]}, the cached embeddings {dim}")
                largest = float(np.abs(part).max())
                if largest > float(np.finfo(self.dtype).max):
                    raise ValueError(f"embeddings of passages {first}..{first + len(chunk) - 1} "
                                     f"exceed the range of {self.dtype} (largest |value| "
                                     f"{largest:.3g}); use float32")
                if start == 0:
                    self._write_bytes(handle, digest, _npy_header(self.dtype, (len(texts), dim)))
                self._write_bytes(handle, digest, part.astype(self.dtype).tobytes())
        entry = {"file": path.name, "rows": len(texts), "bytes": path.stat().st_size,
                 "sha256": digest.hexdigest(), "texts_sha256": texts_digest}
        self._entries[index] = entry
        self.manifest.update(dim=int(dim), shards=[self._entries[i] for i in sorted(self._entries)])
        self._write_manifest(self.manifest)

    @staticmethod
    def _write_bytes(handle, digest, data: bytes) -> None:
        digest.update(data)
        handle.write(data)

    def finish(self, rows: int) -> None:
        """Record that the corpus has ``rows`` passages, all in shards by now."""
        expected = -(-rows // self.shard_rows)
        if self._next != expected:
            raise ValueError(f"{rows} passages make {expected} shards, {self._next} were written")
        beyond = sorted(i for i in self._entries if i >= expected)
        if beyond:
            raise ValueError(f"embedding cache {self.folder}: {self._entries[beyond[0]]['file']} lies "
                             f"beyond the corpus' {rows} passages (it changed since); choose another "
                             "folder or delete this one")
        if self.manifest["rows"] != rows:
            self.manifest["rows"] = rows
            self._write_manifest(self.manifest)

    # ------------------------------------------------------------------ reading
    def _load(self, entry: dict) -> np.ndarray:
        path = self.folder / entry["file"]
        problem = self._file_problem(entry)
        if problem is not None:
            raise ValueError(f"embedding cache {self.folder}: {entry['file']} {problem}")
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as error:
            raise ValueError(f"embedding cache {self.folder}: {entry['file']} is not a readable .npy "
                             f"file ({error})") from None
        expected = (entry["rows"], self.manifest["dim"])
        if array.dtype != np.dtype(self.dtype) or array.shape != expected:
            raise ValueError(f"embedding cache {self.folder}: {entry['file']} holds {array.dtype} "
                             f"{array.shape}, the manifest says {self.dtype} {expected}")
        return array

    def shards(self) -> Iterator[np.ndarray]:
        """Each shard in order, memory-mapped, after checking it against the manifest (size,
        header, SHA-256): a damaged one is refused naming its file."""
        if self.rows is None:
            raise ValueError(f"embedding cache {self.folder} is not complete (no finish() yet)")
        for index in range(-(-self.rows // self.shard_rows)):
            array = self._verified(self._entries[index])
            yield array
            del array  # the mapping goes with the last reference: one shard mapped at a time

    def _verified(self, entry: dict) -> np.ndarray:
        array = self._load(entry)
        if file_sha256(self.folder / entry["file"]) != entry["sha256"]:
            raise ValueError(f"embedding cache {self.folder}: {entry['file']} does not match the "
                             f"SHA-256 in {MANIFEST} (changed or damaged); delete it to encode it "
                             "again")
        return array


def _npy_header(dtype: str, shape: tuple) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                 "shape": shape})
    return buffer.getvalue()


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True) if value is not None else "none"
    return text if len(text) <= 80 else text[:77] + "..."


def _checked_manifest(path: Path) -> dict:
    return read_manifest(path, kind="embedding cache", format_name=FORMAT, version=VERSION,
                         remedy="delete the cache", check=_check_manifest_entries)


def _check_manifest_entries(manifest: dict) -> None:
    _check_dtype(manifest["dtype"])
    check_integer(manifest["shard_rows"], "shard_rows")
    for key in ("dim", "rows"):
        if manifest[key] is not None and (not is_integer(manifest[key]) or manifest[key] < 0):
            raise TypeError(key)
    if not isinstance(manifest["encoder"], dict) or not isinstance(manifest["shards"], list):
        raise TypeError("encoder/shards")
    for entry in manifest["shards"]:
        if not _SHARD_NAME.fullmatch(entry["file"]):
            raise TypeError("shards.file")
        for key in ("rows", "bytes"):
            if not is_integer(entry[key]) or entry[key] < 1:
                raise TypeError(f"shards.{key}")
        for key in ("sha256", "texts_sha256"):
            if not isinstance(entry[key], str):
                raise TypeError(f"shards.{key}")


# ---------------------------------------------------------------------- search


class _Regrid:
    """Cuts arrays arriving in row order into the blocks of the exact-search grid (copies in
    float32, so a shard's mapping can go as soon as it is read) and hands each to ``sinks``."""

    def __init__(self, sinks, normalize: bool):
        self.sinks, self.normalize = sinks, normalize
        self.pieces: list = []
        self.held = 0

    def feed(self, array: np.ndarray) -> None:
        start = 0
        while start < array.shape[0]:
            take = min(PASSAGE_BLOCK - self.held, array.shape[0] - start)
            self.pieces.append(np.array(array[start:start + take], dtype=np.float32))
            self.held += take
            start += take
            if self.held == PASSAGE_BLOCK:
                self._emit()

    def close(self) -> None:
        if self.held:
            self._emit()

    def _emit(self) -> None:
        block = self.pieces[0] if len(self.pieces) == 1 else np.concatenate(self.pieces)
        if self.normalize:
            block = l2_normalize(block)
        for sink in self.sinks:
            sink(block)
        self.pieces, self.held = [], 0


def search_shards(queries: np.ndarray, shards: EmbeddingShards, k: int, *, index: str = "exact",
                  normalize: bool = False, nprobe: int = 32, recall_sample: int = 512,
                  seed: int = 0) -> SearchResult:
    """Top-``k`` of float32 ``queries`` over the cached passages, reading one shard at a time
    (``normalize``: passages L2-normalised as they are read; normalise the queries yourself).

    Exact search equals :func:`~hbt_fast.evaluate.search.search` on the same passages in memory
    (same ``k``, ``index``, ``seed``), scores and ids bit for bit. ``"ivf"`` / ``"hnsw"`` index
    each shard on its own and merge, so they differ from one index over the whole corpus; their
    ``recall_vs_exact`` is measured as :func:`~hbt_fast.evaluate.search.search` measures it."""
    if index not in INDEX_KINDS:
        raise ValueError(f"index must be one of {INDEX_KINDS}, got {index!r}")
    if shards.dim is not None and queries.shape[1] != shards.dim:
        raise ValueError(f"queries have dimension {queries.shape[1]} but passages {shards.dim}")
    k = min(int(k), shards.rows)
    if index == "exact":
        exact = ExactTopK(queries, k)
        regrid = _Regrid([exact.add], normalize)
        for shard in shards.shards():
            regrid.feed(shard)
        regrid.close()
        return SearchResult(*exact.result(), index="exact")
    sample = recall_sample_rows(queries.shape[0], recall_sample, seed)
    exact = ExactTopK(queries[sample], k)
    regrid = _Regrid([exact.add], normalize)
    scores = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
    ids = np.full((queries.shape[0], k), -1, dtype=np.int64)
    first = 0
    for shard in shards.shards():
        passages = np.array(shard, dtype=np.float32)
        regrid.feed(passages)
        if normalize:
            passages = l2_normalize(passages)
        approx = _build_approximate_index(passages, index, nprobe, seed)
        width = min(k, passages.shape[0])
        shard_scores, shard_ids = _chunked(functools.partial(approx.search, k=width), queries, width)
        shard_scores[shard_ids < 0] = -np.inf  # fewer than k found in the lists probed
        shard_ids = np.where(shard_ids < 0, -1, shard_ids + first)
        scores, ids = _order_by_score_then_index(np.concatenate([scores, shard_scores], 1),
                                                 np.concatenate([ids, shard_ids], 1), k)
        first += passages.shape[0]
        del approx, passages
    regrid.close()
    exact_ids = exact.result()[1]
    return SearchResult(scores, ids, index=index, recall_vs_exact=recall_against(ids[sample], exact_ids))
