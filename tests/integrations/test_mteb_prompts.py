"""The MTEB route, offline: a model saved with prompts keyed "query" and "document" encodes
queries and documents with them wherever MTEB may ask.

mteb 2 (checked against mteb 2.26.24) wraps a SentenceTransformer in
SentenceTransformerEncoderWrapper, keeps the model's prompts whose keys are task names, task
types or prompt types ("query", "document"; any other key such as "passage" is dropped with a
warning), and encodes retrieval queries with ``model.encode_query(texts, prompt=prompts["query"])``
and the corpus with ``model.encode_document(texts, prompt=prompts["document"])``; mteb 1 called
``model.encode(texts, prompt_name=...)`` with the same names. mteb itself is not installed here,
so these tests call exactly those sentence-transformers entry points."""

import numpy as np
import pytest

pytest.importorskip("sentence_transformers", reason="needs sentence-transformers")
datasets = pytest.importorskip("datasets", reason="needs datasets")

from sentence_transformers import SentenceTransformer  # noqa: E402

from st_helpers import tiny_sentence_transformer  # noqa: E402
from test_hybrid_trainer import make_trainer  # noqa: E402

PROMPTS = {"query": "query: ", "document": "passage: "}
TEXTS = ["the river of the city", "der Fluss und die Stadt", "question answer football"]


@pytest.fixture(scope="module")
def saved_model(st_model_dir, tmp_path_factory):
    """Trained by HybridTrainer with the prompts on their columns, saved, loaded back."""
    output = tmp_path_factory.mktemp("prompted")
    model = tiny_sentence_transformer(st_model_dir, prompts=PROMPTS)
    trainer = make_trainer(st_model_dir, output, model=model, args={
        "max_steps": 1, "prompts": {"query": PROMPTS["query"], "passage": PROMPTS["document"]}})
    trainer.train()
    trainer.save_model(str(output / "final"))
    return SentenceTransformer(str(output / "final"), device="cpu")


def test_prompts_survive_training_and_saving(saved_model):
    assert {name: saved_model.prompts[name] for name in PROMPTS} == PROMPTS


@pytest.mark.parametrize("side, encode", [
    ("query", lambda model, texts: model.encode_query(texts, prompt=model.prompts["query"])),
    ("query", lambda model, texts: model.encode_query(texts)),
    ("query", lambda model, texts: model.encode(texts, prompt_name="query")),
    ("document", lambda model, texts: model.encode_document(texts, prompt=model.prompts["document"])),
    ("document", lambda model, texts: model.encode_document(texts)),
    ("document", lambda model, texts: model.encode(texts, prompt_name="document")),
], ids=["mteb2 query", "query default", "mteb1 query", "mteb2 document", "document default",
        "mteb1 document"])
def test_every_mteb_route_applies_the_prompt(saved_model, side, encode):
    expected = saved_model.encode([PROMPTS[side] + text for text in TEXTS])
    np.testing.assert_allclose(encode(saved_model, TEXTS), expected, rtol=0, atol=1e-6)
    # and the prompt matters: without it the embeddings differ
    assert np.abs(saved_model.encode(TEXTS, prompt="") - expected).max() > 1e-3
