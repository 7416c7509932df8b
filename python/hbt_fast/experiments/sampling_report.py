"""Summary, paired comparison, claim checks and the markdown report of the sampling experiment.

Claims are the study's Table 1 orderings, which hold for both of its models on both of its
benchmarks. Two kinds, judged on the per-seed paired differences (:mod:`.statistics`):

- "A beats B" (a clear gap in the study): reproduced when A is better in every seed;
- "A matches or beats B" (the study's gap is under 0.01): reproduced when the mean difference
  is no worse than ``-(std of the difference + 0.001)``, 0.001 being the study's rounding.
"""

from __future__ import annotations

import json
from typing import Dict, List

from hbt_fast.experiments.sampling import LABELS, SAMPLINGS
from hbt_fast.experiments.statistics import PairedDifference, mean_std

__all__ = ["STUDY", "claims", "flatten", "paired", "report", "summarise"]

MAP, DISTANCE = "map@20", "rank_distance"
# The study's Table 1 (mAP) and XQuAD-R rank distances.
STUDY = {
    ("XLM-R", "X-X"): {"xquad-r": (0.792, 0.674, 0.547, 410.2), "mlqa-r": (0.648, 0.584, 0.473)},
    ("XLM-R", "X-Y"): {"xquad-r": (0.755, 0.700, 0.593, 295.4), "mlqa-r": (0.626, 0.620, 0.508)},
    ("XLM-R", "hybrid"): {"xquad-r": (0.798, 0.705, 0.593, 286.6), "mlqa-r": (0.648, 0.623, 0.512)},
    ("LaBSE", "X-X"): {"xquad-r": (0.808, 0.752, 0.652, 261.5), "mlqa-r": (0.681, 0.656, 0.550)},
    ("LaBSE", "X-Y"): {"xquad-r": (0.801, 0.762, 0.679, 225.2), "mlqa-r": (0.671, 0.677, 0.576)},
    ("LaBSE", "hybrid"): {"xquad-r": (0.817, 0.767, 0.682, 221.1), "mlqa-r": (0.686, 0.681, 0.579)},
}
BENCHMARK_NAMES = {"xquad-r": "XQuAD-R", "mlqa-r": "MLQA-R"}
TIE_TOLERANCE = 0.001
# (claim, section/metric, a, b, "beats" | "matches"); rank distance: lower is better
CLAIMS = [
    ("X-X beats X-Y monolingually", f"mono/{MAP}", "xx", "xy", "beats"),
    ("X-Y beats X-X cross-lingually", f"cross/{MAP}", "xy", "xx", "beats"),
    ("X-Y beats X-X multilingually", f"multi/{MAP}", "xy", "xx", "beats"),
    ("hybrid matches or beats X-X monolingually", f"mono/{MAP}", "hybrid", "xx", "matches"),
    ("hybrid matches or beats X-Y cross-lingually", f"cross/{MAP}", "hybrid", "xy", "matches"),
    ("hybrid matches or beats X-X multilingually", f"multi/{MAP}", "hybrid", "xx", "matches"),
    ("hybrid matches or beats X-Y multilingually", f"multi/{MAP}", "hybrid", "xy", "matches"),
    ("hybrid has a lower rank distance than X-X", f"multi/{DISTANCE}", "hybrid", "xx", "beats"),
    ("hybrid has a lower rank distance than X-Y", f"multi/{DISTANCE}", "hybrid", "xy", "beats"),
]
PAIRS = (("hybrid", "xx"), ("hybrid", "xy"), ("xy", "xx"))


def flatten(row: dict) -> Dict[str, float]:
    """``{"xquad-r/multi/map@20": 0.6, "tatoeba/low-resource": 0.4, ...}`` (timings left out)."""
    flat = {}
    for benchmark, values in row.items():
        if not isinstance(values, dict):
            continue
        for name, value in values.items():
            if isinstance(value, dict):
                flat.update({f"{benchmark}/{name}/{k}": v for k, v in value.items()})
            else:
                flat[f"{benchmark}/{name}"] = value
    return flat


def summarise(results: dict) -> dict:
    """``{run: {metric: (mean, std)}}``: std over seeds (sample std; 0 for one seed)."""
    summary = {"untrained": {k: (v, 0.0) for k, v in flatten(results["untrained"]).items()}}
    for sampling in SAMPLINGS:
        rows = [flatten(row) for row in results["runs"][sampling]]
        summary[sampling] = {key: mean_std([row[key] for row in rows]) for key in rows[0]}
    return summary


def paired(results: dict, metric: str, a: str, b: str) -> PairedDifference:
    rows = {s: [flatten(row)[metric] for row in results["runs"][s]] for s in (a, b)}
    return PairedDifference.of(rows[a], rows[b], lower_is_better=metric.endswith(DISTANCE))


def _verdict(difference: PairedDifference, kind: str) -> bool:
    if kind == "beats":
        return difference["wins"] == difference["seeds"]
    sign = -1.0 if difference["lower_is_better"] else 1.0
    return sign * difference["mean"] >= -(difference["std"] + TIE_TOLERANCE)


def claims(results: dict, benchmark: str) -> List[str]:
    """One line per study claim on ``benchmark``: reproduced or not, with the paired difference."""
    lines = []
    for text, metric, a, b, kind in CLAIMS:
        name = f"{benchmark}/{metric}"
        if name not in flatten(results["untrained"]):
            continue
        difference = paired(results, name, a, b)
        held = _verdict(difference, kind)
        lines.append(f"- {text}: **{'reproduced' if held else 'not reproduced'}** "
                     f"({LABELS[a]} − {LABELS[b]}: {difference.text(1 if metric.endswith(DISTANCE) else 3)})")
    return lines


def _fmt(pair, digits=3) -> str:
    mean, std = pair
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std > 0 else "")


def _columns(summary: dict) -> list:
    """(header, metric, digits) of the main table, for the benchmarks the run has."""
    have = summary["untrained"]
    columns = [("XQuAD-R mono", f"xquad-r/mono/{MAP}", 3), ("cross", f"xquad-r/cross/{MAP}", 3),
               ("multi", f"xquad-r/multi/{MAP}", 3), ("rank distance", f"xquad-r/multi/{DISTANCE}", 1)]
    columns += [(header, metric, 3) for header, metric in (
        ("MLQA-R mono", f"mlqa-r/mono/{MAP}"), ("cross", f"mlqa-r/cross/{MAP}"),
        ("multi", f"mlqa-r/multi/{MAP}"), ("Tatoeba (XQuAD-R langs)", "tatoeba/xquad-r"),
        ("Tatoeba (low-resource)", "tatoeba/low-resource")) if metric in have]
    return columns


def _study_cell(figures: dict, metric: str) -> str:
    benchmark, _, rest = metric.partition("/")
    order = [f"mono/{MAP}", f"cross/{MAP}", f"multi/{MAP}", f"multi/{DISTANCE}"]
    if benchmark not in figures or rest not in order[:len(figures[benchmark])]:
        return ""
    value = figures[benchmark][order.index(rest)]
    return f"{value:.1f}" if rest.endswith(DISTANCE) else f"{value:.3f}"


def main_table(summary: dict) -> List[str]:
    columns = _columns(summary)
    rows = ["| model | sampling | " + " | ".join(c[0] for c in columns) + " |",
            "|---|---|" + "---|" * len(columns)]
    for run in ("untrained", *SAMPLINGS):
        rows.append(f"| ours | {LABELS[run]} | "
                    + " | ".join(_fmt(summary[run][m], d) for _, m, d in columns) + " |")
    for (model, sampling), figures in STUDY.items():
        rows.append(f"| study {model} | {sampling} | "
                    + " | ".join(_study_cell(figures, m) for _, m, _ in columns) + " |")
    return rows


def paired_table(results: dict, summary: dict) -> List[str]:
    columns = _columns(summary)
    rows = ["| metric | " + " | ".join(f"{LABELS[a]} − {LABELS[b]}" for a, b in PAIRS) + " |",
            "|---|" + "---|" * len(PAIRS)]
    for header, metric, digits in columns:
        rows.append(f"| {metric} | "
                    + " | ".join(paired(results, metric, a, b).text(digits) for a, b in PAIRS) + " |")
    return rows


def timing(results: dict, settings: dict) -> str:
    runs = [row for rows in results["runs"].values() for row in rows]
    train = sum(row["train_seconds"] for row in runs) / len(runs)
    evaluation = sum(row["eval_seconds"] for row in [results["untrained"], *runs]) / (len(runs) + 1)
    return (f"Run time: {settings['minutes']} min in all for this invocation (finished runs reused "
            f"from an earlier one are not counted); per run {train / 60:.1f} min training, "
            f"{evaluation / 60:.1f} min evaluation.")


def report(results: dict, settings: dict) -> str:
    summary = summarise(results)
    benchmarks = [b for b in ("xquad-r", "mlqa-r") if f"{b}/multi/{MAP}" in summary["untrained"]]
    text = [
        "## Sampling comparison (mAP@20; mean ± std over seeds)", "",
        f"Settings: {json.dumps(settings)}", "", *main_table(summary), "",
        "XQuAD-R figures are on the held-out articles: our rank distances are over that pool only "
        "(a quarter of XQuAD-R's candidates), so compare them with each other, not with the study's. "
        "MLQA-R (when given) and Tatoeba (accuracy@1, both directions) are zero-shot.", "",
        "### Paired differences (per seed; p: exact sign-flip test over seeds)", "",
        *paired_table(results, summary), "",
    ]
    for benchmark in benchmarks:
        text += [f"### Study claims on {BENCHMARK_NAMES[benchmark]} at this scale", "",
                 *claims(results, benchmark), ""]
    text += [timing(results, settings), ""]
    return "\n".join(text)
