"""Where a command may write: one rule for every output, and the lock a run holds on its folder.

* :func:`refuse_overlap`: an output that is, contains or lies inside one of the command's inputs
  (or the installed hbt_fast package) is refused with one ``ValueError`` naming both paths.
  Paths are compared resolved (symbolic links, ``..``, relative spellings) and, where folders
  exist, by identity, so another spelling of the same folder (a bind mount) is caught too.
* :class:`FolderLock`: an exclusive ``flock`` on a lock file in a folder; a second holder is
  refused at once, naming the first one's process id. The kernel drops the lock when its
  process ends, however it ends, so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import os
import socket
import time
import weakref
from pathlib import Path
from typing import Mapping, Optional, Union

try:
    import fcntl
except ImportError:  # not POSIX: no locking
    fcntl = None

__all__ = ["FolderLock", "LOCK_FILE", "PACKAGE", "refuse_overlap"]

PathLike = Union[str, os.PathLike]
#: the installed package: no command writes into it, or over a folder holding it
PACKAGE = Path(__file__).resolve().parent
LOCK_FILE = ".hbt_fast.lock"


def _identity(path: Path) -> Optional[tuple]:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _within(inner: Path, outer: Path) -> bool:
    """Whether ``inner`` is ``outer`` or lies below it (both resolved)."""
    if inner == outer or outer in inner.parents:
        return True
    folder = _identity(outer)
    return folder is not None and any(_identity(p) == folder for p in (inner, *inner.parents))


def _shown(path: PathLike, resolved: Path) -> str:
    return str(path) if str(path) == str(resolved) else f"{path} ({resolved})"


def refuse_overlap(output: PathLike, inputs: Mapping[str, Optional[PathLike]], *,
                   name: str = "output") -> None:
    """Raise ValueError when ``output`` is, contains or lies inside any of ``inputs``.

    ``inputs`` maps a description ("the --data folder") to a path (None: not used this time);
    ``name`` is how the message names the output (a flag or a parameter). Writing inside an
    input adds files among it that change how it reads; writing over one replaces it.
    """
    target = Path(output).resolve()
    for what, path in {**inputs, "the installed hbt_fast package": PACKAGE}.items():
        if path is None:
            continue
        source = Path(path).resolve()
        inside, holds = _within(target, source), _within(source, target)
        if not (inside or holds):
            continue
        relation = "is" if inside and holds else "lies inside" if inside else "contains"
        raise ValueError(f"{name} {_shown(output, target)} {relation} {what} {_shown(path, source)}; "
                         "choose an output outside it")


class FolderLock:
    """An exclusive lock on ``folder`` (its file ``LOCK_FILE``), held until :meth:`release`.

    ``owner`` names the folder's role in the refusal ("output"). The lock file holds the
    holder's pid and host; it stays in the folder after release (removing it would race with
    the next holder)."""

    def __init__(self, folder: PathLike, owner: str = "output"):
        self.folder, self.owner = Path(folder), owner
        self.path = self.folder / LOCK_FILE
        self._descriptor: Optional[int] = None
        self._closer = None

    def acquire(self) -> "FolderLock":
        if fcntl is None:
            return self
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(descriptor)
            os.close(descriptor)
            raise ValueError(f"{self.owner} {self.folder} is in use by another run ({holder}); wait "
                             "for it to end or choose another folder") from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()} {socket.gethostname()}\n".encode())
        self._descriptor = descriptor
        # A lock never released by hand goes with its object, without a ResourceWarning.
        self._closer = weakref.finalize(self, os.close, descriptor)
        return self

    def release(self) -> None:
        if self._closer is not None:
            self._closer()  # closing the descriptor drops the lock
            self._closer = self._descriptor = None

    @property
    def held(self) -> bool:
        return self._descriptor is not None


def _holder(descriptor: int) -> str:
    """"pid N on HOST" from the lock file; the holder writes it just after locking."""
    for _ in range(50):
        text = os.pread(descriptor, 256, 0).decode(errors="replace").split()
        if text:
            pid, host = (text + ["?"])[:2]
            return f"pid {pid}" + ("" if host == socket.gethostname() else f" on {host}")
        time.sleep(0.01)
    return "pid unknown"
