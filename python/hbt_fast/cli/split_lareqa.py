"""``hbt-fast split-lareqa``: training pairs and a held-out evaluation folder, split by article."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> None:
    from hbt_fast.cli import LanguageList

    parser = subparsers.add_parser(
        "split-lareqa", help="turn a LAReQA-layout folder into train pairs + held-out articles",
        description="Split XQuAD-R / MLQA-R by article: OUTPUT/train.jsonl for hbt-fast train, "
                    "OUTPUT/eval/<lang>.json for hbt-fast eval.",
    )
    parser.add_argument("--data", required=True, help="folder with one <lang>.json per language")
    parser.add_argument("--output", required=True,
                        help="folder to write train.jsonl, eval/ and split.json (must not be, "
                             "or hold, the --data folder)")
    parser.add_argument("--eval-fraction", type=float, default=None,
                        help="share of articles held out (default 0.25)")
    parser.add_argument("--folds", type=int, default=None,
                        help="cross-fitting: deal the articles into this many folds and hold out "
                             "the one --fold names (instead of --eval-fraction); the splits of "
                             "--fold 0 .. FOLDS-1 test every article once")
    parser.add_argument("--fold", type=int, default=None, help="the fold held out (0-based)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--languages", action=LanguageList,
                        help="comma-separated language codes (default: every <lang>.json)")
    parser.add_argument("--candidate-text", choices=("sentence", "sentence_context"),
                        default="sentence", help="training passages: the answer sentence, or "
                        "the sentence followed by its paragraph (as LAReQA encodes candidates)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hbt_fast.cli import USAGE, reported_as
    from hbt_fast.data import split_lareqa
    from hbt_fast.data.files import refuse_overlap

    with reported_as(USAGE, flags=("languages", "eval_fraction", "seed", "folds", "fold")):
        if args.folds is not None and args.eval_fraction is not None:
            raise ValueError("--eval-fraction: --folds holds out one fold of the articles "
                             "instead; give one of the two")
        refuse_overlap(args.output, {"the --data folder": args.data}, name="--output")
        fraction = 0.25 if args.eval_fraction is None else args.eval_fraction
        summary = split_lareqa(args.data, args.output, eval_fraction=fraction, seed=args.seed, languages=args.languages,
                               candidate_text=args.candidate_text, folds=args.folds, fold=args.fold)
    print(json.dumps({k: v for k, v in summary.items() if k != "eval_articles"}, indent=2))
    return 0
