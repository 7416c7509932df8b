"""split_tatoeba / hbt-fast convert-tatoeba: groups joined through English, a held-out part with
no sentence (nor translation) in training, the Tatoeba layout for evaluation, clear errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from hbt_fast import HybridSampler, labels_to_ids
from hbt_fast.data import load_tatoeba, read_pairs_jsonl, split_tatoeba

CLI = "import sys; from hbt_fast.cli import main; sys.exit(main())"


def write_pair(folder, language, rows):
    (folder / f"tatoeba.{language}-eng.{language}").write_text(
        "".join(f"{source}\n" for source, _ in rows), encoding="utf-8")
    (folder / f"tatoeba.{language}-eng.eng").write_text(
        "".join(f"{english}\n" for _, english in rows), encoding="utf-8")


@pytest.fixture
def tatoeba(tmp_path):
    """deu and fra translate the same 40 English sentences; ita only the first 10."""
    folder = tmp_path / "tatoeba"
    folder.mkdir()
    english = [f"sentence number {i}" for i in range(40)]
    write_pair(folder, "deu", [(f"Satz {i}", e) for i, e in enumerate(english)])
    write_pair(folder, "fra", [(f"phrase {i}", e) for i, e in enumerate(english)])
    write_pair(folder, "ita", [(f"frase {i}", e) for i, e in enumerate(english[:10])])
    return folder


def test_no_held_out_sentence_or_translation_is_trained_on(tatoeba, tmp_path):
    summary = split_tatoeba(tatoeba, tmp_path / "out", heldout_fraction=0.25, min_lines=1)
    corpus = read_pairs_jsonl(tmp_path / "out" / "train.jsonl")
    held = load_tatoeba(tmp_path / "out" / "heldout")
    assert held.languages == summary["languages"] == ["deu", "fra", "ita"]
    held_english = {e for language in held.languages for e in held.english[language]}
    held_sources = {s for language in held.languages for s in held.sentences[language]}
    assert len(held_english) == summary["heldout_english_sentences"] == 10
    trained = set(corpus.queries) | set(corpus.passages)
    assert not trained & held_english and not trained & held_sources
    # Every line is either trained on or held out, in every language.
    assert {s for s in trained if s.startswith("Satz")} | {s for s in held_sources
                                                           if s.startswith("Satz")} == \
        {f"Satz {i}" for i in range(40)}


def test_groups_join_languages_through_english(tatoeba, tmp_path):
    split_tatoeba(tatoeba, tmp_path / "out", heldout_fraction=0.25, min_lines=1)
    rows = [json.loads(line) for line in
            (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    by_group = {}
    for row in rows:
        assert row["query"] == row["passage"]
        by_group.setdefault(row["group"], {})[row["lang"]] = row["query"]
    for members in by_group.values():
        number = members["eng"].rsplit(" ", 1)[1]
        assert members.get("deu", f"Satz {number}") == f"Satz {number}"
        assert members.get("fra", f"phrase {number}") == f"phrase {number}"
    assert sum("ita" in members and "fra" in members for members in by_group.values()) >= 5
    # X-Y batches between any two languages, not only with English.
    ids = labels_to_ids([row["lang"] for row in rows], [row["group"] for row in rows])
    sampler = HybridSampler(ids.languages, ids.groups, 4, mode="xy", seed=0)
    languages = np.asarray([row["lang"] for row in rows])
    kinds = {(languages[q], languages[p]) for qs, ps in sampler for q, p in zip(qs, ps, strict=True)}
    assert ("deu", "fra") in kinds or ("fra", "deu") in kinds


def test_split_is_seeded(tatoeba, tmp_path):
    first = split_tatoeba(tatoeba, tmp_path / "a", seed=3, min_lines=1)
    again = split_tatoeba(tatoeba, tmp_path / "b", seed=3, min_lines=1)
    other = split_tatoeba(tatoeba, tmp_path / "c", seed=4, min_lines=1)
    read = lambda name: (tmp_path / name / "train.jsonl").read_bytes()  # noqa: E731
    assert read("a") == read("b") and first == again
    assert read("a") != read("c") and other["seed"] == 4


def test_small_languages_are_skipped_with_a_warning(tatoeba, tmp_path):
    with pytest.warns(UserWarning, match="'ita' skipped"):
        summary = split_tatoeba(tatoeba, tmp_path / "out", heldout_fraction=0.25, min_lines=5)
    assert summary["languages"] == ["deu", "fra"] and set(summary["skipped"]) == {"ita"}
    assert not (tmp_path / "out" / "heldout" / "tatoeba.ita-eng.ita").exists()


@pytest.mark.parametrize("kwargs, error, message", [
    ({"heldout_fraction": 1.0}, ValueError, "heldout_fraction must be a number in"),
    ({"heldout_fraction": float("nan")}, ValueError, "heldout_fraction"),
    ({"seed": -1}, ValueError, "seed must be"),
    ({"min_lines": 0}, ValueError, "min_lines must be"),
    ({"min_lines": 1000}, ValueError, "no Tatoeba language"),
    ({"languages": ["xyz"]}, FileNotFoundError, "'xyz'"),
])
@pytest.mark.filterwarnings("ignore:Tatoeba language .* skipped")
def test_bad_arguments_are_refused(tatoeba, tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        split_tatoeba(tatoeba, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out" / "train.jsonl").exists()


def test_cli_writes_the_split_and_refuses_an_output_inside_the_data(tatoeba, tmp_path):
    done = subprocess.run([sys.executable, "-c", CLI, "convert-tatoeba", "--data", str(tatoeba),
                           "--output", str(tmp_path / "out"), "--min-lines", "1",
                           "--languages", "deu,fra"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["languages"] == 2
    bad = subprocess.run([sys.executable, "-c", CLI, "convert-tatoeba", "--data", str(tatoeba),
                          "--output", str(tatoeba)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("hbt-fast convert-tatoeba: error: ") and "data folder" in bad.stderr


def test_real_tatoeba_keeps_more_than_fifty_languages(data_dir, tmp_path):
    folder = data_dir / "tatoeba"
    if not folder.is_dir():
        pytest.skip(f"{folder} is missing (LASER Tatoeba test sets)")
    with pytest.warns(UserWarning):  # a few languages have under 20 held-out lines
        summary = split_tatoeba(folder, tmp_path / "out")
    assert len(summary["languages"]) >= 50
    held = load_tatoeba(tmp_path / "out" / "heldout")
    assert held.languages == summary["languages"]
