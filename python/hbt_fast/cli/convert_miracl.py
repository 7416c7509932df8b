"""``hbt-fast convert-miracl``: MIRACL's queries with their relevant and judged non-relevant
passages as training pairs (JSONL), from the layout of its Hugging Face repositories (see
:mod:`hbt_fast.data.miracl`)."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert-miracl", help="MIRACL (topics, qrels, corpus) -> training pairs with negatives",
        description="Write one pair per MIRACL query with a relevant passage: the query, its "
                    "first relevant passage and, as hard negatives, the passages judged not "
                    "relevant. The output appears only once complete.",
    )
    parser.add_argument("--miracl", required=True,
                        help="copy of huggingface.co/datasets/miracl/miracl: folders "
                             "miracl-v1.0-<lang>/ with topics/ and qrels/")
    parser.add_argument("--corpus", default=None,
                        help="copy of huggingface.co/datasets/miracl/miracl-corpus: folders "
                             "miracl-corpus-v1.0-<lang>/ with docs-<n>.jsonl.gz (default: the "
                             "--miracl folder)")
    parser.add_argument("--languages", default=None,
                        help="comma-separated language codes (default: every language with "
                             "the split)")
    parser.add_argument("--split", default="train", help="MIRACL split to read (default train)")
    parser.add_argument("--max-negatives", type=_non_negative_int, default=None,
                        help="keep at most N judged non-relevant passages per query "
                             "(default: all)")
    parser.add_argument("--output", required=True, help="JSONL file to write")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hbt_fast.cli import USAGE, reported_as, warnings_reported
    from hbt_fast.data import read_miracl, write_pairs_jsonl
    from hbt_fast.data.files import refuse_overlap

    inputs = {"the --miracl folder": Path(args.miracl)}
    if args.corpus is not None:
        inputs["the --corpus folder"] = Path(args.corpus)
    languages = None if args.languages is None else args.languages.split(",")
    with warnings_reported("convert-miracl"), reported_as(USAGE):
        refuse_overlap(args.output, inputs, name="--output")
        corpus = read_miracl(args.miracl, args.corpus, languages, split=args.split,
                             max_negatives=args.max_negatives)
        count = write_pairs_jsonl(args.output, corpus.records())
    per_language = Counter(corpus.languages)
    print(f"wrote {count} pairs ({', '.join(f'{k}: {v}' for k, v in sorted(per_language.items()))}"
          f"; {len(corpus.negatives)} negatives) to {args.output}")
    return 0
