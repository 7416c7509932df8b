"""What a run writes about itself: ``run_config.json`` and a model card (``README.md``) in every
saved model, in the shape sentence-transformers and the Hugging Face Hub read."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

from hbt_fast.data.files import write_text_atomically
from hbt_fast.train.config import TrainConfig, path_locations

__all__ = ["model_card", "run_description", "write_model_card", "write_run_config"]


def run_description(config: TrainConfig, *, world_size: int, total_steps: int, corpus,
                    hard_negatives: int, sources: Optional[list] = None) -> dict:
    """The settings of the run and what it derived from them (``run_config.json``): ``corpus``
    is the training data (``len``, ``digest``, ``language_names``), ``hard_negatives`` how many
    of its negatives the run uses, ``sources`` (several sources only) each source's name, kind,
    pairs, languages and batches per epoch by kind
    (:func:`hbt_fast.train.sources.describe_sources`)."""
    from hbt_fast._version import __version__

    described = {
        "config": dataclasses.asdict(config),
        "locations": path_locations(config),  # what a resume compares paths by
        "hbt_fast_version": __version__,
        "world_size": world_size,
        "total_steps": total_steps,
        "pairs": len(corpus),
        "data_digest": corpus.digest,
        "languages": list(corpus.language_names),
        "hard_negatives": hard_negatives,
    }
    if sources is not None:
        described["sources"] = sources
    return described


def write_run_config(description: dict, path: Path) -> None:
    write_text_atomically(path, json.dumps(description, indent=2) + "\n")


def model_card(description: dict, *, steps_done: int, prompts: tuple, evaluation=None) -> str:
    """The card of a model trained ``steps_done`` steps of the run ``description``
    (:func:`run_description`); ``prompts`` are its (query, document) prefixes."""
    c = SimpleNamespace(**description["config"])
    negatives = ("none" if not description["hard_negatives"]
                 else f"{description['hard_negatives']} from the data ('negatives'), group-masked")
    lines = [
        "---", "library_name: sentence-transformers", "pipeline_tag: sentence-similarity",
        f"base_model: {c.model}", "tags: [sentence-transformers, hbt-fast, hybrid-batch-training]", "---",
        "", f"# {Path(c.output).name}", "",
        f"Fine-tuned from `{c.model}` with hbt_fast {description['hbt_fast_version']} (hybrid batch training).",
        "", "## Training", "", *_data_lines(description),
        f"- Sampler: mode `{c.mode}`, alpha {c.alpha}, language exponent {c.lang_exponent}, "
        f"global batch {c.batch_size} on {description['world_size']} process(es), seed {c.seed}",
        f"- Loss: InfoNCE (in-batch negatives), temperature {c.temperature}, "
        f"{'symmetric' if c.symmetric else 'query->passage'}; hard negatives: {negatives}",
        f"- Optimiser: AdamW, lr {c.lr}, weight decay {c.weight_decay}, warm-up {c.warmup}, "
        f"{steps_done} of {description['total_steps']} steps"
        + (f", GradCache chunks of {c.chunk_size}" if c.chunk_size else ""),
        f"- Prompts: query {prompts[0]!r}, document {prompts[1]!r}",
    ]
    lines += _evaluation_lines(c.eval, evaluation)
    lines += ["", "## Usage", "", "```python", "from sentence_transformers import SentenceTransformer",
              "", 'model = SentenceTransformer("PATH")',
              'queries = model.encode_query(["..."]); documents = model.encode_document(["..."])', "```", ""]
    return "\n".join(lines)


def _data_lines(description: dict) -> list:
    """The training data: one source, or each of several with the batches it served."""
    train, languages = description["config"]["train"], description["languages"]
    total = f"{description['pairs']} pairs in {len(languages)} languages ({', '.join(languages)})"
    if "sources" not in description:
        paths = train if isinstance(train, str) else " ".join(p for source in train for p in (
            [source] if isinstance(source, str) else source))
        return [f"- Data: `{paths}`: {total}"]
    kinds = {"xx": "X-X", "xy": "X-Y", "mixed": "mixed"}
    lines = [f"- Data: {len(description['sources'])} sources, {total}; each batch from one source "
             f"(source weights: {description['config']['source_weights']})"]
    for source in description["sources"]:
        batches = ", ".join(f"{count} {kinds[kind]}" for kind, count in source["batches_per_epoch"].items())
        lines.append(f"  - {source['name']}: kind {source['kind']}, {source['pairs']} pairs in "
                     f"{len(source['languages'])} languages ({', '.join(source['languages'])}); "
                     f"{batches} batches per epoch")
    return lines


def _evaluation_lines(spec: Optional[str], evaluation) -> list:
    if evaluation is None:
        return ["", "## Evaluation", "", "Not evaluated" + (f" yet ({spec})." if spec else ".")]
    lines = ["", "## Evaluation", "", f"`{spec}`", "", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {value:.4f} |" for name, value in evaluation.metrics().items()]
    return lines


def write_model_card(directory: Path, description: dict, *, steps_done: int, prompts: tuple,
                     evaluation=None) -> None:
    card = model_card(description, steps_done=steps_done, prompts=prompts, evaluation=evaluation)
    write_text_atomically(Path(directory) / "README.md", card)
