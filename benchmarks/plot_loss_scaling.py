"""Time and peak memory of the fused loss and the reference against B (M = B, D = 768, fp32).

Run: ``python benchmarks/plot_loss_scaling.py --output docs/loss_scaling.png`` (about 10
minutes on 2 cores with the default sizes). Each size measures both in the same run; a
reference that would not fit in memory is left out and marked in the JSON next to the PNG.
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hbt_fast.bench.loss import bench_info_nce  # noqa: E402

SIZES = (1024, 2048, 4096, 8192, 16384, 32768, 65536)


def measure(sizes):
    rows = []
    for size in sizes:
        result = bench_info_nce(size, repeat=3 if size <= 8192 else 1, measure_products=False)
        rows.append({"B": size, "fused_s": result.fast_s, "reference_s": result.reference_s,
                     "fused_peak_bytes": result.fast_peak_bytes,
                     "reference_peak_bytes": result.reference_peak_bytes, "note": result.note})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def plot(rows, output: Path) -> None:
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label in (("fused", "hbt_fast fused"), ("reference", "F.cross_entropy(q @ p.T)")):
        timed = [(r["B"], r[f"{key}_s"]) for r in rows if r[f"{key}_s"]]
        time_axis.plot(*zip(*timed), marker="o", label=label)
        # Peak-RSS growth reads 0 where the allocator reused freed memory; those are left out.
        grown = [(r["B"], r[f"{key}_peak_bytes"] / 2**20) for r in rows if r[f"{key}_peak_bytes"]]
        if grown:
            memory_axis.plot(*zip(*grown), marker="o", label=label)
    for axis, title, unit in ((time_axis, "forward + backward time", "seconds"),
                              (memory_axis, "peak extra memory", "MiB")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("batch size B (= M), D = 768")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(output, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("docs/loss_scaling.png"))
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--replot", action="store_true", help="plot the JSON of an earlier run")
    args = parser.parse_args()
    measurements = args.output.with_suffix(".json")
    if args.replot:
        rows = json.loads(measurements.read_text(encoding="utf-8"))
    else:
        rows = measure(args.sizes)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        measurements.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    plot(rows, args.output)


if __name__ == "__main__":
    main()
