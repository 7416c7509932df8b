"""XM3600 captions, text to text: a fixture in captions.jsonl's layout, a hand-worked case, every
figure against AP@k by its definition, bad input."""

import json

import numpy as np
import pytest

from hbt_fast.data.xm3600 import load_xm3600
from hbt_fast.evaluate import HashedNgramEncoder, evaluate_xm3600

CAPTIONS = [  # one image per line, as captions.jsonl holds them (two languages here, not 36)
    {"en": ["a brown dog runs", "a dog on grass"], "de": ["ein brauner Hund", "Hund im Gras"]},
    {"en": ["a black cat"], "de": ["eine schwarze Katze", "Katze"]},
    {"en": ["a red car", "car in a street"], "de": ["ein rotes Auto"]},
]


def _write(folder, images=CAPTIONS):
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for number, captions in enumerate(images):
        record = {"image/key": f"{number:016x}"}
        for language, texts in captions.items():
            record[language] = {"caption": texts, "caption/tokenized": [t.lower() for t in texts],
                                "caption/tokenized/lowercase": [t.lower() for t in texts]}
        lines.append(json.dumps(record, ensure_ascii=False))
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _ap(scores, relevant, k):
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]
    hits = np.isin(order, list(relevant))
    precision = np.cumsum(hits) / np.arange(1, len(order) + 1)
    return float((precision * hits).sum() / min(len(relevant), k))


def _expected(k):
    """Setups and multi by the definition: every caption a query, its image's other captions
    relevant, the query itself out of the candidates."""
    encoder = HashedNgramEncoder()
    languages = ["de", "en"]
    rows = [(lang, image, text) for lang in languages
            for image, captions in enumerate(CAPTIONS) for text in captions[lang]]
    vectors = encoder.encode([text for _, _, text in rows]).astype(np.float64)
    matrix, multi = {}, {}
    for x in languages:
        queries = [i for i, row in enumerate(rows) if row[0] == x]
        for y in languages + [None]:  # None: the whole pool
            aps = []
            for q in queries:
                candidates = [c for c, row in enumerate(rows) if (y is None or row[0] == y)
                              and c != q]
                relevant = {i for i, c in enumerate(candidates) if rows[c][1] == rows[q][1]}
                if relevant:
                    aps.append(_ap(vectors[candidates] @ vectors[q], relevant, k))
            if y is None:
                multi[x] = np.mean(aps)
            else:
                matrix[x, y] = np.mean(aps)
    return matrix, multi


@pytest.mark.parametrize("k", [1, 20])
def test_every_figure_agrees_with_the_definition(tmp_path, k):
    r = evaluate_xm3600(HashedNgramEncoder(), _write(tmp_path / "xm3600"), k=k)
    matrix, multi = _expected(k)
    key = f"map@{k}"
    assert r["languages"] == ["de", "en"]
    for x, language in enumerate(r["languages"]):
        for y, other in enumerate(r["languages"]):
            assert r["matrix"][key][x][y] == pytest.approx(matrix[language, other], abs=1e-6)
        assert r["per_language"][language][f"multi_{key}"] == pytest.approx(multi[language],
                                                                            abs=1e-6)
    assert r["mono"][key] == pytest.approx((matrix["de", "de"] + matrix["en", "en"]) / 2, abs=1e-6)
    assert r["cross"][key] == pytest.approx((matrix["de", "en"] + matrix["en", "de"]) / 2,
                                            abs=1e-6)
    assert r["multi"][key] == pytest.approx(np.mean(list(multi.values())), abs=1e-6)
    assert r["per_language"]["en"]["captions"] == 5 and r["per_language"]["de"]["images"] == 3
    assert r["mono"]["setups"] == 2 and r["cross"]["setups"] == 2 and r["images"] == 3


class TableEncoder:
    def __init__(self, table):
        self.table = table

    def encode_passages(self, texts):
        return np.array([self.table[t] for t in texts], dtype=np.float32)

    encode_queries = encode_passages


def test_hand_worked_case(tmp_path):
    """Image 0 has en 'a', 'b' and de 'c'; image 1 has en 'd' and de 'e'. Vectors a = c = [1, 0],
    b = d = e = [0, 1]; ties go to the caption first in file order (en before de in the pool).
    en->en: 'a' ranks b, d (tied at 0): b first, AP 1; 'b' ranks d (1) above a: AP 1/2; 'd' has
    no other English caption of its image: left out. mono(en) = 3/4.
    de->de: one German caption per image, no query has a relevant one: no setup.
    en->de: a -> c rank 1: 1; b -> e, then c: 1/2; d -> e rank 1: 1. Mean 5/6.
    de->en: c -> a, b (tied with d, b first): ranks 1, 2: 1; e -> b, d tied at 1, d second: 1/2.
    Mean 3/4.
    multi (pool a, b, d, c, e): a -> c, b first: 1; b -> d, e, a, c: a and c at ranks 3, 4:
    (1/3 + 2/4) / 2 = 5/12; d -> b, e: 1/2; so en = (1 + 5/12 + 1/2) / 3 = 23/36. c -> a, b: 1;
    e -> b, d: 1/2; de = 3/4. multi = (23/36 + 27/36) / 2 = 25/36."""
    _write(tmp_path, [{"en": ["a", "b"], "de": ["c"]}, {"en": ["d"], "de": ["e"]}])
    table = {"a": [1, 0], "b": [0, 1], "c": [1, 0], "d": [0, 1], "e": [0, 1]}
    r = evaluate_xm3600(TableEncoder(table), tmp_path, languages=["en", "de"])
    assert r["languages"] == ["en", "de"]
    matrix = r["matrix"]["map@20"]
    assert matrix[0][0] == pytest.approx(3 / 4)
    assert matrix[1][1] is None and r["mono"] == {"map@20": 0.75, "setups": 1}
    assert matrix[0][1] == pytest.approx(5 / 6) and matrix[1][0] == pytest.approx(3 / 4)
    assert r["cross"]["map@20"] == pytest.approx((5 / 6 + 3 / 4) / 2)
    assert r["per_language"]["en"]["multi_map@20"] == pytest.approx(23 / 36)
    assert r["multi"]["map@20"] == pytest.approx(25 / 36) and r["multi"]["setups"] == 2


def test_bad_input_names_file_line_and_source(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="captions.jsonl does not exist; obtain "
                                                "captions.jsonl from https://google.github.io/"
                                                "crossmodal-3600/"):
        load_xm3600(tmp_path)
    monkeypatch.setenv("HBT_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="xm3600 data directory .* does not exist. "
                                                "Obtain the data from https://google.github.io/"
                                                "crossmodal-3600/"):
        load_xm3600()
    _write(tmp_path, [{"en": ["a"], "de": ["b"]}, {"en": ["c"]}])
    with pytest.raises(ValueError, match=r"captions.jsonl:2: no captions in language 'de'"):
        load_xm3600(tmp_path)
    _write(tmp_path, [{"en": ["a"]}, {"en": ["c", ""]}])
    with pytest.raises(ValueError, match=r"captions.jsonl:2: 'en' must be an object whose "
                                         "'caption' is a list of non-empty strings"):
        load_xm3600(tmp_path)
    (tmp_path / "captions.jsonl").write_text('{"image/key": "x", "en": {"caption": ["a"]}}\n'
                                             '{"image/key": "x", "en": {"caption": ["b"]}}\n',
                                             encoding="utf-8")
    with pytest.raises(ValueError, match="captions.jsonl:2: image 'x' already on line 1"):
        load_xm3600(tmp_path)
    with pytest.raises(ValueError, match="captions.jsonl:1: no captions in language 'fr'"):
        load_xm3600(tmp_path, ["fr"])


def test_eval_command(tmp_path):
    from hbt_fast.cli import main

    data, out = _write(tmp_path / "xm3600"), tmp_path / "out"
    assert main(["eval", "--model", "hashed-ngrams", "--task", "xm3600", "--data", str(data),
                 "--output", str(out), "--k", "5", "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    matrix, multi = _expected(5)
    assert results["task"] == "xm3600" and results["k"] == 5
    assert results["matrix"]["map@5"][0][1] == pytest.approx(matrix["de", "en"], abs=1e-6)
    assert (out / "heatmap.png").is_file()
