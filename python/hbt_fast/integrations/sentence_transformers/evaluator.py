"""``LAReQAEvaluator``: LAReQA mono / cross / multi mAP@k and rank distance inside a
sentence-transformers training run (``SentenceTransformerTrainer(evaluator=...)``).

Questions are encoded with ``model.encode_query`` and candidate sentences with
``model.encode_document``, so the model's ``"query"`` / ``"document"`` prompts apply when it has
them. The figures are those of :func:`hbt_fast.evaluate.evaluate_lareqa` (same reader, same
driver, same scorer); the primary metric is ``multi_map@k``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

try:
    from sentence_transformers.sentence_transformer.evaluation import SentenceEvaluator
except ImportError:  # sentence-transformers < 6 keeps it at the old path
    from sentence_transformers.evaluation import SentenceEvaluator

from hbt_fast._checks import check_flag, check_integer
from hbt_fast.data.lareqa import load_lareqa
from hbt_fast.evaluate import lareqa
from hbt_fast.evaluate.driver import run_task
from hbt_fast.evaluate.keys import map_at

__all__ = ["LAReQAEvaluator"]


class _SentenceTransformerEncoder:
    """The ``encode_queries`` / ``encode_passages`` pair the evaluation driver calls."""

    def __init__(self, model, batch_size: int):
        self.model, self.batch_size = model, batch_size

    def encode_queries(self, texts):
        return self.model.encode_query(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                       show_progress_bar=False)

    def encode_passages(self, texts):
        return self.model.encode_document(texts, batch_size=self.batch_size,
                                          convert_to_numpy=True, show_progress_bar=False)


class LAReQAEvaluator(SentenceEvaluator):
    """Evaluate on a LAReQA-layout folder (XQuAD-R, MLQA-R, or a held-out split of them).

    The folder is read when the evaluator is built, so bad data fails before training starts.
    Returned keys: ``{name}_{section}_{metric}`` for sections mono, cross, multi (e.g.
    ``xquad-r_multi_map@20``, ``xquad-r_multi_rank_distance``).
    """

    def __init__(self, data_dir=None, *, languages: Optional[Sequence[str]] = None,
                 task: str = "xquad-r", k: int = 20, candidate_text: str = "sentence",
                 batch_size: int = 32, name: Optional[str] = None,
                 show_progress_bar: bool = False, write_results: bool = True):
        super().__init__()
        batch_size = check_integer(batch_size, "batch_size")
        show_progress_bar = check_flag(show_progress_bar, "show_progress_bar")
        self.data = load_lareqa(data_dir, languages, task=task)
        self.jobs = lareqa.encode_jobs(self.data, candidate_text)
        self.k = check_integer(k, "k")
        self.task, self.candidate_text, self.batch_size = task, candidate_text, batch_size
        self.name = task if name is None else name
        self.show_progress_bar, self.write_results = show_progress_bar, write_results
        self.primary_metric = f"multi_{map_at(self.k)}"
        self.greater_is_better = True

    def __call__(self, model, output_path: Optional[str] = None, epoch: int = -1,
                 steps: int = -1) -> dict:
        result = run_task(lareqa.score_lareqa, _SentenceTransformerEncoder(model, self.batch_size),
                          self.data, self.jobs, progress=self.show_progress_bar,
                          description=f"LAReQA {self.name}", k=self.k)
        metrics = {name.replace("/", "_"): value for name, value in result.metrics().items()}
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        if output_path is not None and self.write_results:
            folder = Path(output_path)
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / f"lareqa_{self.name}_results.jsonl", "a", encoding="utf-8") as log:
                log.write(json.dumps({"epoch": epoch, "steps": steps, **metrics}) + "\n")
        return metrics

    @property
    def description(self) -> str:
        return f"LAReQA {self.task}"

    def get_config_dict(self) -> dict:
        return {"task": self.task, "languages": self.data.languages, "k": self.k,
                "candidate_text": self.candidate_text}
