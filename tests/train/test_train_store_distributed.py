"""Scaling out from one token store: two gloo ranks, each memory-mapping the same store (as
ranks on several nodes do on a shared filesystem), give the gradients and, after a few steps,
the weights of one process reading it, which are those of training from the pairs in memory."""

from pathlib import Path

import pytest
import torch
from store_distributed_worker import STEPS
from test_trainer import run_torchrun
from train_helpers import first_batch_gradients, make_trainer, synthetic_corpus, without_dropout

from hbt_fast.cli import main
from hbt_fast.data import read_pairs, write_pairs_jsonl
from hbt_fast.data.token_store import TokenStore

HERE = Path(__file__).parent


def assert_close_to(got: dict, expected: dict, rtol: float) -> None:
    """Equal up to float32 summation order (the token-type embedding's gradient sums a term per
    token of the batch: its rounding reaches 2e-5), relative to the largest entry; a missing or
    doubled rank share would be off by ~50%."""
    assert set(got) == set(expected)
    scale = max(float(value.abs().max()) for value in expected.values())
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=rtol, atol=1e-6 * scale,
                                   msg=lambda message, name=name: f"{name}: {message}")


def test_two_gloo_ranks_reading_one_store_equal_one_process(tiny_model_dir, tmp_path):
    pairs, store = tmp_path / "pairs.jsonl", tmp_path / "store"
    write_pairs_jsonl(pairs, synthetic_corpus(negatives=2).records())
    assert main(["prepare", "--model", str(tiny_model_dir), "--train", str(pairs), "--output", str(store),
                 "--no-progress"]) == 0
    run_torchrun(HERE / "store_distributed_worker.py", tiny_model_dir, store, tmp_path / "ranks")
    ranks = torch.load(tmp_path / "ranks" / "gradients.pt")

    for name, corpus in (("store", TokenStore(store)), ("memory", read_pairs(pairs))):
        single = without_dropout(make_trainer(tiny_model_dir, tmp_path / f"one-{name}", corpus=corpus))
        loss, gradients = first_batch_gradients(single)
        assert ranks["loss"] == pytest.approx(loss, rel=1e-6), name
        assert_close_to(ranks["gradients"], gradients, rtol=1e-4)

    single = without_dropout(make_trainer(tiny_model_dir, tmp_path / "one-run", corpus=TokenStore(store),
                                          steps=STEPS))
    single.train()
    # AdamW's first steps move each weight by about lr whatever the gradient's size, so a
    # gradient that differs in its last bits moves a weight by a last-bit amount too.
    assert_close_to(torch.load(tmp_path / "ranks" / "weights.pt"), single.encoder.state_dict(), rtol=1e-4)
