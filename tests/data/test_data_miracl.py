"""MIRACL training pairs from a fixture in the layout of MIRACL's Hugging Face repositories
(topics, qrels, gzipped corpus shards), and hbt-fast convert-miracl."""

import gzip
import json

import pytest

from hbt_fast.cli import main
from hbt_fast.data import read_miracl, read_pairs_jsonl

SOURCE = "https://huggingface.co/datasets/miracl/miracl"


def _write(root, language, split, topics, qrels, passages, shards=2):
    base = root / f"miracl-v1.0-{language}"
    (base / "topics").mkdir(parents=True, exist_ok=True)
    (base / "qrels").mkdir(parents=True, exist_ok=True)
    (base / "topics" / f"topics.miracl-v1.0-{language}-{split}.tsv").write_text(
        "".join(f"{qid}\t{text}\n" for qid, text in topics), encoding="utf-8")
    (base / "qrels" / f"qrels.miracl-v1.0-{language}-{split}.tsv").write_text(
        "".join(f"{qid}\tQ0\t{docid}\t{grade}\n" for qid, docid, grade in qrels), encoding="utf-8")
    corpus = root / f"miracl-corpus-v1.0-{language}"
    corpus.mkdir(parents=True, exist_ok=True)
    for shard in range(shards):
        lines = [json.dumps({"docid": docid, "title": title, "text": text}, ensure_ascii=False)
                 for number, (docid, title, text) in enumerate(passages)
                 if number % shards == shard]
        with gzip.open(corpus / f"docs-{shard}.jsonl.gz", "wt", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in lines))


@pytest.fixture
def miracl(tmp_path):
    root = tmp_path / "miracl"
    _write(root, "sw", "train",
           topics=[("1", "Mji mkuu wa Kenya ni upi?"), ("2", "Mlima mrefu zaidi?"),
                   ("3", "Swali bila jibu")],
           qrels=[("1", "10#0", 0), ("1", "10#1", 1), ("1", "11#0", 1), ("1", "12#0", 0),
                  ("2", "20#0", 1), ("3", "30#0", 0)],
           passages=[("10#0", "Kenya", "Kenya ni nchi."), ("10#1", "Kenya", "Nairobi ni mji mkuu."),
                     ("11#0", "Nairobi", "Nairobi ni jiji."), ("12#0", "", "Mombasa iko pwani."),
                     ("20#0", "Kilimanjaro", "Ni mlima mrefu."), ("30#0", "X", "Hakuna."),
                     ("99#0", "Other", "Not judged.")])
    _write(root, "yo", "dev", topics=[("7", "Kí ni?")], qrels=[("7", "70#0", 1)],
           passages=[("70#0", "A", "B")])  # no train split, as MIRACL's yo
    return root


def test_pairs_follow_the_qrels(miracl):
    """Query 1: first relevant passage 10#1 (qrels order), negatives 10#0 and 12#0 (the other
    relevant one, 11#0, is left out); query 2: no negatives; query 3: no relevant passage."""
    with pytest.warns(UserWarning) as caught:
        corpus = read_miracl(miracl)
    messages = [str(w.message) for w in caught]
    assert any("MIRACL language 'yo' skipped: it has no 'train' split" in m for m in messages)
    assert any("1 train queries left out, no relevant passage in the corpus (sw: 1)" in m
               for m in messages)
    records = list(corpus.records())
    assert records == [
        {"group": "miracl-sw-1", "lang": "sw", "query": "Mji mkuu wa Kenya ni upi?",
         "passage": "Kenya Nairobi ni mji mkuu.",
         "negatives": ["Kenya Kenya ni nchi.", "Mombasa iko pwani."]},
        {"group": "miracl-sw-2", "lang": "sw", "query": "Mlima mrefu zaidi?",
         "passage": "Kilimanjaro Ni mlima mrefu."},
    ]
    with pytest.warns(UserWarning, match="left out"):
        capped = read_miracl(miracl, languages=["sw"], max_negatives=1)
    assert capped.negatives_of(0) == ["Kenya Kenya ni nchi."]
    dev = read_miracl(miracl, languages=["yo"], split="dev", max_negatives=0)
    assert list(dev.records()) == [{"group": "miracl-yo-7", "lang": "yo", "query": "Kí ni?",
                                    "passage": "A B"}]


def test_missing_upstream_files_name_the_file_and_the_source(miracl, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"topics.miracl-v1.0-yo-train.tsv does not "
                                                rf"exist \(the train queries of 'yo'\); obtain "
                                                rf"MIRACL from {SOURCE}"):
        read_miracl(miracl, languages=["yo"])
    with pytest.raises(FileNotFoundError, match=r"miracl-corpus-v1.0-sw: no docs-<n>.jsonl.gz"):
        read_miracl(miracl, tmp_path, ["sw"])
    with pytest.raises(FileNotFoundError, match="MIRACL corpus folder .* does not exist"):
        read_miracl(miracl, tmp_path / "nowhere", ["sw"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no miracl-v1.0-<lang> folder"):
        read_miracl(tmp_path / "empty")
    (miracl / "miracl-v1.0-sw" / "qrels" / "qrels.miracl-v1.0-sw-train.tsv").unlink()
    with pytest.raises(FileNotFoundError, match="qrels.miracl-v1.0-sw-train.tsv does not exist "
                                                r"\(the train judgements of 'sw'\)"):
        read_miracl(miracl, languages=["sw"])


def test_bad_input_names_the_file_and_line(miracl):
    topics = miracl / "miracl-v1.0-sw" / "topics" / "topics.miracl-v1.0-sw-train.tsv"
    qrels = miracl / "miracl-v1.0-sw" / "qrels" / "qrels.miracl-v1.0-sw-train.tsv"
    qrels.write_text("1\tQ0\t10#1\t1\n5\tQ0\t10#1\t1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="judges query '5', which .*topics.* lacks"):
        read_miracl(miracl, languages=["sw"])
    qrels.write_text("1\tQ0\t10#1\t1\n1\tQ0\t10#0\tyes\n", encoding="utf-8")
    topics.write_text("1\tq\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"qrels.miracl-v1.0-sw-train.tsv:2: relevance grade"):
        read_miracl(miracl, languages=["sw"])
    qrels.write_text("1\tQ0\t10#1\t1\n", encoding="utf-8")
    shard = miracl / "miracl-corpus-v1.0-sw" / "docs-1.jsonl.gz"
    with gzip.open(shard, "wt", encoding="utf-8") as handle:
        handle.write('{"docid": "10#1", "title": "T", "text": "x"}\n{"docid": "10#1", ')
    with pytest.raises(ValueError, match=r"docs-1.jsonl.gz:2: not valid JSON"):
        read_miracl(miracl, languages=["sw"])
    with gzip.open(shard, "wt", encoding="utf-8") as handle:
        handle.write('{"docid": "10#1", "title": "T", "text": 3}\n')
    with pytest.raises(ValueError, match=r"docs-1.jsonl.gz:1: 'title' and 'text' must be strings"):
        read_miracl(miracl, languages=["sw"])
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="max_negatives must be an integer >= 0 or None"):
            read_miracl(miracl, languages=["sw"], max_negatives=bad)


def test_convert_miracl_command(miracl, tmp_path, capsys):
    out = tmp_path / "miracl.jsonl"
    assert main(["convert-miracl", "--miracl", str(miracl), "--languages", "sw",
                 "--max-negatives", "1", "--output", str(out)]) == 0
    captured = capsys.readouterr()
    assert "wrote 2 pairs (sw: 2; 1 negatives)" in captured.out
    assert "convert-miracl: warning: MIRACL: 1 train queries left out" in captured.err
    corpus = read_pairs_jsonl(out)
    assert corpus.groups == ["miracl-sw-1", "miracl-sw-2"] and corpus.negatives_of(0) == \
        ["Kenya Kenya ni nchi."]
    assert main(["convert-miracl", "--miracl", str(miracl), "--languages", "de",
                 "--output", str(tmp_path / "de.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hbt-fast convert-miracl: error: ") and err.count("\n") == 1
    assert "topics.miracl-v1.0-de-train.tsv does not exist" in err and SOURCE in err
    assert main(["convert-miracl", "--miracl", str(miracl), "--output",
                 str(miracl / "x.jsonl")]) == 2
    assert "--output" in capsys.readouterr().err
