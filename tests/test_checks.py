"""hbt_fast._checks: the one owner of "a real bool" and "an integer, never a bool, >= N"."""

import numpy as np
import pytest

from hbt_fast._checks import check_flag, check_integer, is_integer, is_real
from hbt_fast.evaluate import metrics
from hbt_fast.evaluate.baselines import HashedNgramEncoder
from hbt_fast.models.settings import EncoderSettings
from hbt_fast.sampler import HybridSampler


@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False), (np.bool_(True), True), (np.bool_(False), False)])
def test_check_flag_accepts_bools_and_returns_a_python_bool(value, expected):
    got = check_flag(value, "flag")
    assert got is expected


@pytest.mark.parametrize("value", [1, 0, "yes", "", None, 1.0, np.int64(1), [True]])
def test_check_flag_refuses_everything_else_naming_the_argument(value):
    with pytest.raises(TypeError) as caught:
        check_flag(value, "symmetric")
    assert str(caught.value) == f"symmetric must be True or False, got {value!r}"


@pytest.mark.parametrize("value", [0, 1, 7, 2**70, np.int64(3), np.uint8(200), np.int32(-4)])
def test_check_integer_accepts_ints_and_numpy_integers_as_python_ints(value):
    got = check_integer(value, "n", minimum=None)
    assert type(got) is int and got == int(value)


@pytest.mark.parametrize("value", [True, False, np.bool_(True), 1.0, np.float64(2.0), "3", None,
                                   [1], 1 + 0j])
def test_check_integer_refuses_non_integers_with_the_callers_error(value):
    with pytest.raises(ValueError) as caught:
        check_integer(value, "k")
    assert str(caught.value) == f"k must be an integer >= 1, got {value!r}"
    with pytest.raises(TypeError, match=r"^k must be an integer, got "):
        check_integer(value, "k", minimum=None, not_integer=TypeError)


@pytest.mark.parametrize("minimum, value", [(1, 0), (1, -5), (0, -1), (2, np.int64(1)), (100, 99)])
def test_check_integer_refuses_values_below_the_minimum_with_a_value_error(minimum, value):
    with pytest.raises(ValueError) as caught:
        check_integer(value, "count", minimum=minimum, not_integer=TypeError)
    assert str(caught.value) == f"count must be an integer >= {minimum}, got {value!r}"


@pytest.mark.parametrize("minimum, value", [(1, 1), (0, 0), (2, np.int64(2)), (-3, -3)])
def test_check_integer_accepts_the_minimum_itself(minimum, value):
    assert check_integer(value, "count", minimum=minimum) == value


def test_optional_takes_none_and_says_so_in_the_message():
    assert check_integer(None, "bucket_cost", minimum=0, optional=True) is None
    assert check_integer(5, "bucket_cost", minimum=0, optional=True) == 5
    with pytest.raises(ValueError, match=r"^bucket_cost must be an integer >= 0 or None, got -1$"):
        check_integer(-1, "bucket_cost", minimum=0, optional=True)
    with pytest.raises(ValueError, match=r"^bucket_cost must be an integer >= 0 or None, got True$"):
        check_integer(True, "bucket_cost", minimum=0, optional=True)
    with pytest.raises(ValueError, match=r"^k must be an integer >= 1, got None$"):
        check_integer(None, "k")


@pytest.mark.parametrize("value, expected", [
    (3, True), (np.int64(3), True), (-1, True), (True, False), (np.bool_(False), False),
    (3.0, False), ("3", False), (None, False)])
def test_is_integer(value, expected):
    assert is_integer(value) is expected


# A few call sites: each refuses a bool where it wants a count, and a count where it wants a bool.

def test_metrics_refuse_a_bool_k():
    with pytest.raises(ValueError, match=r"^k must be an integer >= 1, got True$"):
        metrics.recall_at_k(np.ones((1, 2), bool), [1], True)


def test_encoder_settings_refuse_a_bool_length_and_keep_numpy_lengths_as_ints():
    with pytest.raises(ValueError, match=r"^max_query_length must be an integer >= 2 or None, got True$"):
        EncoderSettings(max_query_length=True)
    with pytest.raises(TypeError, match=r"^normalize must be True or False, got 1$"):
        EncoderSettings(normalize=1)
    settings = EncoderSettings(normalize=np.bool_(False), max_passage_length=np.int64(64))
    assert settings.normalize is False and type(settings.max_passage_length) is int


def test_sampler_refuses_a_bool_batch_size_and_an_int_drop_last():
    languages, groups = np.zeros(8, dtype=np.int64), np.arange(8)
    with pytest.raises(TypeError, match=r"^batch_size must be an integer, got True$"):
        HybridSampler(languages, groups, True)
    with pytest.raises(TypeError, match=r"^drop_last must be True or False, got 1$"):
        HybridSampler(languages, groups, 2, drop_last=1)


def test_hashed_ngram_encoder_refuses_bool_ngram_sizes():
    with pytest.raises(ValueError, match=r"^ngram_sizes must be positive integers, got \(True,\)"):
        HashedNgramEncoder(ngram_sizes=(True,))
    encoder = HashedNgramEncoder(dim=np.int64(16), ngram_sizes=(np.int64(2),))
    assert encoder.encode(["abc"]).shape == (1, 16)


@pytest.mark.parametrize("value", [0, -3, 2.5, float("nan"), float("inf"), np.float32(0.5), np.int64(7)])
def test_real_numbers_are_real(value):
    assert is_real(value)


@pytest.mark.parametrize("value", [True, False, np.bool_(True), "0.5", None, 1j, [0.5]])
def test_bools_strings_and_the_rest_are_not_real(value):
    assert not is_real(value)
