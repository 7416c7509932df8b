"""Report files and the ``eval`` subcommand."""

import argparse
import json

import pytest

from hbt_fast.evaluate import write_report
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
                                    [("q1", "alpha?", 0), ("q2", "gamma?", 22)]))
    write_language(folder, "bb", paragraph(["Alfa uno.", "Gama tres."],
                                    [("q1", "alfa?", 0), ("q2", "gama?", 11)]))
    return folder


def test_eval_command_writes_json_markdown_and_heatmap(tiny_xquad, tmp_path, capsys):
    out = tmp_path / "out"
    args = _parser().parse_args(["eval", "--model", "hashed-ngrams", "--task", "xquad-r",
                                 "--data", str(tiny_xquad), "--output", str(out)])
    assert args.func(args) == 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["languages"] == ["aa", "bb"] and results["model"] == "hashed-ngrams"
    markdown = (out / "results.md").read_text(encoding="utf-8")
    assert "| multi |" in markdown and "| aa |" in markdown
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
