"""Every file format and data location: training pairs (JSONL, Parquet, ``datasets``), the
LAReQA layout (XQuAD-R, MLQA-R) and its article split, mMARCO, Tatoeba, MIRACL/BEIR (evaluation)
and MIRACL's own layout (training pairs), Mewsli-X and XM3600 captions.

Readers validate as they read: every error names the file and the line (or row).
"""

from hbt_fast.data.beir import BeirData, BeirLanguage, load_beir, load_beir_language
from hbt_fast.data.lareqa import LareqaData, LareqaLanguage, load_lareqa
from hbt_fast.data.lareqa_split import split_lareqa
from hbt_fast.data.locations import DATA_ENV, resolve_data_dir
from hbt_fast.data.mewsli_x import MewsliXData, load_mewsli_x
from hbt_fast.data.miracl import read_miracl
from hbt_fast.data.mmarco import read_mmarco
from hbt_fast.data.pairs import PairCorpus, corpus_from_records, read_pairs_jsonl, write_pairs_jsonl
from hbt_fast.data.tables import corpus_from_dataset, read_pairs
from hbt_fast.data.tatoeba import TatoebaData, load_tatoeba, tatoeba_languages
from hbt_fast.data.tatoeba_split import split_tatoeba
from hbt_fast.data.xm3600 import XM3600Data, load_xm3600

__all__ = [
    "DATA_ENV",
    "BeirData",
    "BeirLanguage",
    "LareqaData",
    "LareqaLanguage",
    "MewsliXData",
    "PairCorpus",
    "TatoebaData",
    "XM3600Data",
    "corpus_from_dataset",
    "corpus_from_records",
    "load_beir",
    "load_beir_language",
    "load_lareqa",
    "load_mewsli_x",
    "load_tatoeba",
    "load_xm3600",
    "read_miracl",
    "read_mmarco",
    "read_pairs",
    "read_pairs_jsonl",
    "resolve_data_dir",
    "split_lareqa",
    "split_tatoeba",
    "tatoeba_languages",
    "write_pairs_jsonl",
]
