"""``hbt-fast bench``: every hot part against its reference, in one process, one table."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import sys
from pathlib import Path

from hbt_fast import _openmp
from hbt_fast._outputs import refuse_overlap

# Suites in the order they run; each module offers run(quick) -> list[Result].
SUITES = {"sampler": "hbt_fast.bench.sampler", "loss": "hbt_fast.bench.loss",
          "evaluate": "hbt_fast.bench.evaluate", "scale": "hbt_fast.bench.scale"}
# Minutes to hours (it prepares and trains at 10^4 and 10^6 pairs): only when asked for.
OPT_IN_SUITES = ("scale",)
# /proc/cpuinfo flags worth naming: they decide which kernels BLAS and torch pick.
VECTOR_EXTENSIONS = (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("amx_tile", "AMX"))


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="benchmark the C++ parts against their references",
        description="Run the sampler, loss and metrics benchmarks against their plain "
                    "references in this process and print one table of measured ratios.",
    )
    parser.add_argument("--quick", action="store_true", help="small workloads (under a minute)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--suite", action="append", choices=sorted(SUITES),
                        help="run only this suite (repeatable; default: all but scale)")
    parser.set_defaults(func=run)


def format_seconds(seconds) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
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


def cpu_description(cpuinfo: str) -> str:
    """CPU model and vector extensions from /proc/cpuinfo text ("" where it says nothing)."""
    fields = dict(line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = set(fields.get("flags", "").split())
    extensions = [name for flag, name in VECTOR_EXTENSIONS if flag in flags]
    model = fields.get("model name") or platform.processor() or "unknown CPU"
    return f"{model} ({', '.join(extensions) or 'no AVX2'})" if flags else model


def machine_description() -> str:
    import torch

    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        cpuinfo = ""
    return (f"{cpu_description(cpuinfo)}, {platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads, "
            f"{torch.backends.cpu.get_cpu_capability()} kernels), "
            f"Python {platform.python_version()}; loss threads: "
            f"{_openmp.describe(*_openmp.runtimes())}")


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from hbt_fast.cli import FAILURE, USAGE, CommandError, reported_as

    json_path = Path(args.json) if args.json else None
    if json_path is not None:  # checked before the minutes of measuring
        with reported_as(USAGE):
            refuse_overlap(json_path, {}, name="--json")
        if not json_path.parent.is_dir():
            raise CommandError(f"--json {args.json}: folder {json_path.parent} does not exist")
        if json_path.is_dir():
            raise CommandError(f"--json {args.json} is a folder; give a file name")
    suites = [SUITES[name] for name in SUITES
              if name in (args.suite or [n for n in SUITES if n not in OPT_IN_SUITES])]
    results = []
    for suite in tqdm(suites, desc="hbt-fast bench", unit="suite", file=sys.stderr):
        results.extend(importlib.import_module(suite).run(quick=args.quick))
    print(f"Machine: {machine_description()}\n")
    print(render_table(results))
    if json_path is not None:
        from hbt_fast.data.files import write_text_atomically

        with reported_as(FAILURE, (OSError,), prefix="--json: "):
            write_text_atomically(json_path, json.dumps(
                [{**dataclasses.asdict(r), "speedup": r.speedup} for r in results], indent=2))
    return 0
