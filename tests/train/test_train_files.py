"""Training from files (``--train FILE...``): the files are prepared into a token store in the
run folder and trained from, with the batches and losses of the same pairs in memory; a start
again or a resume reuses that store while the files and the tokenization are unchanged, and
compares the pairs' content, not their bytes."""

import json

import numpy as np
import pytest
from train_helpers import Crash, CrashAt, log_losses, settings, synthetic_corpus

from hbt_fast.data import read_pairs, write_pairs_jsonl
from hbt_fast.data.token_store import TokenStore
from hbt_fast.train import TrainConfig, Trainer



@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    write_pairs_jsonl(path, synthetic_corpus(negatives=2).records())
    return path


def file_trainer(model, output, train, callbacks=(), **overrides):
    values = settings(model, output, train=train, steps=4, hard_negatives=1, **overrides)
    return Trainer(TrainConfig(**values), callbacks=callbacks)


@pytest.fixture(scope="module")
def in_memory_losses(tiny_model_dir, tmp_path_factory, pairs_file):
    output = tmp_path_factory.mktemp("memory") / "run"
    values = settings(tiny_model_dir, output, steps=4, hard_negatives=1)
    Trainer(TrainConfig(**values), corpus=read_pairs(pairs_file)).train()
    return log_losses(output)


def test_a_training_file_is_prepared_in_the_run_folder_with_the_in_memory_losses(
        tiny_model_dir, tmp_path, pairs_file, in_memory_losses):
    trainer = file_trainer(tiny_model_dir, tmp_path / "run", str(pairs_file))
    assert isinstance(trainer.corpus, TokenStore)
    assert trainer.corpus.path == tmp_path / "run" / "token_store"
    trainer.train()
    assert len(in_memory_losses) == 4
    np.testing.assert_allclose(log_losses(tmp_path / "run"), in_memory_losses, rtol=0, atol=1e-6)
    description = json.loads((tmp_path / "run" / "run_config.json").read_text())
    assert description["data_digest"] == read_pairs(pairs_file).digest  # as from memory


@pytest.mark.parametrize("given", ["two paths", "a glob"])
def test_several_files_of_one_source_train_as_their_pairs_together(tiny_model_dir, tmp_path, pairs_file,
                                                                   in_memory_losses, given):
    lines = pairs_file.read_text().splitlines(keepends=True)
    parts = [tmp_path / "data" / "part-1.jsonl", tmp_path / "data" / "part-2.jsonl"]
    parts[0].parent.mkdir()
    parts[0].write_text("".join(lines[:31]))
    parts[1].write_text("".join(lines[31:]))
    train = [[str(p) for p in parts]] if given == "two paths" else str(tmp_path / "data" / "part-*.jsonl")
    trainer = file_trainer(tiny_model_dir, tmp_path / "run", train)
    trainer.train()
    np.testing.assert_allclose(log_losses(tmp_path / "run"), in_memory_losses, rtol=0, atol=1e-6)
    assert trainer.corpus.digest == read_pairs(pairs_file).digest
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    named = f"{parts[0]} {parts[1]}" if given == "two paths" else str(tmp_path / "data" / "part-*.jsonl")
    assert f"- Data: `{named}`: 72 pairs" in card


def _identity(path):
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns


def test_a_resume_reuses_the_store_and_continues_exactly(tiny_model_dir, tmp_path, pairs_file,
                                                          in_memory_losses):
    output = tmp_path / "run"
    with pytest.raises(Crash):
        file_trainer(tiny_model_dir, output, str(pairs_file), save_every=2, callbacks=[CrashAt(3)]).train()
    manifest = output / "token_store" / "manifest.json"
    before = _identity(manifest)
    resumed = file_trainer(tiny_model_dir, output, str(pairs_file), save_every=2, resume=True)
    assert _identity(manifest) == before  # reused, not prepared again
    assert resumed.step == 2
    resumed.train()
    np.testing.assert_allclose(log_losses(output), in_memory_losses, rtol=0, atol=1e-6)


def test_a_resume_compares_the_pairs_not_the_file_bytes(tiny_model_dir, tmp_path, pairs_file):
    data = tmp_path / "pairs.jsonl"
    data.write_bytes(pairs_file.read_bytes())
    output = tmp_path / "run"
    with pytest.raises(Crash):
        file_trainer(tiny_model_dir, output, str(data), save_every=2, callbacks=[CrashAt(3)]).train()
    records = [json.loads(line) for line in data.read_text().splitlines()]
    # The same pairs written another way: prepared again, and the resume goes on.
    data.write_text("".join(json.dumps(dict(reversed(list(r.items())))) + "\n" for r in records))
    manifest = output / "token_store" / "manifest.json"
    before = json.loads(manifest.read_text())["source"]
    resumed = file_trainer(tiny_model_dir, output, str(data), save_every=2, resume=True)
    resumed.close()
    after = json.loads(manifest.read_text())["source"]
    assert after["digest"] != before["digest"] and after["content_digest"] == before["content_digest"]
    # Other pairs: refused, naming the data.
    records[0]["passage"] = "a passage that was not there"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(ValueError, match=r"resume: the training data .*pairs.jsonl differs from the data"):
        file_trainer(tiny_model_dir, output, str(data), save_every=2, resume=True)


def test_a_resume_with_other_lengths_prepares_the_store_again(tiny_model_dir, tmp_path, pairs_file):
    output = tmp_path / "run"
    with pytest.raises(Crash):
        file_trainer(tiny_model_dir, output, str(pairs_file), save_every=2, callbacks=[CrashAt(3)]).train()
    assert json.loads((output / "token_store" / "manifest.json").read_text())["settings"]["max_passage_length"] == 512  # the model's own length
    resumed = file_trainer(tiny_model_dir, output, str(pairs_file), save_every=2, resume=True,
                           override=("max_passage_length",), max_passage_length=32)
    assert resumed.corpus.manifest["settings"]["max_passage_length"] == 32
    resumed.train()


def test_a_killed_preparation_leaves_what_the_next_start_clears(tiny_model_dir, tmp_path, pairs_file,
                                                                 in_memory_losses):
    output = tmp_path / "run"
    with pytest.raises(Crash):
        file_trainer(tiny_model_dir, output, str(pairs_file), callbacks=[CrashAt(1)]).train()
    # What kill -9 during a preparation leaves: the work folder and the lock file.
    (output / "token_store").rename(output / ".token_store.preparing")
    (output / ".token_store.lock").write_text("")
    with pytest.warns(UserWarning, match="holds no complete checkpoint"):
        trainer = file_trainer(tiny_model_dir, output, str(pairs_file))
    trainer.train()
    assert not (output / ".token_store.preparing").exists()
    np.testing.assert_allclose(log_losses(output), in_memory_losses, rtol=0, atol=1e-6)


def test_a_foreign_file_in_the_prepared_store_stops_a_restart(tiny_model_dir, tmp_path, pairs_file):
    output = tmp_path / "run"
    with pytest.raises(Crash):
        file_trainer(tiny_model_dir, output, str(pairs_file), callbacks=[CrashAt(1)]).train()
    (output / "token_store" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"holds token_store/notes.txt, which hbt_fast did not write"):
        file_trainer(tiny_model_dir, output, str(pairs_file))


def test_a_malformed_line_is_named_before_training(tiny_model_dir, tmp_path, pairs_file):
    data = tmp_path / "pairs.jsonl"
    lines = pairs_file.read_text().splitlines(keepends=True)
    data.write_text("".join(lines[:40]) + "{not json\n" + "".join(lines[40:]))
    with pytest.raises(ValueError, match=rf"{data}:41"):
        file_trainer(tiny_model_dir, tmp_path / "run", str(data))
