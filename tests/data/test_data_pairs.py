"""Training pairs: JSONL (with negatives), Parquet, datasets; errors name file and line."""

import json
import re
import string

import numpy as np
import pytest

from hbt_fast.data import (PairCorpus, corpus_from_dataset, corpus_from_records, read_pairs,
                           read_pairs_jsonl, write_pairs_jsonl)


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def pair(group, lang, query="q", passage="p"):
    return json.dumps({"group": group, "lang": lang, "query": query, "passage": passage})


def test_pairs_are_read_with_ids(tmp_path):
    path = write_lines(tmp_path / "pairs.jsonl", [pair("a", "en", "q1", "p1"), "", pair("a", "de"), pair("7", "en")])
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


# ------------------------------------------------------------------ hard negatives


def test_negatives_are_held_flat_with_offsets(tmp_path):
    lines = [json.dumps({"group": "a", "lang": "en", "query": "q", "passage": "p",
                         "negatives": ["n1", "n2"]}),
             pair("a", "de"),
             json.dumps({"group": "b", "lang": "en", "query": "q", "passage": "p",
                         "negatives": ["n3"]})]
    corpus = read_pairs_jsonl(write_lines(tmp_path / "pairs.jsonl", lines))
    assert corpus.negatives == ["n1", "n2", "n3"]
    assert corpus.negative_offsets.tolist() == [0, 2, 2, 3]
    assert corpus.negatives_of(1) == []
    texts, owners = corpus.negative_texts(np.array([2, 0]))
    assert texts == ["n3", "n1", "n2"] and owners.tolist() == [0, 1, 1]
    assert corpus.has_negatives


def test_without_negatives_every_offset_is_zero(tmp_path):
    corpus = read_pairs_jsonl(write_lines(tmp_path / "pairs.jsonl", [pair("a", "en"), pair("b", "en")]))
    assert corpus.negatives == [] and corpus.negative_offsets.tolist() == [0, 0, 0]
    assert not corpus.has_negatives


@pytest.mark.parametrize("negatives, message", [
    ('"one string"', "must be a list of strings, got str"),
    ('["ok", 3]', "must hold non-empty strings, found 3"),
    ('["ok", " "]', "must hold non-empty strings"),
    ('{"a": 1}', "must be a list of strings, got dict"),
])
def test_bad_negatives_name_file_and_line(tmp_path, negatives, message):
    bad = '{"group": "b", "lang": "en", "query": "q", "passage": "p", "negatives": %s}' % negatives
    path = write_lines(tmp_path / "pairs.jsonl", [pair("a", "en"), bad])
    with pytest.raises(ValueError, match=r"pairs.jsonl:2: field 'negatives' " + message):
        read_pairs_jsonl(path)


def test_negatives_round_trip_through_write_pairs_jsonl(tmp_path):
    corpus = PairCorpus.with_negative_lists(["q1", "q2"], ["p1", "p2"], ["en", "de"], ["g", "g"],
                                            [["n"], []])
    write_pairs_jsonl(tmp_path / "out.jsonl", corpus.records())
    again = read_pairs_jsonl(tmp_path / "out.jsonl")
    assert again.negatives == ["n"] and again.negative_offsets.tolist() == [0, 1, 1]


@pytest.mark.parametrize("offsets", [[0, 1], [1, 1, 1], [0, 2, 1], [0, 1, 2]])
def test_inconsistent_negative_offsets_are_refused(offsets):
    with pytest.raises(ValueError, match="negative_offsets"):
        PairCorpus(["q", "q"], ["p", "p"], ["en", "de"], ["g", "g"], ["n"], np.array(offsets))


# ------------------------------------------------------------------ decoding, columns


def test_bad_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(pair("a", "en").encode() + b"\n" + b'{"group": "b", "lang": "en", '
                     b'"query": "caf\xe9", "passage": "p"}\n')
    with pytest.raises(ValueError, match=r"pairs.jsonl:2: not valid UTF-8 \(byte 0xe9"):
        read_pairs_jsonl(path)


def test_columns_rename_the_fields(tmp_path):
    line = json.dumps({"id": 1, "language": "en", "question": "q", "answer": "p", "hard": ["n"]})
    columns = {"group": "id", "lang": "language", "query": "question", "passage": "answer",
               "negatives": "hard"}
    corpus = read_pairs_jsonl(write_lines(tmp_path / "pairs.jsonl", [line]), columns=columns)
    assert (corpus.queries, corpus.groups, corpus.negatives) == (["q"], [1], ["n"])
    with pytest.raises(ValueError, match=r"pairs.jsonl:1: missing field 'text' \(the query field\)"):
        read_pairs_jsonl(tmp_path / "pairs.jsonl", columns={**columns, "query": "text"})
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['question'\]"):
        read_pairs_jsonl(tmp_path / "pairs.jsonl", columns={"question": "q"})


# ------------------------------------------------------------------ Parquet, datasets


ROWS = {"group": ["g1", "g1", "g2"], "lang": ["en", "de", "en"], "query": ["q1", "q2", "q3"],
        "passage": ["p1", "p2", "p3"], "negatives": [["n1"], [], ["n2", "n3"]]}


def _check_rows(corpus):
    assert corpus.queries == ROWS["query"] and corpus.groups == ROWS["group"]
    assert corpus.negatives == ["n1", "n2", "n3"]
    assert corpus.negative_offsets.tolist() == [0, 1, 1, 3]


def test_parquet_file(tmp_path):
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    renamed = {("text" if k == "query" else k): v for k, v in ROWS.items()}
    pq.write_table(pyarrow.table(renamed), tmp_path / "pairs.parquet")
    _check_rows(read_pairs(tmp_path / "pairs.parquet", columns={"query": "text"}))
    with pytest.raises(ValueError, match=r"pairs.parquet: no column\(s\) \['query'\]"):
        read_pairs(tmp_path / "pairs.parquet")


def test_datasets_in_memory_and_saved_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset.from_dict(ROWS)
    _check_rows(corpus_from_dataset(dataset))
    dataset.save_to_disk(str(tmp_path / "saved"))
    _check_rows(read_pairs(tmp_path / "saved"))
    with pytest.raises(TypeError, match="pass one split"):
        corpus_from_dataset(datasets.DatasetDict({"train": dataset}))
    broken = datasets.Dataset.from_dict({**ROWS, "lang": ["en", None, "en"]})
    with pytest.raises(ValueError, match=r"dataset row 2: missing field 'lang'"):
        corpus_from_dataset(broken)


@pytest.mark.parametrize("name, message", [
    ("pairs.csv", "unknown training data format '.csv'"),
    ("missing.jsonl", "does not exist"),
])
def test_read_pairs_refuses_unknown_or_missing_files(tmp_path, name, message):
    if name.endswith(".csv"):
        (tmp_path / name).write_text("a,b\n", encoding="utf-8")
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        read_pairs(tmp_path / name)


def test_a_folder_not_written_by_save_to_disk_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not one written by datasets' save_to_disk"):
        read_pairs(tmp_path)


@pytest.mark.parametrize("first, second", [(7, "7"), ("7", 7), ("a", 7)])
def test_groups_of_mixed_kinds_are_refused_not_merged(tmp_path, first, second):
    # 7 and "7" were one group: pairs of two items trained as translations of each other
    path = write_lines(tmp_path / "pairs.jsonl", [pair(first, "en"), pair(second, "de")])
    with pytest.raises(ValueError, match=rf"pairs.jsonl:2: field 'group' is \w+ {second!r}, but "
                                         rf"it is \w+ {first!r} at line 1"):
        read_pairs_jsonl(path)
    with pytest.raises(ValueError, match=r"record 1: field 'group'"):
        corpus_from_records([json.loads(pair(first, "en")), json.loads(pair(second, "de"))])
    with pytest.raises(TypeError, match=r"groups mixes labels of kinds \['int', 'str'\]"):
        PairCorpus(["q", "q"], ["p", "p"], ["en", "de"], [first, second])


def test_groups_of_mixed_kinds_in_a_table_name_the_row():
    pyarrow = pytest.importorskip("pyarrow")
    # A Parquet or datasets column has one type; an Arrow union column can hold both kinds.
    groups = pyarrow.UnionArray.from_dense(
        pyarrow.array([0, 1], type=pyarrow.int8()), pyarrow.array([0, 0], type=pyarrow.int32()),
        [pyarrow.array([7]), pyarrow.array(["7"])])
    table = pyarrow.table({"group": groups, "lang": ["en", "de"], "query": ["q", "q"],
                           "passage": ["p", "p"]})
    with pytest.raises(ValueError, match=r"dataset row 2: field 'group' is str '7', but it is "
                                         r"int 7 at row 1"):
        corpus_from_dataset(table)


def test_records_are_validated_like_lines():
    with pytest.raises(ValueError, match="record 1: field 'query' must be a non-empty string"):
        corpus_from_records([{"group": 1, "lang": "en", "query": "q", "passage": "p"},
                             {"group": 2, "lang": "en", "query": "", "passage": "p"}])


# ------------------------------------------------------------------ properties

from hypothesis import given, settings, strategies as st  # noqa: E402

_text = st.text(alphabet=string.ascii_letters + "äß中 ", min_size=1, max_size=8).filter(str.strip)
_record = st.fixed_dictionaries(
    {"group": st.one_of(st.integers(0, 5), st.sampled_from(["a", "b"])),
     "lang": st.sampled_from(["en", "de", "zh"]), "query": _text, "passage": _text},
    optional={"negatives": st.lists(_text, max_size=3)})


def _groups_of_one_kind(records, as_strings):
    kind = str if as_strings else (lambda g: g if isinstance(g, int) else 10 + "ab".index(g))
    return [{**r, "group": kind(r["group"])} for r in records]


@settings(max_examples=60, deadline=None)
@given(records=st.lists(_record, min_size=1, max_size=12, unique_by=lambda r: (str(r["group"]), r["lang"])),
       as_strings=st.booleans())
def test_valid_records_read_back_exactly(tmp_path_factory, records, as_strings):
    records = _groups_of_one_kind(records, as_strings)
    path = tmp_path_factory.mktemp("p") / "pairs.jsonl"
    write_pairs_jsonl(path, records)
    corpus = read_pairs_jsonl(path)
    assert corpus.queries == [r["query"] for r in records]
    assert corpus.groups == [r["group"] for r in records]
    assert [corpus.negatives_of(i) for i in range(len(corpus))] == \
        [r.get("negatives", []) for r in records]


@settings(max_examples=150, deadline=None)
@given(content=st.lists(st.one_of(
    st.binary(max_size=30),
    st.builds(json.dumps, _record),
    st.builds(json.dumps, st.dictionaries(st.sampled_from(["group", "lang", "query", "passage",
                                                            "negatives"]),
                                          st.one_of(st.none(), st.booleans(), st.integers(),
                                                    st.floats(), _text, st.lists(_text)))),
), max_size=6))
def test_any_file_reads_or_fails_naming_file_and_line(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("p") / "pairs.jsonl"
    path.write_bytes(b"\n".join(c if isinstance(c, bytes) else c.encode() for c in content))
    try:
        corpus = read_pairs_jsonl(path)
    except ValueError as error:
        assert str(error).startswith(f"{path}:") or str(error).startswith(f"{path}: no pairs")
    else:
        assert 1 <= len(corpus) <= len(content)
        assert all(isinstance(q, str) and q.strip() for q in corpus.queries)


@pytest.mark.parametrize("damage", [
    lambda raw: raw[: len(raw) // 2], lambda raw: b"\0" * len(raw),
    lambda raw: raw[:200] + b"\xff" * (len(raw) - 200),
], ids=["truncated", "zeroed", "overwritten"])
def test_a_damaged_arrow_file_of_a_saved_dataset_is_named(tmp_path, damage):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict(ROWS).save_to_disk(str(tmp_path / "saved"))
    (arrow,) = (tmp_path / "saved").glob("*.arrow")
    arrow.write_bytes(damage(arrow.read_bytes()))
    with pytest.raises(ValueError, match="^" + re.escape(f"{arrow}: not readable, the save_to_disk folder is damaged")):
        read_pairs(tmp_path / "saved")


def test_damaged_metadata_of_a_saved_dataset_is_named(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict(ROWS).save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "saved" / "state.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(ValueError, match=r"state.json: not readable, the save_to_disk folder is damaged"):
        read_pairs(tmp_path / "saved")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 4)), unique=True, max_size=60),
       st.integers(0, 3))
def test_cross_lingual_languages_are_those_of_groups_with_two_languages(pairs, unused_languages):
    """Against the definition: a language with a pair in a group that also holds another language."""
    from hbt_fast.data.pairs import cross_lingual_languages

    names = [f"l{i}" for i in range(5 + unused_languages)]
    groups = sorted({group for group, _ in pairs})
    group_ids = np.array([groups.index(group) for group, _ in pairs], dtype=np.int64)
    language_ids = np.array([language for _, language in pairs], dtype=np.int64)
    expected = {names[language] for group, language in pairs
                if any(g == group and other != language for g, other in pairs)}
    assert cross_lingual_languages(language_ids, group_ids, names) == expected
