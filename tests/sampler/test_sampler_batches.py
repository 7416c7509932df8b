"""HybridSampler: batch composition, epoch length, determinism, resume, ranks, statistics."""

import hashlib
import math

import numpy as np
import pytest
from hbt_fast import HybridSampler
from hbt_fast.testing import ReferenceHybridSampler
from hypothesis import given, settings
from hypothesis import strategies as st
from sampler_cases import MODES, check_batch, epoch_rows, make_pairs, pair_sets


@settings(max_examples=60, deadline=None)
@given(pairs=pair_sets, batch_size=st.integers(1, 8), mode=st.sampled_from(MODES),
       alpha=st.floats(0.0, 1.0), seed=st.integers(0, 2**64 - 1), epoch=st.integers(0, 1000))
@pytest.mark.filterwarnings("ignore:languages .* have fewer than")
def test_batches_follow_composition_rules(pairs, batch_size, mode, alpha, seed, epoch):
    languages, groups = pairs
    try:
        sampler = HybridSampler(languages, groups, batch_size, mode=mode, alpha=alpha, seed=seed)
    except ValueError as error:  # data too small for this mode: must say which limit
        assert "exceeds" in str(error) or "no group has pairs in two languages" in str(error)
        return
    sampler.set_epoch(epoch)
    kinds = [check_batch(q, p, languages, groups, batch_size, mode) for q, p in sampler]
    assert len(kinds) == len(sampler)
    if mode != "hybrid":
        assert set(kinds) == {mode}
    batch_languages = sampler.batch_languages()
    assert np.array_equal(batch_languages == -1, np.array(kinds) != "xx")


@settings(max_examples=30, deadline=None)
@given(pairs=pair_sets, batch_size=st.integers(1, 6), mode=st.sampled_from(MODES),
       seed=st.integers(0, 1000))
@pytest.mark.filterwarnings("ignore:languages .* have fewer than")
def test_reference_follows_the_same_rules(pairs, batch_size, mode, seed):
    languages, groups = pairs
    try:
        sampler = HybridSampler(languages, groups, batch_size, mode=mode, seed=seed)
    except ValueError:
        return
    reference = ReferenceHybridSampler(languages, groups, batch_size, mode=mode, seed=seed)
    batches = list(reference.epoch_batches(0))
    assert len(batches) == len(reference) == len(sampler)
    for q, p in batches:
        check_batch(q, p, languages, groups, batch_size, mode)


def expected_length(languages, groups, global_batch, mode, alpha, drop_last):
    _, language_sizes = np.unique(languages, return_counts=True)
    xx_pairs = language_sizes[language_sizes >= global_batch].sum()
    _, group_sizes = np.unique(groups, return_counts=True)
    xy_pairs = group_sizes[group_sizes >= 2].sum()
    pairs = {"xx": xx_pairs, "xy": xy_pairs, "hybrid": alpha * xx_pairs + (1 - alpha) * xy_pairs,
             "mixed": len(languages)}[mode]
    return max(1, (math.floor if drop_last else math.ceil)(pairs / global_batch))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("drop_last", [True, False])
@pytest.mark.parametrize("world_size", [1, 3])
def test_len_is_exact_and_equal_on_every_rank(mode, drop_last, world_size):
    languages, groups = make_pairs(97, 5, [1, 0.9, 0.7, 0.5, 0.4], seed=1)
    lengths = set()
    for rank in range(world_size):
        sampler = HybridSampler(languages, groups, 7, mode=mode, alpha=0.3, rank=rank,
                                world_size=world_size, drop_last=drop_last, seed=3)
        for epoch in range(3):
            sampler.set_epoch(epoch)
            lengths.add(len(list(sampler)))
        lengths.add(len(sampler))
    assert lengths == {expected_length(languages, groups, 7 * world_size, mode, 0.3, drop_last)}


@pytest.mark.parametrize("mode", ["hybrid", "mixed"])
def test_same_seed_and_epoch_give_same_batches(mode):
    languages, groups = make_pairs(200, 6, [1, 1, 0.8, 0.6, 0.5, 0.5], seed=2)
    first = HybridSampler(languages, groups, 16, mode=mode, seed=11)
    second = HybridSampler(languages, groups, 16, mode=mode, seed=11)
    for epoch in (0, 5):
        first.set_epoch(epoch)
        second.set_epoch(epoch)
        assert all(np.array_equal(a, b) for a, b in zip(epoch_rows(first), epoch_rows(second)))
    other_epoch = epoch_rows(first)  # epoch 5 again
    first.set_epoch(6)
    assert not np.array_equal(epoch_rows(first)[0], other_epoch[0])
    third = HybridSampler(languages, groups, 16, mode=mode, seed=12)
    third.set_epoch(5)
    assert not np.array_equal(epoch_rows(third)[0], other_epoch[0])


@pytest.mark.parametrize("mode", ["hybrid", "mixed"])
def test_batches_are_the_same_on_every_platform(mode):
    """Golden digest of a fixed configuration: the RNG is integer-only, so any platform or
    compiler must reproduce these exact rows. If this fails after an intended change to the
    sampling rules, update the digest and say so in the changelog (it breaks resumption)."""
    languages, groups = make_pairs(300, 5, [1, 0.9, 0.8, 0.7, 0.6], seed=0)
    sampler = HybridSampler(languages, groups, 8, mode=mode, alpha=0.5, seed=123)
    sampler.set_epoch(2)
    queries, passages = sampler.epoch_batches()
    digest = hashlib.sha256(queries.tobytes() + passages.tobytes()).hexdigest()[:16]
    assert digest == GOLDEN_DIGESTS[mode]


GOLDEN_DIGESTS = {"hybrid": "b3f34fd8388d2553", "mixed": "4d41cb880be4758f"}


@pytest.mark.parametrize("alpha, mode", [(1.0, "xx"), (0.0, "xy")])
@pytest.mark.parametrize("rank", [0, 1])
def test_hybrid_at_alpha_1_or_0_draws_the_batches_of_xx_or_xy(alpha, mode, rank):
    """The experiments' alpha sweep reuses the X-X and X-Y runs as its ends on this promise."""
    languages, groups = make_pairs(300, 5, [1, 0.9, 0.8, 0.7, 0.6], seed=0)
    hybrid = HybridSampler(languages, groups, 8, mode="hybrid", alpha=alpha, seed=7, rank=rank, world_size=2)
    plain = HybridSampler(languages, groups, 8, mode=mode, seed=7, rank=rank, world_size=2)
    for epoch in (0, 3):
        hybrid.set_epoch(epoch)
        plain.set_epoch(epoch)
        assert len(hybrid) == len(plain)
        for ours, theirs in zip(hybrid.epoch_batches(), plain.epoch_batches()):
            np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("mode", ["hybrid", "mixed"])
@pytest.mark.parametrize("stop_after", [0, 1, 13, 40])
def test_resume_equals_uninterrupted_run(stop_after, mode):
    languages, groups = make_pairs(150, 5, [1, 1, 0.7, 0.6, 0.5], seed=4)
    uninterrupted = HybridSampler(languages, groups, 6, mode=mode, seed=9)
    uninterrupted.set_epoch(3)
    expected = list(uninterrupted)

    interrupted = HybridSampler(languages, groups, 6, mode=mode, seed=9)
    interrupted.set_epoch(3)
    iterator = iter(interrupted)
    seen = [next(iterator) for _ in range(stop_after)]
    state = interrupted.state_dict()
    assert state["position"] == stop_after and state["epoch"] == 3

    resumed = HybridSampler(languages, groups, 6, mode=mode, seed=9)
    resumed.load_state_dict(state)
    got = seen + list(resumed)
    assert len(got) == len(expected)
    for (q, p), (eq, ep) in zip(got, expected):
        assert np.array_equal(q, eq) and np.array_equal(p, ep)


def test_each_iteration_starts_at_the_first_batch_unless_resumed():
    languages, groups = make_pairs(100, 4, [1, 1, 1, 1], seed=5)
    sampler = HybridSampler(languages, groups, 4, seed=1)
    first = next(iter(sampler))[0]
    assert np.array_equal(next(iter(sampler))[0], first)  # a peek does not move the next loop
    state = {**sampler.state_dict(), "position": 3}
    sampler.load_state_dict(state)
    resumed = next(iter(sampler))[0]
    assert np.array_equal(resumed, sampler.epoch_batches()[0][3])


def test_load_state_dict_rejects_a_different_configuration():
    languages, groups = make_pairs(100, 4, [1, 1, 1, 1], seed=5)
    state = HybridSampler(languages, groups, 4, seed=1).state_dict()
    with pytest.raises(ValueError, match="seed"):
        HybridSampler(languages, groups, 4, seed=2).load_state_dict(state)
    with pytest.raises(ValueError, match="missing"):
        HybridSampler(languages, groups, 4, seed=1).load_state_dict({"epoch": 0})
    with pytest.raises(ValueError, match="position"):
        HybridSampler(languages, groups, 4, seed=1).load_state_dict({**state, "position": 10**6})
    with pytest.raises(ValueError, match="data_digest"):  # same size, other data
        HybridSampler(np.roll(languages, 1), np.roll(groups, 1), 4, seed=1).load_state_dict(state)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("world_size", [2, 3])
def test_rank_slices_are_disjoint_and_form_the_global_batch(mode, world_size):
    languages, groups = make_pairs(240, 5, [1, 1, 0.9, 0.8, 0.8], seed=6)
    batch_size = 5
    single = HybridSampler(languages, groups, batch_size * world_size, mode=mode, seed=4)
    ranks = [HybridSampler(languages, groups, batch_size, mode=mode, seed=4, rank=r,
                           world_size=world_size) for r in range(world_size)]
    for sampler in [single, *ranks]:
        sampler.set_epoch(1)
    global_queries, global_passages = epoch_rows(single)
    rank_rows = [epoch_rows(sampler) for sampler in ranks]
    assert np.array_equal(np.concatenate([q for q, _ in rank_rows], axis=1), global_queries)
    assert np.array_equal(np.concatenate([p for _, p in rank_rows], axis=1), global_passages)
    for step in range(len(single)):  # the gathered batch has distinct groups
        assert len(np.unique(groups[global_queries[step]])) == batch_size * world_size


def binomial_bound(n, p, sigmas=5.0):
    return sigmas * math.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 0.6, 1.0])
def test_alpha_is_the_frequency_of_xx_batches(alpha):
    languages, groups = make_pairs(4000, 4, [1, 1, 1, 1], seed=7)
    sampler = HybridSampler(languages, groups, 4, alpha=alpha, seed=8)
    xx = 0
    for epoch in range(3):
        sampler.set_epoch(epoch)
        xx += int(np.sum(sampler.batch_languages() >= 0))
    total = 3 * len(sampler)
    assert abs(xx - alpha * total) <= binomial_bound(total, alpha)


@pytest.mark.parametrize("lang_exponent", [0.0, 0.3, 1.0])
def test_language_frequencies_follow_the_weights(lang_exponent):
    sizes = np.array([2000, 800, 300, 100])
    languages = np.repeat(np.arange(4), sizes)
    groups = np.concatenate([np.arange(n) for n in sizes])
    sampler = HybridSampler(languages, groups, 10, mode="xx", lang_exponent=lang_exponent, seed=1)
    counts = np.bincount(sampler.batch_languages(), minlength=4)
    weights = sizes**lang_exponent / np.sum(sizes**lang_exponent)
    assert np.all(np.abs(counts - weights * len(sampler)) <= 1.0)


def test_xy_epoch_uses_every_pair_as_query_once_with_full_coverage():
    num_groups, num_languages, batch_size = 60, 4, 6
    languages = np.tile(np.arange(num_languages), num_groups)
    groups = np.repeat(np.arange(num_groups), num_languages)
    sampler = HybridSampler(languages, groups, batch_size, mode="xy", seed=2)
    queries, passages = sampler.epoch_batches()
    assert np.array_equal(np.sort(queries.ravel()), np.arange(len(languages)))
    # passage languages are spread over the other languages
    pairs = np.stack([languages[queries.ravel()], languages[passages.ravel()]], axis=1)
    assert len({tuple(p) for p in pairs.tolist()}) == num_languages * (num_languages - 1)


def test_xx_epoch_with_proportional_weights_uses_each_pair_about_once():
    languages, groups = make_pairs(500, 5, [1, 0.8, 0.6, 0.4, 0.3], seed=3)
    batch_size, num_languages = 10, 5
    sampler = HybridSampler(languages, groups, batch_size, mode="xx", lang_exponent=1.0, seed=5)
    used = sampler.epoch_batches()[0].ravel()
    # Quotas are rounded per language, so a language may start a second pass for one batch.
    repeats = len(used) - len(np.unique(used))
    assert repeats <= num_languages * batch_size
    assert len(np.unique(used)) >= len(languages) - 2 * num_languages * batch_size


def test_small_language_is_left_out_of_xx_with_a_warning():
    languages = np.array([0] * 20 + [1] * 10 + [2] * 3)
    groups = np.concatenate([np.arange(20), np.arange(10), np.arange(3)])
    with pytest.warns(UserWarning, match=r"languages \[2\] have fewer than"):
        sampler = HybridSampler(languages, groups, 8, mode="hybrid", seed=0)
    assert sampler.xx_languages == [0, 1]
    for epoch in range(5):
        sampler.set_epoch(epoch)
        assert set(sampler.batch_languages().tolist()) <= {-1, 0, 1}


@pytest.mark.parametrize("batch_size", [4, 32])
def test_xy_epoch_uses_each_pair_once_under_skewed_coverage(batch_size):
    """Groups in 2 to 30 languages (Zipf-like): an X-Y epoch makes almost every pair the
    query once. Each layer leaves out less than one global batch, so the epoch runs at most
    one batch per layer into the next pass, and only those rows can repeat."""
    coverage = 1.0 / np.arange(1, 31) ** 0.9
    languages, groups = make_pairs(3000, 30, coverage / coverage[0], seed=8)
    sampler = HybridSampler(languages, groups, batch_size, mode="xy", seed=1)
    _, group_sizes = np.unique(groups, return_counts=True)
    cross_pairs = group_sizes[group_sizes >= 2].sum()
    queries = sampler.epoch_batches()[0].ravel()
    layers = group_sizes.max()
    assert len(queries) - len(np.unique(queries)) <= layers * batch_size
    assert len(np.unique(queries)) >= cross_pairs - 2 * layers * batch_size


@pytest.mark.parametrize("mode", MODES)
def test_batches_carry_their_kind_and_language(mode):
    languages, groups = make_pairs(200, 4, [1, 1, 0.8, 0.6], seed=9)
    sampler = HybridSampler(languages, groups, 8, mode=mode, seed=3)
    batches = list(sampler)
    assert [b.language for b in batches] == sampler.batch_languages().tolist()
    for batch in batches:
        query_rows, passage_rows = batch  # still unpacks as the pinned pair
        assert batch.kind == check_batch(query_rows, passage_rows, languages, groups, 8, mode)
        assert batch.query_rows is query_rows and batch.passage_rows is passage_rows
        if batch.kind == "xx":
            assert batch.language == languages[query_rows[0]]
        else:
            assert batch.language == -1


def test_batch_languages_of_any_epoch_leave_the_current_one():
    languages, groups = make_pairs(200, 4, [1, 1, 0.8, 0.6], seed=9)
    sampler = HybridSampler(languages, groups, 8, seed=3)
    later = sampler.batch_languages(5)
    assert sampler.epoch == 0 and not np.array_equal(later, sampler.batch_languages())
    sampler.set_epoch(5)
    assert [b.language for b in sampler] == later.tolist() == sampler.batch_languages(5).tolist()
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        sampler.batch_languages(-1)


def test_mixed_epoch_uses_every_pair_once_and_mixes_languages():
    """A full grid cut into layers without remainder: the epoch is exactly one pass, so each
    row is query (and passage) once, and a batch's rows come from several languages."""
    num_groups, num_languages, batch_size = 60, 4, 6
    languages = np.tile(np.arange(num_languages), num_groups)
    groups = np.repeat(np.arange(num_groups), num_languages)
    sampler = HybridSampler(languages, groups, batch_size, mode="mixed", seed=2)
    queries, passages = sampler.epoch_batches()
    assert np.array_equal(queries, passages)
    assert np.array_equal(np.sort(queries.ravel()), np.arange(len(languages)))
    languages_per_batch = np.array([len(np.unique(languages[q])) for q in queries])
    # Six rows in independent uniform languages share one with probability 4 / 4**6.
    assert np.mean(languages_per_batch >= 2) >= 0.9


@pytest.mark.parametrize("batch_size", [4, 32])
def test_mixed_epoch_uses_each_pair_once_under_skewed_coverage(batch_size):
    """Groups in 1 to 30 languages (Zipf-like), many in one language only: a mixed epoch
    uses almost every pair once, single-language groups included. Each layer leaves out less
    than one global batch, and only the epoch's run into the next pass can repeat rows."""
    coverage = 1.0 / np.arange(1, 31) ** 0.9
    languages, groups = make_pairs(3000, 30, coverage / coverage[0], seed=8)
    singles = np.arange(500)  # groups present in one language only, ids beyond the others'
    languages = np.concatenate([languages, languages[singles]])
    groups = np.concatenate([groups, groups.max() + 1 + singles])
    sampler = HybridSampler(languages, groups, batch_size, mode="mixed", seed=1)
    _, group_sizes = np.unique(groups, return_counts=True)
    queries = sampler.epoch_batches()[0].ravel()
    layers = group_sizes.max()
    assert len(queries) - len(np.unique(queries)) <= layers * batch_size
    assert len(np.unique(queries)) >= len(languages) - 2 * layers * batch_size
    single_rows = np.flatnonzero(np.isin(groups, np.unique(groups)[group_sizes == 1]))
    assert np.isin(single_rows, queries).mean() >= 0.9


def test_mixed_batches_match_the_reference_in_distribution():
    """C++ and the numpy reference draw different random numbers, so compare what the rule
    implies: each language's rows per epoch (its pairs, up to the layers' remainders) and
    the mean number of languages in a batch."""
    languages, groups = make_pairs(2000, 5, [1, 0.8, 0.6, 0.4, 0.2], seed=10)
    batch_size = 8
    sampler = HybridSampler(languages, groups, batch_size, mode="mixed", seed=4)
    reference = ReferenceHybridSampler(languages, groups, batch_size, mode="mixed", seed=4)
    pair_counts = np.bincount(languages)
    means = []
    for rows in (sampler.epoch_batches()[0], np.array([q for q, _ in reference.epoch_batches(0)])):
        assert len(rows) == len(sampler) == len(reference)
        remainder_bound = 2 * 5 * batch_size  # < one global batch per layer, twice
        assert np.all(np.abs(np.bincount(languages[rows.ravel()], minlength=len(pair_counts))
                             - pair_counts) <= remainder_bound)
        means.append(np.mean([len(np.unique(languages[q])) for q in rows]))
    # about 1000 batches, a per-batch spread below 1 language: the standard error is < 0.03
    assert abs(means[0] - means[1]) < 0.15


def test_mixed_ignores_alpha_and_lang_exponent():
    """Documented: only hybrid reads alpha, only X-X batches read lang_exponent."""
    languages, groups = make_pairs(200, 4, [1, 0.8, 0.6, 0.4], seed=11)
    default = HybridSampler(languages, groups, 8, mode="mixed", seed=3)
    other = HybridSampler(languages, groups, 8, mode="mixed", alpha=0.0, lang_exponent=2.5, seed=3)
    assert len(default) == len(other)
    assert all(np.array_equal(a, b) for a, b in zip(default.epoch_batches(), other.epoch_batches()))


def test_mixed_uses_a_language_too_small_for_xx_without_a_warning():
    languages = np.array([0] * 20 + [1] * 3)
    groups = np.concatenate([np.arange(20), np.arange(100, 103)])
    sampler = HybridSampler(languages, groups, 8, mode="mixed", seed=0)  # warnings are errors
    assert len(sampler) == len(languages) // 8
    seen = set()
    for epoch in range(5):
        sampler.set_epoch(epoch)
        seen.update(sampler.epoch_batches()[0].ravel().tolist())
    assert {20, 21, 22} <= seen
