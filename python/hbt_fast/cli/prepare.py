"""``hbt-fast prepare``: tokenize training pairs once into a memory-mapped token store, which
``hbt-fast train --train STORE`` reads as it is."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    from hbt_fast.cli import HIDE_PROGRESS, token_length
    from hbt_fast.train.config import PRESETS

    parser = subparsers.add_parser(
        "prepare", help="tokenize training pairs into a memory-mapped token store",
        description="Tokenize training pairs (JSONL[.gz], Parquet, save_to_disk folders or glob "
                    "patterns) with a model's tokenizer into a token store folder, in chunks of "
                    "bounded memory; hbt-fast train --train STORE trains from it. The store "
                    "appears only once complete; an interrupted preparation starts over.",
    )
    parser.add_argument("--model", required=True,
                        help="Hugging Face name or local path whose tokenizer and settings are used")
    parser.add_argument("--train", required=True, nargs="+", metavar="PATH",
                        help="training pairs: files, save_to_disk folders or glob patterns")
    parser.add_argument("--output", required=True, help="token store folder to write")
    parser.add_argument("--preset", choices=PRESETS, help="settings preset, as for hbt-fast train")
    parser.add_argument("--prefixes", action="store_true",
                        help='prepend the study\'s "Query: " / "Passage: "')
    parser.add_argument("--query-prefix", help='text prepended to queries, e.g. "query: "')
    parser.add_argument("--passage-prefix", help='text prepended to passages, e.g. "passage: "')
    parser.add_argument("--max-query-length", type=token_length, default=None,
                        help="query tokens (default: the model's maximum length, as hbt-fast train)")
    parser.add_argument("--max-passage-length", type=token_length, default=None,
                        help="passage tokens (default: the model's maximum length, as hbt-fast "
                             "train)")
    parser.add_argument("--columns", default="",
                        help="where the data keeps each field, comma-separated field=column")
    parser.add_argument("--chunk-pairs", type=int, default=None,
                        help="pairs tokenized per chunk (bounds memory)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help=HIDE_PROGRESS)
    parser.set_defaults(func=run)


def tokenization(args: argparse.Namespace):
    """``(tokenizer, EncoderSettings)`` as ``hbt-fast train`` would load them for ``args``."""
    from hbt_fast.models.loading import tokenization as model_tokenization
    from hbt_fast.models.settings import STUDY_PREFIXES

    if args.prefixes and (args.query_prefix is not None or args.passage_prefix is not None):
        raise ValueError("--prefixes (the study's shorthand) and --query-prefix/--passage-prefix "
                         "exclude each other")
    prefixes = dict(STUDY_PREFIXES) if args.prefixes else {
        "query_prefix": args.query_prefix, "passage_prefix": args.passage_prefix}
    return model_tokenization(args.model, args.preset, {
        **prefixes, "max_query_length": args.max_query_length,
        "max_passage_length": args.max_passage_length})


def _columns(text: str) -> dict:
    columns = {}
    for entry in (e.strip() for e in text.split(",") if e.strip()):
        field, equals, column = entry.partition("=")
        if not equals or not field or not column:
            raise ValueError(f"--columns entries must look like field=column, got {entry!r}")
        columns[field] = column
    return columns


def run(args: argparse.Namespace) -> int:
    from hbt_fast.data.token_store import DEFAULT_CHUNK_PAIRS, TokenStore, write_token_store

    try:
        columns = _columns(args.columns)
        if args.chunk_pairs is not None and args.chunk_pairs < 1:
            raise ValueError(f"--chunk-pairs must be >= 1, got {args.chunk_pairs}")
        tokenizer, settings = tokenization(args)
        output = write_token_store(
            args.train, args.output, tokenizer, settings, tokenizer_name=args.model,
            columns=columns or None, chunk_pairs=args.chunk_pairs or DEFAULT_CHUNK_PAIRS,
            progress=args.progress)
        counts = TokenStore(output).manifest["counts"]
    except (ValueError, TypeError, OSError) as error:  # OSError: model or file not found
        print(f"hbt-fast prepare: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in Path(output).iterdir())
    print(f"wrote {counts['pairs']} pairs ({counts['texts']} distinct texts, {counts['tokens']} "
          f"tokens, {counts['negatives']} negatives, {size / 2**20:.1f} MiB) to {output}")
    return 0
