"""Columns of a ``datasets.Dataset`` read as whole Arrow arrays, never row by row in Python.

The label columns become the sampler's dense int64 ids in one pass of Arrow kernels
(dictionary encoding, then the distinct labels sorted), numbered as
:func:`hbt_fast.sampler.labels_to_ids` numbers the same labels (sorted by value; strings by
code point), so a run's batches and saved sampler states do not depend on the path taken.
Text columns are checked with one Arrow regular expression for blank values.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hbt_fast.sampler.ids import PairIds

__all__ = ["LabelIds", "check_texts", "column_values", "label_ids", "pair_ids", "shared_ids"]

# Everything str.strip() removes: a text of only these is blank, as the JSONL reader judges it.
_WHITESPACE = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
_BLANK = "^[" + "".join(f"\\x{{{ord(c):x}}}" for c in _WHITESPACE) + "]*$"


class LabelIds(NamedTuple):
    """Dense ids of a label column and its distinct labels in id order (an Arrow array)."""

    ids: np.ndarray  # int64 [rows]
    names: pa.Array  # sorted distinct labels


def column_values(dataset, column: str) -> pa.ChunkedArray:
    """The column in row order (a view of the dataset's Arrow table unless rows were selected)."""
    return dataset.select_columns([column]).with_format("arrow")[:][column]


def _first(mask) -> int:
    return pc.index(mask, True).as_py()


def label_ids(values: pa.ChunkedArray, column: str, what: str, where: str = "train_dataset") -> LabelIds:
    """Ids of ``values`` (labels of any sortable Arrow type); a missing label (null, NaN) is a
    ValueError naming its row, since every missing label would otherwise be one group."""
    if values.null_count:
        raise ValueError(f"{where} column {column!r} has no value at row {_first(values.is_null())}")
    if pa.types.is_floating(values.type) and pc.any(pc.is_nan(values)).as_py():
        raise ValueError(f"{where} column {column!r} ({what}): {what}: row {_first(pc.is_nan(values))} has "
                         "no label (nan); every pair needs a language and a group (NaN labels would all "
                         "merge into one)")
    encoded = (values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)).dictionary_encode()
    order = pc.sort_indices(encoded.dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return LabelIds(rank[encoded.indices.to_numpy()], encoded.dictionary.take(pa.array(order)))


def pair_ids(dataset, language_column: str, group_column: str, where: str = "train_dataset") -> PairIds:
    """:class:`~hbt_fast.sampler.PairIds` of a dataset's label columns (names as Arrow arrays)."""
    languages = label_ids(column_values(dataset, language_column), language_column, "languages", where)
    groups = label_ids(column_values(dataset, group_column), group_column, "groups", where)
    return PairIds(languages.ids, groups.ids, languages.names, groups.names)


def shared_ids(parts: Sequence[LabelIds], what: str) -> tuple:
    """``(ids of each part in one id space, the sorted union of their labels)``."""
    try:
        union = pc.unique(pa.concat_arrays([part.names for part in parts]))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        kinds = sorted({str(part.names.type) for part in parts})
        raise TypeError(f"the sources' {what} labels are of different types {kinds}; use one type in "
                        f"every source ({error})") from None
    union = union.take(pc.sort_indices(union))
    return [pc.index_in(part.names, value_set=union).to_numpy()[part.ids] for part in parts], union


def check_texts(values: pa.ChunkedArray, column: str, where: str = "train_dataset") -> None:
    """Every value a string with something besides whitespace, as the JSONL reader requires (an
    empty query or passage would train an embedding of nothing)."""
    bad = pc.fill_null(pc.match_substring_regex(values, _BLANK), True)
    row = _first(bad)
    if row >= 0:
        raise ValueError(f"{where} column {column!r} must hold non-empty strings, found "
                         f"{values[row].as_py()!r} at row {row}")
