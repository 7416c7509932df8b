"""Preparing a token store: inputs streamed in chunks, tokenized once, written to disk.

Memory stays bounded by a chunk, plus 24 bytes per distinct text (the digest index that
deduplicates texts) and, at the end, a few int64 columns read back in blocks:

* each chunk's texts are tokenized with the tokenizer's batch call (a fast tokenizer spreads
  it over the cores), hashed (BLAKE2b-128 of the ids), deduplicated against every earlier text
  through :class:`DigestIndex` (sorted numpy runs, no dict of all texts), and only new texts
  are appended to ``tokens.npy``;
* group labels are sorted per chunk and written as runs; the runs are merged at the end into
  dense ids in sorted label order (as :func:`hbt_fast.sampler.labels_to_ids` numbers them);
* everything is written into a temporary folder beside the output, renamed into place once
  the manifest (written last) is complete. A preparation killed at any moment leaves only that
  folder, which the next preparation of the same output removes before starting over.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import heapq
import itertools
import json
import os
import queue
import shutil
import threading
from pathlib import Path
from typing import Iterable, Mapping, Optional

import numpy as np

from hbt_fast._checks import check_integer
from hbt_fast.data.files import refuse_overlap, replace_folder
from hbt_fast.data.long_texts import token_ids
from hbt_fast.data.pairs import new_digest
from hbt_fast.data.token_store.format import (
    ARRAYS, FORMAT, GROUP_NAMES, MANIFEST, VERSION, AppendableArray, file_sha256, ranges,
    tokenizer_fingerprint)
from hbt_fast.data.token_store.sources import (
    expand_inputs, inputs_digest, pair_chunks, records_in)

__all__ = ["DEFAULT_CHUNK_PAIRS", "DigestIndex", "tokenize_texts", "write_token_store"]

DEFAULT_CHUNK_PAIRS = 8192
READ_BLOCK = 1 << 20  # rows per block when reading a column back


def tokenize_texts(tokenizer, texts: list, prefix: str, max_length: int):
    """``(flat uint32 ids, int64 length per text)``: the ids ``TextEncoder.tokenize_all`` gives
    (prefix applied, truncated to ``max_length``, special tokens added)."""
    if not texts:
        return np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.int64)
    # The same cut before tokenizing as the encoder's (a 50 MB line costs 256 ids, not minutes).
    encoded = token_ids(tokenizer, [prefix + text for text in texts], max_length)
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    flat = np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.uint32, count=int(lengths.sum()))
    return flat, lengths


def _digests(flat: np.ndarray, offsets: np.ndarray) -> list:
    view = memoryview(flat.tobytes())
    size = flat.itemsize
    return [hashlib.blake2b(view[start * size:stop * size], digest_size=16).digest()
            for start, stop in zip(offsets[:-1].tolist(), offsets[1:].tolist())]


class DigestIndex:
    """Text id by 128-bit digest, as sorted numpy runs (halves ``hi``/``lo`` and ``ids``).

    A run is merged into the one before it once at least half its size, so each digest is
    re-sorted O(log n) times and a lookup searches O(log n) runs."""

    def __init__(self):
        self.runs: list = []

    def __len__(self) -> int:
        return sum(len(run[0]) for run in self.runs)

    def find(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """The id of each digest, -1 where absent."""
        found = np.full(len(hi), -1, dtype=np.int64)
        for run_hi, run_lo, run_ids in self.runs:
            left = np.searchsorted(run_hi, hi, "left")
            right = np.searchsorted(run_hi, hi, "right")
            at = np.minimum(left, len(run_hi) - 1)
            single = (right - left == 1) & (run_lo[at] == lo)
            found[single] = run_ids[at[single]]
            # Two digests sharing their first 64 bits: found by a scan (about never happens).
            for k in np.flatnonzero(right - left > 1):
                match = np.flatnonzero(run_lo[left[k]:right[k]] == lo[k])
                if len(match):
                    found[k] = run_ids[left[k] + match[0]]
        return found

    def add(self, hi: np.ndarray, lo: np.ndarray, ids: np.ndarray) -> None:
        if len(hi):
            self.runs.append(self._sorted(hi, lo, ids))
        while len(self.runs) > 1 and 2 * len(self.runs[-1][0]) >= len(self.runs[-2][0]):
            last, before = self.runs.pop(), self.runs.pop()
            self.runs.append(self._sorted(*(np.concatenate(pair) for pair in zip(before, last))))

    @staticmethod
    def _sorted(hi, lo, ids):
        order = np.lexsort((lo, hi))
        return hi[order], lo[order], ids[order]


class _GroupRuns:
    """Group labels sorted per chunk into run files, merged into dense sorted ids at the end."""

    def __init__(self, folder: Path):
        self.folder, self.count = folder, 0

    def add(self, labels: list) -> np.ndarray:
        """Each label's index among the chunk's sorted distinct labels."""
        names, local = np.unique(np.array(labels, dtype=object), return_inverse=True)
        with open(self.folder / f"groups-{self.count}.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(name, ensure_ascii=False) + "\n" for name in names.tolist())
        self.count += 1
        return local.astype(np.int64)

    def _run(self, index: int):
        with open(self.folder / f"groups-{index}.jsonl", encoding="utf-8") as handle:
            for local, line in enumerate(handle):
                yield json.loads(line), index, local

    def merge(self, names_path: Path) -> tuple:
        """``(per-run arrays local index -> global id, number of groups)``; writes the labels."""
        maps = [[] for _ in range(self.count)]
        group, previous = -1, None
        with open(names_path, "w", encoding="utf-8") as names:
            for name, run, _ in heapq.merge(*(self._run(i) for i in range(self.count))):
                if name != previous:
                    group, previous = group + 1, name
                    names.write(json.dumps(name, ensure_ascii=False) + "\n")
                maps[run].append(group)
        return [np.asarray(m, dtype=np.int64) for m in maps], group + 1


class _StoreWriter:
    """Writes one store into ``folder`` chunk by chunk; :meth:`finish` completes it."""

    def __init__(self, folder: Path, tokenizer, settings, sources):
        self.folder, self.tokenizer, self.settings, self.sources = folder, tokenizer, settings, sources
        self.work = folder / "work"
        self.work.mkdir()
        self.columns = {name: AppendableArray(folder / f"{name}.npy", ARRAYS[name]) for name in
                        ("tokens", "text_offsets", "queries", "passages", "negatives", "negative_offsets")}
        self.columns["text_offsets"].append([0])
        self.columns["negative_offsets"].append([0])
        self.scratch = {name: AppendableArray(self.work / f"{name}.npy", "<i8")
                        for name in ("group_local", "language_local", "source", "position")}
        self.index = DigestIndex()
        self.texts = self.tokens = self.negatives = 0
        self.languages: dict = {}  # label -> order of first appearance (languages are few)
        self.groups = _GroupRuns(self.work)
        self.chunk_sizes: list = []

    # ------------------------------------------------------------------ streaming
    def add(self, chunk) -> None:
        pairs, counts = len(chunk), chunk.negative_counts
        query_ids, query_lengths = self._tokenize(chunk.queries, "query")
        passage_ids, passage_lengths = self._tokenize(chunk.passages + chunk.negatives, "passage")
        text_ids = self._text_ids(np.concatenate([query_ids, passage_ids]),
                                  np.concatenate([query_lengths, passage_lengths]),
                                  _pair_order(counts))
        self.columns["queries"].append(text_ids[:pairs])
        self.columns["passages"].append(text_ids[pairs:2 * pairs])
        self.columns["negatives"].append(text_ids[2 * pairs:])
        self.columns["negative_offsets"].append(self.negatives + np.cumsum(counts))
        self.negatives += len(chunk.negatives)
        languages = [self.languages.setdefault(name, len(self.languages)) for name in chunk.languages]
        self.scratch["language_local"].append(languages)
        self.scratch["group_local"].append(self.groups.add(chunk.groups))
        self.scratch["source"].append(np.full(pairs, chunk.source))
        self.scratch["position"].append(chunk.positions)
        self.chunk_sizes.append(pairs)

    def _tokenize(self, texts: list, side: str):
        return tokenize_texts(self.tokenizer, texts, self.settings.prefix(side),
                              self.settings.max_length(side))

    def _text_ids(self, flat: np.ndarray, lengths: np.ndarray, order: np.ndarray) -> np.ndarray:
        """Text id of each text (``flat`` / ``lengths``); texts new to the store get the next
        ids in ``order``, so that ids do not depend on how the input was cut into chunks."""
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        digests = _digests(flat, offsets)
        first: dict = {}  # digest -> its first text in `order` (bounded by the chunk)
        for i in order.tolist():
            first.setdefault(digests[i], i)
        firsts = np.fromiter(first.values(), dtype=np.int64, count=len(first))
        halves = np.frombuffer(b"".join(first), dtype="<u8").reshape(-1, 2)
        ids = self.index.find(halves[:, 0], halves[:, 1])
        new = ids < 0
        ids[new] = self.texts + np.arange(int(new.sum()))
        self.index.add(halves[new, 0].copy(), halves[new, 1].copy(), ids[new])
        rows = firsts[new]  # in order of first appearance, so in id order
        self.columns["tokens"].append(flat[ranges(offsets[rows], lengths[rows])])
        self.columns["text_offsets"].append(self.tokens + np.cumsum(lengths[rows]))
        self.texts += len(rows)
        self.tokens += int(lengths[rows].sum())
        id_of_first = dict(zip(first.values(), ids.tolist()))
        return np.fromiter((id_of_first[first[d]] for d in digests), dtype=np.int64, count=len(digests))

    def abandon(self) -> None:
        for column in (*self.columns.values(), *self.scratch.values()):
            column.abandon()

    # ------------------------------------------------------------------ finishing
    def finish(self, manifest: dict) -> None:
        lengths = {name: column.close() for name, column in self.columns.items()}
        for column in self.scratch.values():
            column.close()
        scratch = {name: np.load(self.work / f"{name}.npy", mmap_mode="r") for name in self.scratch}
        group_maps, groups = self.groups.merge(self.folder / GROUP_NAMES)
        language_names = sorted(self.languages)
        language_rank = np.empty(len(language_names), dtype=np.int64)
        language_rank[[self.languages[name] for name in language_names]] = np.arange(len(language_names))
        lengths["groups"] = self._write_groups(scratch["group_local"], group_maps)
        lengths["languages"] = self._write_column(
            "languages", (language_rank[block] for block in _blocks(scratch["language_local"])))
        self._refuse_repeated_pairs(scratch, language_names)
        lengths["negative_groups"] = self._write_negative_groups()
        del scratch
        shutil.rmtree(self.work)
        manifest["counts"] = {"pairs": lengths["queries"], "texts": self.texts, "tokens": self.tokens,
                              "negatives": lengths["negatives"], "groups": groups,
                              "languages": len(language_names)}
        manifest["languages"] = language_names
        manifest["files"] = {f"{name}.npy": {"dtype": ARRAYS[name], "length": lengths[name]}
                             for name in ARRAYS}
        manifest["files"][GROUP_NAMES] = {"length": groups}
        for name, entry in manifest["files"].items():
            path = self.folder / name
            entry["bytes"] = path.stat().st_size
            entry["sha256"] = file_sha256(path)
            _fsync(path)
        with open(self.folder / MANIFEST, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _write_column(self, name: str, blocks) -> int:
        column = AppendableArray(self.folder / f"{name}.npy", ARRAYS[name])
        for block in blocks:
            column.append(block)
        return column.close()

    def _write_groups(self, local: np.ndarray, group_maps: list) -> int:
        def blocks():
            start = 0
            for size, run_map in zip(self.chunk_sizes, group_maps):
                yield run_map[local[start:start + size]]
                start += size
        return self._write_column("groups", blocks())

    def _refuse_repeated_pairs(self, scratch: dict, language_names: list) -> None:
        """Each (group, language) once, as :class:`hbt_fast.data.PairCorpus` requires."""
        groups = np.load(self.folder / "groups.npy", mmap_mode="r")
        languages = np.load(self.folder / "languages.npy", mmap_mode="r")
        keys = np.asarray(groups) * max(len(language_names), 1) + np.asarray(languages)
        ordered = np.sort(keys)
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        if not len(repeated):
            return
        seen: dict = {}  # only pairs whose key repeats
        for row in np.flatnonzero(np.isin(keys, repeated)).tolist():
            if keys[row] in seen:
                where = [self.sources[scratch["source"][r]].where(int(scratch["position"][r]))
                         for r in (row, seen[keys[row]])]
                raise ValueError(
                    f"{where[0]}: group {_line(self.folder / GROUP_NAMES, int(groups[row]))!r} "
                    f"already has a pair in language {language_names[languages[row]]!r} "
                    f"({where[1]}); each (group, lang) may occur once")
            seen[keys[row]] = row

    def _write_negative_groups(self) -> int:
        """For each negative, the group of the first pair whose passage is the same text."""
        passages = np.load(self.folder / "passages.npy", mmap_mode="r")
        groups = np.load(self.folder / "groups.npy", mmap_mode="r")
        negatives = np.load(self.folder / "negatives.npy", mmap_mode="r")
        first_group = np.full(self.texts, -1, dtype=np.int64)
        starts = range(0, len(passages), READ_BLOCK)
        for start in reversed(starts):  # earlier pairs overwrite later ones
            texts, first = np.unique(passages[start:start + READ_BLOCK], return_index=True)
            first_group[texts] = groups[start:start + READ_BLOCK][first]
        return self._write_column("negative_groups", (first_group[block] for block in _blocks(negatives)))


def _read_ahead(chunks):
    """``chunks``, produced by a thread one chunk ahead: reading and validating the next chunk
    (Python) overlaps tokenizing this one (the fast tokenizer releases the GIL)."""
    ready: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def offer(item) -> bool:
        while not stop.is_set():  # the consumer may have stopped: never block for good
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for chunk in chunks:
                if not offer(("chunk", chunk)):
                    return
            offer(("end", None))
        except BaseException as error:  # noqa: BLE001 - raised again in the consumer
            offer(("error", error))

    thread = threading.Thread(target=produce, name="prepare-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


def _pair_order(negative_counts: np.ndarray) -> np.ndarray:
    """Texts laid out as (queries, passages, negatives), visited pair by pair: each pair's query,
    passage, then its negatives."""
    pairs = len(negative_counts)
    offsets = np.concatenate([[0], np.cumsum(negative_counts)])
    start = 2 * np.arange(pairs) + offsets[:-1]  # the slot of pair i's query
    slots = np.concatenate([start, start + 1, np.repeat(start + 2 - offsets[:-1], negative_counts)
                            + np.arange(offsets[-1])])
    return np.argsort(slots, kind="stable")


def _blocks(array: np.ndarray):
    for start in range(0, len(array), READ_BLOCK):
        yield np.asarray(array[start:start + READ_BLOCK])


def _line(path: Path, number: int) -> str:
    with open(path, encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            if index == number:
                return json.loads(line)
    raise AssertionError(f"{path} has no line {number}")


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def _exclusive(lock_path: Path, output: Path):
    """Hold ``lock_path`` (flock) for one preparation of ``output``; the lock dies with the
    process, so a killed preparation never blocks the next."""
    while True:
        handle = open(lock_path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise ValueError(f"another preparation is writing {output} (it holds {lock_path})") from None
        # The holder before us may have removed the file after we opened it: lock the new one.
        if lock_path.exists() and os.stat(lock_path).st_ino == os.fstat(handle.fileno()).st_ino:
            break
        handle.close()
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        handle.close()


def _refuse_overlap(output: Path, sources) -> None:
    """The store neither is, holds, nor sits inside an input."""
    refuse_overlap(output, {f"training input {i + 1}": s.path for i, s in enumerate(sources)})
    for source in sources:
        if source.path.resolve() in output.resolve().parents:
            raise ValueError(f"output {output} is inside the training data {source.path}; "
                             "choose an output outside it")


def _check_output(output: Path) -> None:
    from hbt_fast.data.token_store.reader import is_token_store

    if output.exists() and not is_token_store(output) and (output.is_file() or any(output.iterdir())):
        raise ValueError(f"output {output} exists and is not a token store; choose a new folder")


def write_token_store(inputs: Iterable, output, tokenizer, settings, *, tokenizer_name: str,
                      columns: Optional[Mapping[str, str]] = None,
                      chunk_pairs: int = DEFAULT_CHUNK_PAIRS, progress: bool = True,
                      source_digest: Optional[str] = None) -> Path:
    """Tokenize the pairs of ``inputs`` (paths or glob patterns: JSONL[.gz], Parquet,
    ``save_to_disk`` folders) into a token store at ``output`` and return its path.

    ``settings`` (an :class:`hbt_fast.models.EncoderSettings`) gives the prefixes and maximum
    lengths, both set: the encoder's own ``settings``, or those of
    :func:`hbt_fast.models.loading.tokenization`, have the model's lengths filled in.
    ``tokenizer_name`` is recorded in the manifest. An existing store at ``output`` is
    replaced once the new one is complete; any other existing content is refused.
    ``source_digest``: :func:`~hbt_fast.data.token_store.sources.inputs_digest` of ``inputs``
    and ``columns`` when the caller has it (it is computed otherwise: one more read)."""
    chunk_pairs = check_integer(chunk_pairs, "chunk_pairs")
    unset = [name for name in ("max_query_length", "max_passage_length")
             if getattr(settings, name) is None]
    if unset:
        # The model's own length needs the model's config, which a tokenizer does not carry.
        raise ValueError(f"settings.{unset[0]} is None (the model's own length): pass the "
                         "encoder's settings (TextEncoder.settings), or "
                         "hbt_fast.models.loading.tokenization(model, preset, {})'s, which have "
                         "it filled in")
    sources = expand_inputs([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)
    output = Path(output)
    _refuse_overlap(output, sources)
    _check_output(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.preparing")
    with _exclusive(output.with_name(f".{output.name}.lock"), output):
        shutil.rmtree(temporary, ignore_errors=True)  # what a killed preparation left
        temporary.mkdir()
        try:
            _prepare(temporary, sources, tokenizer, settings, tokenizer_name, columns, chunk_pairs, progress,
                     source_digest or inputs_digest(sources, columns))
            replace_folder(temporary, output)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
    return output


def _prepare(folder, sources, tokenizer, settings, tokenizer_name, columns, chunk_pairs, progress,
             source_digest):
    from tqdm.auto import tqdm

    manifest = {
        "format": FORMAT, "version": VERSION,
        "source": {"inputs": [str(s.path) for s in sources], "columns": dict(columns or {}),
                   "digest": source_digest},
        "tokenizer": {"name": tokenizer_name, "fingerprint": tokenizer_fingerprint(tokenizer)},
        "settings": {"query_prefix": settings.query_prefix, "passage_prefix": settings.passage_prefix,
                     "max_query_length": settings.max_query_length,
                     "max_passage_length": settings.max_passage_length},
    }
    content = new_digest()  # the pairs' digest, as PairCorpus has it: what a resume compares
    writer = _StoreWriter(folder, tokenizer, settings, sources)
    try:
        with tqdm(total=records_in(sources), desc="prepare", unit="line", disable=not progress,
                  unit_scale=True, smoothing=0.1) as bar:
            done = [0] * len(sources)
            for chunk in _read_ahead(pair_chunks(sources, columns, chunk_pairs, content)):
                writer.add(chunk)
                bar.update(int(chunk.positions[-1]) - done[chunk.source])
                done[chunk.source] = int(chunk.positions[-1])
    except BaseException:
        writer.abandon()
        raise
    manifest["source"]["content_digest"] = content.hexdigest()
    writer.finish(manifest)
