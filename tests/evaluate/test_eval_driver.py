"""The one driver: every text encoded once, in chunks, under one progress bar; bad encoders."""

import numpy as np
import pytest

from hbt_fast.evaluate import evaluate_tatoeba
from hbt_fast.evaluate.driver import ENCODE_CHUNK, EncodeJob, encode_jobs


class CountingEncoder:
    def __init__(self, dims=(3,)):
        self.calls, self.dims = [], list(dims)

    def _encode(self, side, texts):
        self.calls.append((side, len(texts)))
        dim = self.dims[min(len(self.calls), len(self.dims)) - 1]
        return np.ones((len(texts), dim), dtype=np.float32)

    def encode_queries(self, texts):
        return self._encode("query", texts)

    def encode_passages(self, texts):
        return self._encode("passage", texts)


def _jobs(query_count, passage_count):
    return [EncodeJob("query", "aa", "query", ["q"] * query_count, "aa questions"),
            EncodeJob("candidate", "aa", "passage", ["p"] * passage_count, "aa sentences")]


def test_texts_go_to_the_encoder_in_chunks_and_come_back_per_language():
    encoder = CountingEncoder()
    queries, candidates = encode_jobs(encoder, _jobs(ENCODE_CHUNK + 5, 2))
    assert encoder.calls == [("query", ENCODE_CHUNK), ("query", 5), ("passage", 2)]
    assert queries["aa"].shape == (ENCODE_CHUNK + 5, 3) and candidates["aa"].shape == (2, 3)


def test_one_progress_bar_counts_every_text(capsys):
    encode_jobs(CountingEncoder(), _jobs(7, 4), progress=True, description="evaluating test")
    err = capsys.readouterr().err
    assert "evaluating test" in err and "11/11" in err
    assert err.count("evaluating test: 100%") == 1


def test_a_dimension_change_between_calls_is_refused():
    with pytest.raises(ValueError, match=r"encode_passages for aa sentences: dimension 4, expected 3"):
        encode_jobs(CountingEncoder(dims=(3, 4)), _jobs(2, 2))


def test_a_wrong_row_count_names_the_texts():
    class Short(CountingEncoder):
        def encode_queries(self, texts):
            return np.ones((len(texts) - 1, 3), dtype=np.float32)

    with pytest.raises(ValueError, match=r"encode_queries for aa questions: expected 2 rows"):
        encode_jobs(Short(), _jobs(2, 2))


def test_missing_encoder_methods_are_named():
    with pytest.raises(TypeError, match=r"callable encode_queries\(list\[str\]\)"):
        encode_jobs(object(), _jobs(1, 1))


def test_tatoeba_refuses_an_empty_language_list(tmp_path):
    (tmp_path / "tatoeba.deu-eng.deu").write_text("a\n", encoding="utf-8")
    (tmp_path / "tatoeba.deu-eng.eng").write_text("a\n", encoding="utf-8")
    with pytest.raises(ValueError, match="languages must not be empty"):
        evaluate_tatoeba(CountingEncoder(), tmp_path, languages=[])
    with pytest.raises(TypeError, match="progress must be True or False"):
        evaluate_tatoeba(CountingEncoder(), tmp_path, progress="yes")
