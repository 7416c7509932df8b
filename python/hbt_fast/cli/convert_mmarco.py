"""``hbt-fast convert-mmarco``: an mMARCO-layout folder to training pairs (JSONL)."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> None:
    mmarco = subparsers.add_parser(
        "convert-mmarco", help="turn an mMARCO-layout folder into training pairs (JSONL)",
        description="Write one pair per (query id, language) with its first positive passage; "
                    "the query id is the group, so translations form X-Y pairs.",
    )
    mmarco.add_argument("--root", required=True, help="folder with <lang>/queries.tsv, "
                        "<lang>/collection.tsv and train_pairs.tsv")
    mmarco.add_argument("--languages", nargs="+", required=True, help="language folder names")
    mmarco.add_argument("--output", required=True, help="JSONL file to write")
    mmarco.add_argument("--pairs-file", default="train_pairs.tsv")
    mmarco.add_argument("--max-queries", type=int, default=None)
    mmarco.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hbt_fast.data import read_mmarco, write_pairs_jsonl

    try:
        corpus = read_mmarco(args.root, args.languages, pairs_file=args.pairs_file,
                             max_queries=args.max_queries)
    except (ValueError, OSError) as error:
        print(f"hbt-fast convert-mmarco: error: {error}", file=sys.stderr)
        return 2
    records = ({"group": g, "lang": l, "query": q, "passage": p}
               for q, p, l, g in zip(corpus.queries, corpus.passages, corpus.languages, corpus.groups))
    count = write_pairs_jsonl(args.output, records)
    print(f"wrote {count} pairs to {args.output}")
    return 0

