"""HybridSampler under misuse: one clear exception naming the argument, never a crash or a
hang; wrong types are TypeError, wrong values ValueError (checked once, by the C++ core)."""

import threading

import numpy as np
import pytest
from hbt_fast import HybridSampler
from sampler_cases import make_pairs

BASE = {"languages": [0, 0, 1, 1], "groups": [0, 1, 0, 1], "batch_size": 2}


def build(**kwargs):
    arguments = {**BASE, **kwargs}
    languages, groups, batch_size = (arguments.pop(k) for k in ("languages", "groups", "batch_size"))
    if not isinstance(languages, np.ndarray):
        languages = np.asarray(languages, dtype=None if languages else np.int64)
    if not isinstance(groups, np.ndarray):
        groups = np.asarray(groups, dtype=None if groups else np.int64)
    return HybridSampler(languages, groups, batch_size, **arguments)


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"languages": [0, 1, 2]}, ValueError, "languages and groups must have the same length, got 3 and 4"),
        ({"languages": [0, -1, 0, 1]}, ValueError, "languages must be non-negative ids, got -1 at row 1"),
        ({"groups": [0, 0, -3, 1]}, ValueError, "groups must be non-negative ids, got -3 at row 2"),
        ({"languages": [0.0, 1.0, 0.0, 1.0]}, TypeError, "languages must hold integer ids"),
        ({"languages": [True, False, True, False]}, TypeError, "languages must hold integer ids"),
        ({"languages": [[0, 1], [0, 1]]}, ValueError, "languages must be a 1-D array"),
        ({"languages": [], "groups": []}, ValueError, "must not be empty"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1, got 0"),
        ({"batch_size": 2.0}, TypeError, "batch_size must be an integer, got 2.0"),
        ({"batch_size": True}, TypeError, "batch_size must be an integer, got True"),
        ({"batch_size": 2**63}, ValueError, "batch_size must be in"),
        ({"batch_size": 3}, ValueError, "batch_size \\* world_size = 3 exceeds"),
        ({"alpha": 1.5}, ValueError, "alpha must be in \\[0, 1\\], got 1.5"),
        ({"alpha": float("nan")}, ValueError, "alpha must be in \\[0, 1\\], got nan"),
        ({"alpha": True}, TypeError, "alpha must be a real number, got bool"),
        ({"alpha": "0.5"}, TypeError, "alpha must be a real number, got str"),
        ({"lang_exponent": float("inf")}, ValueError, "lang_exponent must be finite"),
        ({"lang_exponent": None}, TypeError, "lang_exponent must be a real number"),
        ({"rank": 2, "world_size": 2}, ValueError, "rank must be in \\[0, world_size=2\\), got 2"),
        ({"rank": -1}, ValueError, "rank must be in \\[0, world_size=1\\), got -1"),
        ({"world_size": 0}, ValueError, "world_size must be >= 1, got 0"),
        ({"mode": "xz"}, ValueError, "mode must be 'xx', 'xy', 'hybrid' or 'mixed', got 'xz'"),
        ({"mode": "Mixed"}, ValueError, "mode must be .* got 'Mixed'"),
        ({"mode": "mixed", "batch_size": 3}, ValueError,
         "batch_size \\* world_size = 3 exceeds the 2 groups, so no mixed batch can be formed"),
        ({"mode": "mixed", "world_size": 3, "rank": 1}, ValueError,
         "batch_size \\* world_size = 6 exceeds the 2 groups"),
        ({"mode": None}, TypeError, "mode must be a str, got NoneType"),
        ({"seed": -1}, ValueError, "seed must be in \\[0, 18446744073709551615\\], got -1"),
        ({"seed": 2**64}, ValueError, "seed must be in"),
        ({"seed": 1.0}, TypeError, "seed must be an integer, got 1.0"),
        ({"drop_last": "no"}, TypeError, "drop_last must be True or False, got 'no'"),
        ({"drop_last": 0}, TypeError, "drop_last must be True or False, got 0"),
        ({"groups": [0, 1, 0, 0]}, ValueError, "distinct \\(group, language\\): rows 2 and 3"),
        ({"groups": [0, 1, 2, 3], "mode": "xy"}, ValueError, "no group has pairs in two languages"),
    ],
)
def test_bad_input_raises_one_error_naming_the_argument(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        build(**kwargs)


@pytest.mark.parametrize(
    "batch_size, world_size",
    [(2**32, 2**32), (2**62, 4), (2**63 - 1, 2), (3, 2**62)],
)
def test_global_batch_overflow_is_a_value_error(batch_size, world_size):
    """Was SIGFPE: batch_size * world_size wrapped around, then divided by zero."""
    with pytest.raises(ValueError, match="batch_size \\* world_size = .* overflows"):
        build(batch_size=batch_size, world_size=world_size)


def test_uint64_ids_beyond_int64_are_reported_as_passed():
    languages = np.array([0, 0, 2**63 + 5, 1], dtype=np.uint64)
    with pytest.raises(ValueError, match="languages must be ids below 2\\*\\*63, got 9223372036854775813 at row 2"):
        build(languages=languages)


def test_uint64_ids_below_int64_give_the_same_batches_as_int64():
    languages, groups = make_pairs(60, 3, [1, 1, 1], seed=0)
    signed = HybridSampler(languages, groups, 4, seed=2)
    unsigned = HybridSampler(languages.astype(np.uint64), groups.astype(np.uint32), 4, seed=2)
    assert np.array_equal(signed.epoch_batches()[0], unsigned.epoch_batches()[0])
    assert signed.state_dict() == unsigned.state_dict()


@pytest.mark.parametrize("lang_exponent", [1e308, -1e308, 745.0, -745.0, 5e-324])
def test_extreme_language_exponents_finish_and_favour_the_extreme_language(lang_exponent):
    """Was an endless loop: NaN weights cast to int64 in the apportioning."""
    sizes = np.array([40, 20, 10])
    languages = np.repeat(np.arange(3), sizes)
    groups = np.concatenate([np.arange(n) for n in sizes])
    sampler = HybridSampler(languages, groups, 5, mode="xx", lang_exponent=lang_exponent)
    counts = np.bincount(sampler.batch_languages(), minlength=3)
    if abs(lang_exponent) > 1:
        assert counts[0 if lang_exponent > 0 else 2] == len(sampler)
    else:  # a tiny exponent is uniform
        assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize("mode", ["xx", "xy", "hybrid", "mixed"])
def test_threads_sharing_one_sampler_get_the_same_batches(mode):
    """Was heap corruption: epoch_batches() from several threads shared the stream caches."""
    languages, groups = make_pairs(400, 5, [1, 0.9, 0.8, 0.7, 0.6], seed=3)
    sampler = HybridSampler(languages, groups, 8, mode=mode, seed=5)
    expected_queries, expected_passages = sampler.epoch_batches()
    results = [None] * 6

    def run(slot):
        results[slot] = [sampler.epoch_batches() for _ in range(10)] + [list(sampler)]

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(len(results))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for *epochs, iterated in results:
        for queries, passages in epochs:
            assert np.array_equal(queries, expected_queries)
            assert np.array_equal(passages, expected_passages)
        assert np.array_equal(np.array([batch[0] for batch in iterated]), expected_queries)


def test_every_iter_is_an_independent_iterator():
    """Was one shared position: nested loops never ended, zip gave the wrong count."""
    languages, groups = make_pairs(100, 4, [1, 1, 1, 1], seed=5)
    sampler = HybridSampler(languages, groups, 4, seed=1)
    n = len(sampler)
    assert sum(1 for _ in sampler for _ in sampler) == n * n
    pairs = list(zip(iter(sampler), iter(sampler)))
    assert len(pairs) == n
    assert all(np.array_equal(a[0], b[0]) for a, b in pairs)


def test_state_follows_the_newest_iterator():
    languages, groups = make_pairs(100, 4, [1, 1, 1, 1], seed=5)
    sampler = HybridSampler(languages, groups, 4, seed=1)
    first = iter(sampler)
    next(first)
    second = iter(sampler)
    for _ in range(3):
        next(second)
    next(first)  # an older iterator no longer moves the state
    assert sampler.state_dict()["position"] == 3


@pytest.mark.parametrize(
    "change, error, pattern",
    [
        ({"position": 10**6}, ValueError, "state position must be in \\[0, "),
        ({"position": -1}, ValueError, "state position must be in"),
        ({"position": 1.5}, TypeError, "state\\['position'\\] must be an integer, got 1.5"),
        ({"epoch": -1}, ValueError, "state epoch must be >= 0"),
        ({"seed": 2}, ValueError, "state was saved with seed=2 but this sampler has seed=1"),
        ({"mode": "xx"}, ValueError, "state was saved with mode=xx but this sampler has mode=hybrid"),
        ({"mode": "mixed"}, ValueError, "state was saved with mode=mixed but this sampler has mode=hybrid"),
        ({"mode": "bad"}, ValueError, "mode must be 'xx', 'xy', 'hybrid' or 'mixed'"),
        ({"drop_last": False}, ValueError, "drop_last=False but this sampler has drop_last=True"),
        ({"drop_last": "yes"}, TypeError, "state\\['drop_last'\\] must be True or False, got 'yes'"),
        ({"data_digest": "0" * 16}, ValueError, "data_digest"),
    ],
)
def test_load_state_dict_refuses_a_bad_state_naming_the_key(change, error, pattern):
    languages, groups = make_pairs(100, 4, [1, 1, 1, 1], seed=5)
    sampler = HybridSampler(languages, groups, 4, seed=1)
    with pytest.raises(error, match=pattern):
        sampler.load_state_dict({**sampler.state_dict(), **change})


def test_load_state_dict_needs_epoch_and_position():
    languages, groups = make_pairs(100, 4, [1, 1, 1, 1], seed=5)
    sampler = HybridSampler(languages, groups, 4, seed=1)
    with pytest.raises(ValueError, match="state is missing \\['position'\\]"):
        sampler.load_state_dict({"epoch": 0})
    with pytest.raises(TypeError, match="state must be a dict"):
        sampler.load_state_dict([("epoch", 0)])


@pytest.mark.parametrize("epoch, error", [(-1, ValueError), (1.0, TypeError), (2**63, ValueError)])
def test_set_epoch_checks_its_argument(epoch, error):
    sampler = build()
    with pytest.raises(error, match="epoch"):
        sampler.set_epoch(epoch)
