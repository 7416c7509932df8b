"""The sampler's Python wrappers (adapters, label ids, the stock-trainer guard), case by case.

Written to kill mutmut's survivors in ``sampler/adapters.py``, ``sampler/ids.py`` and
``sampler/_stock_trainer_guard.py`` (CONTRIBUTING.md, "Mutation testing"); expected values come
from the sampler's own batches or from the labels, never from the wrapper under test.
"""

import re

import numpy as np
import pytest

from hbt_fast import HybridBatchSampler, HybridSampler, labels_to_ids
from hbt_fast.sampler import PairBatch

LANGUAGES = np.array([0, 1] * 6)
GROUPS = np.repeat(np.arange(6), 2)


def _first_batch():
    sampler = HybridSampler(LANGUAGES, GROUPS, 3, mode="xx", seed=0)
    batch = next(iter(sampler))
    return PairBatch(batch), batch


def test_pair_batch_indexing_and_slicing_give_python_int_pairs():
    pairs, batch = _first_batch()
    queries, passages = batch[0].tolist(), batch[1].tolist()
    assert pairs[1:] == [(queries[1], passages[1]), (queries[2], passages[2])]
    assert pairs[::2] == [(queries[0], passages[0]), (queries[2], passages[2])]
    assert pairs[-1] == (queries[-1], passages[-1])
    assert all(type(row) is int for pair in [*pairs[:], pairs[0]] for row in pair)
    assert pairs.query_rows.tolist() == queries and pairs.passage_rows.tolist() == passages


def test_pair_batch_equals_sequences_of_the_same_pairs_only():
    pairs, batch = _first_batch()
    as_list = list(zip(batch[0].tolist(), batch[1].tolist(), strict=True))
    assert pairs == as_list and pairs == tuple(as_list) and pairs == PairBatch(batch)
    assert pairs != as_list[::-1]
    assert pairs != 3 and pairs != None  # noqa: E711 (not a sequence of pairs: not equal, no error)


def test_pair_batch_repr_shows_kind_language_and_pairs():
    pairs, batch = _first_batch()
    listed = list(zip(batch[0].tolist(), batch[1].tolist(), strict=True))
    assert repr(pairs) == f"PairBatch(kind='xx', language={batch.language}, pairs={listed})"


def test_set_epoch_reaches_the_sampler():
    adapter = HybridBatchSampler(HybridSampler(LANGUAGES, GROUPS, 2, mode="xy", seed=3))
    adapter.set_epoch(4)
    assert adapter.sampler.epoch == 4
    reference = HybridSampler(LANGUAGES, GROUPS, 2, mode="xy", seed=3)
    reference.set_epoch(4)
    for got, expected in zip(adapter, reference, strict=True):
        assert list(got) == list(zip(expected[0].tolist(), expected[1].tolist(), strict=True))


@pytest.mark.parametrize("refused", [HybridSampler, HybridBatchSampler])
def test_the_stock_trainer_calling_convention_is_refused_with_the_way_out(refused):
    """sentence-transformers' get_batch_sampler calls the class with these keywords."""
    way_out = [
        "stock SentenceTransformerTrainer would train on other batches",
        "Use hbt_fast.integrations.sentence_transformers.HybridTrainer(model=..., args=..., "
        "train_dataset=..., loss=..., mode='hybrid', alpha=0.5)",
        "instead of SentenceTransformerTrainer, and leave args.batch_sampler at its default.",
    ]
    with pytest.raises(TypeError) as error:
        refused([], batch_size=8, drop_last=False, valid_label_columns=["label"],
                generator=None, seed=0)
    assert str(error.value).startswith(f"{refused.__name__} cannot be used as "
                                       "sentence-transformers' batch_sampler")
    assert all(phrase in str(error.value) for phrase in way_out)
    sampler = HybridSampler(LANGUAGES, GROUPS, 2, mode="xy")
    instance = sampler if refused is HybridSampler else HybridBatchSampler(sampler)
    with pytest.raises(TypeError) as error:
        instance([], batch_size=8)
    assert str(error.value).startswith(f"A {refused.__name__} instance cannot be used as ")
    assert all(phrase in str(error.value) for phrase in way_out)


@pytest.mark.parametrize("labels, kinds", [
    ([True, 1], ["bool", "int"]),
    ([1.5, 1], ["float", "int"]),
    (["en", b"en"], ["bytes", "str"]),
    (["en", ("en",)], ["str", "tuple"]),
], ids=["bool", "float", "bytes", "other type"])
def test_mixed_label_kinds_are_named_in_the_error(labels, kinds):
    with pytest.raises(TypeError, match="^groups mixes labels of kinds " + re.escape(repr(kinds))):
        labels_to_ids(["en", "de"], labels)


def test_strings_that_differ_by_trailing_nuls_stay_apart():
    ids = labels_to_ids(["a\0", "a", "a\0\0", "a"], ["g"] * 4)
    assert ids.languages.tolist() == [1, 0, 2, 0]
    assert ids.language_names.tolist() == ["a", "a\0", "a\0\0"]


def test_name_arrays_keep_the_labels_numpy_dtype():
    assert labels_to_ids(["en", "de"], [3, 1]).language_names.dtype.kind == "U"
    assert labels_to_ids(["en", "de"], [3, 1]).group_names.dtype == np.int64
    empty = labels_to_ids([], [])
    assert empty.languages.tolist() == [] and empty.groups.dtype == np.int64
    assert empty.language_names.dtype == np.int64 and empty.group_names.size == 0


def test_a_zero_dimensional_array_is_not_a_sequence_of_labels():
    with pytest.raises(ValueError, match=r"^languages must be a 1-D sequence of labels, got shape \(\)"):
        labels_to_ids(np.array("en"), ["q1"])
