"""Per-query values of every evaluation: hand-worked per-query AP and ranks, the weighted mean
of each metric's units equal to its headline figure, and the per_query.npz file."""

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hbt_fast.cli import main
from hbt_fast.evaluate import HashedNgramEncoder, evaluate_beir, evaluate_lareqa, evaluate_tatoeba
from hbt_fast.evaluate.per_query import PerQuery
from hbt_fast.evaluate.report import _as_result
from lareqa_files import paragraph, write_language

# The hand-worked fixture of test_eval_lareqa.py (its docstring derives every rank).
CANDIDATES = {"A0.": [1, 0, 0, 0], "A1.": [0, 1, 0, 0], "A2.": [0, 0, 1, 0],
              "B0.": [0, 0, 0, 1], "B1.": [1, 0, 0, 0]}
QUERIES = {"aa q1": [0.5, 1.0, 0, 0.2], "aa q2": [0, 0, 0.3, 0.3],
           "bb q1": [0, 0, 0, 1.0], "bb q2": [1.0, 0, 0, 0]}


class TableEncoder:
    def __init__(self, table):
        self.table = table

    def encode_queries(self, texts):
        return np.array([self.table[t] for t in texts], dtype=np.float32)

    encode_passages = encode_queries


@pytest.fixture
def hand_worked(tmp_path):
    write_language(tmp_path, "aa", paragraph(["A0.", "A1.", "A2."],
                                             [("q1", "aa q1", 4), ("q2", "aa q2", 8)]))
    write_language(tmp_path, "bb", paragraph(["B0.", "B1."], [("q1", "bb q1", 0), ("q2", "bb q2", 4)]))
    return evaluate_lareqa(TableEncoder({**CANDIDATES, **QUERIES}), tmp_path)


def by_unit(observations):
    return dict(zip(observations.units.tolist(), observations.values.tolist()))


def test_lareqa_per_query_values_are_the_hand_worked_ones(hand_worked):
    """Block ranks aa q1 (1, 2), aa q2 (1, 2), bb q1 (2, 1), bb q2 (3, 1); multi ranks of the two
    relevant candidates: aa q1 1 and 4, aa q2 1 and 5, bb q1 1 and 3, bb q2 2 and 4."""
    arrays = hand_worked.per_query.arrays
    assert arrays["block_rank"].tolist() == [[1, 2], [1, 2], [2, 1], [3, 1]]
    assert arrays["best_rank"].tolist() == [1, 1, 1, 2]
    assert arrays["worst_rank"].tolist() == [4, 5, 3, 4]
    assert arrays["query_id"].tolist() == ["q1", "q2", "q1", "q2"]
    assert arrays["group"][0] == arrays["group"][2] != arrays["group"][1] == arrays["group"][3]
    multi = hand_worked.observations("multi/map@20")
    assert by_unit(multi) == pytest.approx({"q1@aa": 3 / 4, "q2@aa": 7 / 10, "q1@bb": 5 / 6,
                                            "q2@bb": 1 / 2})
    assert by_unit(hand_worked.observations("multi/rank_distance")) == {
        "q1@aa": 3, "q2@aa": 4, "q1@bb": 2, "q2@bb": 2}
    cross = hand_worked.observations("cross/map@20")
    assert by_unit(cross) == pytest.approx({"q1@aa->bb": 1 / 2, "q2@aa->bb": 1 / 2,
                                            "q1@bb->aa": 1 / 2, "q2@bb->aa": 1 / 3})
    assert by_unit(hand_worked.observations("mono/recall@1")) == {
        "q1@aa->aa": 1, "q2@aa->aa": 1, "q1@bb->bb": 1, "q2@bb->bb": 1}
    # translations of one question are one group, in every setup
    labels = dict(zip(cross.units.tolist(), cross.groups.tolist()))
    assert labels["q1@aa->bb"] == labels["q1@bb->aa"] != labels["q2@aa->bb"]


def mlqa_shaped(data_dir, folder):
    """Not every question in every language (de: even articles, ar: odd), so some
    language pairs share no question and the multi pool holds 2 or 3 relevant candidates."""
    folder.mkdir()
    for language, keep in (("en", lambda a: True), ("de", lambda a: a % 2 == 0),
                           ("ar", lambda a: a % 2 == 1)):
        document = json.loads((data_dir / "xquad-r" / f"{language}.json").read_text(encoding="utf-8"))
        document["data"] = document["data"][:4]
        for number, article in enumerate(document["data"]):
            if not keep(number):
                for item in article["paragraphs"]:
                    item["qas"] = []
        (folder / f"{language}.json").write_text(json.dumps(document, ensure_ascii=False),
                                                 encoding="utf-8")
    return folder


def test_each_metric_is_the_weighted_mean_of_its_units(data_dir, tmp_path):
    """Macro averages over language pairs of unequal size, and over query languages, come
    back exactly from the units and weights, for every metric of every task."""
    encoder = HashedNgramEncoder(dim=128)
    results = [evaluate_lareqa(encoder, mlqa_shaped(data_dir, tmp_path / "mlqa"), k=5),
               evaluate_tatoeba(encoder, data_dir / "tatoeba", languages=["deu", "swh", "kab"],
                                seen_languages=["deu", "kab"])]
    for result in results:
        for name, value in result.metrics().items():
            if "/f1_" in name:  # MTEB's F1 weighs labels, not queries: no per-query values
                with pytest.raises(ValueError, match="has no per-query values"):
                    result.observations(name)
                continue
            observations = result.observations(name)
            assert observations.mean() == pytest.approx(value, rel=1e-12, abs=1e-12), name
            assert len(np.unique(observations.units)) == len(observations.units)
    lareqa = results[0]
    mono = lareqa.observations("mono/map@5")
    assert len(mono.values) == lareqa.per_query.arrays["query_id"].size  # one own setup each
    assert lareqa.observations("cross/map@5").values.size == int(
        (lareqa.per_query.arrays["block_rank"] > 0).sum()) - mono.values.size


def test_beir_per_query_values_average_to_the_headline(tmp_path):
    for language, offset in (("xx", 0), ("yy", 5)):
        folder = tmp_path / language
        folder.mkdir()
        docs = [f"d{i} words {i} and {i + offset}" for i in range(20)]
        (folder / "corpus.jsonl").write_text("".join(
            json.dumps({"docid": f"d{i}", "title": "", "text": t}) + "\n" for i, t in enumerate(docs)))
        (folder / "queries.tsv").write_text("".join(f"q{i}\twords {i}\n" for i in range(6 + offset)))
        (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
            f"q{i}\td{(3 * i) % 20}\t1\n" for i in range(6 + offset)))
    result = evaluate_beir(HashedNgramEncoder(dim=64), tmp_path)
    assert result.per_query.arrays["query_id"].size == 6 + 11
    for name, value in result.metrics().items():
        assert result.observations(name).mean() == pytest.approx(value, rel=1e-12), name
    ranks = result.per_query.arrays["first_relevant_rank"]
    recall = result.per_query.arrays["recall"]
    assert ((ranks > 0) == (recall > 0)).all()  # one relevant document: found iff ranked


def test_eval_output_holds_per_query_npz_that_reproduces_results_json(hand_worked, tmp_path):
    folder = tmp_path / "xquad-r"
    folder.mkdir()
    write_language(folder, "aa", paragraph(["Alpha one.", "Beta two."], [("q1", "beta?", 0)]))
    write_language(folder, "bb", paragraph(["Alfa uno.", "Beta dos."], [("q1", "alfa?", 10)]))
    out = tmp_path / "out"
    assert main(["eval", "--model", "hashed-ngrams", "--task", "xquad-r", "--data", str(folder),
                 "--output", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    stored = PerQuery.load(out / "per_query.npz")
    assert stored.kind == "lareqa" and stored.arrays["query_id"].tolist() == ["q1", "q1"]
    for section in ("mono", "cross", "multi"):
        for name, value in results[section].items():
            if isinstance(value, float):
                assert stored.observations(f"{section}/{name}").mean() == pytest.approx(value)
    assert not [name for name in os.listdir(out) if name.startswith(".")]  # no temporary left
    # saved and read back unchanged
    again = PerQuery.load(hand_worked.per_query.save(tmp_path / "again.npz"))
    for name, array in hand_worked.per_query.arrays.items():
        np.testing.assert_array_equal(again.arrays[name], array)


def test_bad_per_query_files_and_metrics_raise_one_clear_error(hand_worked, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz does not exist"):
        PerQuery.load(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(ValueError, match="text.npz: not a per-query .npz file"):
        PerQuery.load(tmp_path / "text.npz")
    np.save(tmp_path / "bare.npy", np.zeros(3))
    with pytest.raises(ValueError, match="bare.npy: not a per-query .npz file"):
        PerQuery.load(tmp_path / "bare.npy")
    np.savez(tmp_path / "partial.npz", kind=np.asarray("lareqa"), group=np.zeros(2))
    with pytest.raises(ValueError, match="partial.npz: lareqa per-query arrays lack query_id"):
        PerQuery.load(tmp_path / "partial.npz")
    np.savez(tmp_path / "kindless.npz", group=np.zeros(2))
    with pytest.raises(ValueError, match="kindless.npz: kind must be one of"):
        PerQuery.load(tmp_path / "kindless.npz")
    with pytest.raises(ValueError, match="'multi/ndcg@10' has no per-query values in a lareqa"):
        hand_worked.observations("multi/ndcg@10")
    with pytest.raises(ValueError, match="'mono/map@10' has no per-query values"):
        hand_worked.observations("mono/map@10")  # evaluated at k = 20
    with pytest.raises(TypeError, match="metric must be a string"):
        hand_worked.observations(3)
    rebuilt = _as_result(hand_worked.to_dict())
    with pytest.raises(ValueError, match="holds no per-query values"):
        rebuilt.observations("multi/map@20")


def _rows(per_query, keep, shared=("languages",)):
    """``per_query`` restricted to the queries ``keep`` marks."""
    return PerQuery(per_query.kind, {name: value if value.ndim == 0 or name in shared else value[keep]
                                     for name, value in per_query.arrays.items()})


@pytest.mark.parametrize("metric", ["mono/map@20", "cross/map@20", "cross/recall@1", "multi/map@20",
                                    "multi/recall@10", "multi/rank_distance"])
def test_concatenated_parts_are_the_whole_evaluation(hand_worked, metric):
    """Folds of disjoint questions joined again give every unit, value and weight of the whole."""
    whole = hand_worked.per_query
    first = whole.arrays["query_id"] == "q2"
    joined = PerQuery.concatenate([_rows(whole, first), _rows(whole, ~first)])
    expected, got = whole.observations(metric), joined.observations(metric)
    assert by_unit(got) == by_unit(expected)
    assert got.mean() == pytest.approx(expected.mean(), rel=1e-12)
    # the question groups are renumbered over the whole: translations still share one
    groups = dict(zip(joined.arrays["query_id"].tolist(), joined.arrays["group"].tolist()))
    assert len(set(groups.values())) == 2 and len(joined.arrays["group"]) == 4


def test_concatenate_refuses_parts_that_are_not_one_evaluation_of_disjoint_queries(hand_worked):
    whole = hand_worked.per_query
    with pytest.raises(ValueError, match="answer some query more than once"):
        PerQuery.concatenate([whole, whole])
    other_k = PerQuery("lareqa", dict(whole.arrays, k=np.asarray(10)))
    with pytest.raises(ValueError, match="another k"):
        PerQuery.concatenate([whole, other_k])
    tatoeba = PerQuery("tatoeba", {"language": np.array(["deu"]), "line": np.array([0]),
                                   "to_english": np.array([True]), "from_english": np.array([False])})
    with pytest.raises(ValueError, match="part 1 is a tatoeba evaluation"):
        PerQuery.concatenate([whole, tatoeba])
    with pytest.raises(TypeError, match="non-empty sequence of PerQuery"):
        PerQuery.concatenate([])
    moved = PerQuery("tatoeba", dict(tatoeba.arrays, line=np.array([1])))
    assert PerQuery.concatenate([tatoeba, moved]).observations("mean/both").mean() == 0.5


def _random_lareqa(rng, questions: int, languages: int) -> PerQuery:
    """A LAReQA evaluation of ``questions`` parallel questions in ``languages`` languages."""
    names = np.array([f"l{i}" for i in range(languages)])
    n = questions * languages
    best = rng.integers(1, 50, n)
    return PerQuery("lareqa", {
        "query_id": np.repeat([f"q{i}" for i in range(questions)], languages),
        "group": np.repeat(np.arange(questions), languages), "language": np.tile(names, questions),
        "languages": names, "block_rank": rng.integers(1, 30, (n, languages)),
        "multi_ap": rng.random(n), "multi_recall": rng.random(n), "best_rank": best,
        "worst_rank": best + rng.integers(0, 40, n), "k": np.asarray(20),
        "multi_recall_k": np.asarray(10)})


@settings(max_examples=40, deadline=None)
@given(questions=st.integers(2, 12), languages=st.integers(1, 4), parts=st.integers(2, 4),
       seed=st.integers(0, 2**32 - 1))
def test_any_split_into_folds_joins_back_to_the_same_figures(questions, languages, parts, seed):
    rng = np.random.default_rng(seed)
    whole = _random_lareqa(rng, questions, languages)
    fold_of_question = rng.integers(0, parts, questions)
    fold = np.repeat(fold_of_question, languages)
    order = rng.permutation(parts)
    pieces = [_rows(whole, fold == k) for k in order if np.any(fold == k)]
    joined = PerQuery.concatenate(pieces)
    for metric in ("mono/map@20", "cross/recall@1", "multi/map@20", "multi/rank_distance"):
        if languages == 1 and metric.startswith("cross"):
            continue  # no other language to cross to
        assert joined.observations(metric).mean() == pytest.approx(
            whole.observations(metric).mean(), rel=1e-9, abs=1e-12)
        assert by_unit(joined.observations(metric)) == pytest.approx(by_unit(whole.observations(metric)))
    assert len(np.unique(joined.arrays["group"])) == questions
