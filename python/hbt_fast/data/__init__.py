"""Training data: pair files, the mMARCO layout, and LAReQA-layout conversion."""

from hbt_fast.data.lareqa import split_lareqa
from hbt_fast.data.mmarco import read_mmarco
from hbt_fast.data.pairs import PairCorpus, read_pairs_jsonl, write_pairs_jsonl

__all__ = ["PairCorpus", "read_mmarco", "read_pairs_jsonl", "split_lareqa", "write_pairs_jsonl"]
