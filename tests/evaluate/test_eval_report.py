"""Report files and the ``eval`` subcommand."""

import argparse
import json

import numpy as np
import pytest

from hbt_fast.evaluate import HashedNgramEncoder, write_report
from hbt_fast.cli import main
from hbt_fast.cli.eval import add_parser
from lareqa_files import paragraph, write_language


def _parser():
    parser = argparse.ArgumentParser(prog="hbt-fast")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


@pytest.fixture
def tiny_xquad(tmp_path):
    folder = tmp_path / "xquad-r"
    folder.mkdir()
    write_language(folder, "aa", paragraph(["Alpha one.", "Beta two.", "Gamma three."],
                                    [("q1", "beta two alpha?", 0), ("q2", "gamma?", 22)]))
    write_language(folder, "bb", paragraph(["Alfa uno.", "Gama tres."],
                                    [("q1", "alfa?", 0), ("q2", "alfa uno gama?", 11)]))
    return folder


# tiny_xquad spelled out: candidate sentences, and per question id its relevant sentence.
SENTENCES = {"aa": ["Alpha one.", "Beta two.", "Gamma three."], "bb": ["Alfa uno.", "Gama tres."]}
QUESTIONS = {"aa": {"q1": ("beta two alpha?", 0), "q2": ("gamma?", 2)},
             "bb": {"q1": ("alfa?", 0), "q2": ("alfa uno gama?", 1)}}


def _average_precision(scores, relevant, k=20):
    """AP@k by the definition: rank by score, ties to the lower candidate index."""
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]
    hits = np.isin(order, list(relevant))
    precision = np.cumsum(hits) / np.arange(1, len(order) + 1)
    return float((precision * hits).sum() / min(len(relevant), k))


def _expected_map():
    """mono / cross / multi mAP@20 of the hashed n-gram encoder on tiny_xquad, brute force."""
    encoder = HashedNgramEncoder()
    embed = {lang: encoder.encode(texts).astype(np.float64) for lang, texts in SENTENCES.items()}
    pool = np.concatenate([embed[lang] for lang in SENTENCES])
    offsets = {"aa": 0, "bb": len(SENTENCES["aa"])}
    pairs = {}
    multi = {}
    for x, questions in QUESTIONS.items():
        for y in SENTENCES:
            aps = [_average_precision(embed[y] @ encoder.encode([text])[0].astype(np.float64),
                                      {QUESTIONS[y][qid][1]})
                   for qid, (text, _) in questions.items()]
            pairs[x, y] = np.mean(aps)
        multi[x] = np.mean([
            _average_precision(pool @ encoder.encode([text])[0].astype(np.float64),
                               {offsets[y] + QUESTIONS[y][qid][1] for y in SENTENCES})
            for qid, (text, _) in questions.items()])
    mono = np.mean([pairs[x, x] for x in SENTENCES])
    cross = np.mean([value for (x, y), value in pairs.items() if x != y])
    return mono, cross, np.mean(list(multi.values()))


def test_eval_command_writes_json_markdown_and_heatmap(tiny_xquad, tmp_path, capsys):
    out = tmp_path / "out"
    args = _parser().parse_args(["eval", "--model", "hashed-ngrams", "--task", "xquad-r",
                                 "--data", str(tiny_xquad), "--output", str(out)])
    assert args.func(args) == 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["languages"] == ["aa", "bb"] and results["model"] == "hashed-ngrams"
    mono, cross, multi = _expected_map()
    assert results["mono"]["map@20"] == pytest.approx(mono, abs=1e-6)
    assert results["cross"]["map@20"] == pytest.approx(cross, abs=1e-6)
    assert results["multi"]["map@20"] == pytest.approx(multi, abs=1e-6)
    markdown = (out / "results.md").read_text(encoding="utf-8")
    assert "| multi |" in markdown and "| aa |" in markdown
    assert f"{multi:.4f}" in markdown  # the table shows the value of results.json
    assert (out / "heatmap.png").read_bytes()[:4] == b"\x89PNG"
    assert "map@20" in capsys.readouterr().out


def test_eval_command_with_a_saved_model(tiny_model_dir, tiny_xquad, tmp_path):
    out = tmp_path / "out"
    args = _parser().parse_args(["eval", "--model", str(tiny_model_dir), "--task", "xquad-r",
                                 "--data", str(tiny_xquad), "--output", str(out), "--prefixes",
                                 "--no-progress", "--languages", "aa,bb"])
    assert args.func(args) == 0
    assert json.loads((out / "results.json").read_text())["multi"]["setups"] == 2


def test_report_writes_strict_json_for_empty_setups(tmp_path):
    results = {"task": "tatoeba", "languages": ["deu"], "mean": {"xx->eng": float("nan")},
               "per_language": {"deu": {"xx->eng": float("nan")}}}
    paths = write_report(results, tmp_path)
    assert json.loads(paths["json"].read_text())["mean"]["xx->eng"] is None
    assert "heatmap" not in paths


def test_results_md_and_heatmap_name_the_model_and_data(tiny_xquad, tmp_path):
    out = tmp_path / "out"
    args = _parser().parse_args(["eval", "--model", "hashed-ngrams", "--task", "xquad-r",
                                 "--data", str(tiny_xquad), "--output", str(out), "--no-progress"])
    assert args.func(args) == 0
    markdown = (out / "results.md").read_text(encoding="utf-8")
    assert "model: `hashed-ngrams`" in markdown and f"data: `{tiny_xquad}`" in markdown
    assert "## map@20 by language pair" in markdown
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert set(results) >= {"task", "k", "languages", "mono", "cross", "multi", "matrix",
                            "per_language", "candidate_text", "model", "data"}


@pytest.mark.parametrize("flags, message", [
    (["--model", "./no/such/model"], "--model ./no/such/model: no such folder"),
    (["--model", "hashed-ngrams", "--data", "{tmp}/missing"], "does not exist"),
    (["--model", "hashed-ngrams", "--output", "{data}"], "is the --data folder"),
    (["--model", "hashed-ngrams", "--output", "{tmp}"], "contains the --data folder"),
    (["--model", "hashed-ngrams", "--languages", "aa,,bb"], "'' is not a language code"),
    (["--model", "hashed-ngrams", "--languages", "aa,zz"], "'zz'"),
    (["--model", "{data}"], "--model"),
    (["--model", "{model}", "--device", "nonsense"], "--device nonsense:"),
])
def test_eval_misuse_is_one_line_on_stderr_with_exit_2(tiny_xquad, tiny_model_dir, tmp_path,
                                                       capsys, flags, message):
    values = {"tmp": str(tmp_path), "data": str(tiny_xquad), "model": str(tiny_model_dir)}
    flags = [f.format(**values) for f in flags]
    command = ["eval", "--task", "xquad-r", "--no-progress"]
    if "--data" not in flags:
        command += ["--data", str(tiny_xquad)]
    if "--output" not in flags:
        command += ["--output", str(tmp_path / "out")]
    assert main(command + flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("hbt-fast eval: error: ") and err.count("\n") == 1, err
    assert message in err


def test_eval_help_lists_the_task_choices(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["eval", "--help"])
    assert "xquad-r, mlqa-r, tatoeba, miracl" in " ".join(capsys.readouterr().out.split())


def test_candidate_text_flag_is_explained_and_recorded(tiny_xquad, tmp_path, capsys):
    """Sentence alone by default; the sentence with its paragraph (LAReQA, XTREME-R) on request,
    recorded in results.json and changing what the candidates are."""
    maps = {}
    for flags, recorded in (([], "sentence"), (["--candidate-text", "sentence_context"],
                                               "sentence_context")):
        out = tmp_path / recorded
        assert main(["eval", "--model", "hashed-ngrams", "--task", "xquad-r", "--data",
                     str(tiny_xquad), "--output", str(out), "--no-progress", *flags]) == 0
        results = json.loads((out / "results.json").read_text(encoding="utf-8"))
        assert results["candidate_text"] == recorded
        assert f"candidate_text = {recorded}" in (out / "results.md").read_text(encoding="utf-8")
        maps[recorded] = results["multi"]["map@20"]
    assert maps["sentence"] != maps["sentence_context"]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        _parser().parse_args(["eval", "--help"])
    assert "as LAReQA and XTREME-R encode candidates" in " ".join(capsys.readouterr().out.split())
