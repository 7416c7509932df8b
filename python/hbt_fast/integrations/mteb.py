"""XQuAD-R and MLQA-R as MTEB retrieval tasks over local LAReQA folders (no hub access).

MTEB's own ``XQuADRetrieval`` is a paragraph-level task, not LAReQA's sentence retrieval. These
tasks follow LAReQA / XTREME-R (and :func:`hbt_fast.evaluate.evaluate_lareqa`): candidates are
the sentences of every paragraph (optionally with their paragraph, ``candidate_text=
"sentence_context"``), a question's relevant candidate in a language is the sentence holding its
answer, and the main score is mAP@20 (``map_at_20``). Three settings, each one MTEB task whose
subsets are the setups:

- ``mono``: subset ``x-x``: queries in x against the candidates in x;
- ``cross``: subset ``x-y`` (x != y): queries in x against the candidates in y;
- ``multi``: subset ``x``: queries in x against the pool of every language's candidates, with
  one relevant candidate per language.

The study reports each setting as the mean over its setups (macro average); MTEB writes one score
per subset in its usual results format, and :func:`macro_average` reads it back::

    import mteb
    from sentence_transformers import SentenceTransformer
    from hbt_fast.integrations.mteb import lareqa_tasks, macro_average

    model = SentenceTransformer("runs/hybrid/model")      # prompts "query" / "document"
    results = mteb.evaluate(model, tasks=lareqa_tasks("data/xquad-r"), cache=None)
    macro_average(results)   # {"XQuADR-multi": 0.61..., "XQuADR-mono": ..., "XQuADR-cross": ...}

MTEB scores with the model's own similarity (cosine for most sentence-transformers models; hbt_fast
ranks by dot product, the same for normalised embeddings), rounds each subset's score to 5
decimals, and ranks with its own search: an exact tie may place candidates differently from
hbt_fast's documented rule (lower candidate index first). Otherwise the scores are those of
:func:`hbt_fast.evaluate.evaluate_lareqa` (tested). Needs ``mteb`` (2.x).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

try:
    from datasets import Dataset
    from mteb.abstasks import AbsTaskRetrieval
    from mteb.abstasks.task_metadata import TaskMetadata
except ImportError as error:  # mteb is an optional dependency
    raise ImportError("hbt_fast.integrations.mteb needs mteb 2.x: pip install mteb") from error

from hbt_fast.data.lareqa import LareqaData, load_lareqa

__all__ = ["LAReQARetrieval", "SETTINGS", "lareqa_tasks", "macro_average"]

SETTINGS = ("mono", "cross", "multi")
_DATASETS = {
    "xquad-r": ("XQuADR", "XQuAD-R (LAReQA): sentence retrieval across 11 languages",
                "https://github.com/google-research-datasets/lareqa"),
    "mlqa-r": ("MLQAR", "MLQA-R (LAReQA): sentence retrieval across 7 languages",
               "https://github.com/google-research-datasets/lareqa"),
}


def _candidate_ids(language: str, count: int) -> list:
    return [f"{language}/{index}" for index in range(count)]


class LAReQARetrieval(AbsTaskRetrieval):
    """One LAReQA setting (``mono``, ``cross`` or ``multi``) of a local folder, as an MTEB task.

    Args:
        data_dir: the folder with one ``<lang>.json`` per language (the LAReQA layout).
        setting: ``"mono"``, ``"cross"`` or ``"multi"`` (see the module documentation).
        task: ``"xquad-r"`` or ``"mlqa-r"``: names the task and its metadata.
        languages: the languages to use (default: every language in the folder).
        candidate_text: ``"sentence"`` (default) or ``"sentence_context"``.
    """

    k_values = (1, 3, 5, 10, 20, 100, 1000)

    def __init__(self, data_dir, setting: str = "multi", *, task: str = "xquad-r",
                 languages: Optional[Sequence[str]] = None, candidate_text: str = "sentence",
                 **kwargs) -> None:
        if setting not in SETTINGS:
            raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
        if task not in _DATASETS:
            raise ValueError(f"task must be one of {tuple(_DATASETS)}, got {task!r}")
        if candidate_text not in ("sentence", "sentence_context"):
            raise ValueError("candidate_text must be 'sentence' or 'sentence_context', "
                             f"got {candidate_text!r}")
        self._data: LareqaData = load_lareqa(data_dir, languages, task=task)
        self.setting, self.candidate_text = setting, candidate_text
        self._published_metadata = self._metadata(task, setting, Path(data_dir))
        super().__init__(**kwargs)

    # mteb keeps a task's metadata on its class and drops an instance's own copy when it unloads
    # the data; these tasks are made per folder, so the instance's copy is the published one.
    @property
    def metadata(self) -> TaskMetadata:
        return self.__dict__.get("_filtered_metadata", self._published_metadata)

    @metadata.setter
    def metadata(self, value: TaskMetadata) -> None:
        self.__dict__["_filtered_metadata"] = value

    def _subsets(self) -> dict:
        languages = self._data.languages
        if self.setting == "mono":
            return {f"{x}-{x}": (x, [x]) for x in languages}
        if self.setting == "cross":
            return {f"{x}-{y}": (x, [y]) for x in languages for y in languages if x != y}
        return {x: (x, list(languages)) for x in languages}

    def _metadata(self, task: str, setting: str, folder: Path) -> TaskMetadata:
        name, description, reference = _DATASETS[task]
        subsets = self._subsets()
        return TaskMetadata(
            name=f"{name}-{setting}",
            description=f"{description}; {setting} setting, local folder {folder}",
            reference=reference,
            dataset={"path": str(folder), "revision": "local"},
            type="Retrieval", category="t2t", modalities=["text"], eval_splits=["test"],
            eval_langs={subset: [f"{language}-Latn" for language in {query, *pool}]
                        for subset, (query, pool) in subsets.items()},
            main_score="map_at_20", license="cc-by-sa-4.0",
        )

    def load_data(self, num_proc: Optional[int] = None, **kwargs) -> None:
        if self.data_loaded:
            return
        self.dataset = {subset: {"test": self._split(query, pool)}
                        for subset, (query, pool) in self._subsets().items()}
        self.data_loaded = True

    def _split(self, query_language: str, pool: list) -> dict:
        entry = self._data.by_language[query_language]
        corpus_ids, corpus_texts = [], []
        for language in pool:
            texts = self._data.by_language[language].candidate_texts(self.candidate_text)
            corpus_ids += _candidate_ids(language, len(texts))
            corpus_texts += texts
        queries = Dataset.from_dict({"id": [f"{query_language}/{qid}" for qid in entry.question_ids],
                                     "text": list(entry.questions)})
        corpus = Dataset.from_dict({"id": corpus_ids, "text": corpus_texts,
                                    "title": [""] * len(corpus_ids)})
        return {"queries": queries, "corpus": corpus, "relevant_docs": self._relevant(entry, pool),
                "top_ranked": None}

    def _relevant(self, entry, pool: list) -> dict:
        """Per query id, the answer sentence of the same question in every pool language."""
        relevant = {}
        for language in pool:
            other = self._data.by_language[language]
            index_of = dict(zip(other.question_ids, np.asarray(other.relevant).tolist()))
            for qid in entry.question_ids:
                if qid in index_of:
                    relevant.setdefault(f"{entry.language}/{qid}", {})[
                        f"{language}/{index_of[qid]}"] = 1
        return relevant


def lareqa_tasks(data_dir, *, task: str = "xquad-r", settings: Sequence[str] = SETTINGS,
                 languages: Optional[Sequence[str]] = None,
                 candidate_text: str = "sentence") -> list:
    """One :class:`LAReQARetrieval` per setting, ready for ``mteb.evaluate(model, tasks=...)``."""
    return [LAReQARetrieval(data_dir, setting, task=task, languages=languages,
                            candidate_text=candidate_text) for setting in settings]


def macro_average(results, score: str = "map_at_20") -> dict:
    """``{task name: mean of score over its subsets}`` from what ``mteb.evaluate`` returned:
    the study's macro average of a setting over its setups."""
    averages = {}
    for task_result in results.task_results:
        values = [entry[score] for entries in task_result.scores.values() for entry in entries]
        averages[task_result.task_name] = float(np.mean(values))
    return averages
