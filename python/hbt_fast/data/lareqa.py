"""LAReQA-layout folder -> training pairs, with an article-level train / evaluation split.

XQuAD-R and MLQA-R are parallel: article ``a`` holds the same questions (same ``id``) in
every language. The split draws whole articles, the same ones in every language, so no
article used for training is ever evaluated. It writes::

    output/train.jsonl      question -> sentence holding its answer, one pair per question
                            and language, grouped by question id
    output/eval/<lang>.json the held-out articles, in the original LAReQA layout, ready for
                            ``evaluate_lareqa(encoder, output / "eval")``
    output/split.json       which articles went where (titles), the seed and the fraction
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from hbt_fast.data.pairs import write_pairs_jsonl


def _load(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(document.get("data"), list):
        raise ValueError(f"{path}: expected a SQuAD-format object with a 'data' list")
    return document


def _article_question_ids(article: dict) -> set:
    return {qa["id"] for paragraph in article.get("paragraphs", []) for qa in paragraph.get("qas", [])}


def _pairs_of_article(article: dict, language: str, path: Path):
    from hbt_fast.evaluate.lareqa import _answer_sentence, _sentence_spans

    for number, paragraph in enumerate(article.get("paragraphs", [])):
        where = f"{path} (paragraph {number} of article {article.get('title', '?')!r})"
        if "sentences" not in paragraph:
            raise ValueError(f"{where}: paragraph has no 'sentences' field")
        spans = _sentence_spans(paragraph, where)
        for qa in paragraph.get("qas", []):
            sentence = _answer_sentence(qa, spans, len(paragraph["context"]), f"{path}: question {qa.get('id')!r}")
            yield {"group": qa["id"], "lang": language, "query": qa["question"],
                   "passage": paragraph["sentences"][sentence]}


def split_lareqa(data_dir, output_dir, *, eval_fraction: float = 0.25, seed: int = 0,
                 languages: Optional[Sequence[str]] = None) -> dict:
    """Split ``data_dir`` by article; returns counts of pairs and articles written."""
    data_dir, output_dir = Path(data_dir), Path(output_dir)
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    if languages is None:
        languages = sorted(path.stem for path in data_dir.glob("*.json"))
    if not languages:
        raise FileNotFoundError(f"no <lang>.json files in {data_dir}")
    documents = {lang: _load(data_dir / f"{lang}.json") for lang in languages}

    reference = documents[languages[0]]["data"]
    if len(reference) < 2:
        raise ValueError(f"{data_dir / (languages[0] + '.json')}: an article-level split needs "
                         f"at least 2 articles, found {len(reference)}")
    rng = np.random.default_rng(seed)
    num_eval = min(max(1, round(eval_fraction * len(reference))), len(reference) - 1)
    eval_articles = set(rng.permutation(len(reference))[:num_eval].tolist())
    eval_ids = set().union(*(_article_question_ids(reference[a]) for a in eval_articles))

    (output_dir / "eval").mkdir(parents=True, exist_ok=True)
    records = []
    for language, document in documents.items():
        path = data_dir / f"{language}.json"
        held_out = []
        for article in document["data"]:
            ids = _article_question_ids(article)
            if ids & eval_ids:
                if not ids <= eval_ids:
                    raise ValueError(f"{path}: article {article.get('title')!r} is not parallel to {languages[0]}")
                held_out.append(article)
            else:
                records.extend(_pairs_of_article(article, language, path))
        with open(output_dir / "eval" / f"{language}.json", "w", encoding="utf-8") as handle:
            json.dump({**document, "data": held_out}, handle, ensure_ascii=False)
    num_pairs = write_pairs_jsonl(output_dir / "train.jsonl", records)
    summary = {
        "seed": seed, "eval_fraction": eval_fraction, "languages": list(languages),
        "eval_articles": sorted(reference[a].get("title", str(a)) for a in eval_articles),
        "train_articles": len(reference) - num_eval, "train_pairs": num_pairs,
        "eval_questions_per_language": len(eval_ids),
    }
    (output_dir / "split.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary
