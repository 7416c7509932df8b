"""One rule for every command that writes: an output that is, contains or lies inside one of
its inputs (however spelled: relative, through a link, through $HBT_DATA_DIR) is refused with
one line naming the flag and both paths, exit 2, before anything is written."""

import os
import shutil
import sys
import types
from pathlib import Path

import pytest
from lareqa_files import paragraph, write_language

import hbt_fast
from hbt_fast._outputs import refuse_overlap
from hbt_fast.cli import main

PACKAGE = Path(hbt_fast.__file__).parent


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def world(tmp_path, monkeypatch, tiny_model_dir):
    """tmp_path/data/xquad-r (also $HBT_DATA_DIR), a model folder, a link to each; cwd is tmp_path."""
    monkeypatch.chdir(tmp_path)
    xquad = tmp_path / "data" / "xquad-r"
    xquad.mkdir(parents=True)
    write_language(xquad, "aa", paragraph(["Alpha one.", "Beta two."], [("q1", "alpha?", 0)]))
    write_language(xquad, "bb", paragraph(["Alfa uno.", "Beta dos."], [("q1", "alfa?", 0)]))
    shutil.copytree(tiny_model_dir, tmp_path / "model")
    (tmp_path / "data-link").symlink_to(tmp_path / "data")
    (tmp_path / "model-link").symlink_to(tmp_path / "model")
    monkeypatch.setenv("HBT_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def refused(capsys, command, flag, relation, what):
    """``main(command)`` is exit 2 with one line naming the flag, the relation and the input."""
    before = snapshot(Path.cwd())
    assert main(command) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(f"hbt-fast {command[0]}: error: {flag} "), error
    assert f" {relation} {what}" in error, error
    assert snapshot(Path.cwd()) == before


@pytest.mark.parametrize("output, relation", [
    ("data", "is"), ("data/sub", "lies inside"), (".", "contains"), ("data-link/sub", "lies inside"),
    ("data/../data/sub", "lies inside")])
def test_refuse_overlap_resolves_every_spelling(tmp_path, monkeypatch, output, relation):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data-link").symlink_to(tmp_path / "data")
    for spelling in ("data", str(tmp_path / "data"), "data-link"):
        with pytest.raises(ValueError, match=f"^--out {output}.* {relation} the data "):
            refuse_overlap(output, {"the data": spelling}, name="--out")
    refuse_overlap("elsewhere", {"the data": "data"})


@pytest.mark.parametrize("output", [PACKAGE, PACKAGE / "results", PACKAGE.parent])
def test_no_output_touches_the_installed_package(output):
    with pytest.raises(ValueError, match="the installed hbt_fast package"):
        refuse_overlap(output, {})


@pytest.mark.parametrize("output, relation, what", [
    ("data/xquad-r", "lies inside", "the data folder found through $HBT_DATA_DIR"),  # no --data
    ("data/xquad-r/sub", "lies inside", "the data folder found through $HBT_DATA_DIR"),
    ("data/results", "lies inside", "the data folder found through $HBT_DATA_DIR"),
    ("data-link", "is", "the data folder found through $HBT_DATA_DIR"),
    ("model/ev", "lies inside", "the --model folder"),
    ("model-link", "is", "the --model folder"),
])
def test_eval_refuses_an_output_among_its_inputs(world, capsys, output, relation, what):
    refused(capsys, ["eval", "--task", "xquad-r", "--model", "model", "--output", output, "--no-progress"],
            "--output", relation, what)


@pytest.mark.parametrize("output, relation", [("data/xquad-r/sub", "lies inside"), (".", "contains")])
def test_eval_with_data_given_refuses_the_same(world, capsys, output, relation):
    refused(capsys, ["eval", "--task", "xquad-r", "--model", "hashed-ngrams", "--data", "data/xquad-r",
                     "--output", output, "--no-progress"], "--output", relation, "the --data folder")


def test_split_lareqa_refuses_an_output_inside_the_data(world, capsys):
    refused(capsys, ["split-lareqa", "--data", "data/xquad-r", "--output", "data-link/xquad-r/split"],
            "--output", "lies inside", "the --data folder")


def test_convert_mmarco_refuses_an_output_inside_its_root(world, capsys):
    root = world / "mmarco"
    (root / "en").mkdir(parents=True)
    for name in ("queries.tsv", "collection.tsv"):
        (root / "en" / name).write_text("1\tx\n")
    (root / "train_pairs.tsv").write_text("1\t1\n")
    refused(capsys, ["convert-mmarco", "--root", "mmarco", "--languages", "en", "--output", "mmarco/pairs.jsonl"],
            "--output", "lies inside", "the --root folder")


@pytest.mark.parametrize("output, relation, what", [
    ("data/runs", "lies inside", "the data folder found through $HBT_DATA_DIR"),
    ("model/runs", "lies inside", "the --model folder")])
def test_experiment_refuses_an_output_among_its_inputs(world, capsys, output, relation, what):
    refused(capsys, ["experiment", "--model", "model", "--output", output, "--quick"], "--output", relation, what)


def test_bench_json_is_checked_before_measuring(world, capsys, monkeypatch):
    import hbt_fast.cli.bench as bench

    suite = types.ModuleType("never_run")
    suite.run = lambda quick: pytest.fail("measured before checking --json")
    monkeypatch.setitem(sys.modules, "never_run", suite)
    monkeypatch.setattr(bench, "SUITES", {"sampler": "never_run"})
    (world / "out").mkdir()
    for target, message in ((PACKAGE / "bench.json", "lies inside the installed hbt_fast package"),
                            (world / "out", "is a folder")):
        assert main(["bench", "--quick", "--json", str(target)]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and error.startswith("hbt-fast bench: error: --json ") and message in error
    assert not (PACKAGE / "bench.json").exists() and os.listdir(world / "out") == []


def test_experiment_refusals_are_one_line_with_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HBT_DATA_DIR")
    assert main(["experiment", "--output", str(tmp_path / "out"), "--quick"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("hbt-fast experiment: error: give --data or set HBT_DATA_DIR")
