"""TextEncoder on a tiny XLM-R built from a config (no downloads)."""

import json

import numpy as np
import pytest
import torch

from hbt_fast.models import SETTINGS_FILE, EncoderSettings, TextEncoder


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    return TextEncoder.from_pretrained(tiny_model_dir, show_progress=False, batch_size=3)


def test_encode_shapes_normalisation_and_batching(encoder):
    texts = ["the river of the city", "der Fluss", "el río", "le fleuve", "the river of the city"]
    out = encoder.encode_passages(texts)
    assert out.shape == (5, 32) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(out[0], out[4])
    # Batching and padding do not change an embedding.
    alone = encoder.encode_passages(["le fleuve"], batch_size=1)
    encoder.clear_cache()
    np.testing.assert_allclose(encoder.encode_passages(texts)[3], alone[0], atol=1e-5)
    assert encoder.encode_queries([]).shape == (0, 32)


def test_embed_carries_gradients_and_matches_encode(encoder):
    encoder.eval()
    embedded = encoder.embed(["question one", "question two"], "query")
    assert embedded.requires_grad
    embedded.sum().backward()
    grads = [p.grad for p in encoder.model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    encoder.model.zero_grad()
    np.testing.assert_allclose(
        embedded.detach().numpy(), encoder.encode_queries(["question one", "question two"]),
        atol=1e-5)


def test_cache_serves_repeats_and_is_cleared_by_train(encoder):
    encoder.eval()
    encoder.encode_queries(["cached text"])
    assert ("query", "cached text") in encoder._cache
    assert ("passage", "cached text") not in encoder._cache
    encoder.train()
    assert not encoder._cache
    encoder.eval()


def test_prefixes_and_presets(tiny_model_dir):
    plain = TextEncoder.from_pretrained(tiny_model_dir, show_progress=False)
    prefixed = TextEncoder.from_pretrained(tiny_model_dir, prefixes=True, show_progress=False,
                                           max_query_length=None)
    assert prefixed.settings.query_prefix == "Query: "
    assert not np.allclose(plain.encode_queries(["x y"]), prefixed.encode_queries(["x y"]))
    labse = TextEncoder.from_pretrained(tiny_model_dir, preset="labse", show_progress=False)
    batch = labse._tokenize(["a b c"], "passage")
    expected = torch.nn.functional.normalize(labse.model(**batch).pooler_output, dim=-1)
    np.testing.assert_allclose(labse.encode_passages(["a b c"]), expected.detach().numpy(),
                               atol=1e-5)


def test_save_and_load_round_trip(encoder, tmp_path):
    encoder.settings = EncoderSettings(pooling="cls", normalize=False, query_prefix="Q: ",
                                       max_query_length=16)
    try:
        saved = encoder.save(tmp_path / "saved")
        settings = json.loads((saved / SETTINGS_FILE).read_text())
        assert settings["pooling"] == "cls" and settings["query_prefix"] == "Q: "
        loaded = TextEncoder.load(saved, show_progress=False)
        assert loaded.settings == encoder.settings
        encoder.clear_cache()
        np.testing.assert_allclose(loaded.encode_queries(["hello there"]),
                                   encoder.encode_queries(["hello there"]), atol=1e-5)
    finally:
        encoder.settings = EncoderSettings()
        encoder.clear_cache()


def test_invalid_settings(tiny_model_dir, encoder):
    with pytest.raises(ValueError, match="pooling"):
        EncoderSettings(pooling="max")
    with pytest.raises(ValueError, match="max_query_length"):
        EncoderSettings(max_query_length=1)
    with pytest.raises(ValueError, match="preset"):
        TextEncoder.from_pretrained(tiny_model_dir, preset="bert")
    with pytest.raises(TypeError, match="unknown encoder settings"):
        TextEncoder.from_pretrained(tiny_model_dir, poolin="mean")
    with pytest.raises(TypeError, match="list of strings"):
        encoder.encode_queries("not a list")
    with pytest.raises(ValueError, match="side"):
        encoder.embed(["x"], "document")


@pytest.mark.parametrize("preset", ["xlmr", "labse"])
def test_saved_encoder_loads_in_sentence_transformers(tiny_model_dir, tmp_path, preset):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from hbt_fast.models import TextEncoder

    encoder = TextEncoder.from_pretrained(tiny_model_dir, preset=preset, prefixes=True,
                                          show_progress=False)
    encoder.save(tmp_path / "saved")
    loaded = sentence_transformers.SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    texts = ["the river and the city.", "eine Frage zur Musik und zur Schule"]
    np.testing.assert_allclose(loaded.encode(texts, prompt_name="query"), encoder.encode_queries(texts),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(loaded.encode(texts, prompt_name="passage"),
                               encoder.encode_passages(texts), rtol=1e-4, atol=1e-5)
