"""Training data readers: JSONL pairs, mMARCO layout, LAReQA split."""

import json

import numpy as np
import pytest

from hbt_fast.data import read_mmarco, read_pairs_jsonl, split_lareqa


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def pair(group, lang, query="q", passage="p"):
    return json.dumps({"group": group, "lang": lang, "query": query, "passage": passage})


def test_pairs_are_read_with_ids(tmp_path):
    path = write_lines(tmp_path / "pairs.jsonl", [pair("a", "en", "q1", "p1"), "", pair("a", "de"), pair(7, "en")])
    corpus = read_pairs_jsonl(path)
    assert len(corpus) == 3
    assert corpus.queries[0] == "q1" and corpus.passages[0] == "p1"
    assert corpus.language_names == ["de", "en"]
    assert corpus.language_ids.tolist() == [1, 0, 1]
    assert corpus.group_ids[0] == corpus.group_ids[1] != corpus.group_ids[2]
    assert corpus.cross_lingual_languages() == {"de", "en"}


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("{not json", r"pairs.jsonl:2: not valid JSON"),
        ('["a", "b"]', r"pairs.jsonl:2: expected a JSON object"),
        ('{"group": "a", "lang": "en", "query": "q"}', r"pairs.jsonl:2: missing field 'passage'"),
        ('{"group": "a", "lang": "en", "query": "", "passage": "p"}', r"pairs.jsonl:2: field 'query'"),
        ('{"group": 1.5, "lang": "en", "query": "q", "passage": "p"}', r"pairs.jsonl:2: field 'group'"),
        (pair("a", "en"), r"pairs.jsonl:2: group 'a' already has a pair in language 'en' \(line 1\)"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, bad_line, message):
    path = write_lines(tmp_path / "pairs.jsonl", [pair("a", "en"), bad_line])
    with pytest.raises(ValueError, match=message):
        read_pairs_jsonl(path)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        read_pairs_jsonl(write_lines(tmp_path / "empty.jsonl", [""]))
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_pairs_jsonl(tmp_path / "nope.jsonl")


def test_mmarco_layout_groups_by_query_id(tmp_path):
    write_lines(tmp_path / "train_pairs.tsv", ["1\t10", "1\t11", "2\t20"])
    for lang, word in (("en", "what"), ("de", "was")):
        (tmp_path / lang).mkdir()
        write_lines(tmp_path / lang / "queries.tsv", [f"1\t{word} one", f"2\t{word} two"])
        write_lines(tmp_path / lang / "collection.tsv", [f"10\t{lang} ten", f"20\t{lang} twenty", "30\tx"])
    corpus = read_mmarco(tmp_path, ["en", "de"])
    assert corpus.queries == ["what one", "what two", "was one", "was two"]
    assert corpus.passages == ["en ten", "en twenty", "de ten", "de twenty"]
    assert corpus.groups == ["1", "2", "1", "2"]
    from hbt_fast.cli import main

    assert main(["convert-mmarco", "--root", str(tmp_path), "--languages", "en", "de",
                 "--output", str(tmp_path / "pairs.jsonl")]) == 0
    converted = read_pairs_jsonl(tmp_path / "pairs.jsonl")
    assert converted.queries == corpus.queries and converted.groups == corpus.groups
    assert main(["convert-mmarco", "--root", str(tmp_path / "none"), "--languages", "en",
                 "--output", str(tmp_path / "x.jsonl")]) == 2


def test_lareqa_split_keeps_eval_articles_out_of_training(data_dir, tmp_path):
    summary = split_lareqa(data_dir / "xquad-r", tmp_path, eval_fraction=0.25, seed=0, languages=["en", "de", "zh"])
    corpus = read_pairs_jsonl(tmp_path / "train.jsonl")
    eval_ids = set()
    for lang in ("en", "de", "zh"):
        held_out = json.loads((tmp_path / "eval" / f"{lang}.json").read_text(encoding="utf-8"))
        ids = {qa["id"] for a in held_out["data"] for p in a["paragraphs"] for qa in p["qas"]}
        assert len(ids) == summary["eval_questions_per_language"]
        eval_ids |= ids
    assert not eval_ids & set(corpus.groups)
    assert len(corpus) == summary["train_pairs"] == 3 * (1190 - summary["eval_questions_per_language"])
    # every query's passage is a sentence of its language's data
    assert np.all(np.bincount(corpus.group_ids) == 3)
