"""Trainer: learning on real pairs, resume through the callback seam, GradCache, hard negatives,
2-process gloo equals 1 process, reload, tracking files, bad input."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import (Crash, CrashAt, first_batch_gradients, log_losses, log_records, make_trainer, run_torchrun,
                           synthetic_corpus, without_dropout)

from hbt_fast.data import PairCorpus, read_pairs_jsonl, split_lareqa
from hbt_fast.train import Callback, NonFiniteLossError
from hbt_fast.train.inputs import TokenizedCorpus

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def xquad_split(data_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("xquad-split")
    split_lareqa(data_dir / "xquad-r", output, eval_fraction=0.25, seed=0, languages=["en", "de", "es", "zh"])
    return output



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
    kinds = [r["batch"] for r in log_records(tmp_path / "run")]
    assert "xy" in kinds and any(k.startswith("xx:") for k in kinds)


def test_resume_continues_exactly(tiny_model_dir, tmp_path):
    make_trainer(tiny_model_dir, tmp_path / "straight", steps=8, save_every=3).train()
    expected = log_losses(tmp_path / "straight")
    crashing = make_trainer(tiny_model_dir, tmp_path / "crashed", steps=8, save_every=3, callbacks=[CrashAt(5)])
    with pytest.raises(Crash):
        crashing.train()
    assert (tmp_path / "crashed" / "checkpoints" / "latest").read_text().strip() == "step-00000003"
    assert not (tmp_path / "crashed" / "model").exists()
    resumed = make_trainer(tiny_model_dir, tmp_path / "crashed", steps=8, save_every=3, resume=True)
    assert resumed.step == 3
    resumed.train()
    steps = [r["step"] for r in log_records(tmp_path / "crashed")]
    assert steps == list(range(1, 9))  # the crashed run's step 4 and 5 lines were dropped
    np.testing.assert_allclose(log_losses(tmp_path / "crashed"), expected, rtol=1e-6, atol=1e-7)
    straight = make_trainer(tiny_model_dir, tmp_path / "straight", steps=8, resume=True)
    for name, value in straight.encoder.state_dict().items():
        torch.testing.assert_close(value, resumed.encoder.state_dict()[name], rtol=1e-6, atol=1e-7)


def test_resume_without_a_checkpoint_is_an_error(tiny_model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        make_trainer(tiny_model_dir, tmp_path, resume=True)


def test_a_used_output_folder_needs_resume(tiny_model_dir, tmp_path):
    make_trainer(tiny_model_dir, tmp_path, steps=1).train()
    with pytest.raises(ValueError, match="already holds a run; pass resume"):
        make_trainer(tiny_model_dir, tmp_path, steps=2)


def test_a_run_stopped_before_its_first_checkpoint_can_start_again(tiny_model_dir, tmp_path):
    with pytest.raises(Crash):
        make_trainer(tiny_model_dir, tmp_path, steps=4, callbacks=[CrashAt(2)]).train()
    (tmp_path / "checkpoints" / ".tmp-step-00000002").mkdir(parents=True)  # as a kill leaves it
    with pytest.warns(UserWarning, match="holds no complete checkpoint"):
        again = make_trainer(tiny_model_dir, tmp_path, steps=4)
    again.train()
    assert [r["step"] for r in log_records(tmp_path)] == [1, 2, 3, 4]


def test_a_non_finite_loss_stops_at_its_step_keeping_the_checkpoint(tiny_model_dir, tmp_path):
    class PoisonWeights(Callback):
        def on_step_end(self, state, record):  # reads the trainer made below
            if state.step == 2:
                with torch.no_grad():
                    next(trainer.encoder.parameters()).fill_(float("nan"))

    trainer = make_trainer(tiny_model_dir, tmp_path, steps=6, save_every=2, callbacks=[PoisonWeights()])
    with pytest.raises(NonFiniteLossError, match=r"step 3: the loss is nan.*last good checkpoint is step-00000002"):
        trainer.train()
    assert not (tmp_path / "model").exists()
    resumed = make_trainer(tiny_model_dir, tmp_path, steps=6, resume=True)
    assert resumed.step == 2
    assert all(torch.isfinite(p).all() for p in resumed.encoder.parameters())


def test_missing_evaluation_data_stops_before_training(tiny_model_dir, tmp_path):
    with pytest.raises(FileNotFoundError):
        make_trainer(tiny_model_dir, tmp_path / "run", eval=f"xquad-r:{tmp_path / 'nowhere'}")
    with pytest.raises(ValueError, match="eval_metric must be one of"):
        make_trainer(tiny_model_dir, tmp_path / "run", eval=f"xquad-r:{tmp_path}", eval_metric="multi/ndcg")


@pytest.mark.parametrize("chunk_size", [1, 3])
def test_gradcache_gradients_equal_full_batch(tiny_model_dir, tmp_path, chunk_size):
    """Without dropout the chunked and the one-pass step compute the same numbers (the dropout
    replay itself is tested in tests/train/test_gradcache.py and tests/train/test_train_step.py)."""
    full = without_dropout(make_trainer(tiny_model_dir, tmp_path / "a"))
    chunked = without_dropout(make_trainer(tiny_model_dir, tmp_path / "b", chunk_size=chunk_size))
    assert len(range(0, full.config.batch_size, chunk_size)) >= 3
    full_loss, full_grads = first_batch_gradients(full)
    chunked_loss, chunked_grads = first_batch_gradients(chunked)
    # On a GPU cuBLAS picks its kernel by shape, so chunks sum in another order: a few float32 ulps.
    on_gpu = full.device.type == "cuda"
    assert chunked_loss == pytest.approx(full_loss, rel=1e-5 if on_gpu else 1e-6)
    scale = max(float(value.abs().max()) for value in full_grads.values())
    for name, value in full_grads.items():
        torch.testing.assert_close(chunked_grads[name], value, rtol=1e-5,
                                   atol=1e-5 * scale if on_gpu else 1e-7)


def test_hard_negatives_are_extra_passages_masked_for_their_own_pair(tiny_model_dir, tmp_path):
    corpus = synthetic_corpus(negatives=2)
    corpus.negatives[0] = corpus.passages[5]  # pair 0's first negative is pair 5's positive: masked for it
    trainer = make_trainer(tiny_model_dir, tmp_path, corpus=corpus, hard_negatives=2, steps=2)
    inputs = trainer.tokens.step_inputs(np.array([0, 5]), np.array([0, 5]))
    assert (len(inputs.query_ids), len(inputs.passage_ids)) == (2, 6)
    groups, texts = inputs.passage_groups.T.tolist()  # (group, text id) keys: masking duplicates
    assert groups[:2] == inputs.query_groups[:, 0].tolist() == [corpus.group_ids[0], corpus.group_ids[5]]
    assert groups[2] == corpus.group_ids[5]  # the negative equal to pair 5's passage
    assert len(set(groups[3:]) | set(groups[:2])) == len(groups) - 1  # the others: own groups
    assert texts[2] == texts[1] == inputs.query_groups[1, 1] and len(set(texts)) == len(texts) - 1
    assert len(TokenizedCorpus(corpus, trainer.encoder, 1).step_inputs(np.array([0]), np.array([0])).passage_ids) == 2
    trainer.train()
    assert "hard negatives: 144 from the data" in (tmp_path / "model" / "README.md").read_text()


def test_training_data_from_a_datasets_folder_with_a_column_mapping(tiny_model_dir, tmp_path):
    Dataset = pytest.importorskip("datasets", reason="needs the datasets extra").Dataset

    from hbt_fast.cli import main

    corpus = synthetic_corpus()
    Dataset.from_dict({"question": corpus.queries, "passage": corpus.passages, "lang": corpus.languages,
                       "group": [str(g) for g in corpus.groups]}).save_to_disk(str(tmp_path / "pairs"))
    code = main(["train", "--model", str(tiny_model_dir), "--train", str(tmp_path / "pairs"), "--columns",
                 "query=question", "--output", str(tmp_path / "run"), "--steps", "2", "--batch-size", "8",
                 "--no-progress"])
    assert code == 0
    assert json.loads((tmp_path / "run" / "run_config.json").read_text())["pairs"] == len(corpus)


def test_two_gloo_processes_equal_one_process(tiny_model_dir, tmp_path):
    """torchrun with 2 gloo ranks of batch 4 each vs one process with the global batch 8, for a
    one-pass step, a GradCache step, a step with hard negatives (a different count per rank) and
    an update accumulated over 3 batches (reduced once, with the last)."""
    from distributed_worker import CASES, case_corpus

    run_torchrun(HERE / "distributed_worker.py", tiny_model_dir, tmp_path / "ranks")
    for name, overrides in CASES.items():
        single = without_dropout(make_trainer(tiny_model_dir, tmp_path / name, corpus=case_corpus(name), **overrides))
        loss, grads = first_batch_gradients(single)
        gathered = torch.load(tmp_path / "ranks" / f"{name}.pt")
        assert gathered["loss"] == pytest.approx(loss, rel=1e-6), name
        assert set(gathered["gradients"]) == set(grads)
        # Summed in another order (per rank, then across ranks): float32 rounding relative to
        # the largest gradient entry; a missing or doubled rank share would be off by ~50%.
        scale = max(float(value.abs().max()) for value in grads.values())
        for parameter, value in grads.items():
            torch.testing.assert_close(gathered["gradients"][parameter], value, rtol=1e-5, atol=1e-6 * scale)


def test_saved_model_reloads_and_evaluates(tiny_model_dir, xquad_split, tmp_path):
    from transformers import AutoModel

    from hbt_fast.evaluate import evaluate_lareqa
    from hbt_fast.models import TextEncoder

    trainer = make_trainer(tiny_model_dir, tmp_path, steps=2, eval=f"xquad-r:{xquad_split / 'eval'}",
                           report_to="tensorboard")
    result = trainer.train()
    score = result.metric("multi/map@20")
    assert 0 < score <= 1
    assert (tmp_path / "best").is_dir()
    AutoModel.from_pretrained(tmp_path / "model")
    reloaded = TextEncoder.from_pretrained(tmp_path / "model", show_progress=False)
    again = evaluate_lareqa(reloaded, xquad_split / "eval")
    assert again.metric("multi/map@20") == pytest.approx(score, abs=1e-6)
    card = (tmp_path / "model" / "README.md").read_text()
    assert f"| multi/map@20 | {score:.4f} |" in card and "mode `hybrid`, alpha 0.5" in card
    run_config = json.loads((tmp_path / "run_config.json").read_text())
    assert run_config["config"]["batch_size"] == 8 and run_config["total_steps"] == 2
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    assert_tensorboard_tags(tmp_path / "tensorboard", {"train/loss", "train/lr", "eval/multi/map@20"})


def assert_tensorboard_tags(folder, expected):
    pytest.importorskip("tensorboard", reason="needs the tensorboard extra")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert expected <= tags, tags
    assert any(tag.startswith("batches/") for tag in tags)


def test_report_to_none_writes_no_log(tiny_model_dir, tmp_path):
    make_trainer(tiny_model_dir, tmp_path, steps=1, report_to="none").train()
    assert not (tmp_path / "train_log.jsonl").exists() and (tmp_path / "model").is_dir()


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
        # each of about 9 batches per epoch: a step count beyond 64 bits
        ({"steps": None, "epochs": 9e18}, r"epochs 9e\+18 of \d+ batches are \d+ steps, more than 9223372036854775807"),
    ],
)
def test_bad_settings_raise_before_training(tiny_model_dir, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_trainer(tiny_model_dir, tmp_path, **overrides)


def test_training_runs_across_epochs_with_fresh_batches(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, steps=20)
    per_epoch = len(trainer.sampler)
    trainer.train()
    records = [r for r in log_records(tmp_path) if "loss" in r]
    assert [r["epoch"] for r in records] == [step // per_epoch for step in range(20)]
    # Every timing is a measured duration within its step.
    assert all(0 < r["loss_s"] < r["seconds"] and 0 < r["sampler_s"] < r["seconds"] for r in records)
    timing = trainer.own_callbacks[0]
    assert timing.pairs == 20 * 8 and math.isclose(timing.seconds, sum(r["seconds"] for r in records))


def test_mixed_batches_are_logged_as_mixed(tiny_model_dir, tmp_path):
    make_trainer(tiny_model_dir, tmp_path, steps=2, mode="mixed").train()
    assert [r["batch"] for r in log_records(tmp_path) if "loss" in r] == ["mixed", "mixed"]
