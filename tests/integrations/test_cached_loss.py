"""hbt_fast.losses.CachedMultipleNegativesRankingLoss against sentence-transformers' class of
that name: the same loss value and parameter gradients (float32, 1e-5) on a tiny model, with
dropout active, with and without hard negatives; encoder inputs never exceed a mini-batch."""

import pytest
import torch

pytest.importorskip("sentence_transformers", reason="needs sentence-transformers")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from sentence_transformers import util  # noqa: E402
from sentence_transformers.sentence_transformer import losses as st_losses  # noqa: E402

from hbt_fast.losses import CachedMultipleNegativesRankingLoss, MultipleNegativesRankingLoss  # noqa: E402
from st_helpers import tiny_sentence_transformer  # noqa: E402
from tiny_model import synthetic_sentences  # noqa: E402


@pytest.fixture(scope="module")
def model(st_model_dir):
    return tiny_sentence_transformer(st_model_dir)


def columns(model, batch_size, negatives, seed=0):
    texts = synthetic_sentences(batch_size * (2 + negatives), seed=seed)
    return [model.preprocess(texts[k * batch_size:(k + 1) * batch_size])
            for k in range(2 + negatives)]


def loss_and_gradients(loss_fn, features, *, seed=0, scale=1.0):
    """One training step's loss and parameter gradients; ``scale`` stands for the trainer's
    division by the gradient accumulation steps (it reaches the cached mini-batches too)."""
    model = loss_fn.model
    model.zero_grad()
    torch.manual_seed(seed)  # the same dropout draws for both losses
    loss = loss_fn([dict(feature) for feature in features], None)
    (loss * scale).backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()
                           if p.grad is not None}


OPTIONS = {
    "cosine": {},
    "dot product": {"similarity_fct": util.dot_score, "scale": 1.0},
    "symmetric": {"directions": ("query_to_doc", "doc_to_query"), "partition_mode": "per_direction"},
    "joint query_to_query (unfused formula)": {"directions": ("query_to_doc", "query_to_query")},
}


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
@pytest.mark.parametrize("negatives", [0, 2], ids=["pairs", "2 hard negatives"])
def test_same_loss_and_gradients_as_sentence_transformers(model, options, negatives):
    model.train()  # dropout on: the replayed mini-batches must draw the same masks
    features = columns(model, batch_size=5, negatives=negatives)
    ours = CachedMultipleNegativesRankingLoss(model, mini_batch_size=2, **options)
    theirs = st_losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=2, **options)
    assert isinstance(ours, st_losses.CachedMultipleNegativesRankingLoss)
    assert ours.get_config_dict() == {**theirs.get_config_dict(), "mask_duplicates": True}
    got_loss, got = loss_and_gradients(ours, features, scale=0.5)
    want_loss, want = loss_and_gradients(theirs, features, scale=0.5)
    torch.testing.assert_close(got_loss, want_loss, rtol=0, atol=1e-5)
    assert got.keys() == want.keys() and len(got) > 10
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-5, msg=name)


def test_encoder_never_sees_more_than_a_mini_batch(model):
    model.eval()
    sizes = []
    hook = model[0].register_forward_pre_hook(
        lambda module, args: sizes.append(args[0]["input_ids"].shape[0]))
    try:
        loss_and_gradients(CachedMultipleNegativesRankingLoss(model, mini_batch_size=4),
                           columns(model, batch_size=10, negatives=1))
    finally:
        hook.remove()
    assert sizes == [4, 4, 2] * 3 * 2  # 3 columns, embedded once and replayed once


def test_without_gradients_it_is_the_plain_loss(model):
    model.eval()
    features = columns(model, batch_size=5, negatives=1)
    with torch.no_grad():
        cached = CachedMultipleNegativesRankingLoss(model, mini_batch_size=2)(features, None)
        plain = MultipleNegativesRankingLoss(model)([dict(f) for f in features], None)
    torch.testing.assert_close(cached, plain, rtol=0, atol=1e-6)


@pytest.mark.parametrize("mini_batch_size", [0, -2, True, 2.0, None])
def test_bad_mini_batch_sizes_are_refused_at_construction(model, mini_batch_size):
    # they were accepted, and the first step failed naming gradcache's chunk_size
    with pytest.raises(ValueError, match=rf"^mini_batch_size must be an integer >= 1, got "
                                         rf"{mini_batch_size!r}$"):
        CachedMultipleNegativesRankingLoss(model, mini_batch_size=mini_batch_size)


def test_token_budget_mini_batches_are_refused(model):
    with pytest.raises(ValueError, match="mini_batch_num_tokens=64 is not supported"):
        CachedMultipleNegativesRankingLoss(model, mini_batch_num_tokens=64)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch_size=st.integers(1, 6), mini_batch_size=st.integers(1, 7),
       negatives=st.integers(0, 2), seed=st.integers(0, 1000))
def test_property_value_and_gradients_do_not_depend_on_the_mini_batch(
        model, batch_size, mini_batch_size, negatives, seed):
    model.eval()
    features = columns(model, batch_size, negatives, seed=seed)
    got_loss, got = loss_and_gradients(
        CachedMultipleNegativesRankingLoss(model, mini_batch_size=mini_batch_size), features)
    want_loss, want = loss_and_gradients(MultipleNegativesRankingLoss(model), features)
    torch.testing.assert_close(got_loss, want_loss, rtol=0, atol=1e-5)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-5, msg=name)
