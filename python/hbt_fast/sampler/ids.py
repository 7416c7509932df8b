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


def _label_kind(value) -> str:
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


def _label_array(labels, name: str) -> np.ndarray:
    array = labels if isinstance(labels, np.ndarray) else None
    if array is None or array.dtype == object:
        values = labels.tolist() if array is not None else list(labels)
        kinds = {_label_kind(value) for value in values}
        if len(kinds) > 1:
            raise TypeError(
                f"{name} mixes labels of kinds {sorted(kinds)}; use one kind (e.g. all str), "
                "so that labels like 1 and '1' are not merged"
            )
        array = np.asarray(values) if values else np.asarray(values, dtype=np.int64)
        if kinds == {"str"} and any(value.endswith("\0") for value in values):
            # numpy's fixed-width strings drop trailing NULs ("a\0" would merge with "a")
            array = np.asarray(values, dtype=object)
        if kinds == {"int"} and array.dtype.kind not in "iu":
            # ints beyond int64 beside small ones become float64, where 2**63 and 2**63 + 1 merge
            array = np.asarray(values, dtype=object)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of labels, got shape {array.shape}")
    return array


def labels_to_ids(languages: Sequence, groups: Sequence) -> PairIds:
    """Map per-pair language and group labels (any sortable values) to dense int64 ids."""
    language_labels = _label_array(languages, "languages")
    group_labels = _label_array(groups, "groups")
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
