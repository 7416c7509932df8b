"""``hbt-fast bench``: every hot part against its reference, in one process, one table."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import sys

# Suites in the order they run; each module offers run(quick) -> list[Result].
SUITES = ("hbt_fast.bench.sampler", "hbt_fast.bench.loss", "hbt_fast.bench.evaluate")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="benchmark the C++ parts against their references",
        description="Run the sampler, loss and metrics benchmarks against their plain "
                    "references in this process and print one table of measured ratios.",
    )
    parser.add_argument("--quick", action="store_true", help="small workloads (under a minute)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.set_defaults(func=run)


def format_seconds(seconds) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def format_bytes(size) -> str:
    return "-" if size is None else f"{size / 2**20:.1f} MiB"


def render_table(results) -> str:
    header = ["suite", "workload", "reference", "hbt_fast", "speed-up", "ref peak", "peak", "note"]
    rows = [header, ["---"] * len(header)]
    for r in results:
        speedup = "-" if r.speedup is None else f"{r.speedup:.2f}x"
        note = r.note
        if "efficiency" in r.extra:  # time of the three plain products / fused time
            note = f"efficiency {r.extra['efficiency']:.2f} vs 3 torch.mm" + (f"; {note}" if note else "")
        rows.append([r.suite, r.workload, format_seconds(r.reference_s), format_seconds(r.fast_s),
                     speedup, format_bytes(r.reference_peak_bytes), format_bytes(r.fast_peak_bytes),
                     note])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def machine_description() -> str:
    import torch

    return (f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    results = []
    for suite in tqdm(SUITES, desc="hbt-fast bench", unit="suite", file=sys.stderr):
        results.extend(importlib.import_module(suite).run(quick=args.quick))
    print(f"Machine: {machine_description()}\n")
    print(render_table(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump([{**dataclasses.asdict(r), "speedup": r.speedup} for r in results], handle, indent=2)
    return 0
