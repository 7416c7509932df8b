"""GradCache (hbt_fast.train.gradcache): chunked embedding + replayed backward gives the gradients
of direct back-propagation through the same forward passes, dropout included."""

import contextlib

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hbt_fast.train.gradcache import RandomState, chunk_slices, embed_without_graph, replay_backward


def dropout_encoder(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Dropout(0.3), torch.nn.Tanh(),
                               torch.nn.Linear(16, 5), torch.nn.Dropout(0.2))


def contrastive_loss(embeddings):
    logits = embeddings @ embeddings.T
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(embeddings)))


@pytest.mark.parametrize("rows, chunk_size", [(10, 3), (10, 1), (7, 2), (9, 4)])
def test_replayed_gradients_equal_direct_backpropagation_with_dropout(rows, chunk_size):
    inputs = torch.randn(rows, 6)
    encoder = dropout_encoder()
    chunks = chunk_slices(rows, chunk_size)
    assert len(chunks) >= 3  # several chunks: each replay must find its own dropout masks

    torch.manual_seed(123)
    direct = torch.cat([encoder(inputs[c]) for c in chunks])
    contrastive_loss(direct).backward()
    expected = [p.grad.clone() for p in encoder.parameters()]
    encoder.zero_grad()

    embed = lambda c: encoder(inputs[c])  # noqa: E731
    torch.manual_seed(123)
    cache = embed_without_graph(embed, rows, chunk_size)
    torch.testing.assert_close(cache.embeddings, direct.detach())
    cached = cache.embeddings.clone().requires_grad_()
    contrastive_loss(cached).backward()
    replay_backward(embed, cache, cached.grad)
    for got, want in zip((p.grad for p in encoder.parameters()), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_without_the_recorded_state_dropout_would_differ():
    """The test above can fail: replaying from another random state changes the gradients."""
    inputs = torch.randn(9, 6)
    encoder = dropout_encoder()
    embed = lambda c: encoder(inputs[c])  # noqa: E731
    cache = embed_without_graph(embed, 9, 3)
    for state in cache.states:
        state.cpu = torch.Generator().manual_seed(99).get_state()
    replayed = []
    with torch.no_grad():
        for rows, state in zip(cache.chunks, cache.states):
            with state.replay():
                replayed.append(embed(rows))
    assert not torch.allclose(torch.cat(replayed), cache.embeddings)


def test_replay_leaves_the_outer_random_stream_alone():
    state = RandomState.capture()
    first = torch.rand(3)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    with state.replay():
        torch.testing.assert_close(torch.rand(3), first)
    assert torch.equal(torch.get_rng_state(), before)


def test_chunk_context_wraps_every_chunk_in_order():
    inputs = torch.randn(8, 6)
    encoder = dropout_encoder()
    embed = lambda c: encoder(inputs[c])  # noqa: E731
    cache = embed_without_graph(embed, 8, 3)
    entered = []

    @contextlib.contextmanager
    def context(index):
        entered.append(index)
        yield

    replay_backward(embed, cache, torch.ones_like(cache.embeddings), chunk_context=context)
    assert entered == [0, 1, 2]


@given(count=st.integers(0, 300), chunk_size=st.one_of(st.none(), st.integers(1, 400)))
def test_chunk_slices_cover_the_rows_in_order(count, chunk_size):
    chunks = chunk_slices(count, chunk_size)
    covered = [i for c in chunks for i in range(c.start, c.stop)]
    assert covered == list(range(count))
    assert all(0 < c.stop - c.start <= (chunk_size or count) for c in chunks)


@pytest.mark.parametrize("count, chunk_size, message", [
    (-1, 2, "count must be"), (3, 0, "chunk_size must be"), (3, True, "chunk_size must be"),
    (3.0, 2, "count must be"), (0, 2, "count >= 1"),
])
def test_bad_arguments_name_themselves(count, chunk_size, message):
    with pytest.raises(ValueError, match=message):
        embed_without_graph(lambda c: torch.zeros(c.stop - c.start, 2), count, chunk_size)


def test_wrong_gradient_shape_and_wrong_embed_output_are_refused():
    cache = embed_without_graph(lambda c: torch.zeros(c.stop - c.start, 2), 4, 2)
    with pytest.raises(ValueError, match="gradient has shape"):
        replay_backward(lambda c: torch.zeros(c.stop - c.start, 2), cache, torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"must return a 2-d tensor with 2 rows"):
        embed_without_graph(lambda c: torch.zeros(1, 2), 4, 2)
