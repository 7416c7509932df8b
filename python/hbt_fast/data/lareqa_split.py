"""LAReQA-layout folder -> training pairs, with an article-level train / evaluation split.

XQuAD-R and MLQA-R are parallel: article ``a`` holds the same questions (same ``id``) in
every language. The split draws whole articles, the same ones in every language, so no
article used for training is ever evaluated. It writes::

    output/train.jsonl      question -> sentence holding its answer (optionally followed by
                            its paragraph), one pair per question and language, grouped by
                            question id
    output/eval/<lang>.json the held-out articles, in the original LAReQA layout, ready for
                            ``evaluate_lareqa(encoder, output / "eval")``
    output/split.json       which articles went where (titles), the seed and the fraction

With ``folds=K`` the articles are dealt into K folds instead (a seeded permutation cut into K
near-equal parts) and ``fold=k`` holds out fold k: the K splits of one seed test every article
exactly once (k-fold cross-fitting). Fold 0 of the permutation starts where the ``eval_fraction``
split starts, so with the same seed they hold out the same articles when their sizes agree.

Every file is written under a temporary name and renamed when complete; an output folder that
is, or holds, the data folder is refused, so the source files are never overwritten.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from hbt_fast._checks import check_integer, is_real
from hbt_fast.data.files import atomic_output, refuse_overlap
from hbt_fast.data.lareqa import candidate, iter_paragraphs, lareqa_languages, read_lareqa_document
from hbt_fast.data.locations import check_languages
from hbt_fast.data.pairs import write_pairs_jsonl

__all__ = ["split_lareqa"]


def _article_question_ids(article, path: Path, number: int) -> set:
    return {qid for paragraph in iter_paragraphs(article, path, number)
            for qid, _, _ in paragraph.questions}


def _pairs_of_article(article, number: int, language: str, path: Path, candidate_text: str):
    for paragraph in iter_paragraphs(article, path, number):
        for qid, question, sentence in paragraph.questions:
            yield {"group": qid, "lang": language, "query": question,
                   "passage": candidate(paragraph.sentences[sentence], paragraph.context,
                                        candidate_text)}


def _check_arguments(data_dir, output_dir, eval_fraction, seed, folds, fold
                     ) -> tuple[Path, Path, int, Optional[tuple]]:
    seed = check_integer(seed, "seed", minimum=0)
    if folds is None:
        if fold is not None:
            raise ValueError(f"fold {fold!r} needs folds, the number of folds")
        if not is_real(eval_fraction) or not (math.isfinite(eval_fraction) and 0 < eval_fraction < 1):
            raise ValueError(f"eval_fraction must be a number in (0, 1), got {eval_fraction!r}")
        cross_fit = None
    else:
        folds = check_integer(folds, "folds", minimum=2)
        if fold is None:
            raise ValueError(f"folds {folds} needs fold, the fold to hold out (0 to {folds - 1})")
        fold = check_integer(fold, "fold", minimum=0)
        if fold >= folds:
            raise ValueError(f"fold must be below folds ({folds}): folds are numbered 0 to "
                             f"{folds - 1}, got {fold}")
        cross_fit = (folds, fold)
    data_dir, output_dir = Path(data_dir), Path(output_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder {data_dir} does not exist")
    refuse_overlap(output_dir, {"the data folder": data_dir})
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"output {output_dir} exists and is not a folder")
    return data_dir, output_dir, seed, cross_fit


def _eval_articles(reference: list, path: Path, eval_fraction: float, seed: int,
                   cross_fit: Optional[tuple]) -> set:
    needed = 2 if cross_fit is None else cross_fit[0]
    if len(reference) < needed:
        raise ValueError(f"{path}: an article-level split into {needed} parts needs at least "
                         f"{needed} articles, found {len(reference)}")
    order = np.random.default_rng(seed).permutation(len(reference))
    if cross_fit is not None:
        folds, fold = cross_fit
        return set(np.array_split(order, folds)[fold].tolist())
    num_eval = min(max(1, round(eval_fraction * len(reference))), len(reference) - 1)
    return set(order[:num_eval].tolist())


def split_lareqa(data_dir, output_dir, *, eval_fraction: float = 0.25, seed: int = 0,
                 languages: Optional[Sequence[str]] = None, candidate_text: str = "sentence",
                 folds: Optional[int] = None, fold: Optional[int] = None) -> dict:
    """Split ``data_dir`` by article; returns counts of pairs and articles written.

    ``candidate_text="sentence_context"`` makes each training passage its sentence followed by
    the paragraph, as ``evaluate_lareqa(..., candidate_text="sentence_context")`` encodes
    candidates. ``folds`` and ``fold`` (both or neither) hold out fold ``fold`` of ``folds``
    instead of ``eval_fraction`` of the articles (the module doc)."""
    candidate("", "", candidate_text)  # refuses an unknown kind before anything is read
    data_dir, output_dir, seed, cross_fit = _check_arguments(data_dir, output_dir, eval_fraction,
                                                             seed, folds, fold)
    languages = lareqa_languages(data_dir) if languages is None else check_languages(languages)
    paths = {lang: data_dir / f"{lang}.json" for lang in languages}
    documents = {lang: read_lareqa_document(path) for lang, path in paths.items()}
    reference_path = paths[languages[0]]
    reference = documents[languages[0]]["data"]
    eval_articles = _eval_articles(reference, reference_path, eval_fraction, seed, cross_fit)
    eval_ids = set().union(*(_article_question_ids(reference[a], reference_path, a)
                             for a in eval_articles))

    (output_dir / "eval").mkdir(parents=True, exist_ok=True)
    records = []
    for language, document in documents.items():
        path, held_out = paths[language], []
        for number, article in enumerate(document["data"]):
            ids = _article_question_ids(article, path, number)
            if ids & eval_ids:
                if not ids <= eval_ids:
                    raise ValueError(f"{path} (article {number}): not parallel to "
                                     f"{reference_path.name}")
                held_out.append(article)
            else:
                records.extend(_pairs_of_article(article, number, language, path, candidate_text))
        with atomic_output(output_dir / "eval" / f"{language}.json") as handle:
            json.dump({**document, "data": held_out}, handle, ensure_ascii=False)
    num_pairs = write_pairs_jsonl(output_dir / "train.jsonl", records)
    summary = {
        "seed": seed, "eval_fraction": eval_fraction if cross_fit is None else None,
        **({} if cross_fit is None else {"folds": cross_fit[0], "fold": cross_fit[1]}),
        "languages": list(languages),
        "eval_articles": sorted(str(reference[a].get("title", a)) for a in eval_articles),
        "train_articles": len(reference) - len(eval_articles), "train_pairs": num_pairs,
        "eval_questions_per_language": len(eval_ids), "candidate_text": candidate_text,
    }
    with atomic_output(output_dir / "split.json") as handle:
        json.dump(summary, handle, indent=2)
    return summary
