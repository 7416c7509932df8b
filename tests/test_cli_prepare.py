"""``hbt-fast prepare`` then ``hbt-fast train --train STORE``; bad input is one line, exit 2."""

import json

import pytest

from hbt_fast.cli import main
from hbt_fast.data import write_pairs_jsonl
from hbt_fast.data.token_store import TokenStore


def error_lines(stderr: str) -> list:
    """Our lines on stderr (transformers may draw a progress bar there while loading)."""
    return [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith("hbt-fast")]


@pytest.fixture
def pairs(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "train"))
    from train_helpers import synthetic_corpus

    write_pairs_jsonl(tmp_path / "pairs.jsonl", synthetic_corpus().records())
    return tmp_path / "pairs.jsonl"


def test_prepare_then_train_from_the_store(tiny_model_dir, tmp_path, pairs, capsys):
    store = tmp_path / "store"
    assert main(["prepare", "--model", str(tiny_model_dir), "--train", str(pairs), "--output", str(store),
                 "--max-passage-length", "32", "--no-progress"]) == 0
    assert "wrote 72 pairs" in capsys.readouterr().out
    assert TokenStore(store, verify=True).manifest["settings"]["max_passage_length"] == 32
    run = ["train", "--model", str(tiny_model_dir), "--train", str(store), "--output", str(tmp_path / "run"),
           "--steps", "2", "--batch-size", "8", "--no-progress"]
    assert main(run + ["--max-passage-length", "32"]) == 0
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2]
    capsys.readouterr()
    # without the flag: the model's own length (its tokenizer's 512)
    assert main(run[:-1] + ["--output", str(tmp_path / "run2"), "--no-progress"]) == 2
    error = error_lines(capsys.readouterr().err)
    assert len(error) == 1 and "max_passage_length 32 (store) vs 512" in error[0]


def test_prepare_and_train_agree_on_the_models_own_lengths(tiny_model_dir, tmp_path, pairs):
    """Neither given a length: both take the model's (sentence-transformers' rule), so the run
    accepts the store."""
    store = tmp_path / "store"
    assert main(["prepare", "--model", str(tiny_model_dir), "--train", str(pairs), "--output",
                 str(store), "--no-progress"]) == 0
    settings = TokenStore(store).manifest["settings"]
    assert (settings["max_query_length"], settings["max_passage_length"]) == (512, 512)
    assert main(["train", "--model", str(tiny_model_dir), "--train", str(store), "--output",
                 str(tmp_path / "run"), "--steps", "1", "--batch-size", "8", "--no-progress"]) == 0
    saved = json.loads((tmp_path / "run" / "model" / "hbt_encoder.json").read_text())
    assert (saved["max_query_length"], saved["max_passage_length"]) == (512, 512)


@pytest.mark.parametrize("arguments, message", [
    (["--train", "missing.jsonl"], "training data missing.jsonl does not exist"),
    (["--chunk-pairs", "0"], "--chunk-pairs must be >= 1"),
    (["--columns", "query"], "--columns entries must look like field=column"),
    (["--prefixes", "--query-prefix", "q: "], "exclude each other"),
])
def test_prepare_errors_are_one_line(tiny_model_dir, tmp_path, pairs, capsys, arguments, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    command = ["prepare", "--model", str(tiny_model_dir), "--train", str(pairs), "--output", "out"]
    assert main(command + arguments) == 2
    error = capsys.readouterr().err
    assert error.startswith("hbt-fast prepare: error: ") and error.count("\n") == 1 and message in error
    assert not (tmp_path / "out").exists()


def test_train_refuses_a_damaged_store_naming_the_file(tiny_model_dir, tmp_path, pairs, capsys):
    store = tmp_path / "store"
    assert main(["prepare", "--model", str(tiny_model_dir), "--train", str(pairs), "--output", str(store),
                 "--no-progress"]) == 0
    data = bytearray((store / "tokens.npy").read_bytes())
    data[-1] ^= 0xFF
    (store / "tokens.npy").write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["train", "--model", str(tiny_model_dir), "--train", str(store), "--output",
                 str(tmp_path / "run"), "--steps", "1", "--batch-size", "8", "--no-progress"]) == 2
    error = error_lines(capsys.readouterr().err)
    assert len(error) == 1 and "tokens.npy does not match the SHA-256" in error[0]
    assert not (tmp_path / "run" / "train_log.jsonl").exists()  # refused before the first step
