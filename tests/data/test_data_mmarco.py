"""mMARCO layout -> pairs, and ``hbt-fast convert-mmarco``."""

import pytest

from hbt_fast.cli import main
from hbt_fast.data import read_mmarco, read_pairs_jsonl


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def mmarco(tmp_path):
    root = tmp_path / "mmarco"
    root.mkdir()
    write_lines(root / "train_pairs.tsv", ["1\t10", "1\t11", "2\t20"])
    for lang, word in (("en", "what"), ("de", "was")):
        (root / lang).mkdir()
        write_lines(root / lang / "queries.tsv", [f"1\t{word} one", f"2\t{word} two"])
        write_lines(root / lang / "collection.tsv", [f"10\t{lang} ten", f"20\t{lang} twenty", "30\tx"])
    return root


def test_mmarco_layout_groups_by_query_id(mmarco, tmp_path):
    corpus = read_mmarco(mmarco, ["en", "de"])
    assert corpus.queries == ["what one", "what two", "was one", "was two"]
    assert corpus.passages == ["en ten", "en twenty", "de ten", "de twenty"]
    assert corpus.groups == ["1", "2", "1", "2"]
    assert main(["convert-mmarco", "--root", str(mmarco), "--languages", "en,de",
                 "--output", str(tmp_path / "pairs.jsonl")]) == 0
    converted = read_pairs_jsonl(tmp_path / "pairs.jsonl")
    assert converted.queries == corpus.queries and converted.groups == corpus.groups


@pytest.mark.parametrize("extra, message", [
    (["--languages", "en,en"], r"--languages lists \['en'\] more than once"),
    (["--languages", "en", "--max-queries", "0"], "--max-queries must be an integer >= 1"),
    (["--languages", "xx"], "xx/queries.tsv does not exist"),
])
def test_convert_mmarco_misuse_is_one_line_and_writes_nothing(mmarco, tmp_path, capsys, extra, message):
    output = tmp_path / "pairs.jsonl"
    assert main(["convert-mmarco", "--root", str(mmarco), "--output", str(output)] + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("hbt-fast convert-mmarco: error:") and err.count("\n") == 1
    assert message in err or __import__("re").search(message, err)
    assert not output.exists() and list(tmp_path.glob(".pairs.jsonl*")) == []


def test_convert_mmarco_refuses_to_write_over_an_input(mmarco, capsys):
    queries = mmarco / "en" / "queries.tsv"
    before = queries.read_bytes()
    assert main(["convert-mmarco", "--root", str(mmarco), "--languages", "en",
                 "--output", str(queries)]) == 2
    assert "is the en/queries.tsv input" in capsys.readouterr().err
    assert queries.read_bytes() == before


def test_a_failed_conversion_keeps_the_previous_output(mmarco, tmp_path):
    output = write_lines(tmp_path / "pairs.jsonl", ["previous"])
    (mmarco / "de" / "queries.tsv").write_bytes(b"1\tbad \xff byte\n")
    assert main(["convert-mmarco", "--root", str(mmarco), "--languages", "en,de",
                 "--output", str(output)]) == 2
    assert output.read_text(encoding="utf-8") == "previous\n"


def test_bad_utf8_in_tsv_names_file_and_line(mmarco):
    (mmarco / "de" / "collection.tsv").write_bytes(b"10\tok\n20\tnot \xc3( utf-8\n")
    with pytest.raises(ValueError, match=r"de/collection.tsv:2: not valid UTF-8"):
        read_mmarco(mmarco, ["de"])


@pytest.mark.parametrize("file, lines, message", [
    ("en/queries.tsv", ["1\twhat one", "2\twhat two", "1\twhat else"],
     r"en/queries.tsv:3: id '1' already on line 1"),
    ("de/collection.tsv", ["10\tde ten", "20\tde twenty", "20\tde zwanzig"],
     r"de/collection.tsv:3: id '20' already on line 2"),
])
def test_duplicate_ids_name_the_file_and_line(mmarco, file, lines, message):
    # the text of a duplicated id was whichever line came last, silently
    write_lines(mmarco / file, lines)
    with pytest.raises(ValueError, match=message):
        read_mmarco(mmarco, ["en", "de"])


@pytest.mark.parametrize("language", ["..", ".", "en/../de", "a\\b", "a\0b"])
def test_language_codes_cannot_leave_the_root(mmarco, language):
    with pytest.raises(ValueError, match="is not a language code"):
        read_mmarco(mmarco / "en", [language])
