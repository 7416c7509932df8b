"""Training: a Hugging Face encoder fine-tuned with hybrid batches and the fused InfoNCE loss.

* :mod:`~hbt_fast.train.config`: :class:`TrainConfig`, every setting once (CLI flags come from it);
* :mod:`~hbt_fast.train.step`: the global batch's gradients as a function (gather, fused loss,
  GradCache, DistributedDataParallel reduction), usable without the trainer;
* :mod:`~hbt_fast.train.callbacks`: timing, progress, logging (JSONL, TensorBoard), which
  observe the steps through a :class:`TrainerState`; :mod:`~hbt_fast.train.reporting` sends
  them to wandb / mlflow through transformers' integrations;
* :mod:`~hbt_fast.train.card`: ``run_config.json`` and the model card;
  :mod:`~hbt_fast.train.hub` pushes the model to the Hugging Face Hub;
* :mod:`~hbt_fast.train.checkpoint`: the checkpoint folder (checksummed, verified on resume);
* :mod:`~hbt_fast.train.trainer`: :class:`Trainer`, which holds a run together and owns its
  loop (sampler -> step -> optimiser -> callbacks, checkpoints and evaluations on schedule).
"""

from hbt_fast.train.callbacks import Callback
from hbt_fast.train.checkpoint import CheckpointDirectory, CheckpointError
from hbt_fast.train.components import init_distributed, leave_distributed
from hbt_fast.train.config import TrainConfig
from hbt_fast.train.state import TrainerState
from hbt_fast.train.step import StepResult, data_parallel, global_batch_gradients
from hbt_fast.train.trainer import NonFiniteLossError, Trainer

__all__ = ["Callback", "CheckpointDirectory", "CheckpointError", "NonFiniteLossError", "StepResult",
           "TrainConfig", "Trainer", "TrainerState", "data_parallel", "global_batch_gradients", "init_distributed",
           "leave_distributed", "train"]


def train(config: TrainConfig, **kwargs):
    """Build a :class:`Trainer` and run it (it joins torchrun's process group if there is one,
    and leaves it when the run ends)."""
    return Trainer(config, **kwargs).train()
