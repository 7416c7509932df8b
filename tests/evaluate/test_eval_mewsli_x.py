"""Mewsli-X: fixtures in XTREME-R's layout and in the Mewsli-X release's, texts built as XTREME-R's
baseline builds them, mAP@20 worked by hand, and the errors for missing or withheld files."""

import json

import numpy as np
import pytest

from hbt_fast.data.mewsli_x import entity_text, load_mewsli_x, mention_query
from hbt_fast.evaluate import evaluate_mewsli_x

# One English article: three sentences, the second with braces and a mention of Paris; the third
# spans a line break and mentions the Seine.
EN_TEXT = "Rain fell. The {new} tower of Paris opened today.\nBy the\nSeine it stands."
EN_SENTENCES = [(0, 10), (11, 49), (50, 73)]
PARIS = (EN_TEXT.index("Paris"), EN_TEXT.index("Paris") + 5)
SEINE = (EN_TEXT.index("Seine"), EN_TEXT.index("Seine") + 5)
ES_TEXT = "Vive en Lyon."
LYON = (8, 12)
# The query texts, written out by hand from XTREME-R's rule: "<mention>: <left> { <mention> }
# <right>" over the mention's sentence, braces escaped, line breaks to spaces, double spaces once.
PARIS_QUERY = "Paris: The (new) tower of { Paris } opened today."
SEINE_QUERY = "Seine: By the { Seine } it stands."
LYON_QUERY = "Lyon: Vive en { Lyon } ."

ENTITIES = [  # id, description, sentence spans; the text is the spans joined by spaces
    ("Q90", "Paris est la capitale.  Elle est grande.\nFin", [(0, 22), (24, 40)]),
    ("Q1471", "The Seine is a river.", [(0, 21)]),
    ("Q456", "Lyon is a city.", [(0, 15)]),
]
ENTITY_TEXTS = ["Paris est la capitale. Elle est grande.", "The Seine is a river.",
                "Lyon is a city."]


def _span(start, end):
    return {"start": start, "end": end}


def _article(language, text, sentences, mentions):
    return {"context": {"document_id": "d", "document_url": "u", "document_title": "t",
                        "section_title": "", "language": language, "text": text,
                        "sentence_spans": [_span(*s) for s in sentences]},
            "mentions": [{"example_id": example, "entity_id": entity,
                          "mention_span": {**_span(*span), "text": text[span[0]:span[1]]}}
                         for example, entity, span in mentions]}


ARTICLES = [
    _article("en", EN_TEXT, EN_SENTENCES, [("en-1", "Q90", PARIS), ("en-2", "Q1471", SEINE)]),
    _article("es", ES_TEXT, [(0, 13)], [("es-1", "Q999", LYON)]),  # Q999: not in the pool
]


def _write_jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")


def _write_entities(folder):
    _write_jsonl(folder / "candidate_set_entities.jsonl", [
        {"entity_id": entity, "title": entity, "description": description,
         "description_url": "u", "description_language": "xx",
         "sentence_spans": [_span(*s) for s in spans]} for entity, description, spans in ENTITIES])


@pytest.fixture
def release(tmp_path):
    """The layout get-mewsli-x.sh leaves in mewsli_x/output/dataset/."""
    folder = tmp_path / "dataset"
    _write_entities(folder)
    _write_jsonl(folder / "wikinews_mentions-dev.jsonl", ARTICLES)
    return folder


@pytest.fixture
def xtreme(tmp_path):
    """The layout XTREME-R's download_data.sh leaves in download/mewslix/ (after
    utils_preprocess.py): per-language mention files, test entity ids blanked, labels apart."""
    folder = tmp_path / "mewslix"
    _write_entities(folder)
    for split, hide in (("dev", False), ("test", True)):
        for article in ARTICLES:
            language = article["context"]["language"]
            shown = json.loads(json.dumps(article))
            labels = {m["example_id"]: [m["entity_id"]] for m in shown["mentions"]}
            if hide:
                for mention in shown["mentions"]:
                    mention["entity_id"] = ""
                labels = {example: [""] for example in labels}
            _write_jsonl(folder / "wikinews_mentions" / f"{split}-{language}.jsonl", [shown])
            (folder / "wikinews_labels").mkdir(exist_ok=True)
            (folder / "wikinews_labels" / f"{split}-{language}.json").write_text(
                json.dumps(labels), encoding="utf-8")
    return folder


class TableEncoder:
    def __init__(self, table):
        self.table = table

    def encode_queries(self, texts):
        return np.array([self.table[t] for t in texts], dtype=np.float32)

    encode_passages = encode_queries


# Paris ranks its entity first; the Seine mention scores Q90 above Q1471 (rank 2); Lyon's gold
# entity is not in the pool.
TABLE = {PARIS_QUERY: [1, 0, 0], SEINE_QUERY: [0.5, 0.4, 0], LYON_QUERY: [0, 0, 1],
         ENTITY_TEXTS[0]: [1, 0, 0], ENTITY_TEXTS[1]: [0, 1, 0], ENTITY_TEXTS[2]: [0, 0, 1]}


def test_texts_follow_xtreme_r_baseline():
    assert mention_query(EN_TEXT, EN_SENTENCES, *PARIS) == PARIS_QUERY
    assert mention_query(EN_TEXT, EN_SENTENCES, *SEINE) == SEINE_QUERY
    assert mention_query(ES_TEXT, [(0, 13)], *LYON) == LYON_QUERY
    # a mention across two sentences has no sentence of its own
    assert mention_query(EN_TEXT, EN_SENTENCES, 5, 15) is None
    assert entity_text(ENTITIES[0][1], ENTITIES[0][2]) == ENTITY_TEXTS[0]


@pytest.mark.parametrize("layout", ["release", "xtreme"])
def test_hand_worked_map_in_both_layouts(layout, request):
    """en: Paris at rank 1 (AP 1), the Seine at rank 2 (AP 1/2): mAP@20 = 0.75, Recall@20 = 1.
    es: Lyon's gold entity is absent, a miss: 0. The mean over languages is 0.375."""
    folder = request.getfixturevalue(layout)
    with pytest.warns(UserWarning, match=r"1 mention\(s\) are not in the candidate set \(es: 1\)"):
        r = evaluate_mewsli_x(TableEncoder(TABLE), folder, split="dev")
    assert r["languages"] == ["en", "es"]
    assert r["per_language"]["en"] == {"mentions": 2, "map@20": 0.75, "recall@20": 1.0,
                                       "gold_not_in_pool": 0}
    assert r["per_language"]["es"]["map@20"] == 0.0
    assert r["per_language"]["es"]["gold_not_in_pool"] == 1
    assert r["mean"]["map@20"] == pytest.approx(0.375) and r["mean"]["languages"] == 2
    assert r["split"] == "dev" and r["k"] == 20 and r["entities"] == 3
    # k = 1: the Seine's rank 2 falls outside
    only_en = evaluate_mewsli_x(TableEncoder(TABLE), folder, languages=["en"], split="dev", k=1)
    assert only_en["per_language"]["en"]["map@1"] == 0.5


def test_xtreme_test_labels_are_withheld_and_said_so(xtreme):
    with pytest.raises(ValueError, match="XTREME-R withholds the test labels: evaluate split "
                                         "'dev'"):
        load_mewsli_x(xtreme, split="test")


def test_missing_files_name_the_file_and_the_source(tmp_path, release, xtreme):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="wikinews_mentions/dev-<lang>.jsonl .*"
                                                "wikinews_mentions-dev.jsonl.*get-mewsli-x.sh"):
        load_mewsli_x(tmp_path / "empty", split="dev")
    (tmp_path / "empty" / "wikinews_mentions_no_text-dev.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="lacks the article text: run get-mewsli-x.sh"):
        load_mewsli_x(tmp_path / "empty", split="dev")
    (release / "candidate_set_entities.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="candidate_set_entities.jsonl does not exist.*"
                                                "dense_representations_for_entity_retrieval"):
        load_mewsli_x(release, split="dev")
    with pytest.raises(FileNotFoundError, match="'fr'.*dev-fr.jsonl does not exist"):
        load_mewsli_x(xtreme, ["fr"], split="dev")
    (xtreme / "wikinews_labels" / "dev-en.json").unlink()
    with pytest.raises(FileNotFoundError, match="dev-en.json does not exist"):
        load_mewsli_x(xtreme, ["en"], split="dev")
    with pytest.raises(ValueError, match="split must be one of"):
        load_mewsli_x(xtreme, split="train")


def test_bad_records_name_file_and_line(tmp_path):
    folder = tmp_path / "dataset"
    _write_entities(folder)
    empty_text = json.loads(json.dumps(ARTICLES[0]))
    empty_text["context"]["text"] = ""
    _write_jsonl(folder / "wikinews_mentions-dev.jsonl", [ARTICLES[1], empty_text])
    with pytest.raises(ValueError, match=r"wikinews_mentions-dev.jsonl:2: the article text is "
                                         "empty"):
        load_mewsli_x(folder, split="dev")
    crossing = json.loads(json.dumps(ARTICLES[0]))
    crossing["mentions"][0]["mention_span"] = {**_span(5, 15), "text": EN_TEXT[5:15]}
    _write_jsonl(folder / "wikinews_mentions-dev.jsonl", [crossing])
    with pytest.raises(ValueError, match=r"-dev.jsonl:1: mentions\[0\] \(en-1\): no sentence"):
        load_mewsli_x(folder, split="dev")
    wrong = json.loads(json.dumps(ARTICLES[0]))
    wrong["mentions"][1]["mention_span"]["text"] = "Thames"
    _write_jsonl(folder / "wikinews_mentions-dev.jsonl", [wrong])
    with pytest.raises(ValueError, match=r"mentions\[1\] \(en-2\): mention text 'Thames'"):
        load_mewsli_x(folder, split="dev")
    _write_jsonl(folder / "wikinews_mentions-dev.jsonl", ARTICLES)
    with pytest.raises(ValueError, match=r"no mention in language\(s\) \['fr'\]"):
        load_mewsli_x(folder, ["en", "fr"], split="dev")


def test_a_language_without_mentions_is_skipped_with_a_warning(xtreme):
    (xtreme / "wikinews_mentions" / "dev-es.jsonl").write_text("", encoding="utf-8")
    with pytest.warns(UserWarning, match="Mewsli-X language 'es' skipped: no mention"):
        data = load_mewsli_x(xtreme, split="dev")
    assert data.languages == ["en"]
    assert data.queries["en"] == [PARIS_QUERY, SEINE_QUERY]
    assert data.gold["en"].tolist() == [0, 1]


def test_eval_command(release, tmp_path, capsys):
    from hbt_fast.cli import main

    out = tmp_path / "out"
    assert main(["eval", "--model", "hashed-ngrams", "--task", "mewsli-x", "--data", str(release),
                 "--split", "dev", "--output", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["task"] == "mewsli-x" and results["split"] == "dev"
    assert results["languages"] == ["en", "es"] and "map@20" in results["mean"]
    assert "eval: warning: " in capsys.readouterr().err  # Lyon's entity is not in the pool
    (tmp_path / "empty").mkdir()
    assert main(["eval", "--model", "hashed-ngrams", "--task", "mewsli-x", "--data",
                 str(tmp_path / "empty"), "--output", str(tmp_path / "o2"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hbt-fast eval: error: ") and err.count("\n") == 1
    assert "wikinews_mentions-test.jsonl" in err and "get-mewsli-x.sh" in err
