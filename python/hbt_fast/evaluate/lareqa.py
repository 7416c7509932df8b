"""LAReQA-style evaluation: XQuAD-R (11 languages) and MLQA-R (7), mono / cross / multi.

Data: one SQuAD-format ``<lang>.json`` per language whose paragraphs carry a ``sentences`` field
(and usually ``sentence_breaks``). Candidates of a language are all sentences of all its
paragraphs, in file order; a question's relevant candidate is the sentence containing its first
answer's ``answer_start`` (an offset falling in the whitespace between two sentences belongs to
the following sentence). Parallel questions share their ``id``.

Settings (DESIGN.md, "Evaluation definitions"):

* mono ``x -> x`` and cross ``x -> y`` (y != x): queries of ``x`` against the candidates of ``y``
  only; exactly one relevant candidate, so AP@k = 1 / rank when rank <= k. The language x language
  matrix holds the mean over queries of ``x`` that have a counterpart in ``y``; mono is the mean of
  its diagonal, cross the mean of its off-diagonal cells (macro over setups).
* multi: queries of ``x`` against the pool of every language's candidates, with
  ``R`` = number of languages holding the question; mAP@k and Recall@10 averaged over the
  queries of each language, then macro over query languages.
* rank distance: in the multi ranking of a query, the 1-based rank of its worst-ranked relevant
  candidate minus that of its best-ranked one; mean over the queries of a language, then macro
  over languages. Ranks are full ranks over the whole pool (not truncated at k).

Ties: equal scores are ordered by candidate index, lower first, where candidates are numbered
language by language in the order of ``languages`` and, within a language, in file order. The
block (mono/cross) ranks use the same order restricted to the block.

All 121 setups and the multi setting come from one pass over the ``queries x pool`` score matrix,
computed in row blocks of bounded size, so every text is encoded once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from hbt_fast.evaluate import metrics
from hbt_fast.evaluate.result import TaskResult
from hbt_fast.evaluate._common import encode, l2_normalize, mean_or_nan, resolve_data_dir
from hbt_fast.evaluate.search import as_embeddings, iter_score_blocks, topk_from_scores

__all__ = [
    "CANDIDATE_TEXTS",
    "LareqaData",
    "LareqaLanguage",
    "evaluate_lareqa",
    "load_lareqa",
    "score_lareqa",
]

CANDIDATE_TEXTS = ("sentence", "sentence_context")
MULTI_RECALL_K = 10


@dataclass
class LareqaLanguage:
    """One language file: its questions and its candidate sentences."""

    language: str
    path: Path
    question_ids: list
    questions: list
    sentences: list
    contexts: list  # the paragraph each candidate sentence comes from
    relevant: np.ndarray  # relevant[i] = index (in this language) of question i's answer sentence

    def candidate_texts(self, candidate_text: str = "sentence") -> list:
        if candidate_text == "sentence":
            return list(self.sentences)
        return [f"{s} {c}" for s, c in zip(self.sentences, self.contexts)]


@dataclass
class LareqaData:
    """All languages of a LAReQA-layout folder, plus the cross-language index arrays."""

    languages: list
    by_language: dict
    #: first global candidate index of each language (length L + 1)
    candidate_offsets: np.ndarray = field(init=False)
    query_offsets: np.ndarray = field(init=False)
    query_language: np.ndarray = field(init=False)
    #: relevant_in[q, y] = global index of query q's relevant candidate in language y, or -1
    relevant_in: np.ndarray = field(init=False)

    def __post_init__(self):
        per = [self.by_language[lang] for lang in self.languages]
        self.candidate_offsets = np.cumsum([0] + [len(p.sentences) for p in per])
        self.query_offsets = np.cumsum([0] + [len(p.questions) for p in per])
        self.query_language = np.repeat(np.arange(len(per)), [len(p.questions) for p in per])
        group_index: dict = {}
        query_group = np.array(
            [group_index.setdefault(qid, len(group_index)) for p in per for qid in p.question_ids],
            dtype=np.int64,
        )
        group_relevant = np.full((len(group_index), len(per)), -1, dtype=np.int64)
        for y, p in enumerate(per):
            rows = query_group[self.query_offsets[y] : self.query_offsets[y + 1]]
            group_relevant[rows, y] = p.relevant + self.candidate_offsets[y]
        self.query_group = query_group
        self.relevant_in = group_relevant[query_group]

    @property
    def num_queries(self) -> int:
        return int(self.query_offsets[-1])

    @property
    def num_candidates(self) -> int:
        return int(self.candidate_offsets[-1])


# ----------------------------------------------------------------------------------- loading


def _sentence_spans(paragraph: dict, where: str):
    sentences = paragraph["sentences"]
    context = paragraph.get("context")
    if not isinstance(context, str):
        raise ValueError(f"{where}: paragraph has no 'context' string")
    breaks = paragraph.get("sentence_breaks")
    if breaks is not None:
        if len(breaks) != len(sentences):
            raise ValueError(
                f"{where}: {len(sentences)} sentences but {len(breaks)} sentence_breaks"
            )
        return np.asarray(breaks, dtype=np.int64).reshape(-1, 2)
    spans, position = [], 0
    for sentence in sentences:
        start = context.find(sentence, position)
        if start < 0:
            raise ValueError(f"{where}: sentence {sentence[:40]!r} not found in its context")
        spans.append((start, start + len(sentence)))
        position = start + len(sentence)
    return np.asarray(spans, dtype=np.int64).reshape(-1, 2)


def _read_language(path: Path, language: str) -> LareqaLanguage:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise ValueError(f"{path}: expected a SQuAD-format object with a 'data' list")
    ids, questions, sentences, contexts, relevant = [], [], [], [], []
    seen = set()
    for article_no, article in enumerate(document["data"]):
        for paragraph_no, paragraph in enumerate(article.get("paragraphs", [])):
            where = f"{path} (article {article_no}, paragraph {paragraph_no})"
            if "sentences" not in paragraph:
                raise ValueError(
                    f"{where}: paragraph has no 'sentences' field; LAReQA evaluation needs the "
                    "sentence-split files (XQuAD-R / MLQA-R)"
                )
            spans = _sentence_spans(paragraph, where)
            context = paragraph["context"]
            first = len(sentences)
            sentences.extend(paragraph["sentences"])
            contexts.extend([context] * len(paragraph["sentences"]))
            for qa in paragraph.get("qas", []):
                qid = qa.get("id")
                if qid in seen:
                    raise ValueError(f"{path}: question id {qid!r} appears twice")
                seen.add(qid)
                sentence = _answer_sentence(qa, spans, len(context), f"{path}: question {qid!r}")
                ids.append(qid)
                questions.append(qa["question"])
                relevant.append(first + sentence)
    if not questions:
        raise ValueError(f"{path}: no questions found")
    return LareqaLanguage(
        language, path, ids, questions, sentences, contexts, np.asarray(relevant, np.int64)
    )


def _answer_sentence(qa: dict, spans: np.ndarray, context_length: int, where: str) -> int:
    answers = qa.get("answers") or []
    if not answers or "answer_start" not in answers[0]:
        raise ValueError(f"{where}: no answer with an answer_start")
    start = answers[0]["answer_start"]
    if not isinstance(start, int) or not 0 <= start < context_length:
        raise ValueError(
            f"{where}: answer_start {start!r} is outside its context (length {context_length})"
        )
    sentence = int(np.searchsorted(spans[:, 1], start, side="right"))
    if sentence >= len(spans):
        raise ValueError(f"{where}: answer_start {start} lies after the last sentence")
    return sentence


def load_lareqa(data_dir=None, languages: Optional[Sequence[str]] = None, *, task="xquad-r"):
    """Load a LAReQA-layout folder (``<lang>.json`` per language).

    ``data_dir=None`` uses ``$HBT_DATA_DIR/<task>`` (``xquad-r`` or ``mlqa-r``). ``languages=None``
    takes every ``*.json`` in the folder, sorted by name.
    """
    subdir = {"xquad-r": "xquad-r", "mlqa-r": "mlqa-r"}.get(task, task)
    folder = resolve_data_dir(data_dir, task, subdir)
    if languages is None:
        languages = sorted(p.stem for p in folder.glob("*.json"))
        if not languages:
            raise FileNotFoundError(f"no <lang>.json files in {folder}")
    languages = _check_languages(languages)
    by_language = {}
    for language in languages:
        path = folder / f"{language}.json"
        if not path.is_file():
            raise FileNotFoundError(f"language {language!r}: file {path} does not exist")
        by_language[language] = _read_language(path, language)
    return LareqaData(list(languages), by_language)


def _check_languages(languages) -> list:
    if isinstance(languages, str):
        raise TypeError("languages must be a list of language codes, not a single string")
    languages = list(languages)
    if not languages:
        raise ValueError("languages must not be empty")
    if len(set(languages)) != len(languages):
        raise ValueError(f"languages has duplicates: {languages}")
    return languages


# ----------------------------------------------------------------------------------- scoring


def _ranks_in_block(block: np.ndarray, threshold: np.ndarray, position: np.ndarray):
    """1-based rank of the candidate at local ``position`` scoring ``threshold`` in each row.

    rank = 1 + (# higher scores) + (# equal scores at a lower index). Rows with a NaN threshold
    (no relevant candidate) get rank 0.
    """
    higher = np.count_nonzero(block > threshold[:, None], axis=1)
    ranks = 1 + higher
    equal = np.count_nonzero(block == threshold[:, None], axis=1)
    tied = np.flatnonzero(equal > 1)
    if tied.size:
        before = np.arange(block.shape[1]) < position[tied, None]
        ranks[tied] += np.count_nonzero((block[tied] == threshold[tied, None]) & before, axis=1)
    ranks[np.isnan(threshold)] = 0
    return ranks


def _score_pass(data: LareqaData, queries, candidates, depth: int, block_bytes: int):
    """One pass over the score matrix: block ranks [Q, L], multi top-``depth`` ids, best/worst
    multi ranks."""
    num_languages = len(data.languages)
    offsets = data.candidate_offsets
    block_ranks = np.zeros((data.num_queries, num_languages), dtype=np.int64)
    multi_ids = np.zeros((data.num_queries, depth), dtype=np.int64)
    best_rank = np.zeros(data.num_queries, dtype=np.int64)
    worst_rank = np.zeros(data.num_queries, dtype=np.int64)
    for start, scores in iter_score_blocks(queries, candidates, block_bytes=block_bytes):
        rows = slice(start, start + scores.shape[0])
        relevant = data.relevant_in[rows]
        present = relevant >= 0
        relevant_scores = np.where(
            present, np.take_along_axis(scores, np.maximum(relevant, 0), 1), np.nan
        )
        for y in range(num_languages):
            block = scores[:, offsets[y] : offsets[y + 1]]
            block_ranks[rows, y] = _ranks_in_block(
                block, relevant_scores[:, y], relevant[:, y] - offsets[y]
            )
        multi_ids[rows] = topk_from_scores(scores, depth)[1]
        # Best: highest score, lowest index on ties (argmax takes the first column, and columns
        # follow candidate order). Worst: lowest score, highest index on ties.
        best = np.argmax(np.where(present, relevant_scores, -np.inf), axis=1)
        flipped = np.where(present, relevant_scores, np.inf)[:, ::-1]
        worst = num_languages - 1 - np.argmin(flipped, axis=1)
        for column, out in ((best, best_rank), (worst, worst_rank)):
            picked = np.take_along_axis(relevant, column[:, None], 1)[:, 0]
            threshold = np.take_along_axis(relevant_scores, column[:, None], 1)[:, 0]
            out[rows] = _ranks_in_block(scores, threshold, picked)
    return block_ranks, multi_ids, best_rank, worst_rank


def _stack(embeddings, data: LareqaData, counts, name: str) -> np.ndarray:
    if isinstance(embeddings, Mapping):
        missing = [lang for lang in data.languages if lang not in embeddings]
        if missing:
            raise ValueError(f"{name}: no embeddings for languages {missing}")
        parts = [
            as_embeddings(embeddings[lang], n, name=f"{name}[{lang!r}]")
            for lang, n in zip(data.languages, counts)
        ]
        return np.concatenate(parts)
    return as_embeddings(embeddings, int(np.sum(counts)), name=name)


def score_lareqa(
    data: LareqaData,
    query_embeddings,
    candidate_embeddings,
    *,
    k: int = 20,
    normalize: bool = False,
    block_bytes: int = 64 * 2**20,
) -> TaskResult:
    """All LAReQA figures from precomputed embeddings.

    Embeddings are either dicts ``{language: array}`` or single arrays stacked in
    ``data.languages`` order (queries in file order, candidates in file order).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    per = [data.by_language[lang] for lang in data.languages]
    queries = _stack(query_embeddings, data, [len(p.questions) for p in per], "query_embeddings")
    candidates = _stack(
        candidate_embeddings, data, [len(p.sentences) for p in per], "candidate_embeddings"
    )
    if queries.shape[1] != candidates.shape[1]:
        raise ValueError(
            f"query embeddings have dimension {queries.shape[1]}, candidates {candidates.shape[1]}"
        )
    if normalize:
        queries, candidates = l2_normalize(queries), l2_normalize(candidates)
    depth = min(max(k, MULTI_RECALL_K), data.num_candidates)
    block_ranks, multi_ids, best_rank, worst_rank = _score_pass(
        data, queries, candidates, depth, block_bytes
    )
    return _summarise(data, k, block_ranks, multi_ids, best_rank, worst_rank)


def _per_query_language_means(values: np.ndarray, data: LareqaData) -> np.ndarray:
    sums = np.bincount(data.query_language, weights=values, minlength=len(data.languages))
    counts = np.bincount(data.query_language, minlength=len(data.languages))
    return sums / counts


def _summarise(data, k, block_ranks, multi_ids, best_rank, worst_rank) -> TaskResult:
    num_languages = len(data.languages)
    present = block_ranks > 0
    ap = np.where(present, np.where(block_ranks <= k, 1.0 / np.maximum(block_ranks, 1), 0.0), 0)
    top1 = (block_ranks == 1).astype(np.float64)
    counts = np.zeros((num_languages, num_languages))
    np.add.at(counts, data.query_language, present)
    map_matrix = np.zeros_like(counts)
    recall_matrix = np.zeros_like(counts)
    np.add.at(map_matrix, data.query_language, ap)
    np.add.at(recall_matrix, data.query_language, top1)
    with np.errstate(invalid="ignore", divide="ignore"):
        map_matrix /= counts
        recall_matrix /= counts
    diagonal = np.eye(num_languages, dtype=bool)
    num_relevant = (data.relevant_in >= 0).sum(axis=1)
    hits = (multi_ids[:, :, None] == data.relevant_in[:, None, :]).any(axis=2)
    multi_ap = metrics.average_precision_at_k(hits, num_relevant, k)
    multi_recall = metrics.recall_at_k(hits, num_relevant, MULTI_RECALL_K)
    distance = (worst_rank - best_rank).astype(np.float64)
    per_multi_ap = _per_query_language_means(multi_ap, data)
    per_multi_recall = _per_query_language_means(multi_recall, data)
    per_distance = _per_query_language_means(distance, data)
    off = map_matrix.copy()
    off[diagonal] = np.nan
    off_recall = recall_matrix.copy()
    off_recall[diagonal] = np.nan
    map_key = f"map@{k}"
    per_language = {}
    for x, language in enumerate(data.languages):
        entry = data.by_language[language]
        per_language[language] = {
            "questions": len(entry.questions),
            "candidates": len(entry.sentences),
            "relevant_candidates": int(np.unique(entry.relevant).size),
            f"mono_{map_key}": float(map_matrix[x, x]),
            f"cross_{map_key}_as_query": mean_or_nan(off[x]),
            f"cross_{map_key}_as_candidate": mean_or_nan(off[:, x]),
            f"multi_{map_key}": float(per_multi_ap[x]),
            f"multi_recall@{MULTI_RECALL_K}": float(per_multi_recall[x]),
            "rank_distance": float(per_distance[x]),
        }
    return TaskResult(
        task="lareqa",
        languages=list(data.languages),
        headline={
            "mono": {
                map_key: mean_or_nan(map_matrix[diagonal]),
                "recall@1": mean_or_nan(recall_matrix[diagonal]),
                "setups": int(np.count_nonzero(counts[diagonal])),
            },
            "cross": {
                map_key: mean_or_nan(off),
                "recall@1": mean_or_nan(off_recall),
                "setups": int(np.count_nonzero(counts[~diagonal])),
            },
            "multi": {
                map_key: float(per_multi_ap.mean()),
                f"recall@{MULTI_RECALL_K}": float(per_multi_recall.mean()),
                "rank_distance": float(per_distance.mean()),
                "setups": num_languages,
            },
        },
        matrix={
            "rows": "query language",
            "columns": "candidate language",
            map_key: _nan_to_none(map_matrix),
            "recall@1": _nan_to_none(recall_matrix),
        },
        per_language=per_language,
        settings={"k": k},
    )


def _nan_to_none(matrix: np.ndarray) -> list:
    """JSON has no NaN: empty setups (no shared questions) become null."""
    return [[None if np.isnan(v) else float(v) for v in row] for row in matrix]


def evaluate_lareqa(
    encoder,
    data_dir=None,
    *,
    languages: Optional[Sequence[str]] = None,
    k: int = 20,
    candidate_text: str = "sentence",
    normalize: bool = False,
    task: str = "xquad-r",
    block_bytes: int = 64 * 2**20,
) -> TaskResult:
    """Evaluate ``encoder`` on a LAReQA-layout folder (XQuAD-R, MLQA-R); see the module doc.

    The encoder needs ``encode_queries(list[str])`` and ``encode_passages(list[str])`` returning
    ``[n, d]`` arrays; each language's questions and candidates are encoded once, in one call
    each. Scores are inner products (``normalize=True`` turns them into cosines).
    ``candidate_text="sentence_context"`` appends the paragraph to each candidate sentence.
    """
    if candidate_text not in CANDIDATE_TEXTS:
        raise ValueError(f"candidate_text must be one of {CANDIDATE_TEXTS}, got {candidate_text!r}")
    data = load_lareqa(data_dir, languages, task=task)
    query_embeddings, candidate_embeddings, dim = {}, {}, None
    for language in data.languages:
        entry = data.by_language[language]
        what = f"language {language!r} ({entry.path})"
        query_embeddings[language] = encode(encoder, "query", entry.questions, what, dim)
        dim = query_embeddings[language].shape[1]
        candidate_embeddings[language] = encode(
            encoder, "passage", entry.candidate_texts(candidate_text), what, dim
        )
    results = score_lareqa(
        data, query_embeddings, candidate_embeddings, k=k, normalize=normalize,
        block_bytes=block_bytes,
    )
    results.task = task
    results.settings["candidate_text"] = candidate_text
    return results
