"""File helpers, Tatoeba and MIRACL/BEIR readers: decoding errors, atomic outputs, overlaps."""

import json

import pytest
from hypothesis import given, settings, strategies as st

from hbt_fast.data import load_beir, load_tatoeba
from hbt_fast.data.files import atomic_output, read_json, refuse_overlap, text_lines


def test_text_lines_split_on_newline_only(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"a\r\nb\rc\n\nd")
    assert list(text_lines(path)) == [(1, "a"), (2, "b\rc"), (3, ""), (4, "d")]


def test_atomic_output_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError):
        with atomic_output(path) as handle:
            handle.write("half")
            raise RuntimeError("disk full")
    assert path.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    with atomic_output(path) as handle:
        handle.write("new")
    assert path.read_text(encoding="utf-8") == "new"


@pytest.mark.parametrize("output, verdict", [
    ("data", "is the data"), (".", "contains the data"), ("data/sub", "lies inside the data"),
    ("other", None)])
def test_refuse_overlap(tmp_path, monkeypatch, output, verdict):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    if verdict is None:
        refuse_overlap(output, {"the data": "data"})
    else:
        with pytest.raises(ValueError, match=verdict):
            refuse_overlap(output, {"the data": "data"})


@pytest.mark.parametrize("raw, message", [
    (b'{"a":\n 1,\n "b": \xff}', r"x.json:3: not valid UTF-8 \(byte 0xff at column 7\)"),
    (b'{"a":\n 1,,}', r"x.json:2: not valid JSON \(Expecting property name"),
    (b"[" * 100000, r"x.json"),
])
def test_read_json_names_file_and_line(tmp_path, raw, message):
    (tmp_path / "x.json").write_bytes(raw)
    with pytest.raises(ValueError, match=message):
        read_json(tmp_path / "x.json")


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=40))
def test_read_json_returns_or_names_the_file(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("j") / "x.json"
    path.write_bytes(raw)
    try:
        value = read_json(path)
    except ValueError as error:
        assert str(error).startswith(str(path))
    else:
        assert json.loads(raw.decode("utf-8-sig")) == value


# ------------------------------------------------------------------ Tatoeba, BEIR


def _tatoeba(folder, language="deu", source="a\nb\n", english="x\ny\n"):
    (folder / f"tatoeba.{language}-eng.{language}").write_text(source, encoding="utf-8")
    (folder / f"tatoeba.{language}-eng.eng").write_text(english, encoding="utf-8")


@pytest.mark.parametrize("languages, error, message", [
    ([], ValueError, "languages must not be empty"),
    (["deu", "deu"], ValueError, "more than once"),
    ("deu", TypeError, "not a single string"),
    (["fra"], FileNotFoundError, "'fra'"),
])
def test_tatoeba_language_lists_are_checked(tmp_path, languages, error, message):
    _tatoeba(tmp_path)
    with pytest.raises(error, match=message):
        load_tatoeba(tmp_path, languages)


def test_tatoeba_bad_utf8_names_file_and_line(tmp_path):
    _tatoeba(tmp_path)
    (tmp_path / "tatoeba.deu-eng.eng").write_bytes(b"x\n\xc0y\n")
    with pytest.raises(ValueError, match=r"tatoeba.deu-eng.eng:2: not valid UTF-8"):
        load_tatoeba(tmp_path)


def _beir(folder, corpus_lines, queries="q1\tfirst\n", qrels="q1 Q0 d1 1\n"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "queries.tsv").write_text(queries, encoding="utf-8")
    (folder / "qrels.txt").write_text(qrels, encoding="utf-8")
    (folder / "corpus.jsonl").write_text("\n".join(corpus_lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("corpus, message", [
    (['{"docid": "d1", "text": "t"}', "{oops"], r"corpus.jsonl:2: not valid JSON"),
    (['{"docid": "d1", "text": "t"}', '["d2"]'], r"corpus.jsonl:2: expected a JSON object"),
    (['{"docid": "d1", "text": "t"}', '{"docid": "d1", "text": "u"}'],
     r"corpus.jsonl:2: document id 'd1' already on line 1"),
    (['{"docid": "d1", "text": 5}'], r"corpus.jsonl:1: 'title' and 'text' must be strings"),
    (['{"text": "t"}'], r"corpus.jsonl:1: corpus record has no 'docid'"),
])
def test_beir_corpus_errors_name_file_and_line(tmp_path, corpus, message):
    _beir(tmp_path / "xx", corpus)
    with pytest.raises(ValueError, match=message):
        load_beir(tmp_path)


def test_beir_queries_and_qrels_errors_name_file_and_line(tmp_path):
    _beir(tmp_path / "xx", ['{"docid": "d1", "text": "t"}'], queries="q1\tfirst\nq1\tagain\n")
    with pytest.raises(ValueError, match=r"queries.tsv:2: query id 'q1' appears twice"):
        load_beir(tmp_path)
    _beir(tmp_path / "xx", ['{"docid": "d1", "text": "t"}'], qrels="q1 Q0 d1 1\nq1 Q0 d1 high\n")
    with pytest.raises(ValueError, match=r"qrels.txt:2: relevance grade 'high'"):
        load_beir(tmp_path)


@settings(max_examples=60, deadline=None)
@given(source=st.binary(max_size=30), english=st.binary(max_size=30))
def test_tatoeba_files_load_aligned_or_fail_naming_file_or_language(tmp_path_factory, source,
                                                                    english):
    folder = tmp_path_factory.mktemp("t")
    (folder / "tatoeba.deu-eng.deu").write_bytes(source)
    (folder / "tatoeba.deu-eng.eng").write_bytes(english)
    try:
        data = load_tatoeba(folder)
    except ValueError as error:
        assert "tatoeba.deu-eng" in str(error) or "'deu'" in str(error)
    else:
        assert len(data.sentences["deu"]) == len(data.english["deu"]) >= 1
        assert all("\n" not in line for line in data.sentences["deu"] + data.english["deu"])


# ------------------------------------------------------------------ lone surrogates

LONE = [r"\ud800", r"x\udfff", r"\ud83d x", r"\ude00\ud83d"]


@pytest.mark.parametrize("escape", LONE)
def test_a_lone_surrogate_in_a_jsonl_line_names_the_file_and_line(tmp_path, escape):
    # json.loads accepts it; the tokenizer then failed naming no file
    from hbt_fast.data import read_pairs_jsonl

    good = '{"group": "a", "lang": "en", "query": "q \\ud83d\\ude00", "passage": "p"}'
    bad = '{"group": "a", "lang": "de", "query": "q", "passage": "p %s"}' % escape
    path = tmp_path / "pairs.jsonl"
    path.write_text(good + "\n" + bad + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"pairs.jsonl:2: text holds a lone surrogate U\+D[89A-F]"):
        read_pairs_jsonl(path)
    path.write_text(good + "\n", encoding="utf-8")
    assert read_pairs_jsonl(path).queries == ["q \U0001F600"]  # a pair of escapes is one character


def test_a_lone_surrogate_in_a_record_names_the_record_and_field():
    from hbt_fast.data import corpus_from_records

    records = [{"group": 1, "lang": "en", "query": "q", "passage": "p"},
               {"group": 2, "lang": "en", "query": "q", "passage": "p", "negatives": ["n\ud800"]}]
    with pytest.raises(ValueError, match=r"record 1: field 'negatives': text holds a lone surrogate"):
        corpus_from_records(records)


def test_a_lone_surrogate_in_a_json_document_names_its_line(tmp_path):
    from lareqa_files import paragraph, write_language

    from hbt_fast.data import load_lareqa

    path = write_language(tmp_path, "aa", paragraph(["A0."], [("q", "Q", 0)]))
    text = json.dumps(json.loads(path.read_text(encoding="utf-8")), indent=1)
    lines = text.split("\n")
    at = next(i for i, line in enumerate(lines) if '"Q"' in line)
    lines[at] = lines[at].replace('"Q"', r'"Q \\ud800 \ud83d\ude00 \udbff"')
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"aa.json:{at + 1}: text holds a lone surrogate U\+DBFF"):
        load_lareqa(tmp_path)


def test_a_lone_surrogate_in_a_beir_corpus_names_the_file_and_line(tmp_path):
    from hbt_fast.data import load_beir_language

    (tmp_path / "queries.tsv").write_text("q1\tquestion\n", encoding="utf-8")
    (tmp_path / "qrels.txt").write_text("q1 Q0 d1 1\n", encoding="utf-8")
    (tmp_path / "corpus.jsonl").write_text(
        '{"docid": "d1", "text": "fine"}\n{"docid": "d2", "title": "\\udc00", "text": "t"}\n',
        encoding="utf-8")
    with pytest.raises(ValueError, match=r"corpus.jsonl:2: text holds a lone surrogate U\+DC00"):
        load_beir_language(tmp_path)
