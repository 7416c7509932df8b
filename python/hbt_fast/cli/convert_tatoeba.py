"""``hbt-fast convert-tatoeba``: Tatoeba's 100+ languages as training groups plus a held-out
Tatoeba folder, split by English sentence (see :mod:`hbt_fast.data.tatoeba_split`)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from hbt_fast.cli import LanguageList


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert-tatoeba", help="Tatoeba -> train.jsonl (groups through English) + held-out folder",
        description="Split Tatoeba by English sentence: OUTPUT/train.jsonl (X-Y pairs between any "
                    "two languages of a group) for hbt-fast train, OUTPUT/heldout/ for hbt-fast "
                    "eval --task tatoeba.",
    )
    parser.add_argument("--data", required=True,
                        help="folder with tatoeba.<xxx>-eng.<xxx> / .eng files (LASER layout)")
    parser.add_argument("--output", required=True,
                        help="folder to write train.jsonl, heldout/ and split.json (outside --data)")
    parser.add_argument("--heldout-fraction", type=float, default=0.2,
                        help="share of distinct English sentences held out (default 0.2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-lines", type=int, default=20,
                        help="skip a language with fewer training or held-out lines (default 20)")
    parser.add_argument("--languages", action=LanguageList, default=None,
                        help="comma-separated language codes (default: every language)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hbt_fast.cli import USAGE, reported_as
    from hbt_fast.data import split_tatoeba
    from hbt_fast.data.files import refuse_overlap

    flags = ("languages", "heldout_fraction", "seed", "min_lines")
    with reported_as(USAGE, flags=flags), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        refuse_overlap(args.output, {"the --data folder": args.data}, name="--output")
        summary = split_tatoeba(args.data, args.output, heldout_fraction=args.heldout_fraction,
                                seed=args.seed, min_lines=args.min_lines, languages=args.languages)
    for warning in caught:
        print(f"hbt-fast convert-tatoeba: warning: {warning.message}", file=sys.stderr)
    print(json.dumps({key: summary[key] for key in
                      ("train_pairs", "heldout_english_sentences", "seed", "heldout_fraction")}
                     | {"languages": len(summary["languages"]), "skipped": sorted(summary["skipped"])},
                     indent=2))
    return 0
