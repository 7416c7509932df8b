"""Reading and writing files safely: decoding errors name file and line; outputs appear whole.

* :func:`text_lines` yields ``(line_number, text)`` of a UTF-8 text file (gzip-compressed when
  its name ends in ``.gz``); a byte sequence that is not UTF-8 raises
  ``ValueError("<file>:<line>: not valid UTF-8 ...")``, a damaged ``.gz`` names the file and line.
* :func:`read_json` reads one JSON document with the same guarantee for decoding and syntax.
* :func:`atomic_output` writes a file under a temporary name beside it and renames it into place
  only once complete, so a failure (or a kill) never leaves a truncated file under the real name.
* :func:`refuse_overlap` stops an output that equals or contains one of the inputs.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import zlib
from pathlib import Path
from typing import Iterator, Mapping, Union

__all__ = ["atomic_output", "read_json", "refuse_overlap", "text_lines", "write_text_atomically"]

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
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}:{error.lineno}: not valid JSON ({error.msg}, column {error.colno})"
        ) from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply to read") from None


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


def write_text_atomically(path: PathLike, text: str) -> None:
    """``path`` gets ``text`` through a temporary name, so readers never see half of it."""
    with atomic_output(path) as handle:
        handle.write(text)


def refuse_overlap(output: PathLike, inputs: Mapping[str, PathLike]) -> None:
    """Raise ValueError if ``output`` is, or is a folder above, any of ``inputs``.

    ``inputs`` maps a description ("the data folder") to a path. Writing there would overwrite
    the inputs or put files among them that change how they read.
    """
    target = Path(output).resolve()
    for what, path in inputs.items():
        source = Path(path).resolve()
        if target == source:
            raise ValueError(f"output {output} is {what} ({path}); choose an output outside it")
        if target in source.parents:
            raise ValueError(
                f"output {output} contains {what} ({path}); writing there could overwrite it, "
                "so choose an output outside it"
            )
