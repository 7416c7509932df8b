"""Reading and writing files safely: decoding errors name file and line; outputs appear whole.

* :func:`text_lines` yields ``(line_number, text)`` of a UTF-8 text file (gzip-compressed when
  its name ends in ``.gz``); a byte sequence that is not UTF-8 raises
  ``ValueError("<file>:<line>: not valid UTF-8 ...")``, a damaged ``.gz`` names the file and line.
* :func:`read_json` reads one JSON document with the same guarantee for decoding and syntax;
  :func:`json_record` parses one JSONL line into an object. Both refuse a string holding a lone
  surrogate (a ``\\ud800`` escape without its pair): it is no character, cannot be written as
  UTF-8, and would otherwise fail far from its file, in a tokenizer.
* :func:`atomic_output` writes a file under a temporary name beside it and renames it into place
  only once complete, so a failure (or a kill) never leaves a truncated file under the real name.
* :func:`refuse_overlap` stops an output that is, contains or lies inside one of the inputs
  (the one rule of :mod:`hbt_fast._outputs`, re-exported here).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import shutil
import zlib
from pathlib import Path
from typing import Iterator, Optional, Union

from hbt_fast._outputs import refuse_overlap

__all__ = ["atomic_output", "replace_folder", "check_no_lone_surrogate", "json_record", "read_json",
           "refuse_overlap", "text_lines", "write_text_atomically"]

_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)")

PathLike = Union[str, os.PathLike]


def _decode(raw: bytes, path: Path, line_number: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}:{line_number}: not valid UTF-8 (byte {raw[error.start]:#04x} at column "
            f"{error.start + 1}); save the file as UTF-8"
        ) from None


def text_lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` of a UTF-8 file, 1-based, without the line ending.

    Lines end at ``\\n`` only (a ``\\r`` before it is dropped), so a stray ``\\r`` inside a line
    never splits it: line numbers agree with ``wc -l`` and line-aligned files stay aligned.
    """
    path = Path(path)
    compressed = path.suffix.lower() == ".gz"
    with (gzip.open if compressed else open)(path, "rb") as handle:
        line_number = 0
        while True:
            try:
                raw = handle.readline()
            except (OSError, EOFError, zlib.error) as error:  # a damaged or truncated .gz
                raise ValueError(f"{path}:{line_number + 1}: not a readable gzip file "
                                 f"({error})") from None
            if not raw:
                return
            line_number += 1
            if raw.endswith(b"\n"):
                raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
            yield line_number, _decode(raw, path, line_number)


def check_no_lone_surrogate(text: str, where: str) -> None:
    """Raise ValueError naming ``where`` if ``text`` holds a lone surrogate code point."""
    found = _SURROGATE.search(text)
    if found:
        raise ValueError(
            f"{where}: text holds a lone surrogate U+{ord(found.group()):04X} at character "
            f"{found.start() + 1} (a \\u escape without its pair?): it is not a character and "
            "cannot be encoded as UTF-8")


def _string_with_lone_surrogate(value) -> Optional[str]:
    """The first string (key or value) of a parsed JSON value that holds a lone surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _escaped_code(escape) -> int:
    return int(escape.group(1)[1:], 16) if len(escape.group(1)) == 5 else 0


def _first_lone_surrogate_escape(text: str) -> Optional[tuple]:
    """``(line, code point)`` of the first ``\\uD800``-style escape in JSON ``text`` that is not
    half of a high-low pair (None if there is none)."""
    for line_number, line in enumerate(text.split("\n"), start=1):
        escapes = list(_JSON_ESCAPE.finditer(line))
        for index, escape in enumerate(escapes):
            code = _escaped_code(escape)
            if 0xD800 <= code < 0xDC00:
                following = escapes[index + 1] if index + 1 < len(escapes) else None
                if not (following and following.start() == escape.end()
                        and 0xDC00 <= _escaped_code(following) < 0xE000):
                    return line_number, code
            elif 0xDC00 <= code < 0xE000:
                previous = escapes[index - 1] if index else None
                if not (previous and previous.end() == escape.start()
                        and 0xD800 <= _escaped_code(previous) < 0xDC00):
                    return line_number, code
    return None


def _refuse_lone_surrogates(value, text: str, where) -> None:
    """``where(line)`` names the place; only text with a ``\\u`` escape can hold a surrogate."""
    found = _string_with_lone_surrogate(value) if "\\u" in text else None
    if found is not None:
        escape = _first_lone_surrogate_escape(text)
        if escape is None:  # not from an escape: text that did not come from a UTF-8 file
            check_no_lone_surrogate(found, where(1))
        line, code = escape
        raise ValueError(
            f"{where(line)}: text holds a lone surrogate U+{code:04X} (the escape \\u{code:04x} "
            "without its pair): it is not a character and cannot be encoded as UTF-8")


def json_record(line: str, where: str) -> dict:
    """One JSONL line parsed into a JSON object; errors start with ``where`` (file:line)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: not valid JSON ({error.msg})") from None
    except RecursionError:
        raise ValueError(f"{where}: JSON nested too deeply") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    _refuse_lone_surrogates(record, line, lambda _: where)
    return record


def read_json(path: PathLike):
    """Parse a UTF-8 JSON file; errors name the file and the line."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line_number = raw.count(b"\n", 0, error.start) + 1
        line_start = raw.rfind(b"\n", 0, error.start) + 1
        raise ValueError(
            f"{path}:{line_number}: not valid UTF-8 (byte {raw[error.start]:#04x} at column "
            f"{error.start - line_start + 1}); save the file as UTF-8"
        ) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}:{error.lineno}: not valid JSON ({error.msg}, column {error.colno})"
        ) from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply to read") from None
    _refuse_lone_surrogates(document, text, lambda line: f"{path}:{line}")
    return document


def read_manifest(path: PathLike, *, kind: str, format_name: str, version: int, remedy: str,
                  check) -> dict:
    """A versioned JSON manifest: a JSON object with ``"format": format_name`` and ``"version":
    version``, which ``check(manifest)`` then inspects, raising KeyError, TypeError or ValueError
    (naming the entry) for one that is missing or of the wrong type. Every refusal is one
    ValueError naming the file, what it should be (``kind``, e.g. "token store") and ``remedy``."""
    path = Path(path)
    manifest = read_json(path)  # names the file and line if it is not JSON
    if not isinstance(manifest, dict) or manifest.get("format") != format_name:
        article = "an" if kind[0] in "aeiou" else "a"
        raise ValueError(f"{path}: not {article} {kind} manifest (no \"format\": {format_name!r})")
    if manifest.get("version") != version:
        raise ValueError(f"{path}: {kind} version {manifest.get('version')!r}; this hbt_fast reads "
                         f"version {version}; {remedy}")
    try:
        check(manifest)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: damaged {kind} manifest (entry {error} is missing or has the wrong "
                         f"type); {remedy}") from None
    return manifest


@contextlib.contextmanager
def atomic_output(path: PathLike, mode: str = "w"):
    """Open ``path`` for writing through a temporary file renamed over it on success."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"output {path} is a folder; give a file name")
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    encoding = None if "b" in mode else "utf-8"
    try:
        with open(temporary, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def replace_folder(temporary: PathLike, target: PathLike, previous: Optional[PathLike] = None) -> None:
    """Put the complete folder ``temporary`` in ``target``'s place, the folder counterpart of
    :func:`atomic_output`: an existing ``target`` is first moved to ``previous`` (default
    ``.<target>.old`` beside it) and deleted only once the new folder is in place; if the final
    rename fails, the old folder is put back. Readers see the old folder or the new one, never a
    half-written one. Checking that ``target`` may be replaced is the caller's business."""
    temporary, target = Path(temporary), Path(target)
    previous = Path(previous) if previous is not None else target.with_name(f".{target.name}.old")
    _remove(previous)
    if os.path.lexists(target):
        os.replace(target, previous)
    try:
        os.replace(temporary, target)
    except BaseException:
        if os.path.lexists(previous) and not os.path.lexists(target):
            os.replace(previous, target)
        raise
    _remove(previous)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        path.unlink()


def write_text_atomically(path: PathLike, text: str) -> None:
    """``path`` gets ``text`` through a temporary name, so readers never see half of it."""
    with atomic_output(path) as handle:
        handle.write(text)
