"""``hbt-fast convert-mmarco``: an mMARCO-layout folder to training pairs (JSONL)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hbt_fast.cli import LanguageList


def add_parser(subparsers) -> None:
    mmarco = subparsers.add_parser(
        "convert-mmarco", help="turn an mMARCO-layout folder into training pairs (JSONL)",
        description="Write one pair per (query id, language) with its first positive passage; "
                    "the query id is the group, so translations form X-Y pairs. The output "
                    "appears only once complete.",
    )
    mmarco.add_argument("--root", required=True, help="folder with <lang>/queries.tsv, "
                        "<lang>/collection.tsv and train_pairs.tsv")
    mmarco.add_argument("--languages", action=LanguageList, required=True,
                        help="comma-separated language folder names, each once")
    mmarco.add_argument("--output", required=True, help="JSONL file to write")
    mmarco.add_argument("--pairs-file", default="train_pairs.tsv")
    mmarco.add_argument("--max-queries", type=int, default=None,
                        help="use the first N query ids (N >= 1; default: all)")
    mmarco.set_defaults(func=run)


def _inputs(args) -> dict:
    root = Path(args.root)
    inputs = {"the --pairs-file": root / args.pairs_file}
    for language in args.languages:
        for name in ("queries.tsv", "collection.tsv"):
            inputs[f"the {language}/{name} input"] = root / language / name
    return {**inputs, "the --root folder": root}  # the files first: the closest name wins


def run(args: argparse.Namespace) -> int:
    from hbt_fast.cli import USAGE, reported_as
    from hbt_fast.data import read_mmarco, write_pairs_jsonl
    from hbt_fast.data.files import refuse_overlap

    with reported_as(USAGE, flags=("languages", "max_queries", "pairs_file")):
        refuse_overlap(args.output, _inputs(args), name="--output")
        corpus = read_mmarco(args.root, args.languages, pairs_file=args.pairs_file,
                             max_queries=args.max_queries)
        count = write_pairs_jsonl(args.output, corpus.records())
    print(f"wrote {count} pairs to {args.output}")
    return 0
