"""Where a run starts: fresh, again (a folder a killed run left without a complete checkpoint),
or from the newest intact checkpoint, whose saved settings must match the new ones."""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from hbt_fast._checks import is_integer
from hbt_fast.train.callbacks import LOG_FILE
from hbt_fast.data.files import write_text_atomically
from hbt_fast.train.checkpoint import STATE_FILE, CheckpointDirectory, CheckpointError
from hbt_fast.train.config import TrainConfig, config_differences, saved_setting
from hbt_fast.train.step import world

__all__ = ["RUN_CONFIG", "Start", "drop_log_after", "random_state_file", "random_states", "starting_point"]

RUN_CONFIG = "run_config.json"


def random_state_file(rank: int) -> str:
    return f"random-rank{rank}.pt"


def random_states(device: torch.device) -> dict:
    """This process's generator states (dropout continues exactly after a resume)."""
    states = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def drop_log_after(log: Path, step: int) -> None:
    """A resumed run repeats the steps after its checkpoint: forget their old log lines."""
    if not log.exists():
        return
    kept = []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except ValueError:  # a line cut short by a kill
            continue
    write_text_atomically(log, "".join(line + "\n" for line in kept))


@dataclass
class Start:
    """A checkpoint to resume from, already read and checked."""

    path: Path
    state: dict
    random: dict


def starting_point(config: TrainConfig, checkpoints: CheckpointDirectory, output: Path,
                   total_steps: int, rank: int, data_digest: Optional[str] = None) -> Optional[Start]:
    """None for a fresh run (after clearing what a run killed before its first checkpoint left);
    the checkpoint to resume from with ``config.resume``, which must have the same settings,
    number of processes and training data (``data_digest``: the corpus's)."""
    if config.resume:
        path = checkpoints.newest_intact()
        _check_settings(path, config, data_digest)
        return _read(path, total_steps, rank)
    if checkpoints.has_complete() or (output / "model").exists():
        raise ValueError(f"output {output} already holds a run; pass resume to continue it, or choose "
                         "a new folder")
    leftovers = [p for p in (output / LOG_FILE, checkpoints.root) if p.exists()]
    if leftovers:
        warnings.warn(f"output {output} holds no complete checkpoint (a run stopped before its first "
                      "one); starting again", UserWarning, stacklevel=3)
        if rank == 0:
            (output / LOG_FILE).unlink(missing_ok=True)
            shutil.rmtree(checkpoints.root, ignore_errors=True)
    return None


def _check_settings(path: Path, config: TrainConfig, data_digest: Optional[str]) -> None:
    description = json.loads((path / RUN_CONFIG).read_text(encoding="utf-8"))
    saved = description["config"]
    changed = [name for name in config_differences(saved, config, description.get("locations"))
               if name not in config.override]
    if changed:
        details = ", ".join(f"{name} (saved {saved_setting(saved, name)!r}, now {getattr(config, name)!r})"
                            for name in changed)
        raise ValueError(f"resume: settings differ from the run in {path}: {details}; keep them, or "
                         f"name them in override (--override {','.join(changed)}) to change them")
    saved_size, size = description.get("world_size"), world()[1]
    if saved_size is not None and saved_size != size:
        raise ValueError(f"resume: the run in {path} ran on {saved_size} process(es) (world size "
                         f"{saved_size}), this one on {size}; resume with the same world size "
                         f"(torchrun --nproc_per_node {saved_size} on one machine)")
    saved_digest = description.get("data_digest")
    if saved_digest is not None and data_digest is not None and saved_digest != data_digest:
        raise ValueError(f"resume: the training data {config.train} differs from the data of the run in "
                         f"{path} (content digest {data_digest}, saved {saved_digest}); resume with "
                         "the same pairs, or start a new run")


def _read(path: Path, total_steps: int, rank: int) -> Start:
    try:
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
        random = torch.load(path / random_state_file(rank), map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise CheckpointError(f"{path}: {Path(error.filename).name} is missing (a run with another "
                              "number of processes?)") from None
    except Exception as error:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise CheckpointError(f"{path}: cannot read {STATE_FILE} ({type(error).__name__})") from None
    step = state.get("step") if isinstance(state, dict) else None
    expected = int(path.name.rpartition("-")[2])
    if not is_integer(step) or step != expected or not 0 <= step <= total_steps:
        raise CheckpointError(f"{path}: step {step!r} is not a step of this run (folder {path.name}, "
                              f"0 .. {total_steps} steps)")
    return Start(path, state, random)
