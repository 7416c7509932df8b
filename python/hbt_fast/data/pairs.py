"""Training pairs: one (query, passage) per line, grouped across languages.

JSONL layout, one object per line::

    {"group": "56beb4343aeaaa14008c925b", "lang": "de", "query": "...", "passage": "..."}

Pairs that share ``group`` are translations of each other (the same item in other
languages); the sampler builds X-Y batches from them. ``group`` may be a string or an int.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np

from hbt_fast.sampler import labels_to_ids

REQUIRED_FIELDS = ("group", "lang", "query", "passage")


@dataclass
class PairCorpus:
    """Training pairs as parallel lists, plus the integer ids the sampler needs."""

    queries: list
    passages: list
    languages: list  # language label of each pair
    groups: list  # group label of each pair

    def __post_init__(self):
        lengths = {len(self.queries), len(self.passages), len(self.languages), len(self.groups)}
        if len(lengths) != 1:
            raise ValueError(f"queries, passages, languages and groups differ in length: {lengths}")
        ids = labels_to_ids(self.languages, [str(g) for g in self.groups])
        self.language_ids, self.group_ids = ids.languages, ids.groups
        self.language_names = [str(name) for name in ids.language_names]

    def __len__(self) -> int:
        return len(self.queries)

    def texts(self, query_rows: np.ndarray, passage_rows: np.ndarray):
        """Query texts of ``query_rows`` and passage texts of ``passage_rows``."""
        return [self.queries[i] for i in query_rows], [self.passages[i] for i in passage_rows]

    def cross_lingual_languages(self) -> set:
        """Languages that share at least one group with another language."""
        in_shared_group = np.bincount(self.group_ids)[self.group_ids] >= 2  # ids are dense
        return {self.language_names[i] for i in np.unique(self.language_ids[in_shared_group])}


def read_pairs_jsonl(path: Union[str, Path]) -> PairCorpus:
    """Read a JSONL file of pairs; errors name the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training file {path} does not exist")
    columns = {name: [] for name in REQUIRED_FIELDS}
    seen = {}
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            record = _parse_record(line, path, line_number)
            key = (str(record["group"]), record["lang"])
            if key in seen:
                raise ValueError(
                    f"{path}:{line_number}: group {record['group']!r} already has a pair in language "
                    f"{record['lang']!r} (line {seen[key]}); each (group, lang) may occur once"
                )
            seen[key] = line_number
            for name in REQUIRED_FIELDS:
                columns[name].append(record[name])
    if not columns["query"]:
        raise ValueError(f"{path}: no pairs found (the file is empty)")
    return PairCorpus(columns["query"], columns["passage"], columns["lang"], columns["group"])


def _parse_record(line: str, path: Path, line_number: int) -> dict:
    where = f"{path}:{line_number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: not valid JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}")
    for name in ("lang", "query", "passage"):
        if not isinstance(record[name], str) or not record[name].strip():
            raise ValueError(f"{where}: field {name!r} must be a non-empty string")
    if isinstance(record["group"], bool) or not isinstance(record["group"], (str, int)):
        raise ValueError(f"{where}: field 'group' must be a string or an integer")
    return record


def write_pairs_jsonl(path: Union[str, Path], records: Iterable[dict]) -> int:
    """Write pair records (dicts with the four fields); returns how many were written."""
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps({k: record[k] for k in REQUIRED_FIELDS}, ensure_ascii=False) + "\n")
            count += 1
    return count


def corpus_from_records(records: Sequence[dict]) -> PairCorpus:
    return PairCorpus(*([r[k] for r in records] for k in ("query", "passage", "lang", "group")))
