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

from hbt_fast._checks import check_integer
from hbt_fast.data.files import text_lines
from hbt_fast.data.locations import check_languages
from hbt_fast.data.pairs import PairCorpus


def _read_tsv_ids(path: Path, wanted: Optional[set] = None) -> dict:
    """``{id: text}`` of the ids in ``wanted`` (all when None); an id a pair uses may appear only
    once (its text would otherwise be whichever line came last)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    table, lines = {}, {}
    for line_number, line in text_lines(path):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise ValueError(f"{path}:{line_number}: expected 'id<TAB>text'")
        if wanted is None or parts[0] in wanted:
            if parts[0] in lines:
                raise ValueError(f"{path}:{line_number}: id {parts[0]!r} already on line "
                                 f"{lines[parts[0]]}; each id may appear once")
            table[parts[0]], lines[parts[0]] = parts[1], line_number
    return table


def read_train_pairs(path: Path, limit: Optional[int] = None) -> dict:
    """qid -> first positive pid, in file order."""
    if not path.is_file():
        raise FileNotFoundError(f"training pairs file {path} does not exist")
    positives = {}
    for line_number, line in text_lines(path):
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
    languages = check_languages(languages)
    max_queries = check_integer(max_queries, "max_queries", optional=True)  # None: all
    if not root.is_dir():
        raise FileNotFoundError(f"mMARCO folder {root} does not exist")
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
