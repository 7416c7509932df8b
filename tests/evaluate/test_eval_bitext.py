"""MTEB's BitextMining scores: a hand-computed case and scikit-learn, as MTEB calls it."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hbt_fast.evaluate.metrics import bitext_mining_scores

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def test_hand_computed_example():
    """Predictions [0, 0, 2, 1] for gold [0, 1, 2, 3]. Candidate 0 is picked twice (P=2) and is
    right for query 0: its F1 is 2 * (1/2) * 1 / (1/2 + 1) = 2/3, its precision 1/2. Query 1
    picks 0 (wrong): 0. Query 2 picks 2 (P=1): F1 1, precision 1. Query 3 picks 1 (wrong): 0;
    label 3 is never predicted. F1 = (2/3 + 0 + 1 + 0) / 4 = 5/12, precision = (1/2 + 1) / 4
    = 3/8, accuracy = recall = 2/4."""
    scores = bitext_mining_scores(np.array([0, 0, 2, 1]))
    assert scores["f1"] == pytest.approx(5 / 12, abs=1e-15)
    assert scores["precision"] == pytest.approx(3 / 8, abs=1e-15)
    assert scores["accuracy"] == scores["recall"] == 0.5


def _as_mteb(predicted) -> dict:
    """MTEB 2.x, AbsTaskBitextMining._compute_metrics: labels are range(n), averages weighted."""
    labels = list(range(len(predicted)))
    predicted = list(predicted)
    return {"precision": sklearn_metrics.precision_score(labels, predicted, zero_division=0,
                                                         average="weighted"),
            "recall": sklearn_metrics.recall_score(labels, predicted, zero_division=0,
                                                   average="weighted"),
            "f1": sklearn_metrics.f1_score(labels, predicted, zero_division=0, average="weighted"),
            "accuracy": sklearn_metrics.accuracy_score(labels, predicted)}


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 12).flatmap(
    lambda n: st.lists(st.integers(0, n + 2), min_size=n, max_size=n)))
def test_agrees_with_scikit_learn_as_mteb_calls_it(predicted):
    # candidates past n (a larger pool than queries) are labels with no gold: weight 0
    ours = bitext_mining_scores(np.array(predicted, dtype=np.int64))
    theirs = _as_mteb(predicted)
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, abs=1e-12), name


@pytest.mark.parametrize("predicted, message", [
    (np.array([[0, 1]]), "1-D"),
    (np.array([0.0, 1.0]), "1-D array of candidate indices"),
    (np.array([], dtype=np.int64), "empty"),
    (np.array([0, -1]), "negative"),
])
def test_bad_predictions_are_refused(predicted, message):
    with pytest.raises(ValueError, match=message):
        bitext_mining_scores(predicted)


def test_agrees_with_mtebs_own_metric_code():
    """MTEB's AbsTaskBitextMining._compute_metrics itself (it uses nothing of its instance),
    fed what its evaluator produces: one {corpus_id} per query and gold pairs (i, i)."""
    bitext_mining = pytest.importorskip("mteb.abstasks.text.bitext_mining")
    rng = np.random.default_rng(7)
    for n in (1, 5, 40):
        predicted = rng.integers(0, n, size=n)
        theirs = bitext_mining.AbsTaskBitextMining._compute_metrics(
            None, [{"corpus_id": int(j), "score": 0.0} for j in predicted],
            list(zip(range(n), range(n))))
        ours = bitext_mining_scores(predicted)
        for name in ("precision", "recall", "f1", "accuracy"):
            assert ours[name] == pytest.approx(theirs[name], abs=1e-12), (n, name)
