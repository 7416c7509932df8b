"""LAReQA evaluator: its defaults, its names and its jobs, each checked against a hand-worked case.

Written to kill mutmut's survivors in ``evaluate/lareqa.py`` (CONTRIBUTING.md, "Mutation
testing").
"""

import numpy as np
import pytest

from hbt_fast.evaluate import evaluate_lareqa, lareqa_metric_names, load_lareqa, score_lareqa
from hbt_fast.evaluate.lareqa import encode_jobs
from lareqa_files import paragraph, write_language

# One language, one question whose answer is the second sentence "A1.". By inner product the
# long "A0." wins (2 > 1.4: A1 at rank 2, AP = 1/2); by cosine A1 wins (0.99 > 0.71: AP = 1).
TABLE = {"A0.": [2.0, 0.0], "A1.": [0.8, 0.6], "aa q": [1.0, 1.0]}


class TableEncoder:
    def encode_queries(self, texts):
        return np.array([TABLE[t] for t in texts], dtype=np.float32)

    encode_passages = encode_queries


@pytest.fixture
def one_language(tmp_path):
    write_language(tmp_path, "aa", paragraph(["A0.", "A1."], [("q", "aa q", 4)]))
    return tmp_path


def test_scores_are_inner_products_unless_normalize_is_asked(one_language):
    assert evaluate_lareqa(TableEncoder(), one_language)["mono"]["map@20"] == 0.5
    cosine = evaluate_lareqa(TableEncoder(), one_language, normalize=True)
    assert cosine["mono"]["map@20"] == 1.0


@pytest.mark.parametrize("task, folder", [(None, "xquad-r"), ("xquad-r", "xquad-r"),
                                          ("mlqa-r", "mlqa-r"), ("mlqa-r", "mlqa-dev-r")])
def test_task_names_the_folder_under_the_data_dir_and_the_result(tmp_path, monkeypatch, task,
                                                                  folder):
    (tmp_path / folder).mkdir()
    write_language(tmp_path / folder, "aa", paragraph(["A0.", "A1."], [("q", "aa q", 4)]))
    monkeypatch.setenv("HBT_DATA_DIR", str(tmp_path))
    options = {} if task is None else {"task": task}
    result = evaluate_lareqa(TableEncoder(), **options)
    assert result["task"] == (task or "xquad-r")
    assert result["mono"]["map@20"] == 0.5


def test_progress_bar_only_when_asked_and_named_after_the_task(one_language, capsys):
    evaluate_lareqa(TableEncoder(), one_language, task="mlqa-r")
    assert capsys.readouterr().err == ""
    evaluate_lareqa(TableEncoder(), one_language, task="mlqa-r", progress=True)
    bar = capsys.readouterr().err
    assert "evaluating mlqa-r" in bar and "3/3" in bar  # one question and two sentences


@pytest.mark.parametrize("k", [20, 5])
def test_metric_names_are_the_headline_figures(one_language, k):
    expected = (f"mono/map@{k}", "mono/recall@1", f"cross/map@{k}", "cross/recall@1",
                f"multi/map@{k}", "multi/recall@10", "multi/rank_distance")
    assert lareqa_metric_names(k) == expected
    result = evaluate_lareqa(TableEncoder(), one_language, k=k)
    reported = {f"{section}/{name}" for section in ("mono", "cross", "multi")
                for name in result[section] if name != "setups"}
    assert reported == set(expected)
    if k == 20:
        assert lareqa_metric_names() == expected


def test_encode_jobs_one_query_and_one_candidate_job_per_language(tmp_path):
    write_language(tmp_path, "aa", paragraph(["A0.", "A1."], [("q", "aa q", 4)]))
    write_language(tmp_path, "bb", paragraph(["B0."], [("q", "bb q", 0)]))
    data = load_lareqa(tmp_path)
    jobs = encode_jobs(data)
    assert [(j.role, j.language, j.side, list(j.texts)) for j in jobs] == [
        ("query", "aa", "query", ["aa q"]), ("candidate", "aa", "passage", ["A0.", "A1."]),
        ("query", "bb", "query", ["bb q"]), ("candidate", "bb", "passage", ["B0."])]
    for job in jobs:  # error messages name the language and its file
        assert f"language {job.language!r}" in job.what and f"{job.language}.json" in job.what
    with_context = encode_jobs(data, "sentence_context")
    assert list(with_context[1].texts) == ["A0. A0. A1.", "A1. A0. A1."]
    with pytest.raises(ValueError, match=r"candidate_text must be one of .*'sentence_context'.*got 'title'"):
        encode_jobs(data, "title")


# ------------------------------------------------- score_lareqa on a hand-worked three-language case
#
# aa: A0, A1; q1 -> A0, q2 -> A1.   bb: B0, B1; q1 -> B1.   cc: C0; q9 -> C0.
# q2 has no counterpart in bb or cc, q9 none in aa or bb: empty setups (aa->cc, bb->cc, cc->aa,
# cc->bb) and queries absent from a setup (aa q2 in aa->bb).
# Pool order A0 A1 B0 B1 C0; scores (dot products):
#                              A0   A1   B0   B1   C0
#   aa q1 [1, 0, .5, .4]        1    0   .5   .4  .57
#   aa q2 [0, 1, 0, 0]          0    1    0    0  .3
#   bb q1 [.2, 0, 0, 1]        .2    0    0    1  .36
#   cc q9 [0, 0, 1, 0]          0    0    1    0  .3
# Block ranks: aa q1: A0 1 in aa, B1 2 in bb (B0 .5 first); aa q2: A1 1; bb q1: B1 1, A0 1;
#   cc q9: C0 1.
# Multi (R = languages holding the question): aa q1: A0 1, B1 4 -> AP (1 + 2/4)/2 = 3/4,
#   distance 3; aa q2: A1 1 -> AP 1, distance 0; bb q1: B1 1, A0 3 -> AP (1 + 2/3)/2 = 5/6,
#   distance 2; cc q9: B0 first, C0 2 -> AP 1/2, distance 0. Recall@10 is 1 everywhere.
SENTENCES = {"aa": ["A0.", "A1."], "bb": ["B0.", "B1."], "cc": ["C0."]}
QAS = {"aa": [("q1", "aa q1", 0), ("q2", "aa q2", 4)], "bb": [("q1", "bb q1", 4)],
       "cc": [("q9", "cc q9", 0)]}
QUERY_VECTORS = {"aa": [[1, 0, .5, .4], [0, 1, 0, 0]], "bb": [[.2, 0, 0, 1]], "cc": [[0, 0, 1, 0]]}
CANDIDATE_VECTORS = {"aa": [[1, 0, 0, 0], [0, 1, 0, 0]], "bb": [[0, 0, 1, 0], [0, 0, 0, 1]],
                     "cc": [[.3, .3, .3, .3]]}
NAN = float("nan")


@pytest.fixture
def three_languages(tmp_path):
    for language, sentences in SENTENCES.items():
        write_language(tmp_path, language, paragraph(sentences, QAS[language]))
    return load_lareqa(tmp_path)


def _vectors(table):
    return {language: np.array(rows, dtype=np.float32) for language, rows in table.items()}


def test_score_hand_worked_three_languages(three_languages):
    result = score_lareqa(three_languages, _vectors(QUERY_VECTORS), _vectors(CANDIDATE_VECTORS))
    assert result.task == "lareqa" and result["k"] == 20
    assert result["matrix"] == {
        "rows": "query language", "columns": "candidate language",
        "map@20": [[1.0, 0.5, None], [1.0, 1.0, None], [None, None, 1.0]],
        "recall@1": [[1.0, 0.0, None], [1.0, 1.0, None], [None, None, 1.0]]}
    assert result["mono"] == {"map@20": 1.0, "recall@1": 1.0, "setups": 3}
    assert result["cross"] == {"map@20": 0.75, "recall@1": 0.5, "setups": 2}
    per_language_map = {"aa": (0.75 + 1) / 2, "bb": 5 / 6, "cc": 0.5}
    assert result["multi"] == pytest.approx({
        "map@20": sum(per_language_map.values()) / 3, "recall@10": 1.0,
        "rank_distance": (1.5 + 2 + 0) / 3, "setups": 3})
    row = {"aa": (2, 2, 2, 0.5, 1.0, 1.5), "bb": (1, 2, 1, 1.0, 0.5, 2.0),
           "cc": (1, 1, 1, NAN, NAN, 0.0)}
    expected_rows = {
        language: {"questions": questions, "candidates": candidates,
                   "relevant_candidates": relevant, "mono_map@20": 1.0,
                   "cross_map@20_as_query": as_query, "cross_map@20_as_candidate": as_candidate,
                   "multi_map@20": per_language_map[language], "multi_recall@10": 1.0,
                   "rank_distance": distance}
        for language, (questions, candidates, relevant, as_query, as_candidate, distance)
        in row.items()}
    _assert_rows_equal(result["per_language"], expected_rows)


def _assert_rows_equal(rows, expected_rows):
    assert list(rows) == list(expected_rows)
    for language in expected_rows:
        assert rows[language] == pytest.approx(expected_rows[language], nan_ok=True), language


def test_block_hit_at_rank_k_counts(three_languages):
    """k = 2: aa q1's bb answer sits at block rank 2, so aa->bb keeps AP 1/2; k = 1 drops it."""
    at_two = score_lareqa(three_languages, _vectors(QUERY_VECTORS), _vectors(CANDIDATE_VECTORS), k=2)
    assert at_two["matrix"]["map@2"][0][1] == 0.5
    at_one = score_lareqa(three_languages, _vectors(QUERY_VECTORS), _vectors(CANDIDATE_VECTORS), k=1)
    assert at_one["matrix"]["map@1"][0][1] == 0.0


def test_stacked_arrays_score_like_dicts(three_languages):
    stacked = [np.concatenate([np.array(table[lang], np.float32) for lang in ("aa", "bb", "cc")])
               for table in (QUERY_VECTORS, CANDIDATE_VECTORS)]
    from_dicts = score_lareqa(three_languages, _vectors(QUERY_VECTORS), _vectors(CANDIDATE_VECTORS))
    from_arrays = score_lareqa(three_languages, *stacked)
    assert from_arrays["matrix"] == from_dicts["matrix"]
    for section in ("mono", "cross", "multi"):
        assert from_arrays[section] == from_dicts[section]
    _assert_rows_equal(from_arrays["per_language"], from_dicts["per_language"])
    with pytest.raises(ValueError, match=r"^query_embeddings: expected 4 rows"):
        score_lareqa(three_languages, stacked[0][:3], stacked[1])
    with pytest.raises(ValueError, match=r"^candidate_embeddings: expected 5 rows"):
        score_lareqa(three_languages, stacked[0], stacked[1][:4])


def test_embedding_errors_name_the_argument_and_language(three_languages):
    queries, candidates = _vectors(QUERY_VECTORS), _vectors(CANDIDATE_VECTORS)
    with pytest.raises(ValueError, match=r"^query_embeddings: no embeddings for languages \['bb'\]"):
        score_lareqa(three_languages, {"aa": queries["aa"], "cc": queries["cc"]}, candidates)
    # Same total (5 rows), wrong split: aa gets 3 rows, bb 1.
    shifted = {"aa": np.concatenate([candidates["aa"], candidates["bb"][:1]]),
               "bb": candidates["bb"][1:], "cc": candidates["cc"]}
    with pytest.raises(ValueError, match=r"^candidate_embeddings\['aa'\]: expected 2 rows"):
        score_lareqa(three_languages, queries, shifted)
    with pytest.raises(ValueError, match=r"^query embeddings have dimension 3, candidates 4"):
        score_lareqa(three_languages, {k: v[:, :3] for k, v in queries.items()}, candidates)
    with pytest.raises(TypeError, match=r"^data must be LareqaData \(from load_lareqa\), got dict"):
        score_lareqa({}, queries, candidates)


@pytest.mark.parametrize("k", [0, 2.5, True])
def test_k_must_be_a_positive_integer(three_languages, k):
    with pytest.raises(ValueError, match=r"^k must be an integer >= 1, got " + repr(k)):
        score_lareqa(three_languages, _vectors(QUERY_VECTORS), _vectors(CANDIDATE_VECTORS), k=k)


def test_score_lareqa_uses_inner_products_by_default(one_language):
    data = load_lareqa(one_language)
    queries, candidates = np.array([TABLE["aa q"]]), np.array([TABLE["A0."], TABLE["A1."]])
    assert score_lareqa(data, queries, candidates)["mono"]["map@20"] == 0.5
    assert score_lareqa(data, queries, candidates, normalize=True)["mono"]["map@20"] == 1.0


def test_multi_recall_counts_only_the_top_ten(tmp_path):
    """Eleven candidates, the relevant one scored lowest: rank 11, so Recall@10 = 0 in multi
    and Recall@1 = 0 in mono, while mAP@20 = 1/11."""
    sentences = [f"S{i}." for i in range(11)]
    write_language(tmp_path, "aa", paragraph(sentences, [("q", "aa q", 4 * 10)]))
    data = load_lareqa(tmp_path)
    candidates = np.array([[11.0 - i] for i in range(11)])
    result = score_lareqa(data, np.ones((1, 1)), candidates)
    assert result["multi"]["recall@10"] == 0.0 and result["mono"]["recall@1"] == 0.0
    assert result["multi"]["map@20"] == pytest.approx(1 / 11)


def test_candidate_text_reaches_the_encoder_and_the_settings(one_language):
    """With "sentence_context" each candidate is its sentence followed by its paragraph."""
    class Recorder(TableEncoder):
        passages = []

        def encode_passages(self, texts):
            self.passages.extend(texts)
            return np.ones((len(texts), 2), dtype=np.float32)

    encoder = Recorder()
    result = evaluate_lareqa(encoder, one_language, candidate_text="sentence_context")
    assert encoder.passages == ["A0. A0. A1.", "A1. A0. A1."]
    assert result["candidate_text"] == "sentence_context"
