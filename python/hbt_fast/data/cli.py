"""``hbt-fast split-lareqa``: training pairs and a held-out evaluation folder, split by article."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "split-lareqa", help="turn a LAReQA-layout folder into train pairs + held-out articles",
        description="Split XQuAD-R / MLQA-R by article: OUTPUT/train.jsonl for hbt-fast train, "
                    "OUTPUT/eval/<lang>.json for hbt-fast eval.",
    )
    parser.add_argument("--data", required=True, help="folder with one <lang>.json per language")
    parser.add_argument("--output", required=True, help="folder to write train.jsonl and eval/")
    parser.add_argument("--eval-fraction", type=float, default=0.25, help="share of articles held out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--languages", nargs="+", help="default: every <lang>.json")
    parser.set_defaults(func=run)

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
    mmarco.set_defaults(func=run_mmarco)


def run(args: argparse.Namespace) -> int:
    from hbt_fast.data import split_lareqa

    try:
        summary = split_lareqa(args.data, args.output, eval_fraction=args.eval_fraction,
                               seed=args.seed, languages=args.languages)
    except (ValueError, FileNotFoundError) as error:
        print(f"hbt-fast split-lareqa: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "eval_articles"}, indent=2))
    return 0


def run_mmarco(args: argparse.Namespace) -> int:
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

