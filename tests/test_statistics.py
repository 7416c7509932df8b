"""hbt_fast.experiments.statistics.verdict: the pre-registered rule on cases whose outcome is
known without the code (huge effects, exact ties, exact ratios), the interval against the
analytic one of a simulated crossed seeds x questions normal model, and bad input."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from hbt_fast.experiments.statistics import (DEFAULT_SEEDS, MARGINS, TOO_FEW_SEEDS, Verdict,
                                             margin_for, verdict)

Z_95 = 1.6448536269514722  # standard normal quantile of a two-sided 90% interval


def crossed_scores(rng, *, seeds=DEFAULT_SEEDS, groups=200, effect=0.0, seed_sd=0.002,
                   group_sd=0.04, noise_sd=0.02):
    """(treatment, baseline) [seeds, groups] whose paired difference follows the crossed model
    effect + a_seed + b_group + e_seed,group with normal components of the given spreads."""
    baseline = rng.uniform(0.2, 0.9, size=(1, groups)) + rng.normal(0, 0.01, size=(seeds, groups))
    difference = (effect + rng.normal(0, seed_sd, size=(seeds, 1))
                  + rng.normal(0, group_sd, size=(1, groups))
                  + rng.normal(0, noise_sd, size=(seeds, groups)))
    return baseline + difference, baseline


def test_a_huge_gain_is_reproduced_and_a_huge_loss_refuted():
    rng = np.random.default_rng(1)
    better, base = crossed_scores(rng, effect=0.2)
    gain = verdict(better, base)
    assert gain.verdict == "reproduced" and gain.lower > 0.1 and gain.upper < 0.3
    worse, base = crossed_scores(rng, effect=-0.2)
    loss = verdict(worse, base)
    assert loss.verdict == "refuted" and loss.upper < -0.1 and loss.lower > -0.3
    assert gain.seeds == DEFAULT_SEEDS and gain.groups == 200 and gain.confidence == 0.9


def test_zero_mean_noise_much_wider_than_the_margin_is_inconclusive():
    """The differences are centred to mean exactly 0, so the interval sits around 0; its
    half-width (noise 0.2 over 3 seeds x 20 groups, ~0.04) is far beyond the 0.005 margin."""
    rng = np.random.default_rng(2)
    base = rng.uniform(0.2, 0.9, size=(3, 20))
    difference = rng.normal(0, 0.2, size=(3, 20))
    result = verdict(base + difference - difference.mean(), base)
    assert result.estimate == pytest.approx(0.0, abs=1e-12)
    assert result.lower < -0.02 and result.upper > 0.02
    assert result.verdict == "inconclusive"


def test_too_few_seeds_is_inconclusive_whatever_the_interval():
    rng = np.random.default_rng(3)
    better, base = crossed_scores(rng, seeds=2, effect=0.2)
    result = verdict(better, base)
    assert result.verdict == TOO_FEW_SEEDS == "inconclusive (n too small)"
    assert result.lower > 0.1  # the interval is still reported
    assert verdict(better, base, min_seeds=2).verdict == "reproduced"


def test_both_arms_see_the_same_resamples():
    """Queries differ hugely in difficulty, but treatment = baseline + 0.01 query by query: a
    paired resample gives exactly 0.01 every time, however the seeds and questions fall."""
    rng = np.random.default_rng(4)
    base = rng.uniform(0.0, 1.0, size=(5, 50)) + rng.normal(0, 0.3, size=(5, 1))
    result = verdict(base + 0.01, base)
    assert result.lower == pytest.approx(0.01) and result.upper == pytest.approx(0.01)
    assert result.verdict == "reproduced"
    tie = verdict(base, base)
    assert (tie.lower, tie.estimate, tie.upper) == (0.0, 0.0, 0.0)
    assert tie.verdict == "reproduced" and verdict(base, base, margin=0.0).verdict == "inconclusive"


def test_questions_of_a_group_are_resampled_together():
    """Each group's queries repeated three times (parallel questions that score alike): with
    their group labels, the same interval as one query per group; as independent queries, a
    narrower, over-confident one."""
    rng = np.random.default_rng(5)
    treatment, baseline = crossed_scores(rng, groups=40)
    single = verdict(treatment, baseline, seed=7)
    tripled = [np.repeat(arm, 3, axis=1) for arm in (treatment, baseline)]
    labels = np.repeat(np.arange(40) * 11 + 3, 3)
    grouped = verdict(*tripled, groups=labels, seed=7)
    assert (grouped.lower, grouped.upper) == pytest.approx((single.lower, single.upper), rel=1e-9)
    assert grouped.groups == 40
    ungrouped = verdict(*tripled, seed=7)
    assert ungrouped.upper - ungrouped.lower < 0.75 * (grouped.upper - grouped.lower)


def test_interval_matches_the_analytic_one_of_a_crossed_normal_model():
    """Crossed model: Var(mean difference) = s_seed^2 / S + s_group^2 / G + s_noise^2 / (S G).
    The bootstrap's half-width matches z * sqrt(Var) on average, and its 90% intervals cover
    the true effect at the nominal rate (200 simulated studies: 0.9 +- 3.5 standard errors).
    Resampling questions anew within each seed would shrink the group term by S and miss."""
    rng = np.random.default_rng(6)
    seeds, groups, effect = 5, 200, 0.01
    seed_sd, group_sd, noise_sd = 0.002, 0.04, 0.02
    analytic = Z_95 * math.sqrt(seed_sd**2 / seeds + group_sd**2 / groups
                                + noise_sd**2 / (seeds * groups))
    half_widths, covered = [], 0
    for study in range(200):
        treatment, baseline = crossed_scores(rng, seeds=seeds, groups=groups, effect=effect,
                                             seed_sd=seed_sd, group_sd=group_sd, noise_sd=noise_sd)
        result = verdict(treatment, baseline, resamples=1000, seed=study)
        half_widths.append((result.upper - result.lower) / 2)
        covered += result.lower <= effect <= result.upper
    assert np.mean(half_widths) == pytest.approx(analytic, rel=0.1)
    assert abs(covered / 200 - 0.9) <= 3.5 * math.sqrt(0.9 * 0.1 / 200)


def test_relative_margin_for_rank_distance():
    """Rank distance, lower is better, margin 5% of the baseline: the ratio is exact in every
    resample, so 10% lower is reproduced, 3% higher still within the margin, 10% higher refuted."""
    rng = np.random.default_rng(8)
    base = rng.uniform(50, 400, size=(5, 60))
    settings = margin_for("xquad-r/multi/rank_distance")
    assert settings == {"margin": 0.05, "relative": True, "lower_is_better": True}
    lower = verdict(0.9 * base, base, **settings)
    assert lower.verdict == "reproduced" and lower.estimate == pytest.approx(0.1)
    assert lower.lower == pytest.approx(0.1) and lower.upper == pytest.approx(0.1)
    assert verdict(1.03 * base, base, **settings).verdict == "reproduced"
    assert verdict(1.03 * base, base, lower_is_better=True).verdict == "refuted"  # 0.005 absolute
    higher = verdict(1.1 * base, base, **settings)
    assert higher.verdict == "refuted" and higher.upper == pytest.approx(-0.1)
    assert higher.text().startswith("refuted: -10.0% [-10.0%, -10.0%]")


def test_weights_give_a_macro_average():
    """Two languages of 10 and 30 queries, weighted 1 / size: the estimate is the mean of the
    two languages' mean differences, not the mean over all 40 queries."""
    base = np.full((3, 40), 0.5)
    treatment = base.copy()
    treatment[:, :10] += 0.04  # language A: +0.04; language B: 0
    weights = np.r_[np.full(10, 1 / 10), np.full(30, 1 / 30)]
    assert verdict(treatment, base, weights=weights).estimate == pytest.approx(0.02)
    assert verdict(treatment, base).estimate == pytest.approx(0.01)


def test_the_same_seed_gives_the_same_verdict():
    rng = np.random.default_rng(9)
    treatment, baseline = crossed_scores(rng)
    first = verdict(treatment, baseline, seed=3)
    assert verdict(treatment, baseline, seed=3) == first
    other = verdict(treatment, baseline, seed=4)
    assert other.estimate == first.estimate and other.lower != first.lower
    assert isinstance(first, Verdict)


def test_margin_for_knows_the_pre_registered_margins():
    assert margin_for("mono/map@20") == MARGINS["score"] == {
        "margin": 0.005, "relative": False, "lower_is_better": False}
    assert margin_for("tatoeba/accuracy@1")["margin"] == 0.005
    with pytest.raises(ValueError, match="metric 'multi/loss' has no pre-registered margin"):
        margin_for("multi/loss")


SCORES = np.full((3, 4), 0.5)


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"margin": -0.001}, ValueError, r"margin must be in \[0, inf\), got -0.001"),
    ({"margin": float("nan")}, ValueError, "margin must be in"),
    ({"margin": "0.005"}, TypeError, "margin must be a real number, got str"),
    ({"confidence": 0.0}, ValueError, r"confidence must be in \(0, 1\), got 0.0"),
    ({"confidence": 1.0}, ValueError, r"confidence must be in \(0, 1\), got 1.0"),
    ({"confidence": 90}, ValueError, "confidence must be in"),
    ({"confidence": float("nan")}, ValueError, "confidence must be in"),
    ({"baseline": np.full((3, 5), 0.5)}, ValueError,
     r"treatment and baseline must have the same shape .* got \(3, 4\) and \(3, 5\)"),
    ({"treatment": np.full((1, 4), 0.5), "baseline": np.full((1, 4), 0.5)}, ValueError,
     r"treatment has 1 seed\(s\) \(rows\); the bootstrap over seeds needs at least 2"),
    ({"baseline": np.full((1, 4), 0.5)}, ValueError, "baseline has 1 seed"),
    ({"treatment": np.full(4, 0.5)}, ValueError, r"treatment must be a 2-D array \[seeds, queries\]"),
    ({"treatment": np.zeros((3, 0)), "baseline": np.zeros((3, 0))}, ValueError, "treatment has no queries"),
    ({"treatment": [[0.5, float("nan"), 0.5, 0.5]] * 3}, ValueError,
     "treatment must be finite, got nan at seed 0, query 1"),
    ({"baseline": [["a"] * 4] * 3}, TypeError, "baseline must hold numbers"),
    ({"groups": [0, 1, 2]}, ValueError, r"groups must be a 1-D array with one label per query \(4\)"),
    ({"weights": [1, 1, 0, 1]}, ValueError, "weights must be finite and > 0, got 0.0 at query 2"),
    ({"resamples": 10}, ValueError, "resamples must be an integer >= 100, got 10"),
    ({"resamples": 1000.0}, TypeError, "resamples must be an integer >= 100, got 1000.0"),
    ({"seed": -1}, ValueError, "seed must be an integer >= 0, got -1"),
    ({"min_seeds": 1}, ValueError, "min_seeds must be an integer >= 2, got 1"),
    ({"relative": 1}, TypeError, "relative must be True or False, got 1"),
    ({"relative": True, "baseline": np.zeros((3, 4))}, ValueError,
     "a relative margin needs a positive baseline mean"),
])
def test_bad_input_raises_one_error_naming_the_argument(kwargs, error, pattern):
    arguments = {"treatment": SCORES, "baseline": SCORES, **kwargs}
    with pytest.raises(error, match=pattern):
        verdict(arguments.pop("treatment"), arguments.pop("baseline"), **arguments)


ARGUMENTS = ("treatment", "baseline", "groups", "margin", "confidence", "resamples", "seed",
             "min_seeds", "relative")


@settings(max_examples=60, deadline=None)
@given(data=st.data(), seeds=st.integers(1, 6), queries=st.integers(0, 12),
       margin=st.one_of(st.floats(0, 0.1), st.floats(0, 10),
                        st.floats(allow_nan=True, allow_infinity=True)),
       confidence=st.one_of(st.floats(0.01, 0.99), st.floats(0, 1), st.floats(allow_nan=True)),
       relative=st.booleans(), lower_is_better=st.booleans(), seed=st.integers(-2, 2**32))
def test_any_input_gives_a_clear_error_or_a_verdict_that_follows_the_rule(
        data, seeds, queries, margin, confidence, relative, lower_is_better, seed):
    values = arrays(np.float64, (seeds, queries), elements=st.floats(-1e6, 1e6))
    treatment, baseline = data.draw(values), data.draw(values)
    groups = data.draw(st.one_of(st.none(), arrays(np.int64, queries, elements=st.integers(0, 3))))
    try:
        result = verdict(treatment, baseline, groups, margin=margin, confidence=confidence,
                         relative=relative, lower_is_better=lower_is_better, resamples=100, seed=seed)
    except (TypeError, ValueError) as error:
        assert any(name in str(error) for name in ARGUMENTS), str(error)
        return
    assert result.lower <= result.upper
    if seeds < 3:
        assert result.verdict == TOO_FEW_SEEDS
    elif result.lower > -margin:
        assert result.verdict == "reproduced"
    elif result.upper < -margin:
        assert result.verdict == "refuted"
    else:
        assert result.verdict == "inconclusive"
    if not relative:  # the difference is antisymmetric in the arms, resample by resample
        swapped = verdict(baseline, treatment, groups, margin=margin, confidence=confidence,
                          lower_is_better=lower_is_better, resamples=100, seed=seed)
        scale = 1e-9 * (1 + np.abs(treatment).max() + np.abs(baseline).max())
        assert swapped.estimate == pytest.approx(-result.estimate, abs=scale)
        assert (swapped.lower, swapped.upper) == pytest.approx((-result.upper, -result.lower), abs=scale)


def test_a_relative_margin_over_a_baseline_mean_near_zero_is_refused_not_an_overflow():
    # Found by hypothesis: a subnormal baseline mean made the relative difference overflow.
    with pytest.raises(ValueError, match="baseline mean away from 0"):
        verdict(np.ones((2, 1)), np.full((2, 1), 2.22507386e-313), relative=True, seed=0)
