"""Metrics and search: hand-worked cases, agreement with pytrec_eval, the tie rule."""

import numpy as np
import pytest

from hbt_fast.evaluate import metrics
from hbt_fast.evaluate.search import as_embeddings, search, topk_from_scores

pytrec_eval = pytest.importorskip("pytrec_eval")


def test_hand_computed_values():
    """Query 0: R = 2, relevant at ranks 1 and 3 -> AP@3 = (1/1 + 2/3) / 2 = 5/6,
    Recall@1 = 1/2, nDCG@3 = (1 + 1/log2 4) / (1 + 1/log2 3) = 1.5 / 1.6309298.
    Query 1: R = 3 relevant, one at rank 2 within k = 2 -> AP@2 = (1/2) / min(3, 2) = 1/4
    (ranks 2, 7, 9 with 0 as padding give the same 1/4)
    (trec_eval's map_cut_2 would give 1/6), Recall@2 = 1/3."""
    hits = np.array([[1, 0, 1], [0, 1, 0]], dtype=bool)
    ap3 = metrics.average_precision_at_k(hits[:1], [2], 3)
    assert ap3[0] == pytest.approx(5 / 6, abs=1e-12)
    assert metrics.recall_at_k(hits[:1], [2], 1)[0] == 0.5
    ndcg = metrics.ndcg_at_k(hits[:1].astype(float), [[1, 1]], 3)[0]
    assert ndcg == pytest.approx(1.5 / (1 + 1 / np.log2(3)), abs=1e-12)
    assert metrics.average_precision_at_k(hits[1:], [3], 2)[0] == pytest.approx(0.25)
    assert metrics.recall_at_k(hits[1:], [3], 2)[0] == pytest.approx(1 / 3)
    # The rank-based form gives the same figures.
    assert metrics.average_precision_from_ranks([[3, 1]], 3)[0] == pytest.approx(5 / 6)
    assert metrics.average_precision_from_ranks([[2, 0, 7, 9]], 2)[0] == pytest.approx(0.25)
    assert metrics.recall_from_ranks([[2, 7, 9]], 2)[0] == pytest.approx(1 / 3)


def _docid(index: int) -> str:
    # trec_eval orders equal scores by docid *descending*; these names make that order
    # ascending by index, which is our tie rule.
    return f"d{10**7 - index:08d}"


def _random_run(rng, n_queries, n_docs, max_relevant, graded=False):
    scores = rng.integers(0, 6, size=(n_queries, n_docs)).astype(np.float32)  # many ties
    grades = np.zeros((n_queries, n_docs), dtype=np.int64)
    for q in range(n_queries):
        chosen = rng.choice(n_docs, size=rng.integers(1, max_relevant + 1), replace=False)
        grades[q, chosen] = rng.integers(1, 4, size=chosen.size) if graded else 1
    return scores, grades


def _pytrec(scores, grades, measures):
    qrels = {
        f"q{q}": {_docid(d): int(g) for d, g in enumerate(row) if g > 0}
        for q, row in enumerate(grades)
    }
    run = {f"q{q}": {_docid(d): float(s) for d, s in enumerate(row)} for q, row in enumerate(scores)}
    out = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    return {m: np.array([out[f"q{q}"][m] for q in range(len(scores))]) for m in measures}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_pytrec_eval_on_runs_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores, grades = _random_run(rng, 40, 60, max_relevant=10, graded=True)
    ref = _pytrec(scores, grades, {"map_cut_10", "map_cut_20", "recall_10", "ndcg_cut_10"})
    _, ids = topk_from_scores(scores, 60)
    gains = np.take_along_axis(grades, ids, 1).astype(float)
    hits = gains > 0
    num_relevant = hits.sum(axis=1)
    # R <= 10 <= 20, so our (1 / min(R, k)) normalisation equals trec_eval's 1 / R.
    np.testing.assert_allclose(
        metrics.average_precision_at_k(hits, num_relevant, 20), ref["map_cut_20"], atol=1e-9)
    np.testing.assert_allclose(
        metrics.average_precision_at_k(hits, num_relevant, 10), ref["map_cut_10"], atol=1e-9)
    np.testing.assert_allclose(
        metrics.recall_at_k(hits, num_relevant, 10), ref["recall_10"], atol=1e-9)
    ideal = np.sort(grades, axis=1)[:, ::-1]
    np.testing.assert_allclose(metrics.ndcg_at_k(gains, ideal, 10), ref["ndcg_cut_10"], atol=1e-9)


def test_ap_normalisation_differs_from_trec_eval_only_when_r_exceeds_k():
    rng = np.random.default_rng(5)
    scores, grades = _random_run(rng, 30, 40, max_relevant=15)
    ref = _pytrec(scores, grades, {"map_cut_5"})["map_cut_5"]
    _, ids = topk_from_scores(scores, 40)
    hits = np.take_along_axis(grades, ids, 1) > 0
    num_relevant = hits.sum(axis=1)
    ours = metrics.average_precision_at_k(hits, num_relevant, 5)
    np.testing.assert_allclose(ours, ref * num_relevant / np.minimum(num_relevant, 5), atol=1e-9)


def test_topk_tie_rule_lower_index_first():
    """Row [1, 3, 3, 2, 3]: top-2 are the 3s at indices 1 and 2 (not 4); top-4 is 1, 2, 4, 3."""
    scores = np.array([[1, 3, 3, 2, 3]], dtype=np.float32)
    assert topk_from_scores(scores, 2)[1].tolist() == [[1, 2]]
    assert topk_from_scores(scores, 4)[1].tolist() == [[1, 2, 4, 3]]
    # All-equal rows: any k takes the first k indices.
    flat = np.zeros((3, 50), dtype=np.float32)
    assert (topk_from_scores(flat, 7)[1] == np.arange(7)).all()


def test_faiss_exact_search_follows_tie_rule():
    rng = np.random.default_rng(0)
    passages = rng.integers(-1, 2, size=(300, 4)).astype(np.float32)  # heavy duplication
    queries = rng.integers(-1, 2, size=(50, 4)).astype(np.float32)
    result = search(queries, passages, 30)
    expected_scores, expected_ids = topk_from_scores(queries @ passages.T, 30)
    np.testing.assert_array_equal(result.ids, expected_ids)
    np.testing.assert_array_equal(result.scores, expected_scores)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_index_reports_recall_against_exact(kind):
    rng = np.random.default_rng(1)
    passages = rng.standard_normal((4000, 16)).astype(np.float32)
    queries = rng.standard_normal((200, 16)).astype(np.float32)
    result = search(queries, passages, 10, index=kind, recall_sample=100)
    assert result.index == kind
    assert 0.5 <= result.recall_vs_exact <= 1.0
    assert result.ids.shape == (200, 10)


def test_validation_errors_name_the_problem():
    with pytest.raises(ValueError, match="non-finite"):
        as_embeddings(np.array([[0.0, np.nan]]), name="x")
    with pytest.raises(ValueError, match="expected 3 rows"):
        as_embeddings(np.zeros((2, 4)), 3)
    with pytest.raises(ValueError, match="2-D"):
        as_embeddings(np.zeros(4))
    with pytest.raises(ValueError, match="dimension"):
        search(np.zeros((2, 3)), np.zeros((4, 5)), 1)
    with pytest.raises(ValueError, match="index must be"):
        search(np.zeros((2, 3)), np.zeros((4, 3)), 1, index="lsh")
    with pytest.raises(ValueError, match="num_relevant"):
        metrics.average_precision_at_k(np.zeros((2, 3), bool), [1, 0], 3)
    with pytest.raises(ValueError, match="k must be"):
        metrics.recall_at_k(np.zeros((2, 3), bool), [1, 1], 0)
