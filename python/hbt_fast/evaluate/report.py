"""Output of an evaluation: results.json, a Markdown summary, a heatmap PNG, per_query.npz.

Everything is rendered from a :class:`~hbt_fast.evaluate.TaskResult` as it is: a table of the
headline sections, the language x language matrices when the task has them, one row per
language; the per-query AP and ranks go to a compressed ``per_query.npz``
(:mod:`hbt_fast.evaluate.per_query`). Each file is written under a temporary name and renamed
once complete.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Union

from hbt_fast.data.files import atomic_output
from hbt_fast.evaluate.result import TaskResult

__all__ = ["PER_QUERY_FILE", "markdown_table", "save_heatmap", "write_report"]

PER_QUERY_FILE = "per_query.npz"


def _as_result(results: Union[TaskResult, dict]) -> TaskResult:
    if isinstance(results, TaskResult):
        return results
    if not isinstance(results, dict) or "per_language" not in results:
        raise TypeError(f"results must be a TaskResult, got {type(results).__name__}")
    fixed = {"task", "languages", "per_language", "matrix"}
    headline = {k: v for k, v in results.items() if k not in fixed and isinstance(v, dict)}
    settings = {k: v for k, v in results.items() if k not in fixed and k not in headline}
    return TaskResult(task=results.get("task", "evaluation"), languages=results["languages"],
                      headline=headline, per_language=results["per_language"],
                      matrix=results.get("matrix"), settings=settings)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value).replace("|", "\\|")


def _table(header, rows) -> str:
    lines = ["| " + " | ".join(_fmt(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _union(dicts) -> list:
    return list(dict.fromkeys(key for d in dicts for key in d))


def _matrix_tables(result: TaskResult) -> list:
    """``(name, rows)`` of each language x language table in ``result.matrix``."""
    if result.matrix is None:
        return []
    return [(name, rows) for name, rows in result.matrix.items() if isinstance(rows, list)]


def _subject(result: TaskResult) -> str:
    parts = [f"{name}: `{result.settings[name]}`" for name in ("model", "data")
             if result.settings.get(name) is not None]
    return ("; ".join(parts) + "\n\n") if parts else ""


def markdown_table(results: Union[TaskResult, dict]) -> str:
    """A Markdown summary: headline sections, the matrices, then one row per language."""
    result = _as_result(results)
    sections = result.headline
    columns = _union(sections.values())
    text = f"# {result.task} results\n\n{_subject(result)}"
    text += _table(["section"] + columns,
                   [[name] + [values.get(c) for c in columns] for name, values in sections.items()])
    settings = {k: v for k, v in result.settings.items() if k not in ("model", "data")}
    if settings:
        text += "\n\nSettings: " + ", ".join(f"{k} = {v}" for k, v in settings.items())
    for name, rows in _matrix_tables(result):
        text += f"\n\n## {name} by language pair (rows: {result.matrix.get('rows', 'query')})\n\n"
        text += _table(["query \\ candidate"] + result.languages,
                       [[lang] + list(row) for lang, row in zip(result.languages, rows)])
    per = result.per_language
    per_columns = _union(per.values())
    text += "\n\n## Per language\n\n" + _table(
        ["language"] + per_columns, [[lang] + [v.get(c) for c in per_columns]
                                     for lang, v in per.items()])
    return text + "\n"


def save_heatmap(results: Union[TaskResult, dict], path) -> Path:
    """Heatmap of the first language x language matrix (rows: query language)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    result = _as_result(results)
    tables = _matrix_tables(result)
    if not tables:
        raise ValueError(f"task {result.task!r} has no language x language matrix to draw")
    name, rows = tables[0]
    languages = result.languages
    matrix = np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)
    size = 1.0 + 0.55 * len(languages)
    figure, axes = plt.subplots(figsize=(size + 1.5, size + 0.4))
    image = axes.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    axes.set_xticks(range(len(languages)), languages)
    axes.set_yticks(range(len(languages)), languages)
    axes.set_xlabel("candidate language")
    axes.set_ylabel("query language")
    subject = " | ".join(str(result.settings[k]) for k in ("model", "data")
                         if result.settings.get(k) is not None)
    axes.set_title(f"{result.task} {name}" + (f"\n{subject}" if subject else ""), fontsize=8)
    for (row, col), value in np.ndenumerate(matrix):
        if not np.isnan(value):
            axes.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                      color="white" if value < 0.6 else "black")
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    path = Path(path)
    with atomic_output(path, "wb") as handle:
        figure.savefig(handle, dpi=120, format="png")
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


def write_report(results: Union[TaskResult, dict], output_dir) -> dict:
    """Write ``results.json``, ``results.md``, (tasks with a matrix) ``heatmap.png`` and (results
    that carry them) the per-query values in ``per_query.npz``; return their paths."""
    result = _as_result(results)
    output = Path(output_dir)
    if output.exists() and not output.is_dir():
        raise NotADirectoryError(f"output {output} exists and is not a folder")
    output.mkdir(parents=True, exist_ok=True)
    paths = {"json": output / "results.json", "markdown": output / "results.md"}
    with atomic_output(paths["json"]) as handle:
        json.dump(_jsonable(result.to_dict()), handle, indent=2, ensure_ascii=False,
                  allow_nan=False)
        handle.write("\n")
    with atomic_output(paths["markdown"]) as handle:
        handle.write(markdown_table(result))
    if _matrix_tables(result):
        paths["heatmap"] = save_heatmap(result, output / "heatmap.png")
    if result.per_query is not None:
        paths["per_query"] = result.per_query.save(output / PER_QUERY_FILE)
    return paths
