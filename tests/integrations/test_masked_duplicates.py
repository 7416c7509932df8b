"""``mask_duplicates`` in the sentence-transformers drop-in losses (issue 22): a candidate with
the same token ids as another anchor's positive leaves that anchor's softmax. 64 questions
sharing one passage give loss 0 (log 64 with ``mask_duplicates=False``, sentence-transformers'
own value), through both losses and HybridTrainer; random batches match a reference mask built
from the texts."""

import math

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("sentence_transformers", reason="needs sentence-transformers")
datasets = pytest.importorskip("datasets", reason="needs datasets")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from sentence_transformers import SentenceTransformerTrainingArguments  # noqa: E402
from sentence_transformers.sentence_transformer import losses as st_losses  # noqa: E402

from hbt_fast.integrations.sentence_transformers import HybridTrainer  # noqa: E402
from hbt_fast.integrations.sentence_transformers.multiple_negatives_ranking import (  # noqa: E402
    candidate_text_ids)
from hbt_fast.losses import CachedMultipleNegativesRankingLoss, MultipleNegativesRankingLoss  # noqa: E402
from st_helpers import tiny_sentence_transformer  # noqa: E402

BATCH = 64
SHARED = "the one answer to every question"
LOSSES = {
    "plain": lambda model, **options: MultipleNegativesRankingLoss(model, **options),
    "cached": lambda model, **options: CachedMultipleNegativesRankingLoss(model, mini_batch_size=16, **options),
}


@pytest.fixture(scope="module")
def model(st_model_dir):
    model = tiny_sentence_transformer(st_model_dir)
    model.eval()  # no dropout: the 64 copies of the passage embed alike
    return model


def one_passage_features(model):
    return [model.preprocess([f"question number {i}" for i in range(BATCH)]), model.preprocess([SHARED] * BATCH)]


@pytest.mark.parametrize("make_loss", LOSSES.values(), ids=LOSSES.keys())
def test_questions_sharing_one_passage_give_loss_zero(model, make_loss):
    features = one_passage_features(model)
    assert float(make_loss(model)(features, None).detach()) == 0.0
    unmasked = make_loss(model, mask_duplicates=False)(features, None).detach()
    assert float(unmasked) == pytest.approx(math.log(BATCH), rel=1e-5)
    torch.testing.assert_close(unmasked, st_losses.MultipleNegativesRankingLoss(model)(features, None).detach())


def test_hybrid_trainer_trains_them_at_loss_zero(st_model_dir, tmp_path):
    model = tiny_sentence_transformer(st_model_dir)  # trained here: not the shared one
    rows = {"query": [f"question number {i}" for i in range(BATCH)], "passage": [SHARED] * BATCH,
            "language": ["en"] * BATCH, "group": [f"g{i}" for i in range(BATCH)]}
    args = SentenceTransformerTrainingArguments(
        str(tmp_path), per_device_train_batch_size=BATCH, max_steps=1, logging_steps=1, report_to="none",
        use_cpu=True, save_strategy="no", disable_tqdm=True)
    trainer = HybridTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_dict(rows),
                            loss=MultipleNegativesRankingLoss(model), mode="xx")
    trainer.train()
    assert [entry["loss"] for entry in trainer.state.log_history if "loss" in entry] == [0.0]


def reference_loss(queries, candidates, masked, scale, symmetric):
    logits = scale * F.normalize(queries, dim=-1) @ F.normalize(candidates, dim=-1).T
    labels = torch.arange(len(queries))
    loss = F.cross_entropy(logits.masked_fill(masked, -math.inf), labels)
    if symmetric:
        columns = logits[:, :len(queries)].T.masked_fill(masked[:, :len(queries)].T, -math.inf)
        loss = (loss + F.cross_entropy(columns, labels)) / 2
    return loss


POOL = ["the river answer.", "the city answer.", "a year answer.", "the team answer."]
SYMMETRIC = {"directions": ("query_to_doc", "doc_to_query"), "partition_mode": "per_direction"}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), count=st.integers(1, 6), negative_columns=st.integers(0, 2),
       symmetric=st.booleans(), cached=st.booleans())
def test_property_masks_match_a_reference_built_from_the_texts(model, data, count, negative_columns,
                                                              symmetric, cached):
    columns = [[f"question {i}" for i in range(count)]]
    columns += [data.draw(st.lists(st.sampled_from(POOL), min_size=count, max_size=count))
                for _ in range(1 + negative_columns)]
    options = SYMMETRIC if symmetric else {}
    loss_fn = (CachedMultipleNegativesRankingLoss(model, mini_batch_size=2, **options) if cached
               else MultipleNegativesRankingLoss(model, **options))
    features = [model.preprocess(texts) for texts in columns]
    got = loss_fn([dict(feature) for feature in features], None).detach()
    with torch.no_grad():
        embeddings = [model(dict(feature))["sentence_embedding"] for feature in features]
    candidates = [text for texts in columns[1:] for text in texts]
    masked = torch.tensor([[j != i and candidates[j] == candidates[i] for j in range(len(candidates))]
                           for i in range(count)])
    want = reference_loss(embeddings[0], torch.cat(embeddings[1:]), masked, loss_fn.scale, symmetric)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_text_ids_ignore_padding_side_and_column_width():
    right = {"input_ids": torch.tensor([[5, 6, 7, 0], [5, 6, 0, 0]]),
             "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])}
    left = {"input_ids": torch.tensor([[0, 0, 5, 6], [9, 5, 6, 7]]),
            "attention_mask": torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])}
    wider = {"input_ids": torch.tensor([[5, 6, 7, 0, 0, 0], [5, 0, 0, 0, 0, 0]]),
             "attention_mask": torch.tensor([[1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]])}
    ids = candidate_text_ids([{}, right, left, wider]).tolist()
    # rows: 567, 56, 56, 567, 567, 5 (the left-padded "9" is padding, not a token)
    assert ids[0] == ids[3] == ids[4] and ids[1] == ids[2] and len(set(ids)) == 3
    assert candidate_text_ids([{}, {"x": torch.zeros(2, 3)}]) is None


def test_configurations_on_the_original_formula_warn_about_duplicates_they_keep(model):
    joint = {"directions": ("query_to_doc", "query_to_query")}
    features = one_passage_features(model)
    with pytest.warns(UserWarning, match=r"mask_duplicates: 4032 \(anchor, candidate\) pair\(s\)"):
        MultipleNegativesRankingLoss(model, **joint)(features, None)
    MultipleNegativesRankingLoss(model, mask_duplicates=False, **joint)(features, None)  # no warning


def test_the_setting_is_a_bool_recorded_in_the_config_and_reaches_the_wrapped_loss(model):
    with pytest.raises(TypeError, match="mask_duplicates must be True or False, got 1"):
        MultipleNegativesRankingLoss(model, mask_duplicates=1)
    cached = CachedMultipleNegativesRankingLoss(model, mask_duplicates=False)
    assert cached.get_config_dict()["mask_duplicates"] is False
    cached.mask_duplicates = True
    assert cached.loss.mask_duplicates is True
    assert float(cached(one_passage_features(model), None).detach()) == 0.0
