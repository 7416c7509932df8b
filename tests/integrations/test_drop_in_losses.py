"""The sentence-transformers drop-in: same value and gradients as the original
MultipleNegativesRankingLoss (runs where sentence-transformers is installed), and a clear
ImportError where it is not."""

import importlib
import sys

import pytest
import torch

COMPAT = "hbt_fast.integrations.sentence_transformers.multiple_negatives_ranking"


def test_clear_import_error_without_sentence_transformers(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # makes the import fail
    monkeypatch.delitem(sys.modules, COMPAT, raising=False)
    with pytest.raises(ImportError, match="pip install sentence-transformers"):
        importlib.import_module(COMPAT)


class TinyEncoder(torch.nn.Module):
    """Stands in for a SentenceTransformer: features {"x": [n, 6]} -> sentence_embedding."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(6, 8, dtype=torch.float64)

    def forward(self, features):
        return {**features, "sentence_embedding": self.linear(features["x"])}


def loss_and_grads(loss_fn, columns):
    model = loss_fn.model
    model.zero_grad()
    loss = loss_fn([{"x": column} for column in columns], torch.empty(0))
    loss.backward()
    return loss.detach(), [param.grad.clone() for param in model.parameters()]


def assert_same_loss_and_grads(fused, original, columns):
    got, want = loss_and_grads(fused, columns), loss_and_grads(original, columns)
    torch.testing.assert_close(got[0], want[0])
    for got_grad, want_grad in zip(got[1], want[1]):
        torch.testing.assert_close(got_grad, want_grad)


@pytest.mark.parametrize("num_hard_negative_columns", [0, 2])
@pytest.mark.parametrize("similarity", ["cos_sim", "dot_score"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_same_value_and_gradients_as_original(num_hard_negative_columns, similarity, symmetric):
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import util
    from sentence_transformers.sentence_transformer.losses import (
        MultipleNegativesRankingLoss as Original,
    )

    from hbt_fast.losses import MultipleNegativesRankingLoss

    torch.manual_seed(0)
    model = TinyEncoder()
    columns = [torch.randn(5, 6, dtype=torch.float64) for _ in range(2 + num_hard_negative_columns)]
    options = dict(scale=20.0, similarity_fct=getattr(util, similarity))
    if symmetric:
        options.update(directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction")
    fused = MultipleNegativesRankingLoss(model, **options)
    assert isinstance(fused, Original) and fused._fused_direction() is symmetric
    assert_same_loss_and_grads(fused, Original(model, **options), columns)


def test_unsupported_configuration_falls_back_to_original():
    pytest.importorskip("sentence_transformers")
    from sentence_transformers.sentence_transformer.losses import (
        MultipleNegativesRankingLoss as Original,
    )

    from hbt_fast.losses import MultipleNegativesRankingLoss

    def negative_distance(a, b):
        return -torch.cdist(a, b)

    torch.manual_seed(0)
    model = TinyEncoder()
    columns = [torch.randn(5, 6, dtype=torch.float64) for _ in range(3)]
    fused = MultipleNegativesRankingLoss(model, similarity_fct=negative_distance)
    assert fused._fused_direction() is None
    assert_same_loss_and_grads(fused, Original(model, similarity_fct=negative_distance), columns)


def test_ragged_embedding_columns_raise_like_the_original():
    pytest.importorskip("sentence_transformers")
    from sentence_transformers.sentence_transformer.losses import (
        MultipleNegativesRankingLoss as Original,
    )

    from hbt_fast.losses import MultipleNegativesRankingLoss
    from hbt_fast.integrations.sentence_transformers.multiple_negatives_ranking import EmbeddingCountError

    model = TinyEncoder()
    embeddings = [torch.randn(n, 8, dtype=torch.float64) for n in (4, 2, 2)]
    with pytest.raises(IndexError):  # what the original raises
        Original(model).compute_loss_from_embeddings(embeddings, None)
    with pytest.raises(EmbeddingCountError, match="column 0 \\(anchors\\) has 4 rows") as caught:
        MultipleNegativesRankingLoss(model).compute_loss_from_embeddings(embeddings, None)
    assert isinstance(caught.value, IndexError) and isinstance(caught.value, ValueError)


@pytest.mark.parametrize("column_lengths", [(4, 4, 2), (4, 5), (4, 3, 5)])
def test_every_column_needs_one_row_per_anchor(column_lengths):
    # The original silently computes something for some of these; the drop-in refuses all.
    pytest.importorskip("sentence_transformers")
    from hbt_fast.losses import MultipleNegativesRankingLoss
    from hbt_fast.integrations.sentence_transformers.multiple_negatives_ranking import EmbeddingCountError

    embeddings = [torch.randn(n, 8, dtype=torch.float64) for n in column_lengths]
    with pytest.raises(EmbeddingCountError, match="one row per anchor"):
        MultipleNegativesRankingLoss(TinyEncoder()).compute_loss_from_embeddings(embeddings, None)
