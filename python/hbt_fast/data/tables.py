"""Pairs from tables: Parquet files, ``datasets.Dataset`` objects and ``save_to_disk`` folders.

:func:`read_pairs` dispatches on what ``path`` is (a ``.jsonl``/``.json`` file, a ``.parquet``
file, or a folder written by ``datasets.Dataset.save_to_disk``); every format holds the JSONL
fields (``group``, ``lang``, ``query``, ``passage``, optional ``negatives``), renamed through
``columns``. Errors name the file (or folder) and the row, counted from 1 as lines are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Optional, Union

from hbt_fast.data.pairs import (
    FIELDS, NEGATIVES, CorpusBuilder, PairCorpus, check_columns, read_pairs_jsonl,
)

__all__ = ["corpus_from_dataset", "read_pairs"]

JSONL_SUFFIXES = (".jsonl", ".json")
PARQUET_SUFFIXES = (".parquet", ".pq")


def _corpus_from_columns(column_names, get_column, columns: dict, source: str) -> PairCorpus:
    available = set(column_names)
    missing = [columns[name] for name in FIELDS if name != NEGATIVES
               and columns[name] not in available]
    if missing:
        raise ValueError(f"{source}: no column(s) {missing}; columns are {sorted(available)} "
                         "(map fields to columns with columns={'query': ..., ...})")
    wanted = [columns[name] for name in FIELDS if columns[name] in available]
    data = {column: list(get_column(column)) for column in wanted}
    builder = CorpusBuilder(columns)
    rows = len(next(iter(data.values())))
    for row in range(rows):
        record = {column: values[row] for column, values in data.items()}
        builder.add(record, f"{source} row {row + 1}", f"row {row + 1}")
    return builder.corpus(source)


def corpus_from_dataset(dataset, columns: Optional[Mapping[str, str]] = None, *,
                        source: str = "dataset") -> PairCorpus:
    """A :class:`PairCorpus` from a ``datasets.Dataset`` (or a ``pyarrow.Table``)."""
    columns = check_columns(columns)
    if hasattr(dataset, "keys") and not hasattr(dataset, "column_names"):
        raise TypeError(f"{source}: expected one dataset, got a dict of splits "
                        f"{sorted(dataset.keys())}; pass one split, e.g. dataset['train']")
    names = getattr(dataset, "column_names", None)
    if names is None:
        raise TypeError(f"{source}: expected a datasets.Dataset or pyarrow.Table, "
                        f"got {type(dataset).__name__}")
    if hasattr(dataset, "to_pylist") and hasattr(dataset, "column"):  # pyarrow.Table
        return _corpus_from_columns(names, lambda c: dataset.column(c).to_pylist(), columns, source)
    if isinstance(names, Mapping):  # a DatasetDict reports names per split
        raise TypeError(f"{source}: expected one dataset, got splits {sorted(names)}; "
                        "pass one split, e.g. dataset['train']")
    return _corpus_from_columns(names, lambda c: dataset[c], columns, source)


def _read_parquet(path: Path, columns: dict) -> PairCorpus:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises ArrowInvalid/OSError variants for damaged files
        raise ValueError(f"{path}: not a readable Parquet file ({error})") from None
    return corpus_from_dataset(table, columns, source=str(path))


def _read_saved_dataset(path: Path, columns: dict) -> PairCorpus:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        raise ImportError(f"reading {path} needs the 'datasets' package") from None
    import pyarrow

    if not (path / "dataset_info.json").is_file() and not (path / "dataset_dict.json").is_file():
        raise ValueError(f"{path} is a folder but not one written by datasets' save_to_disk "
                         "(no dataset_info.json)")
    try:
        dataset = datasets.load_from_disk(str(path))
    except Exception as error:  # noqa: BLE001 - any failure of datasets' reader: a damaged folder
        raise _unreadable(path, error) from None
    try:
        return corpus_from_dataset(dataset, columns, source=str(path))
    except (pyarrow.ArrowException, OSError) as error:  # data read lazily, memory-mapped
        raise _unreadable(path, error) from None


def _unreadable(folder: Path, error: Exception) -> ValueError:
    reason = " ".join(str(error).split()) or type(error).__name__
    return ValueError(f"{_damaged_file(folder)}: not readable, the save_to_disk folder is "
                      f"damaged ({reason}); write it again with Dataset.save_to_disk")


def _damaged_file(folder: Path) -> Path:
    """The first file of ``folder`` that does not read on its own (the folder if none)."""
    import pyarrow

    for arrow in sorted(folder.rglob("*.arrow")):
        try:
            with pyarrow.memory_map(str(arrow)) as source:
                pyarrow.ipc.open_stream(source).read_all()
        except (pyarrow.ArrowException, OSError):
            return arrow
    for metadata in sorted(folder.rglob("*.json")):
        try:
            json.loads(metadata.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            return metadata
    return folder


def read_pairs(path: Union[str, Path], columns: Optional[Mapping[str, str]] = None) -> PairCorpus:
    """Training pairs from JSONL, Parquet, or a ``datasets`` ``save_to_disk`` folder."""
    path = Path(path)
    columns_checked = check_columns(columns)
    if path.is_dir():
        return _read_saved_dataset(path, columns_checked)
    if not path.is_file():
        raise FileNotFoundError(f"training data {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return _read_parquet(path, columns_checked)
    if suffix in JSONL_SUFFIXES:
        return read_pairs_jsonl(path, columns)
    raise ValueError(f"{path}: unknown training data format {suffix or '(no suffix)'!r}; give a "
                     f"{'/'.join(JSONL_SUFFIXES + PARQUET_SUFFIXES)} file or a save_to_disk folder")
