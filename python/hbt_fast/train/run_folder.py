"""A run folder holds only what hbt_fast wrote for that run, so a run may clear it again.

A fresh folder gets the marker ``hbt_fast_run.json`` (the run's settings) before anything else.
A run that finds a folder in use (a restart after a kill, a resume) goes on only when the marker
is there, names the same settings (those in ``override`` may differ on resume), and every entry
is one a run writes: the marker, the lock, ``run_config.json``, ``train_log.jsonl``,
``tensorboard/`` event files, ``checkpoints/`` and the model folders ``model/`` and ``best/``
(each listing its files in a manifest), the token stores the run prepared from its training
files (``token_store``, ``token_store-N``: a store's files only), and the temporary names of these. Anything else stops
the run with one error naming it, so nothing hbt_fast did not create is ever replaced or
removed. While a run lives, rank 0 holds the folder's lock (:class:`hbt_fast._outputs.FolderLock`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from hbt_fast._outputs import LOCK_FILE, FolderLock, refuse_overlap
from hbt_fast.data.files import write_text_atomically
from hbt_fast.train.callbacks import LOG_FILE
from hbt_fast.train.checkpoint import MANIFEST, CheckpointDirectory, listed_files
from hbt_fast.data.token_store.format import ARRAYS, GROUP_NAMES
from hbt_fast.data.token_store.format import MANIFEST as STORE_MANIFEST
from hbt_fast.train.config import TrainConfig, config_differences, parse_eval_spec, training_sources
from hbt_fast.train.resume import RUN_CONFIG

__all__ = ["MARKER", "check_inputs", "claim"]

MARKER = "hbt_fast_run.json"
FILES = (MARKER, LOCK_FILE, RUN_CONFIG, LOG_FILE)
MODEL_FOLDERS = ("model", "best")
# What a write that a kill interrupted leaves: atomic_output's file, save_model's folders,
# a checkpoint's folder (its content is the run's, unfinished).
TEMPORARY_FILE = re.compile(r"\.(?P<name>.+)\.tmp-\d+")
TEMPORARY_MODEL = re.compile(r"\.(model|best)\.(tmp|old)")
CHECKPOINT = re.compile(r"step-\d+")
TEMPORARY_CHECKPOINT = re.compile(r"\.tmp-step-\d+")
# What a checkpoint holds, for one whose manifest is damaged (its files are still the run's).
CHECKPOINT_ENTRY = re.compile(r"model|trainer_state\.pt|random-rank\d+\.pt|run_config\.json|manifest\.json")
EVENTS = re.compile(r"events\.out\.tfevents\..+")
# hbt_fast.train.sources.run_store_name, and what write_token_store leaves beside a store
# (its work folder, lock and replaced store) when a kill interrupts it.
RUN_STORE = re.compile(r"token_store(-\d+)?")
RUN_STORE_LEFTOVER = re.compile(r"\.token_store(-\d+)?\.(preparing|lock|old)")
STORE_FILES = {f"{name}.npy" for name in ARRAYS} | {GROUP_NAMES, STORE_MANIFEST}


def check_inputs(config: TrainConfig, reads_train: bool) -> None:
    """The output is not, does not hold and does not lie inside what the run reads."""
    model = Path(config.model)
    paths = [path for source in training_sources(config) for path in source] if reads_train else []
    train = {f"the training data (train{f' {path}' if len(paths) > 1 else ''})": path for path in paths}
    refuse_overlap(config.output, {
        "the model folder (model)": model if model.exists() else None, **train,
        "the evaluation folder (eval)": parse_eval_spec(config.eval)[1] if config.eval else None})


def claim(config: TrainConfig, output: Path) -> FolderLock:
    """Lock ``output`` and mark it as this run's, or check that it already is; the lock is
    released again when the folder is refused."""
    unmarked = not (output / MARKER).is_file()
    stranger = _first(_entries(output)) if unmarked else None
    if stranger is not None:  # refused before the lock file is added to someone's folder
        raise ValueError(f"output {output} holds {stranger.name}, which hbt_fast did not write (the "
                         f"folder has no {MARKER}); nothing there is touched: choose a new or empty "
                         "folder")
    lock = FolderLock(output).acquire()
    try:
        if _first(_entries(output)) is None:  # fresh, or a run killed before writing anything
            _write_marker(config, output)
        else:
            # Settings matter where the folder would be cleared; a resume checks them against its
            # checkpoint (naming --override), and a finished part needs resume (starting_point).
            _check_marker(config, output, settings=not config.resume and not _holds_a_finished_part(output))
            foreign = _foreign(output)
            if foreign is not None:
                raise ValueError(f"output {output} holds {foreign.relative_to(output)}, which hbt_fast "
                                 "did not write for this run; nothing there is touched: move it away "
                                 "or choose another folder")
    except BaseException:
        lock.release()
        raise
    return lock


def _holds_a_finished_part(output: Path) -> bool:
    """A complete checkpoint or a model: a new run there needs resume (starting_point says so)."""
    return CheckpointDirectory(output / "checkpoints").has_complete() or (output / "model").exists()


def _first(entries) -> Optional[Path]:
    return min(entries, default=None)


def _is_file_of(entry: Path, names) -> bool:
    """Whether ``entry`` is one of the files ``names`` or the temporary name of one."""
    temporary = TEMPORARY_FILE.fullmatch(entry.name)
    return entry.is_file() and not entry.is_symlink() and (
        entry.name in names or (temporary is not None and temporary["name"] in names))


def _entries(output: Path) -> list:
    """Everything in ``output`` but the lock and the marker."""
    return [p for p in output.iterdir() if not _is_file_of(p, (MARKER, LOCK_FILE))]


def _write_marker(config: TrainConfig, output: Path) -> None:
    from hbt_fast import __version__

    write_text_atomically(output / MARKER, json.dumps({
        "written_by": "hbt_fast", "hbt_fast_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": dataclasses.asdict(config)}, indent=2) + "\n")


def _check_marker(config: TrainConfig, output: Path, settings: bool) -> None:
    marker = output / MARKER
    try:
        saved = json.loads(marker.read_text(encoding="utf-8"))
        assert saved["written_by"] == "hbt_fast" and isinstance(saved["config"], dict)
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        raise ValueError(f"{marker} is not a marker hbt_fast wrote; nothing in {output} is touched: "
                         "choose another folder") from None
    # "output" may differ: a moved folder holds the same run.
    changed = [name for name in config_differences(saved["config"], config) if name != "output"]
    if settings and changed:
        details = ", ".join(f"{name} (then {saved['config'].get(name)!r}, now {getattr(config, name)!r})"
                            for name in changed)
        raise ValueError(f"output {output} holds a stopped run with other settings: {details}; nothing "
                         "there is touched: choose another folder")


def _foreign(output: Path) -> Optional[Path]:
    """The first entry of ``output`` that a run does not write, or None."""
    for entry in sorted(output.iterdir()):
        name, folder = entry.name, entry.is_dir() and not entry.is_symlink()  # a run writes no links
        if _is_file_of(entry, FILES) or (folder and TEMPORARY_MODEL.fullmatch(name)):
            continue
        if RUN_STORE_LEFTOVER.fullmatch(name) and not entry.is_symlink():
            continue
        found = entry
        if folder and name in MODEL_FOLDERS:
            found = _unlisted(entry)
        elif folder and name == "checkpoints":
            found = _foreign_checkpoint_entry(entry)
        elif folder and RUN_STORE.fullmatch(name):
            found = next((p for p in sorted(entry.iterdir())
                          if not (p.is_file() and not p.is_symlink() and p.name in STORE_FILES)), None)
        elif folder and name == "tensorboard":
            found = next((p for p in sorted(entry.iterdir())
                          if not (p.is_file() and not p.is_symlink() and EVENTS.fullmatch(p.name))), None)
        if found is not None:
            return found
    return None


def _foreign_checkpoint_entry(root: Path) -> Optional[Path]:
    for entry in sorted(root.iterdir()):
        folder = entry.is_dir() and not entry.is_symlink()
        if _is_file_of(entry, ("latest",)) or (folder and TEMPORARY_CHECKPOINT.fullmatch(entry.name)):
            continue
        found = _unlisted(entry, damaged_ok=CHECKPOINT_ENTRY) if folder and CHECKPOINT.fullmatch(entry.name) \
            else entry
        if found is not None:
            return found
    return None


def _unlisted(folder: Path, damaged_ok: Optional[re.Pattern] = None) -> Optional[Path]:
    """The first file or folder in ``folder`` its manifest does not list, or None.

    Without a readable manifest, ``damaged_ok`` says which top-level names are the run's
    (a checkpoint damaged on disk is still the run's; resume skips it with a warning)."""
    listed = listed_files(folder)
    if listed is None:
        if damaged_ok is None:
            return folder / MANIFEST
        return next((p for p in sorted(folder.iterdir()) if not damaged_ok.fullmatch(p.name)), None)
    folders = {str(parent) for name in listed for parent in Path(name).parents}
    for path in sorted(folder.rglob("*")):
        relative = str(path.relative_to(folder))
        if path.is_symlink() or not (relative in listed or relative == MANIFEST or
                                     (path.is_dir() and relative in folders)):
            return path
    return None
