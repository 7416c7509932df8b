"""LAReQA layout (XQuAD-R, MLQA-R): the one reader behind the evaluator and ``split-lareqa``.

A folder holds one SQuAD-format ``<lang>.json`` per language whose paragraphs carry a
``sentences`` field (and usually ``sentence_breaks``, ``[start, end)`` character offsets of each
sentence in ``context``). Candidates of a language are all sentences of all its paragraphs, in
file order; a question's relevant candidate is the sentence containing its first answer's
``answer_start`` (an offset in the whitespace between two sentences belongs to the following
sentence). Parallel questions share their ``id`` across languages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, NamedTuple, Optional, Sequence

import numpy as np

from hbt_fast._checks import is_integer
from hbt_fast.data.files import read_json
from hbt_fast.data.locations import check_languages, resolve_data_dir

__all__ = ["CANDIDATE_TEXTS", "LareqaData", "LareqaLanguage", "Paragraph", "candidate",
           "iter_paragraphs", "load_lareqa", "read_lareqa_document", "read_lareqa_language"]

class Paragraph(NamedTuple):
    """One validated paragraph: its sentences and, per question, the answer sentence."""

    where: str  # "file (article a, paragraph p)", for error messages
    context: str
    sentences: list
    questions: list  # (question id, question text, index of the answer sentence)


CANDIDATE_TEXTS = ("sentence", "sentence_context")


def candidate(sentence: str, context: str, candidate_text: str = "sentence") -> str:
    """A candidate's text: the sentence alone, or (``"sentence_context"``, as LAReQA and
    XTREME-R encode candidates) the sentence followed by its paragraph."""
    if candidate_text == "sentence":
        return sentence
    if candidate_text == "sentence_context":
        return f"{sentence} {context}"
    raise ValueError(f"candidate_text must be one of {CANDIDATE_TEXTS}, got {candidate_text!r}")


@dataclass
class LareqaLanguage:
    """One language file: its questions and its candidate sentences."""

    language: str
    path: Optional[Path]
    question_ids: list
    questions: list
    sentences: list
    contexts: list  # the paragraph each candidate sentence comes from
    relevant: np.ndarray  # relevant[i] = index (in this language) of question i's answer sentence

    def candidate_texts(self, candidate_text: str = "sentence") -> list:
        return [candidate(s, c, candidate_text) for s, c in zip(self.sentences, self.contexts)]


@dataclass
class LareqaData:
    """All languages of a LAReQA-layout folder, plus the cross-language index arrays."""

    languages: list
    by_language: dict
    #: first global candidate index of each language (length L + 1)
    candidate_offsets: np.ndarray = field(init=False)
    query_offsets: np.ndarray = field(init=False)
    query_language: np.ndarray = field(init=False)
    #: dense id of each query's question id, shared by its translations
    query_group: np.ndarray = field(init=False)
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


# ----------------------------------------------------------------------------- one paragraph


def _checked_breaks(breaks, sentences: list, context: str, where: str) -> np.ndarray:
    if not isinstance(breaks, list) or len(breaks) != len(sentences):
        count = len(breaks) if isinstance(breaks, list) else type(breaks).__name__
        raise ValueError(f"{where}: {len(sentences)} sentences but sentence_breaks is {count}")
    previous_end = 0
    for number, span in enumerate(breaks):
        if not (isinstance(span, list) and len(span) == 2 and all(map(is_integer, span))):
            raise ValueError(
                f"{where}: sentence_breaks[{number}] is {span!r}; each entry must be a pair "
                "[start, end] of character offsets"
            )
        start, end = span
        if not previous_end <= start <= end <= len(context):
            raise ValueError(
                f"{where}: sentence_breaks[{number}] = {span} is not an ordered span inside its "
                f"context (previous sentence ends at {previous_end}, context length {len(context)})"
            )
        previous_end = end
    return np.asarray(breaks, dtype=np.int64).reshape(len(sentences), 2)


def _located_spans(sentences: list, context: str, where: str) -> np.ndarray:
    spans, position = [], 0
    for sentence in sentences:
        start = context.find(sentence, position)
        if start < 0:
            raise ValueError(f"{where}: sentence {sentence[:40]!r} not found in its context")
        spans.append((start, start + len(sentence)))
        position = start + len(sentence)
    return np.asarray(spans, dtype=np.int64).reshape(-1, 2)


def _answer_sentence(qa: dict, spans: np.ndarray, context_length: int, where: str) -> int:
    answers = qa.get("answers")
    if not isinstance(answers, list) or not answers or not isinstance(answers[0], dict) \
            or "answer_start" not in answers[0]:
        raise ValueError(f"{where}: no answer with an answer_start")
    start = answers[0]["answer_start"]
    if not is_integer(start) or not 0 <= start < context_length:
        raise ValueError(
            f"{where}: answer_start {start!r} is outside its context (length {context_length})"
        )
    sentence = int(np.searchsorted(spans[:, 1], start, side="right"))
    if sentence >= len(spans):
        raise ValueError(f"{where}: answer_start {start} lies after the last sentence")
    return sentence


def _read_paragraph(paragraph, where: str) -> Paragraph:
    if not isinstance(paragraph, dict):
        raise ValueError(f"{where}: a paragraph must be an object, got {type(paragraph).__name__}")
    sentences, context = paragraph.get("sentences"), paragraph.get("context")
    if sentences is None:
        raise ValueError(f"{where}: paragraph has no 'sentences' field; LAReQA needs the "
                         "sentence-split files (XQuAD-R / MLQA-R)")
    if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
        raise ValueError(f"{where}: 'sentences' must be a list of strings")
    if not isinstance(context, str):
        raise ValueError(f"{where}: paragraph has no 'context' string")
    breaks = paragraph.get("sentence_breaks")
    spans = (_located_spans(sentences, context, where) if breaks is None
             else _checked_breaks(breaks, sentences, context, where))
    qas = paragraph.get("qas", [])
    if not isinstance(qas, list):
        raise ValueError(f"{where}: 'qas' must be a list")
    questions = []
    for qa in qas:
        qid = qa.get("id") if isinstance(qa, dict) else None
        if not isinstance(qid, str) or not isinstance(qa.get("question"), str):
            raise ValueError(f"{where}: every question needs a string 'id' and 'question'")
        sentence = _answer_sentence(qa, spans, len(context), f"{where}: question {qid!r}")
        questions.append((qid, qa["question"], sentence))
    return Paragraph(where, context, sentences, questions)


# ----------------------------------------------------------------------------- files, folders


def read_lareqa_document(path) -> dict:
    """The parsed ``<lang>.json`` (a SQuAD-format object with a ``data`` list of articles)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    document = read_json(path)
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise ValueError(f"{path}: expected a SQuAD-format object with a 'data' list")
    return document


def iter_paragraphs(article, path, article_no: int) -> Iterator[Paragraph]:
    """Validated paragraphs of one article of ``path``."""
    paragraphs = article.get("paragraphs", []) if isinstance(article, dict) else None
    if not isinstance(paragraphs, list):
        raise ValueError(f"{path} (article {article_no}): expected an object with a "
                         "'paragraphs' list")
    for paragraph_no, paragraph in enumerate(paragraphs):
        yield _read_paragraph(paragraph, f"{path} (article {article_no}, paragraph {paragraph_no})")


def read_lareqa_language(path, language: str) -> LareqaLanguage:
    """One ``<lang>.json``: questions, candidate sentences and each question's answer sentence."""
    path = Path(path)
    document = read_lareqa_document(path)
    ids, questions, sentences, contexts, relevant = [], [], [], [], []
    seen = set()
    for article_no, article in enumerate(document["data"]):
        for paragraph in iter_paragraphs(article, path, article_no):
            first = len(sentences)
            sentences.extend(paragraph.sentences)
            contexts.extend([paragraph.context] * len(paragraph.sentences))
            for qid, question, sentence in paragraph.questions:
                if qid in seen:
                    raise ValueError(f"{paragraph.where}: question id {qid!r} appears twice")
                seen.add(qid)
                ids.append(qid)
                questions.append(question)
                relevant.append(first + sentence)
    if not questions:
        raise ValueError(f"{path}: no questions found")
    return LareqaLanguage(
        language, path, ids, questions, sentences, contexts, np.asarray(relevant, np.int64)
    )


def lareqa_languages(folder: Path) -> list:
    """Language codes of the ``<lang>.json`` files in ``folder``, sorted."""
    languages = sorted(p.stem for p in Path(folder).glob("*.json"))
    if not languages:
        raise FileNotFoundError(f"no <lang>.json files in {folder}")
    return languages


def load_lareqa(data_dir=None, languages: Optional[Sequence[str]] = None, *,
                task: str = "xquad-r") -> LareqaData:
    """Load a LAReQA-layout folder (``<lang>.json`` per language).

    ``data_dir=None`` uses ``$HBT_DATA_DIR/<task>`` (``xquad-r``, or ``mlqa-r`` / upstream's
    ``mlqa-dev-r``). ``languages=None``
    takes every ``*.json`` in the folder, sorted by name.
    """
    if not isinstance(task, str):
        raise TypeError(f"task must be a string such as 'xquad-r', got {task!r}")
    folder = resolve_data_dir(data_dir, task, task)  # upstream's other names: FOLDER_NAMES
    languages = lareqa_languages(folder) if languages is None else check_languages(languages)
    by_language = {}
    for language in languages:
        path = folder / f"{language}.json"
        if not path.is_file():
            raise FileNotFoundError(f"language {language!r}: file {path} does not exist")
        by_language[language] = read_lareqa_language(path, language)
    return LareqaData(list(languages), by_language)
