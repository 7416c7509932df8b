"""The experiment report's verdicts on hand-built per-query results whose answers are known
without the code: constant per-query differences (every bootstrap resample gives the same
difference, so the interval is that number), a +-0.5 split whose interval follows from the
standard error of a mean, and seed counts below the bootstrap's minimum."""

import math
import re

import numpy as np
import pytest

from hbt_fast.evaluate.per_query import PerQuery
from hbt_fast.experiments.evidence import Evidence
from hbt_fast.experiments.sampling_report import (Rule, alpha_section, claims, effect_section,
                                                  report)

GROUPS = 30
LANGUAGES = np.array(["aa", "bb"])


def run(own_rank, other_rank, multi_ap, rank_distance):
    """A LAReQA result on GROUPS questions in aa and bb: each query's relevant candidate at
    ``own_rank`` among its own language's candidates and ``other_rank`` among the other's
    (numbers, or one per group), its multi AP and rank distance."""
    own = np.broadcast_to(own_rank, GROUPS)
    other = np.broadcast_to(other_rank, GROUPS)
    block = np.zeros((2 * GROUPS, 2), dtype=np.int32)
    block[:GROUPS, 0], block[:GROUPS, 1] = own, other  # aa queries
    block[GROUPS:, 1], block[GROUPS:, 0] = own, other  # bb queries
    return PerQuery("lareqa", {
        "query_id": np.tile([f"q{g}" for g in range(GROUPS)], 2),
        "group": np.tile(np.arange(GROUPS), 2), "language": np.repeat(LANGUAGES, GROUPS),
        "languages": LANGUAGES, "block_rank": block,
        "multi_ap": np.full(2 * GROUPS, multi_ap), "multi_recall": np.ones(2 * GROUPS),
        "best_rank": np.ones(2 * GROUPS, dtype=np.int64),
        "worst_rank": np.full(2 * GROUPS, 1 + rank_distance, dtype=np.int64),
        "k": np.asarray(20), "multi_recall_k": np.asarray(10)})


def evidence(arms, seeds=3):
    return Evidence({(arm, "xquad-r", None): [result] * seeds for arm, result in arms.items()})


STUDY_LIKE = {  # mono AP, cross AP, multi AP, rank distance
    "xx": run(1, 2, 0.6, 10),    # 1, 0.5, 0.6, 10
    "xy": run(2, 1, 0.8, 5),     # 0.5, 1, 0.8, 5
    "hybrid": run(1, 1, 0.8, 4),  # 1, 1, 0.8, 4
}
ARMS = {"xx": "xx", "xy": "xy", "hybrid": "hybrid"}


def verdict_of(line):
    """(verdict, estimate, lower, upper) parsed from a claim line."""
    match = re.search(r"\*\*([^*]+)\*\* ([-+]\d+\.\d+)%? \[([-+]\d+\.\d+)%?, ([-+]\d+\.\d+)%?\]", line)
    assert match, line
    return match.group(1), *map(float, match.groups()[1:])


def test_every_ordering_of_a_study_like_result_is_reproduced_with_its_exact_difference():
    lines = claims(evidence(STUDY_LIKE), "xquad-r", ARMS, Rule())
    expected = [  # by hand from the per-query values above
        ("X-X beats X-Y monolingually", 1 - 0.5),
        ("X-Y beats X-X cross-lingually", 1 - 0.5),
        ("X-Y beats X-X multilingually", 0.8 - 0.6),
        ("hybrid matches or beats X-X monolingually", 0.0),
        ("hybrid matches or beats X-Y cross-lingually", 0.0),
        ("hybrid matches or beats X-X multilingually", 0.8 - 0.6),
        ("hybrid matches or beats X-Y multilingually", 0.0),
        ("hybrid has a lower rank distance than X-X", 100 * (10 - 4) / 10),  # percent of X-X's
        ("hybrid has a lower rank distance than X-Y", 100 * (5 - 4) / 5),
    ]
    assert len(lines) == 9
    for line, (claim, difference) in zip(lines, expected):
        assert line.startswith(f"- {claim} (")
        word, estimate, lower, upper = verdict_of(line)
        assert word == "reproduced"
        assert estimate == lower == upper == pytest.approx(difference, abs=1e-3)
        assert "3 seeds x 30 question groups" in line
    assert "margin 0;" in lines[0] and "margin -0.005;" in lines[3]


def test_a_tie_is_not_a_win_and_a_loss_beyond_the_margin_is_refuted():
    tied = dict(STUDY_LIKE, xy=run(1, 2, 0.6, 10))  # X-Y identical to X-X
    lines = claims(evidence(tied), "xquad-r", ARMS, Rule())
    # "beats" has margin 0: a difference of exactly 0 is inconclusive, not reproduced
    assert verdict_of(lines[0]) == ("inconclusive", 0.0, 0.0, 0.0)
    worse = dict(STUDY_LIKE, hybrid=run(2, 1, 0.8, 4))  # hybrid mono AP 0.5 against X-X's 1
    line = claims(evidence(worse), "xquad-r", ARMS, Rule())[3]
    assert line.startswith("- hybrid matches or beats X-X monolingually")
    assert verdict_of(line) == ("refuted", -0.5, -0.5, -0.5)
    # a margin wide enough turns the same loss into "matches"
    assert verdict_of(claims(evidence(worse), "xquad-r", ARMS, Rule(margin=0.6))[3])[0] == "reproduced"


def test_noise_around_zero_is_inconclusive_with_the_standard_error_of_a_mean():
    """Mono AP differs by +0.5 in even question groups and -0.5 in odd ones: the mean difference
    is exactly 0 and the group bootstrap's standard error is 0.5 / sqrt(30), so the 90% interval
    is about +-1.645 * 0.0913 = +-0.150, far wider than the margin."""
    alternating = np.where(np.arange(GROUPS) % 2 == 0, 1, 2)
    arms = dict(STUDY_LIKE, hybrid=run(alternating, 1, 0.8, 4), xx=run(3 - alternating, 2, 0.6, 10))
    line = claims(evidence(arms), "xquad-r", ARMS, Rule())[3]
    word, estimate, lower, upper = verdict_of(line)
    half_width = 1.6448536 * 0.5 / math.sqrt(GROUPS)
    assert word == "inconclusive" and estimate == 0.0
    assert lower == pytest.approx(-half_width, rel=0.15) and upper == pytest.approx(half_width, rel=0.15)


def test_too_few_seeds_is_inconclusive_and_one_seed_has_no_interval():
    two = claims(evidence(STUDY_LIKE, seeds=2), "xquad-r", ARMS, Rule())
    assert all("**inconclusive (n too small)** " in line for line in two)
    assert verdict_of(two[0])[1:] == (0.5, 0.5, 0.5)  # the interval is still shown
    one = claims(evidence(STUDY_LIKE, seeds=1), "xquad-r", ARMS, Rule())
    assert all(line.endswith("**inconclusive (n too small)** (1 seed: no interval over seeds)")
               for line in one)


def test_only_orderings_whose_arms_ran_are_judged_and_unpaired_runs_are_refused():
    lines = claims(evidence(STUDY_LIKE), "xquad-r", {"xx": "xx", "xy": "xy"}, Rule())
    assert [line.split(" (")[0] for line in lines] == [
        "- X-X beats X-Y monolingually", "- X-Y beats X-X cross-lingually", "- X-Y beats X-X multilingually"]
    three = Evidence({("xx", "xquad-r", None): [STUDY_LIKE["xx"]] * 3,
                      ("xy", "xquad-r", None): [STUDY_LIKE["xy"]] * 2})
    with pytest.raises(ValueError, match="xy has 2 seeds and xx 3: a paired comparison needs the same seeds"):
        claims(three, "xquad-r", {"xx": "xx", "xy": "xy"}, Rule())


@pytest.mark.parametrize("field, value, pattern", [
    ("margin", -0.001, r"margin must be in \[0, inf\), got -0.001"),
    ("rank_margin", -0.05, r"rank_margin must be in \[0, inf\)"),
    ("margin", float("nan"), "margin must be a number"),
    ("confidence", 1.0, r"confidence must be in \(0, 1\)"),
    ("min_seeds", 1, "min_seeds must be an integer >= 2"),
    ("resamples", 10, "resamples must be an integer >= 100"),
])
def test_rule_refuses_bad_margins_and_settings(field, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        Rule(**{field: value})


def test_alpha_sweep_concavity_from_hand_built_points():
    """mono AP 1/3, 1, 1/2 at alpha 0, 0.5, 1: alpha 0.5 lies 1 - (1/3 + 1/2) / 2 = 7/12 above the
    line through its neighbours (concave); multi AP 0.6, 0.5, 0.6: 0.1 below it (not concave)."""
    points = {"a0": run(3, 2, 0.6, 4), "a0.5": run(1, 2, 0.5, 4), "a1": run(2, 2, 0.6, 4)}
    condition = {"label": "", "arms": {"alpha 0": "a0", "alpha 0.5": "a0.5", "alpha 1": "a1"}}
    table = "\n".join(alpha_section(evidence(points), condition, Rule()))
    assert "| mono/map@20 | 0.5 | above +0.583 [+0.583, +0.583] | above +0.583 [+0.583, +0.583] |" in table
    assert "| mono/map@20 | shape | **concave** | |" in table
    assert "| multi/map@20 | 0.5 | below -0.100 [-0.100, -0.100]" in table
    assert "| multi/map@20 | shape | **not concave** | |" in table
    assert "| cross/map@20 | shape | **undetermined** | |" in table  # a straight line


def test_effect_of_a_factor_per_sampling():
    arms = {"xx-nomask": run(2, 2, 0.5, 4), "xx-mask": run(1, 2, 0.5, 4)}
    conditions = [{"label": "duplicate masking off", "arms": {"xx": "xx-nomask"}},
                  {"label": "duplicate masking on", "arms": {"xx": "xx-mask"}}]
    table = effect_section(evidence(arms), "xquad-r", conditions, Rule())
    assert table[0] == "### Effect on XQuAD-R: duplicate masking on − duplicate masking off"
    assert "| mono/map@20 | better +0.500 [+0.500, +0.500] |" in table
    assert "| cross/map@20 | +0.000 [+0.000, +0.000] |" in table


def test_report_states_the_rule_and_margins_before_any_result():
    row = {"xquad-r": {"mono": {"map@20": 0.9}, "cross": {"map@20": 0.8},
                       "multi": {"map@20": 0.7, "rank_distance": 5.0}},
           "train_seconds": 60.0, "eval_seconds": 30.0}
    results = {"arms": {arm: {"label": arm} for arm in ARMS}, "untrained": {"untrained": row},
               "conditions": [{"label": "", "arms": ARMS}], "runs": {arm: [row] * 3 for arm in ARMS}}
    text = report(results, {"minutes": 1.0}, evidence(STUDY_LIKE), Rule(margin=0.01, rank_margin=0.1))
    rule = text.index("### Rule (fixed before the runs)")
    results_start = text.index("### Results")
    assert rule < results_start < text.index("### Study orderings on XQuAD-R")
    stated = text[:results_start]
    assert "margin 0.01 mAP (rank distance: 10% of B's)" in stated
    assert "\"A beats B\" (a clear gap in the study) has margin 0" in stated
    assert text[results_start:].count("**reproduced** ") == 9
    assert "hybrid − midpoint of X-X and X-Y" in text
