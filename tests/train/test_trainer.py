"""Trainer: learning on real pairs, resume, GradCache, 2-process gloo, reload, bad input."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hbt_fast.data import PairCorpus, read_pairs_jsonl, split_lareqa
from hbt_fast.train import TrainConfig, Trainer

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def xquad_split(data_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("xquad-split")
    split_lareqa(data_dir / "xquad-r", output, eval_fraction=0.25, seed=0, languages=["en", "de", "es", "zh"])
    return output


def synthetic_corpus(num_groups=24, languages=("en", "de", "fr")):
    rng = np.random.default_rng(0)
    words = ["river", "city", "year", "team", "music", "king", "school", "war", "science"]
    queries, passages, langs, groups = [], [], [], []
    for g in range(num_groups):
        topic = " ".join(rng.choice(words, 3))
        for lang in languages:
            queries.append(f"{lang} question {g} {topic}")
            passages.append(f"{lang} answer {topic} number {g}")
            langs.append(lang)
            groups.append(g)
    return PairCorpus(queries, passages, langs, groups)


def make_trainer(tiny_model_dir, output, **overrides):
    settings = dict(model=str(tiny_model_dir), train="unused", output=str(output), batch_size=8,
                    steps=6, lr=1e-3, warmup=0.0, progress=False, seed=3)
    settings.update(overrides)
    corpus = settings.pop("corpus", None) or synthetic_corpus()
    return Trainer(TrainConfig(**settings), corpus=corpus)


def without_dropout(trainer):
    """Ranks seed dropout differently; exact gradient comparisons switch it off."""
    for module in trainer.encoder.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return trainer


def gradients(trainer):
    return torch.cat([p.grad.flatten() for p in trainer.encoder.parameters() if p.grad is not None])


def log_losses(output):
    lines = (Path(output) / "train_log.jsonl").read_text().splitlines()
    by_step = {}
    for record in map(json.loads, lines):
        if "loss" in record:
            by_step[record["step"]] = record["loss"]  # a resumed run rewrites later steps
    return [by_step[s] for s in sorted(by_step)]


def fixed_batch_loss(trainer, corpus, rows):
    trainer.encoder.eval()
    with torch.no_grad():
        q = trainer.encoder.embed([corpus.queries[i] for i in rows], "query")
        p = trainer.encoder.embed([corpus.passages[i] for i in rows], "passage")
        loss = float(trainer.loss_fn(q, p))
    trainer.encoder.train()
    return loss


def test_a_few_steps_reduce_the_loss_on_xquad_pairs(xquad_split, tmp_path):
    from tiny_model import build_tiny_model

    corpus = read_pairs_jsonl(xquad_split / "train.jsonl")
    # A tokenizer trained on the pairs gives the tiny model real words to match.
    model_dir = build_tiny_model(tmp_path / "model-init", sentences=corpus.queries + corpus.passages,
                                 vocab_size=2000)
    trainer = make_trainer(model_dir, tmp_path / "run", corpus=corpus, batch_size=32, steps=40, lr=3e-3,
                           max_query_length=32, max_passage_length=48)
    english = np.flatnonzero(np.array(corpus.languages) == "en")
    held = np.random.default_rng(1).choice(english, 64, replace=False)
    before = fixed_batch_loss(trainer, corpus, held)
    trainer.train()
    after = fixed_batch_loss(trainer, corpus, held)
    assert after < before - 0.3, (before, after)
    kinds = [json.loads(line).get("batch") for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert "xy" in kinds and any(k and k.startswith("xx:") for k in kinds)


class Crash(RuntimeError):
    pass


def test_resume_continues_exactly(tiny_model_dir, tmp_path):
    make_trainer(tiny_model_dir, tmp_path / "straight", steps=8, save_every=3).train()
    expected = log_losses(tmp_path / "straight")

    crashing = make_trainer(tiny_model_dir, tmp_path / "crashed", steps=8, save_every=3)
    original = crashing._after_step

    def crash_after_step_five():
        original()
        if crashing.step == 5:
            raise Crash()

    crashing._after_step = crash_after_step_five
    with pytest.raises(Crash):
        crashing.train()
    assert (tmp_path / "crashed" / "checkpoints" / "latest").read_text().strip() == "step-00000003"
    resumed = make_trainer(tiny_model_dir, tmp_path / "crashed", steps=8, save_every=3, resume=True)
    assert resumed.step == 3
    resumed.train()
    got = log_losses(tmp_path / "crashed")
    steps = [json.loads(line)["step"] for line in (tmp_path / "crashed" / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))  # the crashed run's step 4 and 5 lines were dropped
    assert len(got) == len(expected) == 8
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    for name, a in make_trainer(tiny_model_dir, tmp_path / "straight", steps=8, resume=True).encoder.state_dict().items():
        torch.testing.assert_close(a, resumed.encoder.state_dict()[name], rtol=1e-6, atol=1e-7)


def test_resume_without_a_checkpoint_is_an_error(tiny_model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        make_trainer(tiny_model_dir, tmp_path, resume=True)


def test_a_used_output_folder_needs_resume(tiny_model_dir, tmp_path):
    make_trainer(tiny_model_dir, tmp_path, steps=1).train()
    with pytest.raises(ValueError, match="already holds a run; pass resume"):
        make_trainer(tiny_model_dir, tmp_path, steps=2)


def test_missing_evaluation_data_stops_before_training(tiny_model_dir, tmp_path):
    with pytest.raises(FileNotFoundError):
        make_trainer(tiny_model_dir, tmp_path / "run", eval=f"xquad-r:{tmp_path / 'nowhere'}")
    with pytest.raises(ValueError, match="eval_metric must be one of"):
        make_trainer(tiny_model_dir, tmp_path / "run", eval=f"xquad-r:{tmp_path}", eval_metric="multi/ndcg")


def test_toml_config_with_flags_overriding_it(tmp_path):
    from hbt_fast.cli import build_parser
    from hbt_fast.cli.train import config_from_args

    config_file = tmp_path / "run.toml"
    config_file.write_text('model = "m"\ntrain = "t.jsonl"\noutput = "out"\nsteps = 1000\nlr = 1e-4\n'
                           'batch-size = 64\n', encoding="utf-8")
    args = build_parser().parse_args(["train", "--config", str(config_file), "--epochs", "2", "--lr", "3e-5"])
    config = config_from_args(args)
    assert (config.steps, config.epochs, config.lr, config.batch_size) == (None, 2.0, 3e-5, 64)
    config.validate()


def test_cli_reports_a_missing_model(tmp_path, capsys):
    from hbt_fast.cli import main

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"group": 1, "lang": "en", "query": "q", "passage": "p"}\n', encoding="utf-8")
    code = main(["train", "--model", str(tmp_path / "no-such-model"), "--train", str(pairs),
                 "--output", str(tmp_path / "run"), "--steps", "1", "--mode", "xx", "--batch-size", "1"])
    assert code == 2
    assert "no-such-model" in capsys.readouterr().err


def test_checkpoint_is_atomic_and_pruned(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, steps=6, save_every=2, keep_checkpoints=2)
    trainer.train()
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-00000004", "step-00000006"]
    assert not list(root.glob(".tmp*"))


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_gradcache_gradients_equal_full_batch(tiny_model_dir, tmp_path, dropout):
    trainers = []
    for chunk_size in (None, 3 if dropout == 0 else 8):
        trainer = make_trainer(tiny_model_dir, tmp_path, chunk_size=chunk_size)
        for module in trainer.encoder.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = dropout
        trainers.append(trainer)
    query_rows, passage_rows = next(iter(trainers[0].sampler))
    texts = trainers[0].corpus.texts(query_rows, passage_rows)
    losses = []
    for trainer in trainers:
        torch.manual_seed(0)  # same dropout masks: GradCache replays the first pass's state
        losses.append(trainer.compute_gradients(*texts))
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    torch.testing.assert_close(gradients(trainers[1]), gradients(trainers[0]), rtol=1e-5, atol=1e-7)


def test_two_gloo_processes_equal_one_process(tiny_model_dir, tmp_path):
    """torchrun with 2 gloo ranks of batch 4 each vs one process with the global batch 8."""
    single = without_dropout(make_trainer(tiny_model_dir, tmp_path / "single"))
    query_rows, passage_rows = next(iter(single.sampler))
    single_loss = single.compute_gradients(*single.corpus.texts(query_rows, passage_rows))
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={port}",
               str(HERE / "distributed_worker.py"), str(tiny_model_dir), str(tmp_path / "ranks")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    gathered = torch.load(tmp_path / "ranks" / "rank0.pt")
    assert gathered["loss"] == pytest.approx(single_loss, rel=1e-6)
    torch.testing.assert_close(gathered["gradients"], gradients(single), rtol=1e-5, atol=1e-7)


def test_saved_model_reloads_and_evaluates(tiny_model_dir, xquad_split, tmp_path):
    from transformers import AutoModel

    from hbt_fast.evaluate import evaluate_lareqa
    from hbt_fast.models import TextEncoder

    trainer = make_trainer(tiny_model_dir, tmp_path, steps=2, eval=f"xquad-r:{xquad_split / 'eval'}")
    result = trainer.train()
    assert 0 < result["multi"]["map@20"] <= 1
    assert (tmp_path / "best").is_dir()
    AutoModel.from_pretrained(tmp_path / "model")
    reloaded = TextEncoder.from_pretrained(tmp_path / "model", show_progress=False)
    again = evaluate_lareqa(reloaded, xquad_split / "eval")
    assert again["multi"]["map@20"] == pytest.approx(result["multi"]["map@20"], abs=1e-6)


def test_language_without_cross_partner_stops_before_training(tiny_model_dir, tmp_path):
    corpus = synthetic_corpus()
    lonely = PairCorpus(corpus.queries + ["solo q"], corpus.passages + ["solo p"],
                        corpus.languages + ["ja"], corpus.groups + [999])
    with pytest.raises(ValueError, match=r"language\(s\) \['ja'\] share no group"):
        make_trainer(tiny_model_dir, tmp_path, corpus=lonely, mode="xy")
    with pytest.warns(UserWarning, match=r"languages \[3\] have fewer than"):
        make_trainer(tiny_model_dir, tmp_path, corpus=lonely, mode="xx", batch_size=4)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"preset": "bert"}, "preset must be"),
        ({"batch_size": 100}, "exceeds"),
        ({"steps": None}, "exactly one of steps and epochs"),
        ({"eval": "beir:/x"}, "eval must look like"),
    ],
)
def test_bad_settings_raise_before_training(tiny_model_dir, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_trainer(tiny_model_dir, tmp_path, **overrides)


def test_cli_reports_malformed_training_file(tiny_model_dir, tmp_path, capsys):
    from hbt_fast.cli import main

    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"group": 1, "lang": "en", "query": "q", "passage": "p"}\n{oops\n', encoding="utf-8")
    code = main(["train", "--model", str(tiny_model_dir), "--train", str(bad), "--output",
                 str(tmp_path / "run"), "--steps", "1", "--no-progress"])
    assert code == 2
    assert f"{bad}:2: not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_training_runs_across_epochs_with_fresh_batches(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, steps=20)
    per_epoch = len(trainer.sampler)
    trainer.train()
    records = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    epochs = [r["epoch"] for r in records if "loss" in r]
    assert epochs == [step // per_epoch for step in range(20)]
    assert all(r["sampler_s"] >= 0 and r["loss_s"] > 0 for r in records if "loss" in r)
