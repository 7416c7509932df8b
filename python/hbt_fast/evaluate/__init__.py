"""Evaluation of multilingual retrievers: LAReQA (XQuAD-R, MLQA-R), Tatoeba, MIRACL/BEIR,
Mewsli-X and XM3600 captions.

Any encoder with ``encode_queries(list[str])`` and ``encode_passages(list[str])`` returning
``[n, d]`` float arrays works; :class:`hbt_fast.models.TextEncoder` wraps Hugging Face models.
Ties in every ranking are broken by candidate index, lower first (see ``search``).

Each task module (``lareqa``, ``tatoeba``, ``beir``, ``mewsli_x``, ``xm3600``) has ``load(dir)``,
``encode_jobs(data)`` and ``score(data, query_embeddings, candidate_embeddings) -> TaskResult``; ``driver.run_task``
encodes (one progress bar for the whole task) and scores; ``report`` renders a TaskResult.
"""

from hbt_fast.evaluate.baselines import HashedNgramEncoder
from hbt_fast.evaluate.keys import higher_is_better
from hbt_fast.evaluate.lareqa import evaluate_lareqa, load_lareqa, score_lareqa
from hbt_fast.evaluate.lareqa import metric_names as lareqa_metric_names
from hbt_fast.evaluate.beir import evaluate_beir
from hbt_fast.evaluate.mewsli_x import evaluate_mewsli_x
from hbt_fast.evaluate.report import write_report
from hbt_fast.evaluate.result import TaskResult
from hbt_fast.evaluate.search import SearchResult, search
from hbt_fast.evaluate.tatoeba import evaluate_tatoeba
from hbt_fast.evaluate.xm3600 import evaluate_xm3600

__all__ = [
    "HashedNgramEncoder",
    "SearchResult",
    "TaskResult",
    "evaluate_beir",
    "evaluate_lareqa",
    "evaluate_mewsli_x",
    "evaluate_tatoeba",
    "evaluate_xm3600",
    "higher_is_better",
    "lareqa_metric_names",
    "load_lareqa",
    "score_lareqa",
    "search",
    "write_report",
]
