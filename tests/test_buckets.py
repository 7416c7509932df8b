"""Length buckets: an exact optimum of padded positions + per-bucket cost, and embeddings and
gradients that do not depend on the bucketing."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hbt_fast.models import TextEncoder
from hbt_fast.models.buckets import length_buckets


def cost(lengths, buckets, call_cost):
    return sum(len(b) * max(lengths[i] for i in b) + call_cost for b in buckets)


def brute_force_cost(lengths, call_cost):
    """Every split of the rows sorted by length (longest first) into contiguous buckets."""
    ordered = sorted(lengths, reverse=True)
    best = None
    for cuts in itertools.product((False, True), repeat=len(ordered) - 1):
        total, start = 0, 0
        for end in [i + 1 for i, cut in enumerate(cuts) if cut] + [len(ordered)]:
            total += (end - start) * ordered[start] + call_cost
            start = end
        best = total if best is None else min(best, total)
    return best


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 130), min_size=1, max_size=9), st.integers(0, 300))
def test_buckets_cover_every_row_once_at_the_lowest_cost(lengths, call_cost):
    buckets = length_buckets(lengths, call_cost)
    assert sorted(np.concatenate(buckets).tolist()) == list(range(len(lengths)))
    assert cost(lengths, buckets, call_cost) == brute_force_cost(lengths, call_cost)


def test_bucket_cost_sets_how_eagerly_batches_split():
    lengths = [120, 118, 20, 21, 19, 5, 120, 22]
    assert len(length_buckets(lengths, 10**9)) == 1
    assert len(length_buckets(lengths, 0)) == len(set(lengths))
    long, short = length_buckets(lengths, 64)[:2]
    assert sorted(long.tolist()) == [0, 1, 6]  # the three long rows apart from the short ones
    assert length_buckets([7], 64)[0].tolist() == [0]


@pytest.mark.parametrize("lengths, call_cost", [([], 64), ([[1, 2]], 64), ([3, 4], -1), ([3, 4], 2.5),
                                                ([3, 4], True)])
def test_bad_arguments_are_refused(lengths, call_cost):
    with pytest.raises(ValueError):
        length_buckets(lengths, call_cost)


def test_encoder_refuses_a_bad_bucket_cost(tiny_model_dir):
    with pytest.raises(ValueError, match="bucket_cost must be an integer >= 0 or None"):
        TextEncoder.from_pretrained(tiny_model_dir, show_progress=False, bucket_cost=-3)


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return TextEncoder.from_pretrained(tiny_model_dir, show_progress=False)


def embeddings_and_gradients(encoder, ids, bucket_cost, weights):
    encoder.bucket_cost = bucket_cost
    encoder.model.zero_grad(set_to_none=True)
    embedded = encoder.embed_ids(ids, "passage")
    (embedded * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in encoder.model.named_parameters() if p.grad is not None}
    return embedded.detach(), grads


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(alphabet="abcdefghij rivercityÄé问题", min_size=1, max_size=200), min_size=2,
                max_size=12), st.sampled_from(["right", "left"]))
def test_bucketed_embeddings_and_gradients_equal_one_padded_batch(encoder, texts, padding_side):
    encoder.eval()  # no dropout: the two passes must see the same network
    encoder.tokenizer.padding_side = padding_side
    try:
        ids = encoder.tokenize_all(texts, "passage")
        weights = torch.randn(len(ids), encoder.dim, generator=torch.Generator().manual_seed(len(ids)))
        one, one_grads = embeddings_and_gradients(encoder, ids, None, weights)
        split, split_grads = embeddings_and_gradients(encoder, ids, 0, weights)  # every length apart
    finally:
        encoder.tokenizer.padding_side, encoder.bucket_cost = "right", 64
    torch.testing.assert_close(split, one, atol=1e-6, rtol=0)
    assert split_grads.keys() == one_grads.keys()
    for name in one_grads:
        torch.testing.assert_close(split_grads[name], one_grads[name], atol=1e-5, rtol=1e-4)


def test_training_buckets_by_default_and_pads_one_batch_when_asked(tiny_model_dir):
    from hbt_fast.models.buckets import DEFAULT_CALL_COST
    from hbt_fast.train import TrainConfig
    from hbt_fast.train.components import load_encoder

    def loaded(**settings):
        config = TrainConfig(model=str(tiny_model_dir), train="pairs.jsonl", output="run", **settings)
        return load_encoder(config, None, None, torch.device("cpu")).bucket_cost

    assert loaded() == DEFAULT_CALL_COST
    assert loaded(length_buckets=False) is None
