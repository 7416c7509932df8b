"""LAReQA evaluator: a hand-worked fixture, bad input, and the real XQuAD-R."""

import numpy as np
import pytest

from hbt_fast.evaluate import HashedNgramEncoder, evaluate_lareqa, load_lareqa, score_lareqa
from lareqa_files import paragraph as _paragraph, write_language

CANDIDATES = {"A0.": [1, 0, 0, 0], "A1.": [0, 1, 0, 0], "A2.": [0, 0, 1, 0],
              "B0.": [0, 0, 0, 1], "B1.": [1, 0, 0, 0]}
QUERIES = {"aa q1": [0.5, 1.0, 0, 0.2], "aa q2": [0, 0, 0.3, 0.3],
           "bb q1": [0, 0, 0, 1.0], "bb q2": [1.0, 0, 0, 0]}


class DictEncoder:
    def __init__(self, table, nan=False, rows_off=0):
        self.table, self.nan, self.rows_off = table, nan, rows_off

    def _encode(self, texts):
        out = np.array([self.table[t] for t in texts], dtype=np.float32)
        if self.nan:
            out[0, 0] = np.nan
        return out[: len(out) - self.rows_off]

    def encode_queries(self, texts):
        return self._encode(texts)

    def encode_passages(self, texts):
        return self._encode(texts)


def _write_one(folder, language, paragraph):
    write_language(folder, language, paragraph)


@pytest.fixture
def tiny_lareqa(tmp_path):
    # aa: q2's answer_start 8 is in "A2."; bb has no sentence_breaks (sentences are located).
    _write_one(tmp_path, "aa", _paragraph(["A0.", "A1.", "A2."], [("q1", "aa q1", 4), ("q2", "aa q2", 8)]))
    _write_one(tmp_path, "bb", _paragraph(["B0.", "B1."], [("q1", "bb q1", 0), ("q2", "bb q2", 4)],
                                      breaks=False))
    return tmp_path


def test_hand_worked_fixture(tiny_lareqa):
    """Candidates in pool order: A0 A1 A2 B0 B1 (indices 0..4); q1 -> A1, B0; q2 -> A2, B1.

    Scores (dot products):          A0   A1   A2   B0   B1
      aa q1 [.5, 1, 0, .2]          .5   1    0    .2   .5
      aa q2 [0, 0, .3, .3]          0    0    .3   .3   0
      bb q1 [0, 0, 0, 1]            0    0    0    1    0
      bb q2 [1, 0, 0, 0]            1    0    0    0    1
    Block ranks (ties -> lower index first):
      aa q1: aa A1 rank 1; bb B0 (.2 < .5) rank 2.     aa q2: A2 rank 1; B1 (0 < .3) rank 2.
      bb q1: bb B0 rank 1; aa A1 ties A0 at 0, A0 first -> rank 2.
      bb q2: bb B1 rank 1; aa A2 = 0 behind A0 (1) and A1 (0, lower index) -> rank 3.
    Matrix mAP: aa->aa 1, aa->bb 1/2, bb->aa (1/2 + 1/3)/2 = 5/12, bb->bb 1.
      mono = 1, cross = (1/2 + 5/12)/2 = 11/24; Recall@1 mono 1, cross 0.
    Multi rankings (R = 2):
      aa q1: A1, A0, B1, B0, A2 -> ranks 1, 4: AP = (1 + 2/4)/2 = 3/4, distance 3
      aa q2: A2, B0, A0, A1, B1 -> ranks 1, 5: AP = (1 + 2/5)/2 = 7/10, distance 4
      bb q1: B0, A0, A1, A2, B1 -> ranks 1, 3: AP = (1 + 2/3)/2 = 5/6, distance 2
      bb q2: A0, B1, A1, A2, B0 -> ranks 2, 4: AP = (1/2 + 2/4)/2 = 1/2, distance 2
    multi mAP = ((3/4 + 7/10)/2 + (5/6 + 1/2)/2)/2 = 0.6958333; rank distance (3.5 + 2)/2 = 2.75.
    """
    table = {**CANDIDATES, **QUERIES}
    r = evaluate_lareqa(DictEncoder(table), tiny_lareqa)
    assert r["languages"] == ["aa", "bb"]
    assert r["mono"]["map@20"] == pytest.approx(1.0)
    assert r["cross"]["map@20"] == pytest.approx(11 / 24)
    assert r["mono"]["recall@1"] == 1.0 and r["cross"]["recall@1"] == 0.0
    np.testing.assert_allclose(r["matrix"]["map@20"], [[1, 0.5], [5 / 12, 1]])
    assert r["multi"]["map@20"] == pytest.approx(((0.75 + 0.7) / 2 + (5 / 6 + 0.5) / 2) / 2)
    assert r["multi"]["recall@10"] == 1.0
    assert r["multi"]["rank_distance"] == pytest.approx(2.75)
    assert r["per_language"]["aa"]["rank_distance"] == pytest.approx(3.5)
    assert (r["mono"]["setups"], r["cross"]["setups"]) == (2, 2)
    # k = 1: AP@1 keeps only rank-1 hits; aa q1's multi AP@1 = 1 / min(2, 1) = 1.
    r1 = evaluate_lareqa(DictEncoder(table), tiny_lareqa, k=1)
    assert r1["cross"]["map@1"] == 0.0
    assert r1["multi"]["map@1"] == pytest.approx(((1 + 1) / 2 + (1 + 0) / 2) / 2)
    # One query row per score block gives the same figures.
    small = evaluate_lareqa(DictEncoder(table), tiny_lareqa, block_bytes=1)
    assert small["multi"] == r["multi"] and small["matrix"] == r["matrix"]


def test_answer_in_whitespace_belongs_to_next_sentence(tmp_path):
    _write_one(tmp_path, "aa", _paragraph(["A0.", "A1."], [("q", "aa q1", 3)]))
    assert load_lareqa(tmp_path).by_language["aa"].relevant.tolist() == [1]


def test_bad_input_errors_name_file_question_or_language(tiny_lareqa, monkeypatch):
    table = {**CANDIDATES, **QUERIES}
    with pytest.raises(FileNotFoundError, match="'cc'.*cc.json"):
        load_lareqa(tiny_lareqa, ["aa", "cc"])
    with pytest.raises(ValueError, match="language 'aa'.*expected 2 rows"):
        evaluate_lareqa(DictEncoder(table, rows_off=1), tiny_lareqa)
    with pytest.raises(ValueError, match="language 'aa'.*non-finite"):
        evaluate_lareqa(DictEncoder(table, nan=True), tiny_lareqa)
    with pytest.raises(TypeError, match="encode_queries"):
        evaluate_lareqa(object(), tiny_lareqa)
    broken = _paragraph(["A0."], [("q9", "x", 40)])
    _write_one(tiny_lareqa, "cc", broken)
    with pytest.raises(ValueError, match="cc.json.*'q9'.*outside its context"):
        load_lareqa(tiny_lareqa, ["cc"])
    del broken["sentences"]
    _write_one(tiny_lareqa, "cc", broken)
    with pytest.raises(ValueError, match="cc.json.*'sentences'"):
        load_lareqa(tiny_lareqa, ["cc"])
    monkeypatch.delenv("HBT_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="github.com/google-research-datasets/lareqa"):
        load_lareqa()
    with pytest.raises(FileNotFoundError, match="lareqa"):
        load_lareqa(tiny_lareqa / "missing")


# ------------------------------------------------------------------------- real XQuAD-R

# LAReQA README, "Dataset statistics": candidate sentences per language (1190 questions each).
README_CANDIDATES = {"ar": 1222, "de": 1276, "el": 1234, "en": 1180, "es": 1215, "hi": 1244,
                     "ru": 1219, "th": 852, "tr": 1167, "vi": 1209, "zh": 1196}
# Derived here (the README gives no such table): distinct sentences that answer >= 1 question.
RELEVANT_CANDIDATES = {"ar": 790, "de": 818, "el": 798, "en": 787, "es": 796, "hi": 798,
                       "ru": 787, "th": 603, "tr": 764, "vi": 794, "zh": 784}


@pytest.fixture(scope="module")
def xquad(data_dir):
    folder = data_dir / "xquad-r"
    if not folder.is_dir():
        pytest.skip(f"{folder} is missing (XQuAD-R from github.com/google-research-datasets/lareqa)")
    return load_lareqa(folder)


def test_xquad_r_counts_match_the_lareqa_readme(xquad):
    assert xquad.languages == sorted(README_CANDIDATES)
    for language, entry in xquad.by_language.items():
        assert len(entry.questions) == 1190
        assert len(entry.sentences) == README_CANDIDATES[language]
        assert np.unique(entry.relevant).size == RELEVANT_CANDIDATES[language]
    assert (xquad.num_queries, xquad.num_candidates) == (13090, 13014)
    assert (xquad.relevant_in >= 0).all()  # 11-way parallel: every question in every language


def test_xquad_r_oracle_embedding_gives_perfect_scores(xquad):
    """Query = a random unit code of its question id; candidate = normalised sum of the codes of
    the questions it answers (zero for the others). Relevant scores are >= 1/sqrt(2), unrelated
    ones stay near 0 (|noise| < 0.2) in 1024 dimensions.

    Built on embeddings, not texts: XQuAD-R repeats texts (tr has a relevant sentence "I." twice,
    several languages repeat question texts), so no text-keyed encoder can be a perfect oracle.
    """
    groups = xquad.query_group.max() + 1
    codes = np.random.default_rng(0).standard_normal((groups, 1024)).astype(np.float32)
    codes /= np.linalg.norm(codes, axis=1, keepdims=True)
    queries = codes[xquad.query_group]
    candidates = np.zeros((xquad.num_candidates, 1024), np.float32)
    owner = np.broadcast_to(xquad.query_group[:, None], xquad.relevant_in.shape)
    pairs = np.unique(np.stack([xquad.relevant_in.ravel(), owner.ravel()], 1), axis=0)
    np.add.at(candidates, pairs[:, 0], codes[pairs[:, 1]])
    candidates /= np.maximum(np.linalg.norm(candidates, axis=1, keepdims=True), 1e-12)
    r = score_lareqa(xquad, queries, candidates)
    for setting in ("mono", "cross", "multi"):
        assert r[setting]["map@20"] == 1.0
    assert r["mono"]["setups"] == 11 and r["cross"]["setups"] == 110
    assert r["multi"]["rank_distance"] == 10.0
    assert r["multi"]["recall@10"] == pytest.approx(10 / 11)


def test_xquad_r_hashed_ngram_figures_are_reproducible(data_dir, xquad):
    r = evaluate_lareqa(HashedNgramEncoder(), data_dir / "xquad-r")
    assert r["mono"]["map@20"] == pytest.approx(0.627162, abs=1e-4)
    assert r["cross"]["map@20"] == pytest.approx(0.031460, abs=1e-4)
    assert r["multi"]["map@20"] == pytest.approx(0.060712, abs=1e-4)
    assert r["multi"]["rank_distance"] == pytest.approx(11569.60, rel=1e-4)
    assert r["mono"]["recall@1"] == pytest.approx(0.548052, abs=1e-4)
