"""Evaluation of multilingual retrievers: LAReQA (XQuAD-R, MLQA-R), Tatoeba, MIRACL/BEIR.

Any encoder with ``encode_queries(list[str])`` and ``encode_passages(list[str])`` returning
``[n, d]`` float arrays works; :class:`hbt_fast.models.TextEncoder` wraps Hugging Face models.
Ties in every ranking are broken by candidate index, lower first (see ``search``).
"""

from hbt_fast.evaluate.baselines import HashedNgramEncoder
from hbt_fast.evaluate.lareqa import evaluate_lareqa, load_lareqa, score_lareqa
from hbt_fast.evaluate.miracl import evaluate_beir
from hbt_fast.evaluate.report import write_report
from hbt_fast.evaluate.result import TaskResult
from hbt_fast.evaluate.search import SearchResult, search
from hbt_fast.evaluate.tatoeba import evaluate_tatoeba

evaluate_miracl = evaluate_beir

__all__ = [
    "HashedNgramEncoder",
    "SearchResult",
    "TaskResult",
    "evaluate_beir",
    "evaluate_lareqa",
    "evaluate_miracl",
    "evaluate_tatoeba",
    "load_lareqa",
    "score_lareqa",
    "search",
    "write_report",
]
