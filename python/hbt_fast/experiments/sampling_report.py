"""The experiment's report: the rule and its margins first, then the figures, then the verdicts.

The rule, fixed before any run (:class:`Rule`; the statistics are
:func:`hbt_fast.experiments.statistics.verdict`): every comparison is the difference between
two arms (or an arm and a weighted sum of arms) of the metric's mean over the held-out
questions, sign-adjusted so that positive means the first is better, with a 90% interval from a
paired hierarchical bootstrap over seeds x question groups (the same seeds and questions for
both arms; a question group is one question in every language). A claim is **reproduced** when
the interval's lower bound is above ``-margin``, **refuted** when its upper bound is below
``-margin``, else **inconclusive**; with fewer than 3 seeds it is "inconclusive (n too small)".

The study's Table 1 orderings (they hold for both of its models on both of its benchmarks) are
of two kinds:

- "A beats B" (a clear gap in the study): superiority, margin 0, so reproduced only when the
  whole interval is above 0;
- "A matches or beats B" (hybrid against the specialist of each setting): non-inferiority with
  the pre-registered margin, 0.005 mAP (5% of B's rank distance for rank distance).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Dict, List, Optional

from hbt_fast._checks import check_integer, is_real
from hbt_fast.experiments.evidence import Evidence
from hbt_fast.experiments.recipes import LABELS, TATOEBA_RECIPES
from hbt_fast.experiments.statistics import (DEFAULT_SEEDS, MARGINS, TOO_FEW_SEEDS, Verdict,
                                             margin_for, mean_std, verdict)

__all__ = ["CLAIMS", "STUDY", "Rule", "claims", "evaluation_steps", "flatten", "judge", "report",
           "summarise"]

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
BEATS, MATCHES = "beats", "matches or beats"
# (claim, section/metric, a, b, kind); rank distance: lower is better
CLAIMS = [
    ("X-X beats X-Y monolingually", f"mono/{MAP}", "xx", "xy", BEATS),
    ("X-Y beats X-X cross-lingually", f"cross/{MAP}", "xy", "xx", BEATS),
    ("X-Y beats X-X multilingually", f"multi/{MAP}", "xy", "xx", BEATS),
    ("hybrid matches or beats X-X monolingually", f"mono/{MAP}", "hybrid", "xx", MATCHES),
    ("hybrid matches or beats X-Y cross-lingually", f"cross/{MAP}", "hybrid", "xy", MATCHES),
    ("hybrid matches or beats X-X multilingually", f"multi/{MAP}", "hybrid", "xx", MATCHES),
    ("hybrid matches or beats X-Y multilingually", f"multi/{MAP}", "hybrid", "xy", MATCHES),
    ("hybrid has a lower rank distance than X-X", f"multi/{DISTANCE}", "hybrid", "xx", BEATS),
    ("hybrid has a lower rank distance than X-Y", f"multi/{DISTANCE}", "hybrid", "xy", BEATS),
]
ACCURACY = "accuracy"
# Tatoeba's columns of results.json (accuracy@1, both directions) and their per-query metrics
TATOEBA_SECTIONS = {"all": "mean/both", "seen": "seen/both", "unseen": "unseen/both",
                    "low-resource": "low-resource/both"}
LAREQA_METRICS = (f"mono/{MAP}", f"cross/{MAP}", f"multi/{MAP}", f"multi/{DISTANCE}")
# Differences shown with their intervals: (first, second terms) of each column.
DIFFERENCES = (("hybrid − X-X", {"hybrid": 1.0}, {"xx": 1.0}),
               ("hybrid − X-Y", {"hybrid": 1.0}, {"xy": 1.0}),
               ("X-Y − X-X", {"xy": 1.0}, {"xx": 1.0}),
               ("hybrid − mixed", {"hybrid": 1.0}, {"mixed": 1.0}),
               ("hybrid − midpoint of X-X and X-Y", {"hybrid": 1.0}, {"xx": 0.5, "xy": 0.5}))


def _checked(value, name: str, low: float, high: float, *, closed_low: bool = True) -> float:
    if not is_real(value) or math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not ((value >= low if closed_low else value > low) and value < high):
        bracket = "[" if closed_low else "("
        raise ValueError(f"{name} must be in {bracket}{low:g}, {high:g}), got {value}")
    return float(value)


@dataclass(frozen=True)
class Rule:
    """The pre-registered rule: margins (mAP and the other scores absolute, rank distance a
    fraction of the baseline's), the interval's coverage, the bootstrap's size and seed, and
    the fewest seeds a verdict needs."""

    margin: float = MARGINS["score"]["margin"]
    rank_margin: float = MARGINS["rank_distance"]["margin"]
    confidence: float = 0.90
    resamples: int = 2000
    min_seeds: int = 3
    seed: int = 0

    def __post_init__(self):
        _checked(self.margin, "margin", 0.0, math.inf)
        _checked(self.rank_margin, "rank_margin", 0.0, math.inf)
        _checked(self.confidence, "confidence", 0.0, 1.0, closed_low=False)
        for name, low in (("resamples", 100), ("min_seeds", 2), ("seed", 0)):
            object.__setattr__(self, name, check_integer(getattr(self, name), name, minimum=low))

    def arguments(self, metric: str, kind: str) -> dict:
        """:func:`verdict`'s keyword arguments for a claim of ``kind`` on ``metric``."""
        settings = margin_for(metric)
        if kind == BEATS:
            settings["margin"] = 0.0
        else:
            settings["margin"] = self.rank_margin if settings["relative"] else self.margin
        return dict(settings, confidence=self.confidence, resamples=self.resamples,
                    min_seeds=self.min_seeds, seed=self.seed)

    def text(self) -> List[str]:
        return [
            f"Every comparison is a difference of means over the held-out questions, sign-adjusted "
            f"so that positive means the first is better (rank distance: lower is better, and "
            f"expressed as a share of the second's), with a {self.confidence:.0%} interval from a "
            f"paired hierarchical bootstrap ({self.resamples} resamples of the seeds and of the "
            "question groups, the same draws for both sides; a question group is one question in "
            "every language).",
            f"A claim is **reproduced** when the interval's lower bound is above -margin, "
            f"**refuted** when its upper bound is below -margin, else **inconclusive**; with "
            f"fewer than {self.min_seeds} seeds it is \"{TOO_FEW_SEEDS}\" (the interval is still "
            f"shown). {DEFAULT_SEEDS} seeds are the default.",
            f"\"A beats B\" (a clear gap in the study) has margin 0: reproduced only when the whole "
            f"interval is above 0. \"A matches or beats B\" has margin {self.margin:g} mAP "
            f"(rank distance: {self.rank_margin:.0%} of B's).",
        ]


def flatten(row: dict) -> Dict[str, float]:
    """``{"xquad-r/multi/map@20": 0.6, "tatoeba/low-resource": 0.4, ...}`` (timings and the
    evaluations during training left out)."""
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
    """``{row: {metric: (mean, std)}}`` for each untrained evaluation and each arm: std over
    seeds (sample std; 0 for one seed)."""
    summary = {name: {k: (v, 0.0) for k, v in flatten(row).items()}
               for name, row in results["untrained"].items()}
    for arm, rows in results["runs"].items():
        flat = [flatten(row) for row in rows]
        summary[arm] = {key: mean_std([row[key] for row in flat]) for key in flat[0]}
    return summary


def judge(evidence: Evidence, benchmark: str, metric: str, first: Dict[str, float],
          second: Dict[str, float], rule: Rule, kind: str = MATCHES,
          step: Optional[int] = None) -> Optional[Verdict]:
    """The verdict on "``first`` ``kind`` ``second``" (weighted sums of arms), or None when the
    arms have a single seed (no bootstrap over seeds)."""
    treatment, baseline = evidence.pair(first, second, benchmark, metric, step)
    if treatment.values.shape[0] < 2:
        return None
    # Tatoeba's "section/both" is an accuracy: the margin of the scores
    margin_metric = ACCURACY if benchmark == "tatoeba" else metric
    return verdict(treatment.values, baseline.values, treatment.groups, weights=treatment.weights,
                   **rule.arguments(margin_metric, kind))


def _verdict_text(result: Optional[Verdict]) -> str:
    if result is None:
        return f"**{TOO_FEW_SEEDS}** (1 seed: no interval over seeds)"
    word, _, rest = result.text().partition(": ")
    return f"**{word}** {rest}"


def claims(evidence: Evidence, benchmark: str, arms: Dict[str, str], rule: Rule,
           step: Optional[int] = None) -> List[str]:
    """One line per study claim whose arms ``arms`` ({sampling: arm}) holds: its verdict."""
    lines = []
    for text, metric, a, b, kind in CLAIMS:
        if a not in arms or b not in arms:
            continue
        result = judge(evidence, benchmark, metric, {arms[a]: 1.0}, {arms[b]: 1.0}, rule, kind, step)
        lines.append(f"- {text} ({LABELS[a]} − {LABELS[b]}, {metric}): {_verdict_text(result)}")
    return lines


def _interval_cell(result: Optional[Verdict]) -> str:
    if result is None:
        return "1 seed: no interval"
    return result.text().partition(": ")[2].partition(" (")[0]


def _fmt(pair, digits=3) -> str:
    mean, std = pair
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std > 0 else "")


def _columns(summary: dict) -> list:
    """(header, metric, digits) of the main table, for the benchmarks the runs have."""
    have = set().union(*(figures.keys() for figures in summary.values()))
    columns = [("XQuAD-R mono", f"xquad-r/mono/{MAP}", 3), ("cross", f"xquad-r/cross/{MAP}", 3),
               ("multi", f"xquad-r/multi/{MAP}", 3), ("rank distance", f"xquad-r/multi/{DISTANCE}", 1)]
    columns += [(header, metric, 3) for header, metric in (
        ("MLQA-R mono", f"mlqa-r/mono/{MAP}"), ("cross", f"mlqa-r/cross/{MAP}"),
        ("multi", f"mlqa-r/multi/{MAP}"), ("Tatoeba (XQuAD-R langs)", "tatoeba/xquad-r"),
        ("Tatoeba (low-resource)", "tatoeba/low-resource"), ("Tatoeba seen", "tatoeba/seen"),
        ("Tatoeba unseen", "tatoeba/unseen"), ("Tatoeba all", "tatoeba/all"))
        if metric in have and (metric != "tatoeba/all" or "tatoeba/seen" in have)]
    return columns


def _study_cell(figures: dict, metric: str) -> str:
    benchmark, _, rest = metric.partition("/")
    order = [f"mono/{MAP}", f"cross/{MAP}", f"multi/{MAP}", f"multi/{DISTANCE}"]
    if benchmark not in figures or rest not in order[:len(figures[benchmark])]:
        return ""
    value = figures[benchmark][order.index(rest)]
    return f"{value:.1f}" if rest.endswith(DISTANCE) else f"{value:.3f}"


def _row_label(results: dict, name: str) -> str:
    if name in results["untrained"]:
        return "untrained" + (", sentence + context" if name.endswith("context") else "")
    return results["arms"][name]["label"]


def main_table(results: dict, summary: dict, study: bool = True) -> List[str]:
    columns = _columns(summary)
    rows = ["| model | run | " + " | ".join(c[0] for c in columns) + " |",
            "|---|---|" + "---|" * len(columns)]
    for name, figures in summary.items():
        rows.append(f"| ours | {_row_label(results, name)} | " + " | ".join(
            _fmt(figures[m], d) if m in figures else "" for _, m, d in columns) + " |")
    if study:
        for (model, sampling), figures in STUDY.items():
            rows.append(f"| study {model} | {sampling} | "
                        + " | ".join(_study_cell(figures, m) for _, m, _ in columns) + " |")
    return rows


def differences_table(evidence: Evidence, benchmark: str, arms: Dict[str, str], rule: Rule,
                      step: Optional[int] = None) -> List[str]:
    """Estimate and interval of each difference whose arms ``arms`` holds (no verdict)."""
    shown = [(header, first, second) for header, first, second in DIFFERENCES
             if all(key in arms for key in (*first, *second))]
    if not shown:
        return []

    def named(terms):
        return {arms[key]: weight for key, weight in terms.items()}

    rows = ["| metric | " + " | ".join(header for header, _, _ in shown) + " |",
            "|---|" + "---|" * len(shown)]
    for metric in LAREQA_METRICS:
        rows.append(f"| {metric} | " + " | ".join(_interval_cell(judge(
            evidence, benchmark, metric, named(first), named(second), rule, BEATS, step))
            for _, first, second in shown) + " |")
    return rows


def evaluation_steps(results: dict) -> List[int]:
    """The evaluation steps during training that every run has."""
    runs = [row for rows in results["runs"].values() for row in rows]
    if not runs or not all(row.get("evaluations") for row in runs):
        return []
    common = set.intersection(*({e["step"] for e in row["evaluations"]} for row in runs))
    return sorted(common)


def length_section(results: dict, evidence: Evidence, condition: dict, rule: Rule) -> List[str]:
    steps = evaluation_steps(results)
    if not steps:
        return []
    text = ["### XQuAD-R by training step (mean ± std over seeds, from each run's train_log.jsonl)",
            "", "| run | step | mono | cross | multi | rank distance |", "|---|---|---|---|---|---|"]
    for name in condition["arms"].values():
        for step in steps:
            rows = [next(e["eval"] for e in row["evaluations"] if e["step"] == step)
                    for row in results["runs"][name]]
            cells = [_fmt(mean_std([row[section][metric] for row in rows]), 1 if metric == DISTANCE else 3)
                     for section, metric in (s.split("/") for s in LAREQA_METRICS)]
            text.append(f"| {results['arms'][name]['label']} | {step} | " + " | ".join(cells) + " |")
    text += ["", "### Study orderings on XQuAD-R at each step", ""]
    for step in steps:
        text += [f"Step {step}:", "", *claims(evidence, "xquad-r", condition["arms"], rule, step), ""]
    return text


def _alpha_value(key: str) -> float:
    return float(key.split()[-1])


def alpha_section(evidence: Evidence, condition: dict, rule: Rule) -> List[str]:
    """Whether each metric is concave in alpha: each interior alpha against the straight line
    between its neighbours, and against the line between the smallest and largest alpha."""
    points = sorted(condition["arms"].items(), key=lambda item: _alpha_value(item[0]))
    if len(points) < 3:
        return []
    text = ["### Is each metric concave in alpha?", "",
            "Each interior alpha against the straight line through its neighbours (local) and "
            "through the smallest and largest alpha (chord); positive: above the line. Margin 0: "
            "\"above\" when the whole interval is above 0, \"below\" when below.", "",
            "| metric | alpha | local | chord |", "|---|---|---|---|"]
    alphas = [_alpha_value(key) for key, _ in points]
    arms = [arm for _, arm in points]
    for metric in LAREQA_METRICS:
        local_words = []
        for i in range(1, len(points) - 1):
            cells = []
            for low, high in ((i - 1, i + 1), (0, len(points) - 1)):
                share = (alphas[i] - alphas[low]) / (alphas[high] - alphas[low])
                line = {arms[low]: 1.0 - share, arms[high]: share}
                result = judge(evidence, "xquad-r", metric, {arms[i]: 1.0}, line, rule, BEATS)
                word = "n too small" if result is None or result.verdict == TOO_FEW_SEEDS else \
                    {"reproduced": "above", "refuted": "below"}.get(result.verdict, "inconclusive")
                cells.append(f"{word} {_interval_cell(result)}")
                if low == i - 1:
                    local_words.append(word)
            text.append(f"| {metric} | {alphas[i]:g} | {cells[0]} | {cells[1]} |")
        shape = ("concave" if all(w == "above" for w in local_words) else
                 "not concave" if "below" in local_words else "undetermined")
        text.append(f"| {metric} | shape | **{shape}** | |")
    return text


def effect_section(evidence: Evidence, benchmark: str, conditions: list, rule: Rule) -> List[str]:
    """The effect of the factor the conditions differ in, per sampling: second − first."""
    before, after = conditions
    samplings = [s for s in after["arms"] if s in before["arms"]]
    text = [f"### Effect on {BENCHMARK_NAMES[benchmark]}: {after['label']} − {before['label']}",
            "", "Margin 0: \"better\" when the whole interval is above 0, \"worse\" when below.", "",
            "| metric | " + " | ".join(LABELS[s] for s in samplings) + " |",
            "|---|" + "---|" * len(samplings)]
    for metric in LAREQA_METRICS:
        cells = []
        for sampling in samplings:
            result = judge(evidence, benchmark, metric, {after["arms"][sampling]: 1.0},
                           {before["arms"][sampling]: 1.0}, rule, BEATS)
            word = "" if result is None or result.verdict == TOO_FEW_SEEDS else \
                {"reproduced": "better ", "refuted": "worse "}.get(result.verdict, "")
            cells.append(word + _interval_cell(result))
        text.append(f"| {metric} | " + " | ".join(cells) + " |")
    return text


def versus_section(evidence: Evidence, benchmark: str, condition: dict, summary: dict,
                   rule: Rule) -> List[str]:
    """The condition's first arm (the treatment) against each other arm: estimate, interval and
    verdict of "first beats other" (margin 0) on each metric of ``benchmark``."""
    (_, treatment), *others = condition["arms"].items()
    if benchmark == "tatoeba":
        metrics = [metric for column, metric in TATOEBA_SECTIONS.items()
                   if f"tatoeba/{column}" in summary[treatment]]
    else:
        metrics = list(LAREQA_METRICS)
    if not others or not metrics:
        return []
    name = BENCHMARK_NAMES.get(benchmark, "Tatoeba (held-out lines, accuracy@1 both directions)")
    text = [f"### {name}: {_arm_label(condition, treatment)} against each other run", "",
            "Positive: the first is better; margin 0: \"better\" when the whole interval is "
            "above 0, \"worse\" when below.", "",
            "| metric | " + " | ".join(f"− {_arm_label(condition, arm)}" for _, arm in others)
            + " |", "|---|" + "---|" * len(others)]
    for metric in metrics:
        cells = []
        for _, other in others:
            result = judge(evidence, benchmark, metric, {treatment: 1.0}, {other: 1.0}, rule, BEATS)
            word = "" if result is None or result.verdict == TOO_FEW_SEEDS else \
                {"reproduced": "better ", "refuted": "worse "}.get(result.verdict, "")
            cells.append(word + _interval_cell(result))
        text.append(f"| {metric} | " + " | ".join(cells) + " |")
    return text


def _arm_label(condition: dict, arm: str) -> str:
    return condition.get("labels", {}).get(arm, arm)


def timing(results: dict, settings: dict) -> str:
    runs = [row for rows in results["runs"].values() for row in rows]
    evaluated = [*results["untrained"].values(), *runs]
    train = sum(row["train_seconds"] for row in runs) / len(runs)
    evaluation = sum(row["eval_seconds"] for row in evaluated) / len(evaluated)
    return (f"Run time: {settings['minutes']} min in all for this invocation (finished runs reused "
            f"from an earlier one are not counted); per run {train / 60:.1f} min training, "
            f"{evaluation / 60:.1f} min evaluation.")


def _pool_note(settings: dict) -> str:
    folds = settings.get("folds")
    if folds:
        return (f"XQuAD-R figures are cross-fitted over {folds} folds of the articles: every article "
                "held out once, each question answered by the model that did not train on it, "
                f"among its fold's candidates (1/{folds} of XQuAD-R's); rank distances are over "
                "those pools, so compare them with each other, not with the study's.")
    share = settings.get("eval_fraction")
    pool = f"about {share:.0%} of XQuAD-R's candidates" if share else "a share of XQuAD-R's candidates"
    return ("XQuAD-R figures are on the held-out articles: our rank distances are over that pool "
            f"only ({pool}), so compare them with each other, not with the study's.")


def report(results: dict, settings: dict, evidence: Evidence, rule: Rule = Rule(),
           recipe: str = "sampling") -> str:
    """The markdown report: the rule, the settings, the figures, then the verdicts."""
    summary = summarise(results)
    benchmarks = [b for b in ("xquad-r", "mlqa-r")
                  if any(f"{b}/multi/{MAP}" in figures for figures in summary.values())]
    conditions = results["conditions"]
    text = [f"## Experiment `{recipe}`", "", "### Rule (fixed before the runs)", "",
            *[f"- {line}" for line in rule.text()], "",
            f"Settings: {json.dumps(settings)}", "",
            "### Results (mAP@20 and rank distance on the held-out XQuAD-R articles; mean ± std "
            "over seeds)", "", *main_table(results, summary, study=recipe != "alpha"), "",
            _pool_note(settings) + " MLQA-R (when given) and Tatoeba (accuracy@1, both directions) "
            "are zero-shot.", ""]
    if recipe == "alpha":
        text += [*alpha_section(evidence, conditions[0], rule), ""]
    if recipe in TATOEBA_RECIPES:
        condition = dict(conditions[0], labels={name: settings["label"] for name, settings
                                                in results["arms"].items()})
        for benchmark in [*benchmarks, *(["tatoeba"] if any(
                key.startswith("tatoeba/") for figures in summary.values() for key in figures)
                else [])]:
            text += [*versus_section(evidence, benchmark, condition, summary, rule), ""]
    for benchmark in benchmarks:
        for condition in conditions:
            if recipe in ("alpha", *TATOEBA_RECIPES):
                break
            where = f" ({condition['label']})" if condition["label"] else ""
            found = claims(evidence, benchmark, condition["arms"], rule)
            if found:
                text += [f"### Study orderings on {BENCHMARK_NAMES[benchmark]}{where}", "", *found, ""]
            table = differences_table(evidence, benchmark, condition["arms"], rule)
            if table:
                text += [f"### Differences on {BENCHMARK_NAMES[benchmark]}{where} (estimate "
                         f"[{rule.confidence:.0%} interval])", "", *table, "",
                         "Positive: the first is better (rank distance: the second's minus the "
                         "first's, as a share of the second's).", ""]
        if len(conditions) == 2:
            text += [*effect_section(evidence, benchmark, conditions, rule), ""]
    if recipe == "length":
        text += [*length_section(results, evidence, conditions[0], rule), ""]
    text += [timing(results, settings), ""]
    return "\n".join(text)
