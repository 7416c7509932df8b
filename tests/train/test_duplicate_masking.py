"""Duplicate passages (same token ids) are never negatives of each other's queries (issue 22).

A one-language file where every question shares one passage trains at loss 0 from step 1 (each
softmax holds the positive alone) in every path: pairs tokenised in memory, a token store,
GradCache, two gloo ranks; with ``--no-mask-duplicates`` the loss is log(B) (all passages are
one embedding). The step's masks equal a plain torch reference built from the texts, and the
pair-group rule for hard negatives still holds where text identity alone would not cover it."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from train_helpers import (duplicate_corpus, first_batch_gradients, log_losses, make_trainer,
                           one_passage_corpus, run_torchrun, without_dropout)

from hbt_fast.cli import main
from hbt_fast.data import PairCorpus, write_pairs_jsonl
from hbt_fast.losses import InfoNCELoss
from hbt_fast.models import TextEncoder
from hbt_fast.train import global_batch_gradients
from hbt_fast.train.inputs import TokenizedCorpus
from hbt_fast.train.masking import joint_groups

HERE = Path(__file__).parent
BATCH = 64
TEMPERATURE = 0.05


@pytest.fixture(scope="module")
def one_passage_pairs(tmp_path_factory):
    path = tmp_path_factory.mktemp("one-passage") / "pairs.jsonl"
    write_pairs_jsonl(path, one_passage_corpus(BATCH).records())
    return path


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return TextEncoder.from_pretrained(tiny_model_dir, show_progress=False)


def first_logged_loss(tiny_model_dir, train, output, *flags):
    code = main(["train", "--model", str(tiny_model_dir), "--train", str(train), "--output", str(output),
                 "--steps", "1", "--batch-size", str(BATCH), "--mode", "xx", "--no-progress", *flags])
    assert code == 0
    return log_losses(output)[0]


@pytest.mark.parametrize("source, flags", [("pairs", []), ("store", []), ("pairs", ["--chunk-size", "16"])],
                         ids=["pairs", "store", "gradcache"])
def test_questions_sharing_one_passage_train_at_loss_zero(tiny_model_dir, one_passage_pairs, tmp_path,
                                                          source, flags):
    train = one_passage_pairs
    if source == "store":
        train = tmp_path / "store"
        assert main(["prepare", "--model", str(tiny_model_dir), "--train", str(one_passage_pairs),
                     "--output", str(train), "--no-progress"]) == 0
    assert first_logged_loss(tiny_model_dir, train, tmp_path / "masked", *flags) == 0.0
    unmasked = first_logged_loss(tiny_model_dir, train, tmp_path / "unmasked", "--no-mask-duplicates", *flags)
    # Dropout makes the 64 copies of the passage differ a little: log(64) up to that.
    assert unmasked == pytest.approx(math.log(BATCH), abs=0.05)
    recorded = [json.loads((tmp_path / run / "run_config.json").read_text())["config"]["mask_duplicates"]
                for run in ("masked", "unmasked")]
    assert recorded == [True, False]


def test_without_masking_the_loss_is_log_batch(tiny_model_dir, tmp_path):
    trainer = without_dropout(make_trainer(tiny_model_dir, tmp_path, corpus=one_passage_corpus(BATCH),
                                           batch_size=BATCH, mode="xx", mask_duplicates=False))
    assert first_batch_gradients(trainer)[0] == pytest.approx(math.log(BATCH), rel=1e-6)


def test_two_gloo_ranks_mask_duplicates_of_the_other_rank(tiny_model_dir, tmp_path):
    """Ranks hold 32 of the 64 questions each: the passages of the other rank are duplicates
    too. A batch with partial duplicates and hard negatives gives the single process's loss and
    gradients (the text ids are global)."""
    from masking_worker import CASES

    run_torchrun(HERE / "masking_worker.py", tiny_model_dir, tmp_path / "ranks")
    saved = [torch.load(tmp_path / "ranks" / f"{index}.pt") for index in range(len(CASES))]
    assert [result["loss"] for result in saved[:2]] == [0.0, 0.0]
    assert saved[2]["loss"] == pytest.approx(math.log(BATCH), rel=1e-6)
    corpus, overrides = CASES["duplicates and negatives"]
    single = without_dropout(make_trainer(tiny_model_dir, tmp_path / "single", corpus=corpus(), **overrides))
    loss, grads = first_batch_gradients(single)
    unmasked = without_dropout(make_trainer(tiny_model_dir, tmp_path / "unmasked", corpus=corpus(),
                                            mask_duplicates=False, **overrides))
    assert abs(first_batch_gradients(unmasked)[0] - loss) > 0.01  # the batch holds duplicates
    assert saved[3]["loss"] == pytest.approx(loss, rel=1e-6)
    scale = max(float(value.abs().max()) for value in grads.values())
    for parameter, value in grads.items():
        torch.testing.assert_close(saved[3]["gradients"][parameter], value, rtol=1e-5, atol=1e-6 * scale)


def test_the_store_gives_the_in_memory_masks(tiny_model_dir, tmp_path):
    write_pairs_jsonl(tmp_path / "pairs.jsonl", duplicate_corpus().records())
    assert main(["prepare", "--model", str(tiny_model_dir), "--train", str(tmp_path / "pairs.jsonl"),
                 "--output", str(tmp_path / "store"), "--no-progress"]) == 0
    losses = []
    for name, train in (("memory-run", tmp_path / "pairs.jsonl"), ("store-run", tmp_path / "store")):
        code = main(["train", "--model", str(tiny_model_dir), "--train", str(train), "--output",
                     str(tmp_path / name), "--steps", "3", "--batch-size", "8", "--no-progress"])
        assert code == 0
        losses.append(log_losses(tmp_path / name))
    np.testing.assert_allclose(losses[1], losses[0], rtol=0, atol=1e-6)


def reference_loss(q, p, masked):
    """InfoNCE on the full logits, ``masked[i, j]`` leaving passage j out of query i's softmax."""
    logits = (F.normalize(q, dim=-1) @ F.normalize(p, dim=-1).T) / TEMPERATURE
    return F.cross_entropy(logits.masked_fill(masked, -math.inf), torch.arange(len(q)))


POOL = ["the river answer", "the city answer", "a year answer", "the team answer", "music answer"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(passages=st.lists(st.sampled_from(POOL), min_size=1, max_size=10),
       negative_lists=st.lists(st.lists(st.sampled_from(POOL + ["an unrelated text"]), max_size=2),
                               min_size=10, max_size=10),
       seed=st.integers(0, 2**31 - 1))
def test_property_the_step_masks_what_the_texts_say(encoder, passages, negative_lists, seed):
    """One language, each pair its own group: passage j leaves query i's softmax exactly when
    j != i and their texts are equal (a reference mask from the strings themselves)."""
    count = len(passages)
    negative_lists = negative_lists[:count]
    corpus = PairCorpus.with_negative_lists([f"question {i}" for i in range(count)], passages, ["en"] * count,
                                            list(range(count)), negative_lists)
    rows = np.arange(count)
    inputs = TokenizedCorpus(corpus, encoder).step_inputs(rows, rows)
    texts = passages + [text for texts in negative_lists for text in texts]
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(count, 8, generator=generator, requires_grad=True)
    p = torch.randn(len(texts), 8, generator=generator, requires_grad=True)
    result = global_batch_gradients(lambda side, part: (q if side == "query" else p)[part], count, len(texts),
                                    InfoNCELoss(TEMPERATURE), query_groups=inputs.query_groups,
                                    passage_groups=inputs.passage_groups)
    masked = torch.tensor([[j != i and texts[j] == texts[i] for j in range(len(texts))] for i in range(count)])
    q_ref, p_ref = q.detach().clone().requires_grad_(), p.detach().clone().requires_grad_()
    want = reference_loss(q_ref, p_ref, masked)
    want.backward()
    assert result.loss == pytest.approx(float(want.detach()), rel=1e-5, abs=1e-6)
    torch.testing.assert_close(q.grad, q_ref.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mask_duplicates", [True, False])
def test_a_negative_of_the_querys_group_in_another_language_stays_masked(encoder, mask_duplicates):
    """A mixed batch: query 0 (en) answers with the English passage of group 0; pair 1's (de)
    negative is group 0's German passage, another text. The pair-group rule leaves it out of
    query 0's softmax, with or without duplicate masking."""
    corpus = PairCorpus.with_negative_lists(
        ["question zero", "frage eins", "frage null"], ["answer zero", "antwort eins", "antwort null"],
        ["en", "de", "de"], [0, 1, 0], [[], ["antwort null"], []])
    tokens = TokenizedCorpus(corpus, encoder, mask_duplicates=mask_duplicates)
    inputs = tokens.step_inputs(np.array([0, 1]), np.array([0, 1]))
    groups = (inputs.query_groups, inputs.passage_groups)
    if mask_duplicates:
        groups = joint_groups(*groups)
    query, passage = groups
    assert len(passage) == 3
    assert query[0] == passage[2] and query[1] != passage[2] and query[0] != passage[1]


def components(rows):
    """Reference: connected components of rows linked by an equal value in the same column."""
    component = list(range(len(rows)))

    def find(a):
        while component[a] != a:
            a = component[a]
        return a

    for a in range(len(rows)):
        for b in range(a):
            if any(x == y for x, y in zip(rows[a], rows[b])):
                component[find(a)] = find(b)
    return [find(a) for a in range(len(rows))]


@settings(max_examples=200, deadline=None)
@given(data=st.data(), columns=st.integers(1, 3))
def test_property_joint_groups_are_the_connected_components(data, columns):
    row = st.tuples(*[st.integers(0, 6)] * columns)
    queries = data.draw(st.lists(row, min_size=1, max_size=8))
    passages = data.draw(st.lists(row, min_size=len(queries), max_size=20))
    query_ids, passage_ids = joint_groups(torch.tensor(queries), torch.tensor(passages))
    want = components(queries + passages)
    same = [[a == b for b in want] for a in want]
    if query_ids is None:  # nothing to mask: only each query with its own positive
        count = len(queries)
        assert all(same[i][count + j] == (i == j) for i in range(count) for j in range(len(passages)))
        assert all(same[count + a][count + b] == (a == b) for a in range(len(passages)) for b in range(len(passages)))
    else:
        got = torch.cat([query_ids, passage_ids]).tolist()
        assert [[a == b for b in got] for a in got] == same


def test_joint_groups_refuse_mismatched_keys():
    with pytest.raises(ValueError, match=r"\[B, K\] and \[M, K\], got \(2, 2\) and \(3, 1\)"):
        joint_groups(torch.zeros(2, 2, dtype=torch.int64), torch.zeros(3, 1, dtype=torch.int64))
