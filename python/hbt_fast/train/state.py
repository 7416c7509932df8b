"""What a run knows about itself while it trains: the one object callbacks receive."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from hbt_fast.train.config import TrainConfig

__all__ = ["TrainerState"]


@dataclass
class TrainerState:
    """Kept up to date by the :class:`~hbt_fast.train.Trainer` and handed to every callback
    (as ``transformers.TrainerState`` is): the settings, where the run writes, and how far it
    is. Callbacks read it; the trainer alone changes it."""

    config: TrainConfig
    output: Path
    total_steps: int
    rank: int = 0
    world_size: int = 1
    step: int = 0
    epoch: int = 0
    best_score: Optional[float] = None

    @property
    def is_main_process(self) -> bool:
        """Rank 0: the process that writes logs, models and cards."""
        return self.rank == 0
