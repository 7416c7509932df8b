"""HybridSampler's Python layer: argument names in errors, defaults, the small-language warning and
the resume state, one case each.

Written to kill mutmut's survivors in ``sampler/sampler.py`` (CONTRIBUTING.md, "Mutation
testing"); expected values come from the arguments themselves or from a second sampler.
"""

import warnings

import numpy as np
import pytest

from hbt_fast import HybridSampler

LANGUAGES = np.array([0, 1] * 6)
GROUPS = np.repeat(np.arange(6), 2)
# Language 2 holds a single pair: too few for an X-X batch of 2 * world_size rows.
SMALL_LANGUAGES = np.append(LANGUAGES, 2)
SMALL_GROUPS = np.append(GROUPS, 0)


def _pairs(batch):
    return batch[0].tolist(), batch[1].tolist()


def test_empty_ids_reach_the_core_as_int64():
    with pytest.raises(ValueError, match="languages must not be empty"):
        HybridSampler(np.array([], dtype=np.float64), [], 1)


@pytest.mark.parametrize("options, message", [
    ({"groups": GROUPS.astype(float)}, r"^groups must hold integer ids, got dtype float64"),
    ({"mode": 3}, r"^mode must be a str, got int"),
    ({"rank": 1.0}, r"^rank must be an integer, got 1\.0"),
    ({"world_size": "2"}, r"^world_size must be an integer, got '2'"),
    ({"drop_last": 1}, r"^drop_last must be True or False, got 1"),
])
def test_wrong_types_name_the_argument(options, message):
    arguments = {"languages": LANGUAGES, "groups": GROUPS, "batch_size": 2, **options}
    with pytest.raises(TypeError, match=message):
        HybridSampler(**arguments)


def test_defaults_and_size_as_given():
    sampler = HybridSampler(LANGUAGES, GROUPS, 2)
    assert (sampler.seed, sampler.num_pairs) == (0, 12)
    assert repr(sampler).startswith("HybridSampler(num_pairs=12, batch_size=2, mode='hybrid'")
    explicit = HybridSampler(LANGUAGES, GROUPS, 2, seed=0)
    assert [_pairs(b) for b in sampler] == [_pairs(b) for b in explicit]


def test_set_epoch_names_epoch():
    with pytest.raises(TypeError, match=r"^epoch must be an integer, got '1'"):
        HybridSampler(LANGUAGES, GROUPS, 2).set_epoch("1")


@pytest.mark.parametrize("mode, alpha, fate", [("xx", 0.5, "are never used"),
                                               ("hybrid", 0.5, "appear only in X-Y batches")])
def test_small_languages_warning_names_them_and_their_fate(mode, alpha, fate):
    with pytest.warns(UserWarning) as record:
        HybridSampler(SMALL_LANGUAGES, SMALL_GROUPS, 2, mode=mode, alpha=alpha, world_size=2)
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith("languages [2] have fewer than batch_size * world_size = 4 pairs")
    assert message.endswith(f"their pairs {fate}")


@pytest.mark.parametrize("mode, alpha", [("xy", 0.5), ("hybrid", 0.0)])
def test_no_warning_when_no_xx_batch_is_drawn(mode, alpha):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HybridSampler(SMALL_LANGUAGES, SMALL_GROUPS, 2, mode=mode, alpha=alpha)


def test_state_dict_counts_pairs_and_batches():
    sampler = HybridSampler(LANGUAGES, GROUPS, 2, mode="xy")
    state = sampler.state_dict()
    assert (state["num_pairs"], state["num_batches"]) == (12, len(sampler))
    with pytest.raises(ValueError, match="num_pairs=11"):
        sampler.load_state_dict({**state, "num_pairs": 11})
    with pytest.raises(ValueError, match="num_batches=99"):
        sampler.load_state_dict({**state, "num_batches": 99})


def test_a_partial_state_resumes_at_its_position():
    sampler = HybridSampler(LANGUAGES, GROUPS, 2, mode="xy", seed=4)
    sampler.load_state_dict({"epoch": 1, "position": 2})
    reference = HybridSampler(LANGUAGES, GROUPS, 2, mode="xy", seed=4)
    reference.set_epoch(1)
    expected = [_pairs(b) for b in reference][2:]
    assert [_pairs(b) for b in sampler] == expected and expected


def test_a_seed_beyond_int64_round_trips_through_the_state():
    sampler = HybridSampler(LANGUAGES, GROUPS, 2, mode="xy", seed=2**63 + 5)
    state = sampler.state_dict()
    assert state["seed"] == 2**63 + 5
    sampler.load_state_dict(state)


@pytest.mark.parametrize("state, error, message", [
    ([], TypeError, r"^state must be a dict, got list"),
    ({"epoch": "0", "position": 0}, TypeError, r"^state\['epoch'\] must be an integer, got '0'"),
    ({"epoch": 0, "position": 0, "num_pairs": "12"}, TypeError,
     r"^state\['num_pairs'\] must be an integer, got '12'"),
    ({"epoch": 0, "position": 0, "data_digest": 5}, TypeError,
     r"^state\['data_digest'\] must be a str, got int"),
])
def test_state_errors_name_the_key(state, error, message):
    with pytest.raises(error, match=message):
        HybridSampler(LANGUAGES, GROUPS, 2).load_state_dict(state)
