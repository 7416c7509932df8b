"""MultiSourceSampler: each batch from one source and of a kind that source serves, exact
shares and epoch length, each source read as the endless stream of its own sampler's epochs,
(seed, epoch, position) determinism, ranks that agree, and a resume that jumps."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hbt_fast.sampler import HybridSampler, MultiSourceSampler
from sampler_cases import check_batch


def parallel(num_groups, languages):
    """Every group in every language, rows grouped by group."""
    return (np.tile(np.asarray(languages, dtype=np.int64), num_groups),
            np.repeat(np.arange(num_groups, dtype=np.int64), len(languages)))


XQUAD = parallel(40, [0, 1, 2])  # 120 pairs, X-X source
TATOEBA = parallel(120, [1, 3, 4, 5])  # 480 pairs, X-Y source


def joined(sources):
    return (np.concatenate([s[0] for s in sources]), np.concatenate([s[1] for s in sources]))


def source_of(rows, offsets):
    return np.searchsorted(offsets, rows, side="right") - 1


def test_each_batch_comes_from_one_source_of_the_kind_it_serves():
    sampler = MultiSourceSampler([XQUAD, TATOEBA], 8, kinds=["xx", "xy"], alpha=0.5, seed=4)
    languages, _ = joined([XQUAD, TATOEBA])
    groups = np.concatenate([XQUAD[1], TATOEBA[1] + 10_000])  # apart, as the sampler keeps them
    expected = {0: "xx", 1: "xy"}
    for batch in sampler:
        sources = set(source_of(np.concatenate(batch), sampler.offsets).tolist())
        assert len(sources) == 1
        source = sources.pop()
        assert check_batch(batch[0], batch[1], languages, groups, 8) == expected[source] == batch.kind
        assert batch.language == (languages[batch[0][0]] if batch.kind == "xx" else -1)


def test_alpha_splits_the_kinds_and_weights_split_the_sources_of_a_kind():
    both = parallel(60, [0, 1])
    sampler = MultiSourceSampler([XQUAD, TATOEBA, both], 8, kinds=["xx", "xy", "both"],
                                 weights=[1.0, 1.0, 3.0], alpha=0.25, seed=1)
    lengths = {(s, k): len(sub) for s, k, sub in sampler.subs}
    l_xx, l_xy = lengths[0, "xx"] + lengths[2, "xx"], lengths[1, "xy"] + lengths[2, "xy"]
    assert len(sampler) == round(0.25 * l_xx + 0.75 * l_xy)
    counts = dict(zip([(s, k) for s, k, _ in sampler.subs], sampler.counts.tolist()))
    assert sum(counts.values()) == len(sampler)
    exact = {(0, "xx"): 0.25 / 4, (2, "xx"): 0.25 * 3 / 4, (1, "xy"): 0.75 / 4, (2, "xy"): 0.75 * 3 / 4}
    for key, share in exact.items():
        assert abs(counts[key] - share * len(sampler)) < 1
    seen = {}
    for batch in sampler:
        key = (int(source_of(batch[0][:1], sampler.offsets)[0]), batch.kind)
        seen[key] = seen.get(key, 0) + 1
    assert seen == {key: count for key, count in counts.items() if count}


def test_proportional_weights_pass_once_over_each_source_per_epoch():
    sampler = MultiSourceSampler([XQUAD, parallel(90, [0, 1, 2])], 6, mode="xx", seed=2)
    assert sampler.counts.tolist() == [len(sub) for _, _, sub in sampler.subs]
    assert len(sampler) == sum(len(sub) for _, _, sub in sampler.subs)


def test_each_source_is_the_stream_of_its_own_samplers_epochs():
    """Uniform weights over-sample the small source: it runs on into its next epochs, and the
    large one continues where the last epoch left it."""
    sampler = MultiSourceSampler([XQUAD, TATOEBA], 8, kinds=["xx", "xy"], weights="uniform", seed=9)
    served = {0: [], 1: []}
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for batch in sampler:
            source = int(source_of(batch[0][:1], sampler.offsets)[0])
            served[source].append(batch[0] - sampler.offsets[source])
    for source, _, sub in sampler.subs:
        stream = []
        for epoch in range(len(served[source]) // len(sub) + 1):
            sub.set_epoch(epoch)
            stream += [b[0] for b in sub]
        assert len(served[source]) > 0
        for got, expected in zip(served[source], stream):
            np.testing.assert_array_equal(got, expected)
    assert len(served[0]) > len(sampler.subs[0][2])  # the small source went past one epoch


def test_batches_depend_on_seed_and_epoch_only():
    def epoch(seed, number):
        sampler = MultiSourceSampler([XQUAD, TATOEBA], 8, kinds=["xx", "xy"], seed=seed)
        sampler.set_epoch(number)
        return [np.concatenate(b) for b in sampler]

    first = epoch(3, 0)
    assert all(np.array_equal(a, b) for a, b in zip(first, epoch(3, 0)))
    assert not all(np.array_equal(a, b) for a, b in zip(first, epoch(3, 1)))
    assert not all(np.array_equal(a, b) for a, b in zip(first, epoch(4, 0)))


def test_ranks_of_a_step_share_source_kind_and_language_and_hold_distinct_groups():
    languages, _ = joined([XQUAD, TATOEBA])
    groups = np.concatenate([XQUAD[1], TATOEBA[1] + 10_000])
    ranks = [MultiSourceSampler([XQUAD, TATOEBA], 4, kinds=["xx", "both"], seed=5, rank=rank, world_size=2)
             for rank in range(2)]
    assert len(ranks[0]) == len(ranks[1])
    for zero, one in zip(*ranks):
        assert (zero.kind, zero.language) == (one.kind, one.language)
        rows = [np.concatenate([zero[0], one[0]]), np.concatenate([zero[1], one[1]])]
        assert len(set(source_of(np.concatenate(rows), ranks[0].offsets).tolist())) == 1
        check_batch(rows[0], rows[1], languages, groups, 8)


def test_a_resumed_sampler_continues_the_epoch_without_replaying_it():
    make = lambda: MultiSourceSampler([XQUAD, TATOEBA], 8, kinds=["xx", "xy"], seed=6)  # noqa: E731
    sampler = make()
    sampler.set_epoch(2)
    iterator = iter(sampler)
    for _ in range(7):
        next(iterator)
    state = json.loads(json.dumps(sampler.state_dict()))  # as a checkpoint stores it
    assert (state["epoch"], state["position"]) == (2, 7)
    rest = list(iterator)
    resumed = make()
    resumed.load_state_dict(state)
    again = list(resumed)
    assert len(again) == len(rest) == len(sampler) - 7
    for a, b in zip(rest, again):
        np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))
    assert resumed.state_dict()["position"] == 0  # the epoch ran out
    assert len(list(resumed)) == len(sampler)  # and the next iteration starts it again


def test_a_loaded_position_applies_to_the_next_iteration_only_as_for_hybrid_sampler():
    samplers = [MultiSourceSampler([XQUAD, TATOEBA], 8, kinds=["xx", "both"], seed=2),
                HybridSampler(joined([XQUAD, TATOEBA])[0], np.concatenate([XQUAD[1], TATOEBA[1] + 10_000]), 8,
                              seed=2)]
    for sampler in samplers:
        first = [np.concatenate(b) for b in sampler]
        sampler.load_state_dict({"epoch": 0, "position": 5})
        resumed = iter(sampler)
        np.testing.assert_array_equal(np.concatenate(next(resumed)), first[5])
        next(resumed)
        assert sampler.state_dict()["position"] == 7
        again = iter(sampler)
        np.testing.assert_array_equal(np.concatenate(next(again)), first[0])
        assert sampler.state_dict()["position"] == 1  # the newest iterator's


def test_a_state_for_other_sources_or_settings_is_refused_naming_what_differs():
    state = MultiSourceSampler([XQUAD, TATOEBA], 8, kinds=["xx", "xy"], seed=6).state_dict()
    other_data = MultiSourceSampler([XQUAD, parallel(120, [1, 3, 4, 6])], 8, kinds=["xx", "xy"], seed=6,
                                    names=["xquad", "tatoeba"])
    with pytest.raises(ValueError, match=r"tatoeba \(X-Y batches\): .*data_digest"):
        other_data.load_state_dict(state)
    uniform = MultiSourceSampler([XQUAD, TATOEBA], 8, kinds=["xx", "xy"], seed=6, weights="uniform")
    with pytest.raises(ValueError, match=r"state\['weights'\] is 'proportional'"):
        uniform.load_state_dict(state)


@pytest.mark.parametrize("arguments, error, message", [
    (dict(kinds=["xy", "xy"]), ValueError,
     r"mode 'hybrid' draws X-X batches \(alpha 0.5\), but no source serves them: source 1 \(X-Y only\)"),
    (dict(kinds=["xx", "xy"], alpha=1.0), ValueError,
     r"source 2 serves X-Y batches only, and mode 'hybrid' with alpha 1.0 draws none"),
    (dict(kinds=["xx", "xy"], mode="xy"), ValueError, r"source 1 serves X-X batches only, but mode 'xy'"),
    (dict(kinds=["both", "both"], mode="mixed", names=["a", "b"]), None, None),
    (dict(kinds=["xx", "both"], mode="mixed"), ValueError, r"mode 'mixed' draws mixed batches"),
    (dict(kinds=["xx"]), ValueError, r"kinds must give one kind per source \(2\), got 1"),
    (dict(kinds=["xx", "yy"]), ValueError, r"source 2 has kind 'yy'; kinds are \['xx', 'xy', 'both'\]"),
    (dict(kinds="xx"), TypeError, r"kinds must be a sequence"),
    (dict(weights="equal"), ValueError, r"weights must be one of \['proportional', 'uniform'\]"),
    (dict(weights=[1.0]), ValueError, r"weights must give one number per source \(2\), got 1"),
    (dict(weights=[1.0, 0.0]), ValueError, r"weights\[1\] must be a finite number > 0, got 0.0"),
    (dict(weights=[1.0, float("nan")]), ValueError, r"weights\[1\] must be a finite number > 0"),
    (dict(weights=[1.0, "2"]), TypeError, r"weights\[\] must be a real number"),
    (dict(alpha=1.5), ValueError, r"alpha"),
    (dict(names=["a"]), ValueError, r"names must name each of the 2 sources"),
])
def test_bad_arguments_are_refused_with_the_reason(arguments, error, message):
    if error is None:
        MultiSourceSampler([XQUAD, TATOEBA], 8, **arguments)
        return
    with pytest.raises(error, match=message):
        MultiSourceSampler([XQUAD, TATOEBA], 8, **arguments)


def test_a_source_that_cannot_serve_its_kind_is_named():
    one_language = parallel(50, [7])  # no cross-lingual group: no X-Y batch possible
    with pytest.raises(ValueError, match=r"^tatoeba cannot serve X-Y batches: "):
        MultiSourceSampler([XQUAD, one_language], 8, kinds=["xx", "xy"], names=["xquad", "tatoeba"])


def test_small_languages_are_reported_per_source():
    small = (np.array([0] * 50 + [1] * 3, dtype=np.int64), np.arange(53, dtype=np.int64))
    with pytest.warns(UserWarning, match=r"^small \(X-X batches\): languages \[1\] have fewer than"):
        MultiSourceSampler([small, TATOEBA], 8, kinds=["xx", "xy"], names=["small", "tatoeba"])


sources = st.lists(st.tuples(st.integers(12, 60), st.integers(2, 4), st.sampled_from(["xx", "xy", "both"])),
                   min_size=1, max_size=4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(described=sources, alpha=st.sampled_from([0.0, 0.3, 1.0]), weights=st.sampled_from(
    ["proportional", "uniform", "given"]), seed=st.integers(0, 2**64 - 1), batch_size=st.integers(2, 8))
def test_property_every_epoch_has_its_exact_length_and_shares(described, alpha, weights, seed, batch_size):
    pairs = [parallel(groups, list(range(first, first + width)))
             for first, (groups, width, _) in enumerate(described)]
    kinds = [kind for _, _, kind in described]
    given_weights = [float(i + 1) for i in range(len(kinds))] if weights == "given" else weights
    try:
        sampler = MultiSourceSampler(pairs, batch_size, kinds=kinds, weights=given_weights, alpha=alpha,
                                     seed=seed)
    except ValueError as error:  # kinds the mode cannot use are refused up front
        assert "serve" in str(error) or "draws" in str(error)
        return
    assert sum(sampler.counts) == len(sampler)
    served = np.zeros(len(sampler.subs), dtype=np.int64)
    keys = {(s, k): j for j, (s, k, _) in enumerate(sampler.subs)}
    for batch in sampler:
        source = int(source_of(batch[0][:1], sampler.offsets)[0])
        assert set(source_of(np.concatenate(batch), sampler.offsets).tolist()) == {source}
        served[keys[source, batch.kind]] += 1
    np.testing.assert_array_equal(served, sampler.counts)
