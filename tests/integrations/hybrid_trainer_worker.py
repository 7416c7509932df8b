"""Run under torchrun by test_hybrid_trainer_distributed.py: each rank writes the texts of one
epoch of HybridTrainer batches to <output>/rank<r>.json, then trains a few DDP steps."""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
import torch  # noqa: E402
from test_hybrid_trainer import epoch_of_batches, make_trainer  # noqa: E402


def main(model_dir: str, output: str) -> None:
    trainer = make_trainer(model_dir, Path(output) / "run",
                           args={"ddp_backend": "gloo", "per_device_train_batch_size": 4})
    assert trainer.args.world_size == 2
    batches = epoch_of_batches(trainer)
    path = Path(output) / f"rank{trainer.args.process_index}.json"
    path.write_text(json.dumps([[[row["query"], row["passage"]] for row in rows] for rows in batches]))
    trainer.train()  # and DDP training on these batches runs (4 steps)
    torch.distributed.barrier()  # leave together: a rank exiting early breaks the peer's socket
    # Then leave without destroying anything: rank 0 sometimes hung (under load) freeing this
    # frame's trainer after destroy_process_group (faulthandler: no frame but the call of main).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(*sys.argv[1:])
