"""The LAReQA reader (shared by the evaluator and split-lareqa) and the article split."""

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hbt_fast.cli import main
from hbt_fast.data import load_lareqa, read_pairs_jsonl, split_lareqa
from lareqa_files import paragraph, write_language

CLI = "import sys; from hbt_fast.cli import main; sys.exit(main(sys.argv[1:]))"


def test_answer_in_whitespace_belongs_to_next_sentence(tmp_path):
    write_language(tmp_path, "aa", paragraph(["A0.", "A1."], [("q", "aa q1", 3)]))
    assert load_lareqa(tmp_path).by_language["aa"].relevant.tolist() == [1]


def test_mlqa_r_is_found_in_upstreams_folder_name(tmp_path, monkeypatch):
    """Upstream keeps MLQA-R in mlqa-dev-r/; questions need not exist in every language."""
    folder = tmp_path / "mlqa-dev-r"
    folder.mkdir()
    write_language(folder, "en", paragraph(["E0.", "E1."], [("q1", "en q1", 0), ("q2", "en q2", 4)]))
    write_language(folder, "de", paragraph(["D0.", "D1."], [("q2", "de q2", 0)]))
    monkeypatch.setenv("HBT_DATA_DIR", str(tmp_path))
    data = load_lareqa(task="mlqa-r")
    assert data.languages == ["de", "en"]
    # q2 is answered in both languages, q1 (English only) has no German answer
    assert data.relevant_in.tolist() == [[0, 3], [-1, 2], [0, 3]]  # global candidate indices
    # the one lookup every caller shares (hbt-fast eval names the data folder it used with it)
    from hbt_fast.data import resolve_data_dir
    assert resolve_data_dir(None, "mlqa-r", "mlqa-r") == folder


def test_missing_mlqa_r_names_the_lareqa_commit_that_still_has_it(tmp_path, monkeypatch):
    """LAReQA removed MLQA-R from its repository (commit b91469b); the folder is published only in
    the history, so the message must point there, not at a folder the current tree lacks."""
    monkeypatch.setenv("HBT_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="lareqa/tree/354d67d1cd066854cdfbf5ad0e6105528976141d"
                                                "/mlqa-r"):
        load_lareqa(task="mlqa-r")


@pytest.mark.parametrize("breaks, message", [
    ([[0, 3, 4], [4, 7]], r"sentence_breaks\[0\] is \[0, 3, 4\]; each entry must be a pair"),
    ([0, [4, 7]], r"sentence_breaks\[0\] is 0; each entry must be a pair"),
    ([[0, 3], [True, 7]], r"sentence_breaks\[1\] is \[True, 7\]"),
    ([[0, 3], [2, 7]], r"sentence_breaks\[1\] = \[2, 7\] is not an ordered span"),
    ([[0, 3], [4, 70]], r"sentence_breaks\[1\] = \[4, 70\] is not an ordered span"),
    ([[0, 3]], r"2 sentences but sentence_breaks is 1"),
    ("0 3 4 7", r"2 sentences but sentence_breaks is str"),
])
def test_sentence_breaks_that_are_not_ordered_pairs_name_file_and_paragraph(tmp_path, breaks, message):
    bad = paragraph(["A0.", "A1."], [("q", "question", 4)])
    bad["sentence_breaks"] = breaks
    write_language(tmp_path, "aa", paragraph(["B."], [("p", "ok", 0)]), bad)
    with pytest.raises(ValueError, match=r"aa.json \(article 0, paragraph 1\): " + message):
        load_lareqa(tmp_path)


def test_bad_utf8_in_a_language_file_names_the_line(tmp_path):
    (tmp_path / "aa.json").write_bytes(b'{"data": [\n{"title": "caf\xe9"}]}')
    with pytest.raises(ValueError, match=r"aa.json:2: not valid UTF-8 \(byte 0xe9 at column 15\)"):
        load_lareqa(tmp_path)


@pytest.mark.parametrize("languages, error, message", [
    ([], ValueError, "must not be empty"),
    (["aa", "aa"], ValueError, r"lists \['aa'\] more than once"),
    ("aa", TypeError, "not a single string"),
    (["../aa"], ValueError, "is not a language code"),
    ([".."], ValueError, "is not a language code"),
    (["."], ValueError, "is not a language code"),
    (["a\0b"], ValueError, "is not a language code"),
])
def test_language_lists_are_checked(tmp_path, languages, error, message):
    write_language(tmp_path, "aa", paragraph(["A0."], [("q", "x", 0)]))
    with pytest.raises(error, match=message):
        load_lareqa(tmp_path, languages)


_value = st.one_of(st.none(), st.booleans(), st.integers(-3, 30), st.text(max_size=6),
                   st.lists(st.integers(-2, 30), max_size=3))


@settings(max_examples=150, deadline=None)
@given(sentences=st.lists(st.sampled_from(["A.", "Bb b.", "C c."]), min_size=1, max_size=4),
       start=st.integers(-2, 20), breaks=st.one_of(st.none(), st.lists(_value, max_size=5)),
       extra=st.dictionaries(st.sampled_from(["qas", "context", "sentences"]), _value, max_size=1))
def test_any_paragraph_loads_or_fails_naming_the_file(tmp_path_factory, sentences, start, breaks,
                                                      extra):
    folder = tmp_path_factory.mktemp("lareqa")
    item = paragraph(sentences, [("q", "question", start)], breaks=False)
    if breaks is not None:
        item["sentence_breaks"] = breaks
    item.update(extra)
    write_language(folder, "aa", item)
    try:
        data = load_lareqa(folder)
    except ValueError as error:
        assert str(error).startswith(str(folder / "aa.json"))
    else:
        entry = data.by_language["aa"]
        answer = entry.sentences[entry.relevant[0]]
        context = item["context"]
        spans = item.get("sentence_breaks")
        if spans is None:  # located sentences: the answer offset falls inside or just before it
            assert 0 <= start < len(context) and answer in context
        else:
            begin, end = spans[int(entry.relevant[0])]
            assert start < end and (entry.relevant[0] == 0 or spans[entry.relevant[0] - 1][1] <= start)


# ------------------------------------------------------------------ the split


@pytest.fixture
def small_lareqa(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for language in ("aa", "bb"):
        (data / f"{language}.json").write_text(json.dumps({"data": [
            {"title": f"t{a}", "paragraphs": [paragraph([f"{language} s{a}."], [
                (f"q{a}", f"{language} question {a}", 0)])]} for a in range(4)]}), encoding="utf-8")
    return data


def test_split_writes_disjoint_train_and_eval_articles(small_lareqa, tmp_path):
    summary = split_lareqa(small_lareqa, tmp_path / "out", eval_fraction=0.25, seed=1)
    corpus = read_pairs_jsonl(tmp_path / "out" / "train.jsonl")
    held_out = load_lareqa(tmp_path / "out" / "eval")
    assert summary["train_pairs"] == len(corpus) == 6
    assert not set(corpus.groups) & set(held_out.by_language["aa"].question_ids)
    assert json.loads((tmp_path / "out" / "split.json").read_text())["seed"] == 1


@pytest.mark.parametrize("output", ["data", ".", "data/.."])
def test_split_refuses_an_output_that_is_or_holds_the_data(small_lareqa, tmp_path, monkeypatch, output):
    monkeypatch.chdir(tmp_path)
    before = {p.name: p.read_bytes() for p in small_lareqa.iterdir()}
    with pytest.raises(ValueError, match="choose an output outside it"):
        split_lareqa(small_lareqa, output)
    assert {p.name: p.read_bytes() for p in small_lareqa.iterdir()} == before


def test_split_cli_misuse_is_one_line_with_exit_2(small_lareqa, tmp_path):
    command = [sys.executable, "-c", CLI, "split-lareqa", "--data",
               str(small_lareqa), "--output", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("hbt-fast split-lareqa: error: --output")
    assert main(["split-lareqa", "--data", str(small_lareqa), "--output", str(tmp_path / "x"),
                 "--eval-fraction", "1.5"]) == 2


@pytest.mark.parametrize("fraction", [0, 1, float("nan"), True])
def test_split_fraction_must_be_inside_zero_one(small_lareqa, tmp_path, fraction):
    with pytest.raises(ValueError, match="eval_fraction must be a number in"):
        split_lareqa(small_lareqa, tmp_path / "out", eval_fraction=fraction)


@pytest.mark.parametrize("folds", [2, 3, 4])
def test_folds_hold_out_every_article_exactly_once(small_lareqa, tmp_path, folds):
    held_out = []
    for fold in range(folds):
        summary = split_lareqa(small_lareqa, tmp_path / str(fold), seed=3, folds=folds, fold=fold)
        assert (summary["folds"], summary["fold"], summary["eval_fraction"]) == (folds, fold, None)
        trained = {row.split('"group": "')[1].split('"')[0] for row in
                   (tmp_path / str(fold) / "train.jsonl").read_text().splitlines()}
        tested = set(load_lareqa(tmp_path / str(fold) / "eval").by_language["aa"].question_ids)
        assert not trained & tested and len(trained | tested) == 4
        held_out.append(set(summary["eval_articles"]))
    assert sorted(len(h) for h in held_out) == sorted(len(part) for part in np.array_split(range(4), folds))
    assert set.union(*held_out) == {"t0", "t1", "t2", "t3"} and sum(map(len, held_out)) == 4
    # fold 0 starts where the --eval-fraction split of the same seed starts
    assert held_out[0] == set(split_lareqa(small_lareqa, tmp_path / "single", seed=3,
                                           eval_fraction=len(held_out[0]) / 4)["eval_articles"])


@pytest.mark.parametrize("folds, fold, message", [
    (1, 0, "folds must be an integer >= 2"), (5, 0, "into 5 parts needs at least 5 articles"),
    (4, 4, "fold must be below folds"), (4, -1, "fold must be an integer >= 0"),
    (4, None, "folds 4 needs fold"), (None, 1, "fold 1 needs folds"), (2.5, 0, "folds must be an integer"),
])
def test_fold_arguments_are_checked(small_lareqa, tmp_path, folds, fold, message):
    with pytest.raises(ValueError, match=message):
        split_lareqa(small_lareqa, tmp_path / "out", folds=folds, fold=fold)
    assert main(["split-lareqa", "--data", str(small_lareqa), "--output", str(tmp_path / "x"),
                 "--folds", "2", "--fold", "0", "--eval-fraction", "0.5"]) == 2


def test_split_of_real_xquad_r_keeps_eval_articles_out_of_training(data_dir, tmp_path):
    summary = split_lareqa(data_dir / "xquad-r", tmp_path, eval_fraction=0.25, seed=0,
                           languages=["en", "de", "zh"])
    corpus = read_pairs_jsonl(tmp_path / "train.jsonl")
    eval_ids = set()
    for lang in ("en", "de", "zh"):
        held_out = json.loads((tmp_path / "eval" / f"{lang}.json").read_text(encoding="utf-8"))
        ids = {qa["id"] for a in held_out["data"] for p in a["paragraphs"] for qa in p["qas"]}
        assert len(ids) == summary["eval_questions_per_language"]
        eval_ids |= ids
    assert not eval_ids & set(corpus.groups)
    assert len(corpus) == summary["train_pairs"] == 3 * (1190 - summary["eval_questions_per_language"])
    assert np.all(np.bincount(corpus.group_ids) == 3)


def test_split_with_context_passages_pairs_each_question_with_sentence_and_paragraph(tmp_path):
    """Training passages as LAReQA encodes candidates: the answer sentence, a space, its whole
    paragraph; the held-out articles are the same as with sentence passages."""
    data = tmp_path / "data"
    data.mkdir()
    for language in ("aa", "bb"):
        (data / f"{language}.json").write_text(json.dumps({"data": [
            {"title": f"t{a}", "paragraphs": [paragraph([f"{language} first {a}.", f"{language} second {a}."], [
                (f"q{a}", f"{language} question {a}", len(f"{language} first {a}. "))])]}
            for a in range(4)]}), encoding="utf-8")
    assert main(["split-lareqa", "--data", str(data), "--output", str(tmp_path / "context"),
                 "--candidate-text", "sentence_context"]) == 0
    split_lareqa(data, tmp_path / "plain")
    context = read_pairs_jsonl(tmp_path / "context" / "train.jsonl")
    plain = read_pairs_jsonl(tmp_path / "plain" / "train.jsonl")
    assert list(context.groups) == list(plain.groups)
    number = int(plain.groups[0][1:])
    assert plain.passages[0] == f"aa second {number}."
    assert context.passages[0] == f"aa second {number}. aa first {number}. aa second {number}."
    assert json.loads((tmp_path / "context" / "split.json").read_text())["candidate_text"] == \
        "sentence_context"
    for language in ("aa", "bb"):
        assert (tmp_path / "context" / "eval" / f"{language}.json").read_bytes() == \
            (tmp_path / "plain" / "eval" / f"{language}.json").read_bytes()
    with pytest.raises(ValueError, match="candidate_text must be one of"):
        split_lareqa(data, tmp_path / "bad", candidate_text="context")
    assert not (tmp_path / "bad").exists()
