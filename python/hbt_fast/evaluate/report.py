"""Readable output of an evaluation: results.json, a Markdown table, a heatmap PNG."""

from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["markdown_table", "save_heatmap", "write_report"]


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_table(results: dict) -> str:
    """A Markdown summary: headline figures, then per-language figures (and the matrix)."""
    title = f"# {results.get('task', 'evaluation')} results\n"
    if "mono" in results:  # LAReQA
        map_key = f"map@{results['k']}"
        summary = _table(
            ["setting", map_key, "recall", "rank distance", "setups"],
            [
                ["mono", results["mono"][map_key], results["mono"]["recall@1"], None,
                 results["mono"]["setups"]],
                ["cross", results["cross"][map_key], results["cross"]["recall@1"], None,
                 results["cross"]["setups"]],
                ["multi", results["multi"][map_key], results["multi"]["recall@10"],
                 results["multi"]["rank_distance"], results["multi"]["setups"]],
            ],
        )
        summary += "\n\nRecall is Recall@1 for mono/cross and Recall@10 for multi.\n"
        languages = results["languages"]
        matrix = _table(
            ["query \\ candidate"] + languages,
            [[lang] + row for lang, row in zip(languages, results["matrix"][map_key])],
        )
        return f"{title}\n{summary}\n## {map_key} by language pair\n\n{matrix}\n\n" + \
            _per_language(results)
    summary = _table(list(results["mean"]), [list(results["mean"].values())])
    return f"{title}\nMean over {len(results['languages'])} languages:\n\n{summary}\n\n" + \
        _per_language(results)


def _per_language(results: dict) -> str:
    per = results["per_language"]
    columns = list(next(iter(per.values())))
    rows = [[lang] + [values.get(c) for c in columns] for lang, values in per.items()]
    return "## Per language\n\n" + _table(["language"] + columns, rows) + "\n"


def save_heatmap(results: dict, path) -> Path:
    """Heatmap of the language x language mAP matrix (rows: query language)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    map_key = f"map@{results['k']}"
    languages = results["languages"]
    matrix = np.array(
        [[np.nan if v is None else v for v in row] for row in results["matrix"][map_key]]
    )
    size = 1.0 + 0.55 * len(languages)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    axes.set_xticks(range(len(languages)), languages)
    axes.set_yticks(range(len(languages)), languages)
    axes.set_xlabel("candidate language")
    axes.set_ylabel("query language")
    axes.set_title(f"{results.get('task', '')} {map_key}")
    for (row, col), value in np.ndenumerate(matrix):
        if not np.isnan(value):
            axes.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                      color="white" if value < 0.6 else "black")
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _jsonable(value):
    """Strict JSON: NaN (an empty setup) becomes null, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_report(results: dict, output_dir) -> dict:
    """Write ``results.json``, ``results.md`` and (LAReQA) ``heatmap.png``; return their paths."""
    if hasattr(results, "to_dict"):
        results = results.to_dict()
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    paths = {"json": output / "results.json", "markdown": output / "results.md"}
    with open(paths["json"], "w", encoding="utf-8") as handle:
        json.dump(_jsonable(results), handle, indent=2, ensure_ascii=False, allow_nan=False)
        handle.write("\n")
    paths["markdown"].write_text(markdown_table(results), encoding="utf-8")
    if "matrix" in results:
        paths["heatmap"] = save_heatmap(results, output / "heatmap.png")
    return paths
