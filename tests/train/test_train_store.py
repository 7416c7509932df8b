"""Training from a token store: the same batches, hence the same losses, as from the pairs in
memory; a store prepared for other settings is refused before the first step."""

import numpy as np
import pytest

from hbt_fast.data import read_pairs, write_pairs_jsonl
from hbt_fast.data.token_store import TokenStore, write_token_store
from hbt_fast.models import TextEncoder
from train_helpers import log_losses, make_trainer, synthetic_corpus


@pytest.fixture(scope="module")
def pairs_and_store(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("store")
    write_pairs_jsonl(folder / "pairs.jsonl", synthetic_corpus(negatives=2).records())
    # The model's own lengths, as a training run without length settings takes them.
    encoder = TextEncoder.from_pretrained(tiny_model_dir, show_progress=False)
    write_token_store([folder / "pairs.jsonl"], folder / "store", encoder.tokenizer, encoder.settings,
                      tokenizer_name=str(tiny_model_dir), chunk_pairs=10, progress=False)
    return folder / "pairs.jsonl", folder / "store"


@pytest.mark.parametrize("hard_negatives", [None, 1, 0])
def test_training_from_the_store_gives_the_in_memory_losses(tiny_model_dir, tmp_path, pairs_and_store,
                                                            hard_negatives):
    pairs, store = pairs_and_store
    runs = {"memory": read_pairs(pairs), "store": TokenStore(store, verify=True)}
    memory_negatives = None
    for name, corpus in runs.items():
        trainer = make_trainer(tiny_model_dir, tmp_path / name, corpus=corpus, steps=3,
                               hard_negatives=hard_negatives)
        if name == "store":
            assert len(trainer.tokens.negative_ids) == len(memory_negatives)
        else:
            memory_negatives = trainer.tokens.negative_ids
        trainer.train()
    memory, from_store = log_losses(tmp_path / "memory"), log_losses(tmp_path / "store")
    assert len(memory) == 3
    np.testing.assert_allclose(from_store, memory, rtol=0, atol=1e-6)


def test_a_store_for_other_lengths_is_refused_before_training(tiny_model_dir, tmp_path, pairs_and_store):
    _, store = pairs_and_store
    with pytest.raises(ValueError, match=r"max_passage_length 512 \(store\) vs 32 \(the run's model\)"):
        make_trainer(tiny_model_dir, tmp_path / "run", corpus=TokenStore(store), max_passage_length=32)
