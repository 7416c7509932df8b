"""What a run writes about itself: ``run_config.json`` and a model card (``README.md``) in every
saved model, in the shape sentence-transformers and the Hugging Face Hub read.

The card's YAML front matter is written by ``huggingface_hub.ModelCardData`` (the Hub's own
schema): ``library_name: sentence-transformers``, ``pipeline_tag: sentence-similarity``, tags,
``base_model`` (:func:`hub_base_model`), ``language`` (the training data's language labels that
are ISO 639 codes), ``datasets`` (``card_datasets``) and a ``model-index`` with the evaluation's
metrics (one result per section: task ``information-retrieval``, dataset = the evaluation task
and section, metrics with type and value).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

from hbt_fast.data.files import write_text_atomically
from hbt_fast.train.config import TrainConfig, path_locations

__all__ = ["card_languages", "hub_base_model", "model_card", "run_description", "write_model_card",
           "write_run_config"]

TASK_NAMES = {"xquad-r": "XQuAD-R", "mlqa-r": "MLQA-R"}
# An ISO 639-1/2/3 code, optionally with a region or script ("pt-BR", "zh_Hant"): the Hub takes the code.
LANGUAGE_CODE = re.compile(r"(?P<code>[a-z]{2,3})(?:[-_][A-Za-z0-9]{2,8})*")
# A folder of the Hugging Face cache: .../models--ORG--NAME/snapshots/REVISION
HUB_CACHE_FOLDER = re.compile(r"models--(?P<id>.+)")


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
    accumulation = getattr(c, "gradient_accumulation_steps", 1)
    name = c.hub_model_id.split("/")[-1] if getattr(c, "hub_model_id", None) else Path(c.output).name
    base_model = hub_base_model(c.model)
    lines = [
        "---", _front_matter(description, name, base_model, evaluation), "---",
        "", f"# {name}", "",
        f"Fine-tuned from {_model_origin(c.model, base_model)} with hbt_fast {description['hbt_fast_version']} "
        "(hybrid batch training).",
        "", "## Training", "", *_data_lines(description),
        f"- Sampler: mode `{c.mode}`, alpha {c.alpha}, language exponent {c.lang_exponent}, "
        f"global batch {c.batch_size} on {description['world_size']} process(es), seed {c.seed}",
        f"- Loss: InfoNCE (in-batch negatives), temperature {c.temperature}, "
        f"{'symmetric' if c.symmetric else 'query->passage'}; hard negatives: {negatives}",
        f"- Optimiser: AdamW, lr {c.lr}, weight decay {c.weight_decay}, warm-up {c.warmup}, "
        f"{steps_done} of {description['total_steps']} steps"
        + (f", each the mean gradient of {accumulation} batches" if accumulation > 1 else "")
        + (f", GradCache chunks of {c.chunk_size}" if c.chunk_size else "")
        + (", fp16" if getattr(c, "fp16", False) else ""),
        f"- Prompts: query {prompts[0]!r}, document {prompts[1]!r}",
    ]
    lines += _evaluation_lines(c.eval, evaluation)
    lines += ["", "## Usage", "", "```python", "from sentence_transformers import SentenceTransformer",
              "", f'model = SentenceTransformer("{getattr(c, "hub_model_id", None) or "PATH"}")',
              'queries = model.encode_query(["..."]); documents = model.encode_document(["..."])', "```", ""]
    return "\n".join(lines)


def _front_matter(description: dict, name: str, base_model: Optional[str], evaluation) -> str:
    from huggingface_hub import ModelCardData

    config = description["config"]
    tags = ["sentence-transformers", "sentence-similarity", "feature-extraction", "hbt-fast",
            "hybrid-batch-training", f"dataset_size:{description['pairs']}", "loss:InfoNCELoss"]
    results = _evaluation_results(evaluation) if evaluation is not None else []
    return ModelCardData(
        base_model=base_model, language=card_languages(description["languages"]) or None,
        datasets=list(config.get("card_datasets") or ()) or None, library_name="sentence-transformers",
        pipeline_tag="sentence-similarity", tags=tags, model_name=name if results else None,
        eval_results=results or None,
    ).to_yaml()


def _evaluation_results(evaluation) -> list:
    """The hub's model-index entries: one result per section (``multi``, ...), its metrics."""
    from huggingface_hub import EvalResult

    task = TASK_NAMES.get(evaluation.task, evaluation.task)
    results = []
    for metric, value in evaluation.metrics().items():
        section, _, kind = metric.partition("/")
        if math.isfinite(value):  # the hub's schema has no NaN
            results.append(EvalResult(
                task_type="information-retrieval", task_name="Information Retrieval",
                dataset_type=evaluation.task, dataset_name=f"{task} {section}", dataset_config=section,
                metric_type=kind, metric_value=value, metric_name=f"{section} {kind}"))
    return results


def card_languages(labels) -> list:
    """The ISO 639 codes among the training data's language labels, in order, each once (a
    label with a region or script, ``pt-BR``, gives its code); other labels are left out."""
    codes = []
    for label in labels:
        match = LANGUAGE_CODE.fullmatch(str(label))
        if match and match["code"] not in codes:
            codes.append(match["code"])
    return codes


def hub_base_model(model: str) -> Optional[str]:
    """The Hub model ``model`` (``--model`` as given) is fine-tuned from, for the card's
    ``base_model``; None when the Hub knows no such model.

    A name that is no local path is a Hub id and is kept as given. A local folder is never
    written as a path (the Hub could not resolve it, and it would expose the machine's layout):
    a folder of the Hugging Face cache (``models--ORG--NAME/snapshots/REV``) is ``ORG/NAME``;
    another folder gives the ``base_model`` its own model card records (a model trained by
    hbt-fast, say: its nearest ancestor on the Hub), else None."""
    path = Path(model)
    if not path.exists():
        return model
    resolved = path.resolve()
    if resolved.parent.name == "snapshots":
        cached = HUB_CACHE_FOLDER.fullmatch(resolved.parent.parent.name)
        if cached:
            return cached["id"].replace("--", "/")
    return _recorded_base_model(resolved / "README.md")


def _recorded_base_model(card: Path) -> Optional[str]:
    import yaml
    from huggingface_hub import metadata_load
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        recorded = (metadata_load(card) or {}).get("base_model") if card.is_file() else None
    except (OSError, ValueError, yaml.YAMLError):  # no card we can read: nothing recorded
        return None
    recorded = recorded[0] if isinstance(recorded, list) and len(recorded) == 1 else recorded
    if not isinstance(recorded, str):
        return None
    try:
        validate_repo_id(recorded)  # an older card's local path is not an id
    except HFValidationError:
        return None
    return recorded


def _model_origin(model: str, base_model: Optional[str]) -> str:
    if not Path(model).exists():
        return f"`{model}`"
    local = f"the local model `{Path(model).resolve().name}`"
    return local + (f" (from `{base_model}`)" if base_model else "")
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
