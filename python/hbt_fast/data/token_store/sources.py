"""Training pairs read from files in chunks of bounded size, validated as the readers of
:mod:`hbt_fast.data.pairs` / :mod:`hbt_fast.data.tables` validate them.

Inputs are JSONL files (``.jsonl`` / ``.json``, optionally ``.gz``), Parquet files, folders
written by ``datasets``' ``save_to_disk``, or glob patterns of those. Each chunk holds pairs of
one input; errors name the file and the line (JSONL) or row (tables), counted from 1.
"""

from __future__ import annotations

import glob
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np

from hbt_fast.data.files import json_record, text_lines
from hbt_fast.data.pairs import FIELDS, NEGATIVES, CorpusBuilder, check_columns
from hbt_fast.data.tables import JSONL_SUFFIXES, PARQUET_SUFFIXES

__all__ = ["PairChunk", "PairSource", "expand_inputs", "inputs_digest", "pair_chunks", "records_in"]

GLOB_CHARACTERS = "*?["
DIGEST_BLOCK = 1 << 22


@dataclass(frozen=True)
class PairSource:
    """One input: a JSONL, Parquet or ``save_to_disk`` location."""

    path: Path
    kind: str  # "jsonl", "parquet" or "dataset"

    def where(self, position: int) -> str:
        return f"{self.path}:{position}" if self.kind == "jsonl" else f"{self.path} row {position}"


@dataclass
class PairChunk:
    """Validated pairs of one input, in input order."""

    source: int  # index into the inputs
    queries: list
    passages: list
    languages: list
    groups: list  # labels as strings (a group 5 and a group "5" are one group, as in PairCorpus)
    negatives: list  # every pair's negatives, end to end
    negative_counts: np.ndarray  # int64 per pair
    positions: np.ndarray  # int64 line or row of each pair, from 1

    def __len__(self) -> int:
        return len(self.queries)


def _kind(path: Path) -> str:
    if path.is_dir():
        if not (path / "dataset_info.json").is_file() and not (path / "dataset_dict.json").is_file():
            raise ValueError(f"{path} is a folder but not one written by datasets' save_to_disk "
                             "(no dataset_info.json)")
        return "dataset"
    if not path.is_file():
        raise FileNotFoundError(f"training data {path} does not exist")
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    suffix = suffixes[-1] if suffixes else ""
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in PARQUET_SUFFIXES and not path.name.lower().endswith(".gz"):
        return "parquet"
    raise ValueError(f"{path}: unknown training data format {''.join(path.suffixes) or '(no suffix)'!r}; "
                     f"give {'/'.join(JSONL_SUFFIXES)} (optionally .gz) or "
                     f"{'/'.join(PARQUET_SUFFIXES)} files, or save_to_disk folders")


def expand_inputs(inputs: Iterable) -> list:
    """:class:`PairSource` per input; a glob pattern that names no existing path expands to
    its matches (sorted). A path given twice is refused (its pairs would repeat)."""
    sources = []
    for given in inputs:
        given = str(given)
        paths = [Path(given)]
        if not Path(given).exists() and any(c in given for c in GLOB_CHARACTERS):
            paths = [Path(p) for p in sorted(glob.glob(given))]
            if not paths:
                raise FileNotFoundError(f"training data pattern {given!r} matches no file")
        sources.extend(PairSource(path, _kind(path)) for path in paths)
    if not sources:
        raise ValueError("no training data given")
    resolved = [source.path.resolve() for source in sources]
    for index, path in enumerate(resolved):
        if path in resolved[:index]:
            raise ValueError(f"training data {sources[index].path} is given twice")
    return sources


def _files_of(source: PairSource) -> list:
    if source.kind != "dataset":
        return [source.path]
    return sorted(p for p in source.path.rglob("*") if p.is_file())


def _records_in(source: PairSource) -> int:
    """How many lines (JSONL) or rows the input has: the progress bar's total."""
    if source.kind == "jsonl":
        import gzip

        opener = gzip.open if source.path.suffix.lower() == ".gz" else open
        try:
            with opener(source.path, "rb") as handle:
                return sum(block.count(b"\n") for block in iter(lambda: handle.read(DIGEST_BLOCK), b""))
        except (OSError, EOFError):
            return 0  # reading it later names the damage, with the line
    try:
        if source.kind == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(source.path).metadata.num_rows
        import datasets

        return datasets.load_from_disk(str(source.path)).num_rows
    except Exception:  # noqa: BLE001 - reading it later names the problem
        return 0


def inputs_digest(sources: Sequence[PairSource], columns: Optional[Mapping[str, str]]) -> str:
    """SHA-256 over the inputs' bytes (every file of a folder, by relative name) and the
    column mapping: what the store was made from."""
    digest = hashlib.sha256(repr(sorted(check_columns(columns).items())).encode())
    for source in sources:
        for path in _files_of(source):
            name = path.relative_to(source.path).as_posix() if source.kind == "dataset" else ""
            digest.update(f"\0{source.kind}\0{name}\0{path.stat().st_size}\0".encode())
            with open(path, "rb") as handle:
                while block := handle.read(DIGEST_BLOCK):
                    digest.update(block)
    return digest.hexdigest()


def records_in(sources: Sequence[PairSource]) -> int:
    """Lines and rows of all inputs (blank lines included): what the progress bar counts."""
    return sum(_records_in(source) for source in sources)


class _ChunkBuilder:
    """A :class:`CorpusBuilder` per chunk (its validation), flushed as :class:`PairChunk`."""

    def __init__(self, index: int, columns: dict, digest=None):
        self.index, self.columns, self.digest = index, columns, digest
        self._fresh()

    def _fresh(self) -> None:
        self.builder, self.positions = CorpusBuilder(self.columns, self.digest), []

    def add(self, record, where: str, position: int, label: str) -> None:
        self.builder.add(record, where, f"{label} {position}")
        self.positions.append(position)

    def __len__(self) -> int:
        return len(self.positions)

    def flush(self) -> PairChunk:
        values = self.builder.values
        chunk = PairChunk(
            self.index, values["query"], values["passage"], values["lang"],
            [str(group) for group in values["group"]], self.builder.negatives,
            np.diff(np.asarray(self.builder.offsets, dtype=np.int64)),
            np.asarray(self.positions, dtype=np.int64))
        self._fresh()
        return chunk


def _jsonl_records(source: PairSource):
    for line_number, line in text_lines(source.path):
        if line.strip():
            where = source.where(line_number)
            yield json_record(line, where), where, line_number, "line"


def _check_table_columns(available, columns: dict, source: PairSource) -> list:
    available = set(available)
    missing = [columns[name] for name in FIELDS if name != NEGATIVES and columns[name] not in available]
    if missing:
        raise ValueError(f"{source.path}: no column(s) {missing}; columns are {sorted(available)} "
                         "(map fields to columns with columns={'query': ..., ...})")
    return [columns[name] for name in FIELDS if columns[name] in available]


def _table_records(batches, source: PairSource):
    row = 0
    for batch in batches:
        names = list(batch)
        for values in zip(*(batch[name] for name in names)):
            row += 1
            yield dict(zip(names, values)), source.where(row), row, "row"


def _parquet_batches(source: PairSource, columns: dict, chunk_pairs: int):
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(source.path)
        wanted = _check_table_columns(table.schema_arrow.names, columns, source)
        for batch in table.iter_batches(batch_size=chunk_pairs, columns=wanted):
            yield batch.to_pydict()
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        if str(error).startswith(str(source.path)):
            raise
        raise ValueError(f"{source.path}: not a readable Parquet file ({error})") from None


def _dataset_batches(source: PairSource, columns: dict, chunk_pairs: int):
    import datasets

    dataset = datasets.load_from_disk(str(source.path))
    if isinstance(dataset, datasets.DatasetDict):
        raise ValueError(f"{source.path}: holds the splits {sorted(dataset)}; give one split's "
                         "folder (e.g. PATH/train)")
    wanted = _check_table_columns(dataset.column_names, columns, source)
    yield from dataset.select_columns(wanted).iter(batch_size=chunk_pairs)


def _records(source: PairSource, columns: dict, chunk_pairs: int):
    if source.kind == "jsonl":
        return _jsonl_records(source)
    batches = (_parquet_batches if source.kind == "parquet" else _dataset_batches)(
        source, columns, chunk_pairs)
    return _table_records(batches, source)


def pair_chunks(sources: Sequence[PairSource], columns: Optional[Mapping[str, str]],
                chunk_pairs: int, digest=None) -> Iterator[PairChunk]:
    """Validated chunks of at most ``chunk_pairs`` pairs, input after input; ``digest`` (a
    :func:`hbt_fast.data.pairs.new_digest`) is fed every pair, as :class:`PairCorpus` digests
    the same pairs read in memory."""
    columns = check_columns(columns)
    for index, source in enumerate(sources):
        chunk, pairs = _ChunkBuilder(index, columns, digest), 0
        for record, where, position, label in _records(source, columns, chunk_pairs):
            if not isinstance(record, Mapping):
                raise ValueError(f"{where}: expected a record, got {type(record).__name__}")
            chunk.add(record, where, position, label)
            if len(chunk) == chunk_pairs:
                pairs += len(chunk)
                yield chunk.flush()
        if len(chunk):
            pairs += len(chunk)
            yield chunk.flush()
        if not pairs:
            raise ValueError(f"{source.path}: no pairs found (it is empty)")
