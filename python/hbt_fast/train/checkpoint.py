"""The checkpoint directory of a run: ``OUTPUT/checkpoints/step-NNNNNNNN/``.

A checkpoint is written into ``.tmp-step-N/``; its ``manifest.json`` (sha256 and size of every
other file) is written last, then the folder is renamed into place and ``latest`` names it. A
checkpoint is *intact* when its manifest exists and every file matches it, so a kill at any
moment leaves either the previous intact checkpoint or the new one, and bytes damaged later are
detected on resume. :meth:`CheckpointDirectory.newest_intact` falls back to older intact
checkpoints with a warning; damaged or forged contents give one :class:`CheckpointError`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Callable, Iterator, Optional

from safetensors import SafetensorError

from hbt_fast.data.files import replace_folder, write_text_atomically
from hbt_fast.train.finite import non_finite_weights

__all__ = ["CheckpointDirectory", "CheckpointError", "MANIFEST", "STATE_FILE", "listed_files",
           "write_folder", "write_manifest"]

MANIFEST = "manifest.json"
STATE_FILE = "trainer_state.pt"
LATEST = "latest"
PREFIX = "step-"
#: what a failed write raises: OSError from Python, RuntimeError from torch.save (a full disk
#: there reads "PytorchStreamWriter failed writing file ..."), SafetensorError from safetensors
WRITE_FAILURES = (OSError, RuntimeError, SafetensorError)


class CheckpointError(ValueError):
    """A checkpoint (or a saved model folder) cannot be written or used; the message says which
    and why."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files_under(folder: Path) -> list:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(folder: Path, **fields) -> None:
    """``folder/manifest.json``: ``fields`` and the sha256 and size of every other file."""
    files = {str(p.relative_to(folder)): {"sha256": sha256_of(p), "bytes": p.stat().st_size}
             for p in _files_under(folder)}
    write_text_atomically(folder / MANIFEST, json.dumps({**fields, "files": files}, indent=1))


def write_folder(target: Path, fill: Callable[[Path], None]) -> Path:
    """``fill(folder)`` writes a folder beside ``target``, which, with its manifest, then takes
    ``target``'s place. A failed write leaves ``target`` as it was and no temporary folder."""
    temporary = target.with_name(f".{target.name}.tmp")
    try:
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
        fill(temporary)
        write_manifest(temporary)
        replace_folder(temporary, target)
    except WRITE_FAILURES as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise CheckpointError(f"writing {target} failed: {_reason(error)}") from error
    return target


def _reason(error: BaseException) -> str:
    """Why a write failed, on one line."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on device"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = " ".join(str(error).split())
    if "no space left on device" in text.lower():
        return "no space left on device"
    return re.sub(r"^\[enforce fail at [^]]*\]\s*\.?\s*", "", text) or type(error).__name__


def listed_files(folder: Path) -> Optional[set]:
    """The files ``folder``'s manifest lists, or None when it has no readable one."""
    try:
        listed = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return set(listed) if isinstance(listed, dict) else None


class CheckpointDirectory:
    """``root`` holds the checkpoints of one run; ``keep`` of them are kept."""

    def __init__(self, root, keep: int = 2):
        self.root = Path(root)
        self.keep = keep

    @staticmethod
    def name(step: int) -> str:
        return f"{PREFIX}{step:08d}"

    def temporary(self, step: int) -> Path:
        return self.root / f".tmp-{self.name(step)}"

    # ------------------------------------------------------------------ writing
    def write(self, step: int, fill: Callable[[Path], None]) -> Path:
        """One process: ``fill(folder)`` writes the files, then :meth:`commit`."""
        folder = self.begin(step)
        with self.disk_errors(step):
            fill(folder)
        return self.commit(step)

    def begin(self, step: int) -> Path:
        folder = self.temporary(step)
        with self.disk_errors(step):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
        return folder

    def commit(self, step: int) -> Path:
        """Manifest last, rename into place, point ``latest`` at it, prune old ones."""
        folder, final = self.temporary(step), self.root / self.name(step)
        with self.disk_errors(step):
            write_manifest(folder, step=step)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(folder, final)
            write_text_atomically(self.root / LATEST, final.name + "\n")
        self._prune(keep=final.name)
        return final

    @contextlib.contextmanager
    def disk_errors(self, step: int) -> Iterator[None]:
        """A failed write (disk full, permissions, a read-only folder) becomes one message; the
        temporary folder goes."""
        try:
            yield
        except CheckpointError:
            raise
        except WRITE_FAILURES as error:
            shutil.rmtree(self.temporary(step), ignore_errors=True)
            previous = self.newest_name()
            kept = f"; {previous} is kept" if previous else ""
            raise CheckpointError(f"writing checkpoint {self.name(step)} in {self.root} failed: "
                                  f"{_reason(error)}{kept}") from error

    def _prune(self, keep: str) -> None:
        steps = sorted(p for p in self.root.glob(f"{PREFIX}*") if p.is_dir())
        for old in steps[:-self.keep]:
            if old.name != keep:
                shutil.rmtree(old, ignore_errors=True)

    def discard_incomplete(self) -> None:
        """Remove temporary folders that a killed run left behind."""
        for folder in self.root.glob(f".tmp-{PREFIX}*"):
            shutil.rmtree(folder, ignore_errors=True)

    # ------------------------------------------------------------------ reading
    def newest_name(self) -> Optional[str]:
        candidates = self.candidates()
        return candidates[0].name if candidates else None

    def has_complete(self) -> bool:
        """Whether any checkpoint was written to the end (its manifest exists), intact or not."""
        return any((folder / MANIFEST).exists() for folder in self.candidates())

    def candidates(self) -> list:
        """Checkpoint folders, newest first."""
        if not self.root.is_dir():
            return []
        folders = [p for p in self.root.glob(f"{PREFIX}*") if p.is_dir() and p.name[len(PREFIX):].isdigit()]
        return sorted(folders, key=lambda p: int(p.name[len(PREFIX):]), reverse=True)

    def damage(self, folder: Path) -> Optional[str]:
        """Why ``folder`` is not intact, or None when it is."""
        manifest = folder / MANIFEST
        if not manifest.is_file():
            return f"{manifest.name} is missing (the checkpoint was not completed)"
        try:
            listed = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return f"{manifest} is damaged"
        present = {str(p.relative_to(folder)) for p in _files_under(folder)}
        if set(listed) != present:
            return f"files differ from the manifest: {sorted(set(listed) ^ present)}"
        for relative, expected in sorted(listed.items()):
            if not isinstance(expected, dict) or sha256_of(folder / relative) != expected.get("sha256"):
                return f"{relative} does not match its checksum"
        broken = non_finite_weights(folder)
        return f"{broken} holds non-finite weights" if broken else None

    def has_intact(self) -> bool:
        return any(self.damage(folder) is None for folder in self.candidates())

    def newest_intact(self) -> Path:
        """The newest intact checkpoint; warns about each newer damaged one it skips."""
        problems = []
        for folder in self.candidates():
            why = self.damage(folder)
            if why is None:
                if problems:
                    warnings.warn(f"resuming from {folder.name}: skipped " + "; ".join(problems),
                                  UserWarning, stacklevel=2)
                return folder
            problems.append(f"{folder.name} ({why})")
        if problems:
            raise CheckpointError(f"no intact checkpoint in {self.root}: " + "; ".join(problems))
        raise FileNotFoundError(f"resume: no checkpoint in {self.root}")
