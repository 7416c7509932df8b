"""Training pairs: one (query, passage) per row, grouped across languages, optional negatives.

JSONL layout, one object per line::

    {"group": "56beb4343aeaaa14008c925b", "lang": "de", "query": "...", "passage": "...",
     "negatives": ["a hard negative passage", "..."]}

Pairs that share ``group`` are translations of each other (the same item in other
languages); the sampler builds X-Y batches from them. ``group`` may be a string or an int;
``negatives`` is optional, any number of strings per line. The same fields can come from a
Parquet file or a folder written by ``datasets.Dataset.save_to_disk`` (:func:`read_pairs`), or
from a ``datasets.Dataset`` in memory (:func:`corpus_from_dataset`); ``columns`` maps a field
to the column (or JSON key) that holds it, e.g. ``{"query": "question", "lang": "language"}``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from hbt_fast._checks import is_integer
from hbt_fast.data.files import atomic_output, check_no_lone_surrogate, json_record, text_lines
from hbt_fast.sampler import labels_to_ids
from hbt_fast.sampler.ids import check_labels, label_kind

__all__ = ["FIELDS", "REQUIRED_FIELDS", "PairCorpus", "corpus_from_records", "cross_lingual_languages",
           "read_pairs_jsonl", "write_pairs_jsonl"]

REQUIRED_FIELDS = ("group", "lang", "query", "passage")
NEGATIVES = "negatives"
FIELDS = REQUIRED_FIELDS + (NEGATIVES,)


@dataclass
class PairCorpus:
    """Training pairs as parallel lists, plus the integer ids the sampler needs.

    Hard negatives are held flat: pair ``i``'s negatives are
    ``negatives[negative_offsets[i]:negative_offsets[i + 1]]`` (memory O(total negatives)).
    Without negatives, ``negatives`` is empty and every offset 0. ``digest`` covers every field of
    every row in order (a resume refuses other data); the readers compute it while reading.
    """

    queries: list
    passages: list
    languages: list  # language label of each pair
    groups: list  # group label of each pair
    negatives: Optional[list] = None
    negative_offsets: Optional[np.ndarray] = None
    digest: Optional[str] = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        lengths = {len(self.queries), len(self.passages), len(self.languages), len(self.groups)}
        if len(lengths) != 1:
            raise ValueError(f"queries, passages, languages and groups differ in length: {lengths}")
        self._set_negatives()
        check_labels(self.groups, "groups")  # 7 and "7" are two groups, or an error: never one
        # Ids in the order of the groups as strings: the batches (and saved sampler states)
        # of a corpus with integer groups stay those of earlier releases.
        if self.digest is None:
            self.digest = self._content_digest()
        ids = labels_to_ids(self.languages, [str(g) for g in self.groups])
        self.language_ids, self.group_ids = ids.languages, ids.groups
        self.language_names = [str(name) for name in ids.language_names]

    def _set_negatives(self) -> None:
        if (self.negatives is None) != (self.negative_offsets is None):
            raise ValueError("give negatives and negative_offsets together, or neither")
        if self.negatives is None:
            self.negatives = []
            self.negative_offsets = np.zeros(len(self.queries) + 1, dtype=np.int64)
            return
        offsets = np.asarray(self.negative_offsets)
        if offsets.shape != (len(self.queries) + 1,) or not np.issubdtype(offsets.dtype, np.integer):
            raise ValueError(f"negative_offsets must be {len(self.queries) + 1} integers "
                             f"(one more than pairs), got shape {offsets.shape}")
        if offsets[0] != 0 or offsets[-1] != len(self.negatives) or (np.diff(offsets) < 0).any():
            raise ValueError("negative_offsets must rise from 0 to len(negatives)")
        self.negative_offsets = offsets.astype(np.int64)

    def _content_digest(self) -> str:
        digest = new_digest()
        for i, row in enumerate(zip(self.groups, self.languages, self.queries, self.passages)):
            digest.update(row_bytes(*row, self.negatives_of(i)))
        return digest.hexdigest()

    @classmethod
    def with_negative_lists(cls, queries, passages, languages, groups, negatives_per_pair):
        """Build from one list of negative texts per pair."""
        counts = [len(n) for n in negatives_per_pair]
        offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
        flat = [text for texts in negatives_per_pair for text in texts]
        return cls(queries, passages, languages, groups, flat, offsets)

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def has_negatives(self) -> bool:
        return bool(self.negatives)

    def texts(self, query_rows: np.ndarray, passage_rows: np.ndarray):
        """Query texts of ``query_rows`` and passage texts of ``passage_rows``."""
        return [self.queries[i] for i in query_rows], [self.passages[i] for i in passage_rows]

    def negatives_of(self, row: int) -> list:
        start, stop = self.negative_offsets[row], self.negative_offsets[row + 1]
        return self.negatives[start:stop]

    def negative_texts(self, rows) -> tuple[list, np.ndarray]:
        """The negatives of ``rows``, concatenated, and for each the position in ``rows`` it
        belongs to."""
        rows = np.asarray(rows, dtype=np.int64)
        counts = self.negative_offsets[rows + 1] - self.negative_offsets[rows]
        owners = np.repeat(np.arange(len(rows)), counts)
        texts = [text for row in rows.tolist() for text in self.negatives_of(row)]
        return texts, owners

    def records(self) -> Iterable[dict]:
        """The pairs as JSONL records (``negatives`` only on pairs that have some)."""
        for i, (q, p, lang, g) in enumerate(zip(self.queries, self.passages, self.languages,
                                                self.groups)):
            record = {"group": g, "lang": lang, "query": q, "passage": p}
            if self.negative_offsets[i + 1] > self.negative_offsets[i]:
                record[NEGATIVES] = self.negatives_of(i)
            yield record

    def cross_lingual_languages(self) -> set:
        """Languages that share at least one group with another language."""
        return cross_lingual_languages(self.language_ids, self.group_ids, self.language_names)


def cross_lingual_languages(language_ids, group_ids, language_names: Sequence[str]) -> set:
    """The names of the languages with a pair in a group of two pairs or more: a group never
    holds one language twice (the sampler refuses it), so those groups are cross-lingual.
    Counts, no sort: at 10^7 pairs this runs before every training from a store."""
    groups = np.asarray(group_ids)
    in_shared_group = np.bincount(groups)[groups] >= 2  # group ids are dense
    present = np.bincount(np.asarray(language_ids)[in_shared_group], minlength=len(language_names))
    return {name for name, count in zip(language_names, present) if count}


# ------------------------------------------------------------------------------ building


def new_digest():
    return hashlib.blake2b(digest_size=16)


def row_bytes(group, lang, query, passage, negatives) -> bytes:
    """One pair as the digest reads it: every field length-prefixed, so that no two rows (or
    runs of rows) read alike, and the group's kind included (7 and "7" are different data).
    One formatted string per row: reading a JSONL file takes 12-20% longer with the digest."""
    group_text, lang = str(group), str(lang)
    text = (f"{'s' if isinstance(group, str) else 'i'}{len(group_text)}:{group_text}{len(lang)}:{lang}"
            f"{len(query)}:{query}{len(passage)}:{passage}{len(negatives)}|")
    if negatives:
        text += "".join([f"{len(negative)}:{negative}" for negative in negatives])
    return text.encode("utf-8", "surrogatepass")


def check_columns(columns: Optional[Mapping[str, str]]) -> dict:
    """``{field: source column}`` for every field, the given mapping over the defaults."""
    if columns is None:
        columns = {}
    if not isinstance(columns, Mapping):
        raise TypeError(f"columns must map field names to column names, got {columns!r}")
    unknown = sorted(set(columns) - set(FIELDS))
    if unknown:
        raise ValueError(f"columns: unknown field(s) {unknown}; fields are {list(FIELDS)}")
    for name, column in columns.items():
        if not isinstance(column, str) or not column:
            raise ValueError(f"columns[{name!r}] must be a column name, got {column!r}")
    return {name: columns.get(name, name) for name in FIELDS}


class CorpusBuilder:
    """Collects validated rows; every error names ``where`` (file and line, or row).

    ``digest``: the content digest to feed (default a new one); builders that share one digest
    over consecutive rows give the digest of all those rows, as one builder would."""

    def __init__(self, columns: dict, digest=None):
        self.columns = columns
        self.values = {name: [] for name in REQUIRED_FIELDS}
        self.negatives, self.offsets = [], [0]
        self.seen: dict = {}
        self.first_group: Optional[tuple] = None  # (kind, value, position) of the first group
        self.digest = digest if digest is not None else new_digest()  # fed row by row: one read

    def add(self, record: Mapping, where: str, position) -> None:
        values = {}
        for name in REQUIRED_FIELDS:
            column = self.columns[name]
            if column not in record or record[column] is None:
                raise ValueError(f"{where}: missing field {column!r}"
                                 + (f" (the {name} field)" if column != name else ""))
            values[name] = record[column]
        for name in ("lang", "query", "passage"):
            if not isinstance(values[name], str) or not values[name].strip():
                raise ValueError(f"{where}: field {self.columns[name]!r} must be a non-empty string")
            check_no_lone_surrogate(values[name], f"{where}: field {self.columns[name]!r}")
        group = values["group"]
        if not (isinstance(group, str) or is_integer(group)):
            raise ValueError(f"{where}: field {self.columns['group']!r} must be a string or an integer")
        values["group"] = group if isinstance(group, str) else int(group)
        if isinstance(group, str):
            check_no_lone_surrogate(group, f"{where}: field {self.columns['group']!r}")
        self._check_group_kind(values["group"], where, position)
        negatives = self._negatives(record.get(self.columns[NEGATIVES]), where)
        key = (str(values["group"]), values["lang"])
        if key in self.seen:
            raise ValueError(
                f"{where}: group {values['group']!r} already has a pair in language "
                f"{values['lang']!r} ({self.seen[key]}); each (group, lang) may occur once")
        self.seen[key] = position
        for name in REQUIRED_FIELDS:
            self.values[name].append(values[name])
        self.negatives.extend(negatives)
        self.offsets.append(len(self.negatives))
        self.digest.update(row_bytes(values["group"], values["lang"], values["query"], values["passage"],
                                     negatives))

    def _check_group_kind(self, group, where: str, position) -> None:
        """One kind of group per source, the rule of :func:`hbt_fast.labels_to_ids`: groups 7
        and "7" would otherwise merge into one."""
        kind = label_kind(group)
        if self.first_group is None:
            self.first_group = (kind, group, position)
        elif kind != self.first_group[0]:
            first_kind, first_group, first_position = self.first_group
            raise ValueError(
                f"{where}: field {self.columns['group']!r} is {kind} {group!r}, but it is "
                f"{first_kind} {first_group!r} at {first_position}; use one kind for every "
                "group (all strings or all integers), so that 7 and '7' are not merged")

    def _negatives(self, value, where: str) -> list:
        if value is None:
            return []
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, np.ndarray)):
            raise ValueError(f"{where}: field {self.columns[NEGATIVES]!r} must be a list of "
                             f"strings, got {type(value).__name__}")
        value = list(value)
        for text in value:
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{where}: field {self.columns[NEGATIVES]!r} must hold "
                                 f"non-empty strings, found {text!r}")
            check_no_lone_surrogate(text, f"{where}: field {self.columns[NEGATIVES]!r}")
        return value

    def corpus(self, source: str) -> PairCorpus:
        if not self.values["query"]:
            raise ValueError(f"{source}: no pairs found (it is empty)")
        v = self.values
        return PairCorpus(v["query"], v["passage"], v["lang"], v["group"], self.negatives,
                          np.asarray(self.offsets, dtype=np.int64), digest=self.digest.hexdigest())


# ------------------------------------------------------------------------------ JSONL


def read_pairs_jsonl(path: Union[str, Path], columns: Optional[Mapping[str, str]] = None
                     ) -> PairCorpus:
    """Read a JSONL file of pairs; errors name the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training file {path} does not exist")
    builder = CorpusBuilder(check_columns(columns))
    for line_number, line in text_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{line_number}"
        builder.add(json_record(line, where), where, f"line {line_number}")
    return builder.corpus(str(path))


def write_pairs_jsonl(path: Union[str, Path], records: Iterable[dict]) -> int:
    """Write pair records (the four fields, plus ``negatives`` where given); returns how many.

    The file appears only once complete (written under a temporary name, then renamed).
    """
    count = 0
    with atomic_output(path) as handle:
        for record in records:
            row = {k: record[k] for k in REQUIRED_FIELDS}
            if record.get(NEGATIVES):
                row[NEGATIVES] = list(record[NEGATIVES])
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def corpus_from_records(records: Sequence[dict], columns: Optional[Mapping[str, str]] = None
                        ) -> PairCorpus:
    """A corpus from pair dicts (errors name the record's position)."""
    builder = CorpusBuilder(check_columns(columns))
    for number, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ValueError(f"record {number}: expected a dict, got {type(record).__name__}")
        builder.add(record, f"record {number}", f"record {number}")
    return builder.corpus("records")
