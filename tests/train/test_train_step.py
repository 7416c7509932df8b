"""hbt_fast.train.step.global_batch_gradients on its own (no Trainer, no transformer): the
parameter gradients equal direct back-propagation of the loss through the same forward passes,
with or without GradCache chunks, dropout and hard negatives."""

import pytest
import torch

from hbt_fast import InfoNCELoss
from hbt_fast.train.gradcache import chunk_slices
from hbt_fast.train.step import global_batch_gradients


def toy_encoder():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(12, 24), torch.nn.Dropout(0.25), torch.nn.GELU(),
                               torch.nn.Linear(24, 8))


def features(queries=9, passages=9):
    generator = torch.Generator().manual_seed(1)
    return {"query": torch.randn(queries, 12, generator=generator),
            "passage": torch.randn(passages, 12, generator=generator)}


def direct_gradients(encoder, inputs, loss_fn, chunk_size, groups=()):
    """The oracle: the same chunked forward passes, with the graph, and one backward."""
    q = torch.cat([encoder(inputs["query"][c]) for c in chunk_slices(len(inputs["query"]), chunk_size)])
    p = torch.cat([encoder(inputs["passage"][c]) for c in chunk_slices(len(inputs["passage"]), chunk_size)])
    loss = loss_fn(q, p, *groups)
    loss.backward()
    return float(loss.detach()), [param.grad.clone() for param in encoder.parameters()]


@pytest.mark.parametrize("chunk_size", [None, 1, 3, 4])
@pytest.mark.parametrize("negatives", [0, 5])
def test_step_gradients_equal_direct_backpropagation(chunk_size, negatives):
    encoder, inputs = toy_encoder(), features(9, 9 + negatives)
    groups = ()
    if negatives:  # negative 0 shares query 2's group: masked for it
        groups = (torch.arange(9), torch.cat([torch.arange(9), torch.tensor([2, 100, 101, 102, 103])]))
    loss_fn = InfoNCELoss(temperature=0.1)
    torch.manual_seed(7)
    expected_loss, expected = direct_gradients(encoder, inputs, loss_fn, chunk_size, groups)
    encoder.zero_grad()
    torch.manual_seed(7)
    result = global_batch_gradients(lambda side, rows: encoder(inputs[side][rows]), 9, 9 + negatives, loss_fn,
                                    query_groups=groups[0] if groups else None,
                                    passage_groups=groups[1] if groups else None, chunk_size=chunk_size)
    assert result.loss == pytest.approx(expected_loss, rel=1e-6)
    assert result.loss_seconds > 0
    for got, want in zip((p.grad for p in encoder.parameters()), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_masking_a_negative_changes_the_loss():
    """The groups reach the loss (the test above would pass if they were dropped only when
    no negative shared a group)."""
    encoder, inputs = toy_encoder().eval(), features(4, 6)
    loss_fn = InfoNCELoss(temperature=0.1)
    embed = lambda side, rows: encoder(inputs[side][rows])  # noqa: E731
    own = global_batch_gradients(embed, 4, 6, loss_fn, query_groups=torch.arange(4),
                                 passage_groups=torch.tensor([0, 1, 2, 3, 10, 11])).loss
    shared = global_batch_gradients(embed, 4, 6, loss_fn, query_groups=torch.arange(4),
                                    passage_groups=torch.tensor([0, 1, 2, 3, 0, 11])).loss
    assert shared < own


@pytest.mark.parametrize("kwargs, message", [
    ({"query_groups": torch.arange(3)}, "give both query_groups and passage_groups"),
])
def test_half_given_groups_are_refused(kwargs, message):
    encoder, inputs = toy_encoder(), features(3, 3)
    with pytest.raises(ValueError, match=message):
        global_batch_gradients(lambda side, rows: encoder(inputs[side][rows]), 3, 3, InfoNCELoss(), **kwargs)


def test_fewer_passages_than_queries_are_refused():
    with pytest.raises(ValueError, match=r"passage_count \(2\) must be >= query_count \(3\)"):
        global_batch_gradients(lambda side, rows: torch.zeros(1, 2), 3, 2, InfoNCELoss())
