"""Dense integer ids for pairs labelled with any sortable values (strings, ints, ...)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class PairIds(NamedTuple):
    """Integer ids for pairs labelled with strings (see :func:`labels_to_ids`)."""

    languages: np.ndarray  # int64 [N], index into language_names
    groups: np.ndarray  # int64 [N], index into group_names
    language_names: np.ndarray  # sorted unique language labels
    group_names: np.ndarray  # sorted unique group labels


def label_kind(value) -> str:
    """The kind of a label ("str", "int", "float", ...): one column holds one kind."""
    # bool before int (True == 1), ints and floats apart (1 == 1.0): labels of different
    # kinds would otherwise merge, or become strings in one numpy array ("1" and 1).
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, numbers.Integral):
        return "int"
    if isinstance(value, numbers.Real):
        return "float"
    if isinstance(value, (str, np.str_)):
        return "str"
    if isinstance(value, (bytes, np.bytes_)):
        return "bytes"
    return type(value).__name__


def _is_missing(value) -> bool:
    """None, or a value unequal to itself (NaN of any float type, NaT, pandas' NA)."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except (TypeError, ValueError):  # pandas.NA: its comparisons are NA, whose truth is undefined
        return True


def _refuse_missing(name: str, row: int, value) -> None:
    raise ValueError(
        f"{name}: row {row} has no label ({value!r}); every pair needs a language and a group "
        "(NaN or None labels would all merge into one)"
    )


def _check_object_labels(values: list, name: str) -> None:
    first_kind = None
    for row, value in enumerate(values):
        if _is_missing(value):
            _refuse_missing(name, row, value)
        kind = label_kind(value)
        if first_kind is None:
            first_kind = kind, row, value
        elif kind != first_kind[0]:
            raise TypeError(
                f"{name} mixes labels of kinds {sorted({first_kind[0], kind})}: row "
                f"{first_kind[1]} is {first_kind[0]} {first_kind[2]!r}, row {row} is {kind} "
                f"{value!r}; use one kind (e.g. all str), so that labels like 1 and '1' are "
                "not merged"
            )


def _check_numeric_labels(array: np.ndarray, name: str) -> None:
    if array.dtype.kind in "fc":
        missing = np.isnan(array)
    elif array.dtype.kind in "mM":
        missing = np.isnat(array)
    else:
        return
    if missing.any():
        row = int(missing.argmax())
        _refuse_missing(name, row, array[row].item())


def check_labels(labels, name: str) -> np.ndarray:
    """``labels`` as a 1-D array, refusing mixed kinds and missing labels (naming the row)."""
    array = labels if isinstance(labels, np.ndarray) else None
    if array is None or array.dtype == object:
        values = labels.tolist() if array is not None else list(labels)
        _check_object_labels(values, name)
        kinds = {label_kind(value) for value in values[:1]}
        array = np.asarray(values) if values else np.asarray(values, dtype=np.int64)
        if kinds == {"str"} and any(value.endswith("\0") for value in values):
            # numpy's fixed-width strings drop trailing NULs ("a\0" would merge with "a")
            array = np.asarray(values, dtype=object)
        if kinds == {"int"} and array.dtype.kind not in "iu":
            # ints beyond int64 beside small ones become float64, where 2**63 and 2**63 + 1 merge
            array = np.asarray(values, dtype=object)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of labels, got shape {array.shape}")
    _check_numeric_labels(array, name)
    return array


def labels_to_ids(languages: Sequence, groups: Sequence) -> PairIds:
    """Map per-pair language and group labels (any sortable values) to dense int64 ids.

    Labels of one column must be of one kind (all str, all int, ...) and present: mixed kinds
    (``1`` and ``"1"``) are a TypeError, a missing label (None, NaN) a ValueError, each naming
    the row, since either would merge pairs that are not one group."""
    language_labels = check_labels(languages, "languages")
    group_labels = check_labels(groups, "groups")
    if len(language_labels) != len(group_labels):
        raise ValueError(
            f"languages and groups must have the same length, got {len(language_labels)} "
            f"and {len(group_labels)}"
        )
    language_names, language_ids = np.unique(language_labels, return_inverse=True)
    group_names, group_ids = np.unique(group_labels, return_inverse=True)
    return PairIds(
        language_ids.astype(np.int64), group_ids.astype(np.int64), language_names, group_names
    )
