"""mMARCO layout reader: the same MS MARCO queries and passages translated per language.

Expected layout (file names configurable)::

    root/<lang>/queries.tsv        qid<TAB>query text
    root/<lang>/collection.tsv     pid<TAB>passage text
    root/train_pairs.tsv           qid<TAB>positive pid[<TAB>more columns, ignored]

Ids are shared across languages, so the query id is the group: pairs of one qid in several
languages are translations of each other. The first positive of each qid is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from hbt_fast.data.pairs import PairCorpus


def _read_tsv_ids(path: Path, wanted: Optional[set] = None) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    table = {}
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2:
                raise ValueError(f"{path}:{line_number}: expected 'id<TAB>text'")
            if wanted is None or parts[0] in wanted:
                table[parts[0]] = parts[1]
    return table


def read_train_pairs(path: Path, limit: Optional[int] = None) -> dict:
    """qid -> first positive pid, in file order."""
    if not path.is_file():
        raise FileNotFoundError(f"training pairs file {path} does not exist")
    positives = {}
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise ValueError(f"{path}:{line_number}: expected 'qid<TAB>pid'")
            positives.setdefault(parts[0], parts[1])
            if limit is not None and len(positives) >= limit:
                break
    if not positives:
        raise ValueError(f"{path}: no training pairs found")
    return positives


def read_mmarco(root, languages: Sequence[str], *, pairs_file: str = "train_pairs.tsv",
                queries_file: str = "queries.tsv", collection_file: str = "collection.tsv",
                max_queries: Optional[int] = None) -> PairCorpus:
    """Pairs for every (qid, language) whose query and positive passage exist in that language."""
    root = Path(root)
    if isinstance(languages, str) or not languages:
        raise ValueError("languages must be a non-empty list of language folder names")
    positives = read_train_pairs(root / pairs_file, max_queries)
    wanted_pids = set(positives.values())
    queries, passages, langs, groups = [], [], [], []
    for language in languages:
        query_text = _read_tsv_ids(root / language / queries_file, set(positives))
        passage_text = _read_tsv_ids(root / language / collection_file, wanted_pids)
        for qid, pid in positives.items():
            if qid in query_text and pid in passage_text:
                queries.append(query_text[qid])
                passages.append(passage_text[pid])
                langs.append(language)
                groups.append(qid)
    if not queries:
        raise ValueError(f"{root}: no (query, positive passage) pair found in {list(languages)}")
    return PairCorpus(queries, passages, langs, groups)
