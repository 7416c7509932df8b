"""Token ids of texts of any length, for the cost of their first ``max_length`` tokens.

A tokenizer normalises and splits the whole text before truncation drops what lies beyond
``max_length`` tokens: one 50 MB passage costs gigabytes and minutes for 256 ids. So a text
longer than :func:`character_bound` (64 characters per token of ``max_length``, at least 8192)
is cut to that many characters first, where the cut cannot change its first tokens:

* before an ASCII space that ends a word: every tokenizer splits words there (WordPiece,
  byte-level BPE and SentencePiece alike), so the kept text's tokens are the first tokens of
  the whole text;
* inside a word or a run of spaces longer than half the bound (no word ends near the bound):
  its first tokens come from its first characters, and a word that long is one unknown token
  or thousands of pieces either way (WordPiece makes any word over 100 characters ``[UNK]``;
  byte-level BPE makes tokens of spaces too).

Texts within the bound reach the tokenizer unchanged, so their ids are exactly those of
``tokenizer(texts, truncation=True, max_length=max_length)``; so are a long text's, whenever
its first ``max_length`` tokens lie within the bound, which holds for any text averaging fewer
than 64 characters per token. Where a cut text gives fewer than ``max_length`` ids although
words follow the cut (long runs of spaces or of characters the tokenizer drops, a giant
unknown word), the tokens after the cut are left out, with a warning.
"""

from __future__ import annotations

import unicodedata
import warnings
from typing import Sequence

__all__ = ["CHARS_PER_TOKEN", "character_bound", "cut_text", "token_ids"]

#: Far above what any vocabulary averages (3-5 characters per token); its longest tokens (runs
#: of "=" or spaces) stay below it.
CHARS_PER_TOKEN = 64
#: A cut inside a word keeps more than half of this: beyond any tokenizer's word-length limit.
MIN_BOUND = 8192


def character_bound(max_length: int) -> int:
    """How many characters a text may keep before tokenization for ``max_length`` tokens."""
    return max(CHARS_PER_TOKEN * max_length, MIN_BOUND)


def _inside_run_cut(text: str, bound: int) -> int:
    # Combining marks (and joiners) belong to the character before them.
    cut = bound
    while cut > bound // 2 and (unicodedata.category(text[cut]).startswith("M")
                                or text[cut] == "\u200d"):
        cut -= 1
    return cut


def cut_text(text: str, bound: int) -> str:
    """``text`` itself when within ``bound`` characters, else its start up to the last word end
    (a character before an ASCII space) in its first ``bound`` characters, or, when that lies
    in the first half (the text there is one long word or run of spaces), up to ``bound``
    characters."""
    if len(text) <= bound:
        return text
    head = text[: bound + 1]
    last_space = head.rfind(" ")
    word_end = len(head[:last_space].rstrip(" ")) if last_space >= 0 else 0
    if word_end > bound // 2:
        return text[:word_end]
    return text[:_inside_run_cut(text, bound)]


def _cut_losing_words(text: str, kept: str) -> bool:
    """Whether words of ``text`` follow the part ``kept``: tokens truncation might have kept."""
    rest = text[len(kept):]
    space = rest.find(" ")
    return space >= 0 and bool(rest[space:].strip(" "))


def token_ids(tokenizer, texts: Sequence[str], max_length: int) -> list:
    """The ``input_ids`` of ``tokenizer(texts, truncation=True, max_length=max_length)``, one
    list per text, each text first cut to :func:`character_bound` characters."""
    bound = character_bound(max_length)
    kept = [cut_text(text, bound) for text in texts]
    encoded = tokenizer(kept, truncation=True, max_length=max_length, return_attention_mask=False,
                        return_token_type_ids=False)["input_ids"]
    ids = [list(row) for row in encoded]
    for text, part, row in zip(texts, kept, ids):
        if part is not text and len(row) < max_length and _cut_losing_words(text, part):
            warnings.warn(
                f"a text of {len(text):,} characters ({text[:30]!r}...) gives only {len(row)} "
                f"tokens from its first {len(part):,} characters, the most read for "
                f"max_length={max_length} ({CHARS_PER_TOKEN} per token): the words after them "
                "are left out", UserWarning, stacklevel=3)
    return ids
