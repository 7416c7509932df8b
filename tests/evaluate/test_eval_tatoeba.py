"""Tatoeba accuracy@1: a hand-worked fixture, bad input, real files."""

import json

import numpy as np
import pytest

from hbt_fast.evaluate import HashedNgramEncoder, evaluate_tatoeba
from hbt_fast.evaluate.tatoeba import tatoeba_languages


class TableEncoder:
    def __init__(self, table):
        self.table = table

    def encode_queries(self, texts):
        return np.array([self.table[t] for t in texts], dtype=np.float32)

    encode_passages = encode_queries


def test_hand_worked_accuracy(tmp_path):
    """deu lines d0 d1 d2 with English e0 e1 e2. Embeddings: d0=e0=[1,0], d1=[0,1], e1=[1,0],
    d2=e2=[0,1]. deu->eng: d0 -> e0 (tie with e1, lower index wins) ok; d1 -> e2? no: d1·e2 = 1
    and d1·e1 = 0, so wrong; d2 -> e2 ok => 2/3. eng->deu: e0 -> d0 ok; e1 -> d0 wrong; e2 -> d1
    (tie with d2, lower index) wrong => 1/3."""
    (tmp_path / "tatoeba.deu-eng.deu").write_text("d0\nd1\nd2\n", encoding="utf-8")
    (tmp_path / "tatoeba.deu-eng.eng").write_text("e0\ne1\ne2\n", encoding="utf-8")
    table = {"d0": [1, 0], "e0": [1, 0], "d1": [0, 1], "e1": [1, 0], "d2": [0, 1], "e2": [0, 1]}
    r = evaluate_tatoeba(TableEncoder(table), tmp_path)
    assert r["languages"] == ["deu"]
    assert r["per_language"]["deu"]["xx->eng"] == pytest.approx(2 / 3)
    assert r["per_language"]["deu"]["eng->xx"] == pytest.approx(1 / 3)
    assert r["mean"]["both"] == pytest.approx(0.5)


def test_bad_input(tmp_path, monkeypatch):
    (tmp_path / "tatoeba.fra-eng.fra").write_text("a\nb\n", encoding="utf-8")
    (tmp_path / "tatoeba.fra-eng.eng").write_text("a\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'fra'.*line-aligned"):
        evaluate_tatoeba(HashedNgramEncoder(), tmp_path)
    with pytest.raises(FileNotFoundError, match="'xyz'"):
        evaluate_tatoeba(HashedNgramEncoder(), tmp_path, languages=["xyz"])
    monkeypatch.delenv("HBT_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="LASER/tree/main/data/tatoeba"):
        evaluate_tatoeba(HashedNgramEncoder())


def test_real_tatoeba_subset(data_dir):
    folder = data_dir / "tatoeba"
    if not folder.is_dir():
        pytest.skip(f"{folder} is missing (LASER Tatoeba test sets)")
    r = evaluate_tatoeba(HashedNgramEncoder(), folder, languages=["deu", "fra", "ang"])
    assert r["per_language"]["deu"]["sentences"] == 1000
    assert r["per_language"]["ang"]["sentences"] == 134
    # Expected accuracies derived here by brute force over the raw files: all dot products,
    # the nearest by np.argmax (ties to the lower index, the documented rule). A near-tie may
    # round the other way in the search's summation order, hence one sentence of tolerance.
    encoder = HashedNgramEncoder()
    for language in ("deu", "fra", "ang"):
        lines = {side: (folder / f"tatoeba.{language}-eng.{side}").read_text(encoding="utf-8")
                 .splitlines() for side in (language, "eng")}
        source, english = (encoder.encode_passages(lines[side]) for side in (language, "eng"))
        scores = source.astype(np.float64) @ english.astype(np.float64).T
        rows = np.arange(len(source))
        got = r["per_language"][language]
        tolerance = 1.0 / len(source)
        assert got["xx->eng"] == pytest.approx(np.mean(scores.argmax(1) == rows), abs=tolerance)
        assert got["eng->xx"] == pytest.approx(np.mean(scores.argmax(0) == rows), abs=tolerance)


def _write(folder, language, source, english):
    (folder / f"tatoeba.{language}-eng.{language}").write_text("".join(f"{s}\n" for s in source),
                                                               encoding="utf-8")
    (folder / f"tatoeba.{language}-eng.eng").write_text("".join(f"{e}\n" for e in english),
                                                         encoding="utf-8")


def test_hand_worked_f1_as_mteb_reports_it(tmp_path):
    """The fixture of test_hand_worked_accuracy. deu->eng picks [e0, e2, e2]: e0 is picked once
    and right (F1 1), e1 never (0), e2 twice and right once (2 / (1 + 2) = 2/3): F1 = 5/9.
    eng->deu picks [d0, d0, d1]: d0 twice, right once (2/3), the others wrong: F1 = 2/9."""
    _write(tmp_path, "deu", ["d0", "d1", "d2"], ["e0", "e1", "e2"])
    table = {"d0": [1, 0], "e0": [1, 0], "d1": [0, 1], "e1": [1, 0], "d2": [0, 1], "e2": [0, 1]}
    r = evaluate_tatoeba(TableEncoder(table), tmp_path)
    assert r["per_language"]["deu"]["f1_xx->eng"] == pytest.approx(5 / 9)
    assert r["per_language"]["deu"]["f1_eng->xx"] == pytest.approx(2 / 9)
    assert r["mean"]["f1_xx->eng"] == pytest.approx(5 / 9)
    assert r.metric("mean/f1_xx->eng") == pytest.approx(5 / 9)
    assert "seen" not in r.headline and "seen" not in r["per_language"]["deu"]


def test_seen_unseen_and_low_resource_sections(tmp_path):
    """deu is seen (the run's 'de', an ISO 639-1 code), swh unseen and low-resource. deu gets
    everything right (accuracy 1); swh's two lines share one embedding, so both directions pick
    line 0 for both queries: accuracy 1/2, F1 = (2 / (1 + 2)) / 2 = 1/3."""
    _write(tmp_path, "deu", ["d0", "d1"], ["e0", "e1"])
    _write(tmp_path, "swh", ["s0", "s1"], ["f0", "f1"])
    table = {"d0": [1, 0], "e0": [1, 0], "d1": [0, 1], "e1": [0, 1],
             "s0": [1, 1], "s1": [1, 1], "f0": [1, 1], "f1": [1, 1]}
    r = evaluate_tatoeba(TableEncoder(table), tmp_path, seen_languages=["de", "en"])
    assert r["seen"] == {"xx->eng": 1.0, "eng->xx": 1.0, "both": 1.0, "f1_xx->eng": 1.0,
                         "f1_eng->xx": 1.0, "languages": 1}
    assert r["unseen"]["xx->eng"] == pytest.approx(0.5) and r["unseen"]["languages"] == 1
    assert r["unseen"]["f1_xx->eng"] == pytest.approx(1 / 3)
    assert r["low-resource"] == r["unseen"]
    assert r["mean"]["f1_eng->xx"] == pytest.approx((1 + 1 / 3) / 2)
    assert r["per_language"]["deu"]["seen"] and not r["per_language"]["swh"]["seen"]
    assert r["per_language"]["swh"]["low_resource"] and not r["per_language"]["deu"]["low_resource"]
    assert r["seen_languages"] == ["deu", "eng"]
    assert "1,000 pairs" in r["low_resource_rule"]
    # A section without languages is left out rather than reported as NaN.
    only_deu = evaluate_tatoeba(TableEncoder(table), tmp_path, languages=["deu"],
                                seen_languages=["deu"])
    assert set(only_deu.headline) == {"mean", "seen"}
    custom = evaluate_tatoeba(TableEncoder(table), tmp_path, low_resource=["deu"])
    assert custom["low-resource"]["languages"] == 1 and custom["low-resource"]["xx->eng"] == 1.0
    assert custom["low_resource_rule"] == "given: deu"


def test_a_language_with_too_few_lines_is_skipped_with_a_warning(tmp_path):
    _write(tmp_path, "deu", ["d0", "d1"], ["e0", "e1"])
    _write(tmp_path, "tzl", ["t0"], ["u0"])
    table = {"d0": [1, 0], "e0": [1, 0], "d1": [0, 1], "e1": [0, 1], "t0": [1, 0], "u0": [1, 0]}
    with pytest.warns(UserWarning, match="Tatoeba language 'tzl' skipped: 1 line, fewer than "
                                         "min_lines=2"):
        r = evaluate_tatoeba(TableEncoder(table), tmp_path)
    assert r["languages"] == ["deu"] and r["skipped"] == {"tzl": "1 line"}
    assert r["min_lines"] == 2
    with pytest.warns(UserWarning, match="'deu' skipped: 2 lines"), \
            pytest.raises(ValueError, match="no Tatoeba language .* has 5 lines or more"):
        evaluate_tatoeba(TableEncoder(table), tmp_path, languages=["deu"], min_lines=5)
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match="min_lines must be an integer >= 1"):
            evaluate_tatoeba(TableEncoder(table), tmp_path, min_lines=bad)
    with pytest.raises(TypeError, match="seen_languages must be a list"):
        evaluate_tatoeba(TableEncoder(table), tmp_path, seen_languages="deu")
    with pytest.raises(ValueError, match="seen_languages: '' is not a language code"):
        evaluate_tatoeba(TableEncoder(table), tmp_path, seen_languages=["deu", ""])


def test_iso_639_1_codes_map_onto_tatoeba_files(data_dir):
    """Every code the table maps to is a language of LASER's Tatoeba set (or its pivot), and
    the low-resource list is exactly the languages with fewer than 1,000 pairs there."""
    from hbt_fast.data.tatoeba import (ISO_639_1_TO_TATOEBA, LOW_RESOURCE_PAIRS,
                                       TATOEBA_LOW_RESOURCE, tatoeba_code)

    folder = data_dir / "tatoeba"
    if not folder.is_dir():
        pytest.skip(f"{folder} is missing (LASER Tatoeba test sets)")
    languages = set(tatoeba_languages(folder))
    assert set(ISO_639_1_TO_TATOEBA.values()) - {"eng"} <= languages
    counts = {lang: len((folder / f"tatoeba.{lang}-eng.eng").read_text(encoding="utf-8")
                        .splitlines()) for lang in languages}
    assert sorted(TATOEBA_LOW_RESOURCE) == sorted(
        lang for lang, n in counts.items() if n < LOW_RESOURCE_PAIRS)
    assert tatoeba_code("zh") == "cmn" and tatoeba_code("deu") == "deu"


@pytest.fixture
def tatoeba_folder(tmp_path):
    folder = tmp_path / "tatoeba"
    folder.mkdir()
    _write(folder, "deu", ["ein Hund", "eine Katze"], ["a dog", "a cat"])
    _write(folder, "swh", ["mbwa", "paka"], ["a dog", "a cat"])
    _write(folder, "tzl", ["one"], ["one"])
    return folder


def _eval(folder, out, *flags):
    from hbt_fast.cli import main

    return main(["eval", "--model", "hashed-ngrams", "--task", "tatoeba", "--data", str(folder),
                 "--output", str(out), "--no-progress", *flags])


def test_eval_command_reports_seen_languages_of_a_run(tatoeba_folder, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run_config.json").write_text(json.dumps({"languages": ["de", "en"]}),
                                         encoding="utf-8")
    assert _eval(tatoeba_folder, tmp_path / "out", "--trained-on", str(run)) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert results["languages"] == ["deu", "swh"]  # tzl: one line, skipped
    assert results["seen"]["languages"] == 1 and results["unseen"]["languages"] == 1
    assert results["low-resource"]["languages"] == 1  # swh
    assert results["trained_on"] == str(run) and results["seen_languages"] == ["deu", "eng"]
    assert {"f1_xx->eng", "f1_eng->xx"} <= set(results["mean"])
    assert results["skipped"] == {"tzl": "1 line"}
    err = capsys.readouterr().err
    assert "hbt-fast eval: warning: Tatoeba language 'tzl' skipped: 1 line, fewer than " \
           "min_lines=2" in err
    # a training file: its 'lang' values
    pairs = tmp_path / "train.jsonl"
    pairs.write_text(json.dumps({"group": 1, "lang": "swh", "query": "q", "passage": "p"}) + "\n",
                     encoding="utf-8")
    assert _eval(tatoeba_folder, tmp_path / "out2", "--trained-on", str(pairs),
                 "--min-lines", "1") == 0
    results = json.loads((tmp_path / "out2" / "results.json").read_text(encoding="utf-8"))
    assert results["seen_languages"] == ["swh"] and results["languages"] == ["deu", "swh", "tzl"]
    assert results["per_language"]["swh"]["seen"] is True
    assert _eval(tatoeba_folder, tmp_path / "out3", "--seen-languages", "deu,swh") == 0
    results = json.loads((tmp_path / "out3" / "results.json").read_text(encoding="utf-8"))
    assert "unseen" not in results and results["seen"]["languages"] == 2


@pytest.mark.parametrize("flags, message", [
    (["--trained-on", "{tmp}/nothing"], "--trained-on {tmp}/nothing: no such file or folder"),
    (["--trained-on", "{tmp}/plain"], "a folder without run_config.json"),
    (["--trained-on", "{tmp}/bad_run"], "run_config.json has no 'languages' list"),
    (["--candidate-text", "sentence_context"],
     "--candidate-text applies to --task xquad-r / mlqa-r, not tatoeba"),
    (["--split", "dev"], "--split applies to --task mewsli-x, not tatoeba"),
])
def test_eval_command_refuses_bad_tatoeba_options(tatoeba_folder, tmp_path, capsys, flags,
                                                   message):
    (tmp_path / "plain").mkdir()
    (tmp_path / "bad_run").mkdir()
    (tmp_path / "bad_run" / "run_config.json").write_text("{}", encoding="utf-8")
    flags = [f.format(tmp=tmp_path) for f in flags]
    assert _eval(tatoeba_folder, tmp_path / "out", *flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("hbt-fast eval: error: ") and err.count("\n") == 1, err
    assert message.format(tmp=tmp_path) in err
    assert not (tmp_path / "out").exists()
