"""Mewsli-X (XTREME-R) entity retrieval: each mention (query side) against the one pool of entity
descriptions in 50 languages (passage side); mAP@k with k = 20 as XTREME-R reports it.

Data and texts: :mod:`hbt_fast.data.mewsli_x`. A mention has one relevant candidate, its gold
entity, so AP@k = 1 / rank when rank <= k, else 0 (XTREME-R's mean reciprocal rank of the top
20). A gold entity absent from the pool counts as a miss (0), as XTREME-R counts it. Per
language the mean over its mentions; the ``mean`` section averages the languages (macro), as
XTREME-R's ``evaluate_all`` does. Ties go to the lower candidate index (file order).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from hbt_fast._checks import check_integer
from hbt_fast.data.mewsli_x import MewsliXData, load_mewsli_x
from hbt_fast.evaluate._common import l2_normalize
from hbt_fast.evaluate.driver import EncodeJob, run_task
from hbt_fast.evaluate.grouped import grouped_retrieval
from hbt_fast.evaluate.keys import map_at, recall_at
from hbt_fast.evaluate.result import TaskResult
from hbt_fast.evaluate.search import as_embeddings

__all__ = ["POOL", "encode_jobs", "evaluate_mewsli_x", "load", "score"]

#: the key of the entity pool's embeddings among the candidate embeddings
POOL = "entities"

load = load_mewsli_x


def encode_jobs(data: MewsliXData) -> list:
    jobs = [EncodeJob("query", language, "query", data.queries[language],
                      f"Mewsli-X mentions of {language!r} ({data.folder})")
            for language in data.languages]
    jobs.append(EncodeJob("candidate", POOL, "passage", data.entity_texts,
                          f"Mewsli-X entity descriptions ({data.folder})"))
    return jobs


def score(data: MewsliXData, query_embeddings: dict, candidate_embeddings: dict, *,
          k: int = 20, normalize: bool = False) -> TaskResult:
    """mAP@k and Recall@k per mention language from ``{language: mention embeddings}`` and
    ``{POOL: entity embeddings}``."""
    k = check_integer(k, "k")
    entities = as_embeddings(candidate_embeddings[POOL], len(data.entity_ids),
                             name="entity embeddings")
    parts = [as_embeddings(query_embeddings[lang], len(data.queries[lang]),
                           name=f"mention embeddings of {lang!r}") for lang in data.languages]
    mentions = np.concatenate(parts)
    if normalize:
        mentions, entities = l2_normalize(mentions), l2_normalize(entities)
    gold = np.concatenate([data.gold[lang] for lang in data.languages])
    found = grouped_retrieval(mentions, gold, entities, np.arange(len(data.entity_ids)), k)
    # an absent gold entity has no figure (R = 0): a miss
    average_precision, recall = np.nan_to_num(found.average_precision), np.nan_to_num(found.recall)
    bounds = np.cumsum([0] + [len(part) for part in parts])
    per_language = {}
    for number, language in enumerate(data.languages):
        rows = slice(bounds[number], bounds[number + 1])
        per_language[language] = {
            "mentions": rows.stop - rows.start,
            map_at(k): float(average_precision[rows].mean()),
            recall_at(k): float(recall[rows].mean()),
            "gold_not_in_pool": int((data.gold[language] < 0).sum()),
        }
    headline = {"mean": {map_at(k): float(np.mean([r[map_at(k)] for r in per_language.values()])),
                         recall_at(k): float(np.mean([r[recall_at(k)]
                                                      for r in per_language.values()])),
                         "languages": len(per_language)}}
    return TaskResult(task="mewsli-x", languages=list(data.languages), headline=headline,
                      per_language=per_language,
                      settings={"k": k, "split": data.split, "entities": len(data.entity_ids)})


def evaluate_mewsli_x(encoder, data_dir=None, *, languages: Optional[Sequence[str]] = None,
                      k: int = 20, split: str = "test", normalize: bool = False,
                      progress: bool = False) -> TaskResult:
    """Evaluate ``encoder`` on Mewsli-X (``split`` "dev" or "test"); see the module doc."""
    k = check_integer(k, "k")
    data = load_mewsli_x(data_dir, languages, split=split)
    return run_task(score, encoder, data, encode_jobs(data), progress=progress,
                    description="evaluating mewsli-x", k=k, normalize=normalize)
