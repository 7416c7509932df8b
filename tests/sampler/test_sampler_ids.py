"""labels_to_ids: any sortable labels to dense int64 ids, never merging labels of other kinds."""

import numpy as np
import pytest
from hbt_fast import labels_to_ids
from hypothesis import given, settings
from hypothesis import strategies as st


def test_labels_to_ids_maps_strings_to_dense_ids():
    ids = labels_to_ids(["en", "de", "en", "zh"], ["q2", "q2", "q1", "q1"])
    assert ids.language_names.tolist() == ["de", "en", "zh"]
    assert ids.languages.tolist() == [1, 0, 1, 2]
    assert ids.groups.tolist() == [1, 1, 0, 0]
    assert ids.languages.dtype == np.int64
    with pytest.raises(ValueError, match="same length"):
        labels_to_ids(["en"], ["q1", "q2"])


@pytest.mark.parametrize(
    "languages",
    [[1, "1"], [True, 1], [1, 1.0], [b"en", "en"], np.array([1, "1"], dtype=object)],
    ids=["int-str", "bool-int", "int-float", "bytes-str", "object-array"],
)
def test_labels_of_different_kinds_are_refused_not_merged(languages):
    with pytest.raises(TypeError, match="languages mixes labels of kinds"):
        labels_to_ids(languages, ["q1", "q2"])


def test_numpy_integer_labels_are_one_kind():
    ids = labels_to_ids([np.int64(3), 3, np.int32(5)], ["a", "b", "c"])
    assert ids.languages.tolist() == [0, 0, 1]


def test_labels_must_be_one_dimensional():
    with pytest.raises(ValueError, match="groups must be a 1-D sequence"):
        labels_to_ids(["en", "de"], np.zeros((2, 2)))


label_lists = st.one_of(
    st.lists(st.text(max_size=3), min_size=1, max_size=30),
    st.lists(st.integers(-(2**70), 2**70), min_size=1, max_size=30),
    st.lists(st.floats(allow_nan=False), min_size=1, max_size=30),
)


@settings(max_examples=100, deadline=None)
@given(languages=label_lists, data=st.data())
def test_ids_index_the_sorted_unique_labels(languages, data):
    groups = data.draw(st.lists(st.text(max_size=2), min_size=len(languages), max_size=len(languages)))
    ids = labels_to_ids(languages, groups)
    assert ids.languages.dtype == np.int64 and ids.groups.dtype == np.int64
    # against the labels themselves: np.asarray would strip trailing NULs ("\0" -> "")
    assert ids.language_names[ids.languages].tolist() == list(languages)
    assert ids.group_names[ids.groups].tolist() == groups
    assert len(set(ids.language_names.tolist())) == len(ids.language_names)


def test_big_integer_labels_stay_apart():
    # numpy makes [0, 2**63, 2**63 + 1] float64, where the last two are one value
    ids = labels_to_ids([0, 2**63, 2**63 + 1, 2**63], ["a", "b", "c", "d"])
    assert ids.languages.tolist() == [0, 1, 2, 1]
    assert ids.language_names.tolist() == [0, 2**63, 2**63 + 1]


@settings(max_examples=50, deadline=None)
@given(labels=st.lists(st.one_of(st.integers(0, 3), st.text(max_size=1), st.booleans()), min_size=1,
                       max_size=10))
def test_mixed_labels_raise_or_map_faithfully(labels):
    try:
        ids = labels_to_ids(labels, list(range(len(labels))))
    except TypeError as error:
        assert "languages mixes labels of kinds" in str(error)
        return
    assert [type(x) for x in ids.language_names[ids.languages].tolist()] == [type(x) for x in labels]
    assert ids.language_names[ids.languages].tolist() == labels


@pytest.mark.parametrize(
    "groups, row",
    [
        ([1.0, float("nan"), 2.0, float("nan")], 1),
        (np.array([1.0, 2.0, np.nan], dtype=np.float32), 2),
        (["a", "b", None], 2),
        ([None, None, None], 0),
        (np.array(["2024-01-01", "NaT", "NaT"], dtype="datetime64[D]"), 1),
    ],
    ids=["nan-list", "nan-float32-array", "none-beside-str", "all-none", "nat"],
)
def test_missing_labels_are_refused_naming_the_row(groups, row):
    # np.unique puts every NaN into one group: unrelated pairs would become X-Y positives
    with pytest.raises(ValueError, match=rf"groups: row {row} has no label"):
        labels_to_ids(["en"] * len(groups), groups)


def test_mixed_kinds_error_names_both_rows():
    with pytest.raises(TypeError, match=r"row 0 is int 7, row 2 is str '7'"):
        labels_to_ids(["en", "de", "fr"], [7, 8, "7"])
