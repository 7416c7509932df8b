"""``hbt-fast eval``: evaluate a model on one task and write results.json, results.md and a
heatmap."""

from __future__ import annotations

import argparse
import json

TASKS = ("xquad-r", "mlqa-r", "tatoeba", "miracl")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval", help="evaluate a retriever (XQuAD-R, MLQA-R, Tatoeba, MIRACL/BEIR)",
        description=__doc__,
    )
    parser.add_argument("--model", required=True,
                        help="Hugging Face name or directory (e.g. saved by 'hbt-fast train'); "
                             "'hashed-ngrams' for the model-free baseline")
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--data", default=None,
                        help="data folder of the task (default: $HBT_DATA_DIR/<task>)")
    parser.add_argument("--output", required=True, help="folder for the report files")
    parser.add_argument("--languages", default=None,
                        help="comma-separated language codes (default: all found)")
    parser.add_argument("--k", type=int, default=20, help="mAP cut-off for LAReQA tasks")
    parser.add_argument("--preset", choices=("xlmr", "labse"), default=None)
    parser.add_argument("--prefixes", action="store_true",
                        help="prepend 'Query: ' / 'Passage: ' as in the study")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-query-length", type=int, default=None)
    parser.add_argument("--max-passage-length", type=int, default=None)
    parser.add_argument("--candidate-text", choices=("sentence", "sentence_context"),
                        default="sentence")
    parser.add_argument("--index", choices=("exact", "ivf", "hnsw"), default="exact",
                        help="search index for MIRACL/BEIR (approximate ones report their "
                             "recall against exact search)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)
    return parser


def _encoder(args):
    if args.model == "hashed-ngrams":
        from hbt_fast.evaluate.baselines import HashedNgramEncoder

        return HashedNgramEncoder()
    from hbt_fast.models import TextEncoder

    overrides = {}
    if args.max_query_length is not None:
        overrides["max_query_length"] = args.max_query_length
    if args.max_passage_length is not None:
        overrides["max_passage_length"] = args.max_passage_length
    return TextEncoder.from_pretrained(
        args.model, preset=args.preset, prefixes=args.prefixes, batch_size=args.batch_size,
        show_progress=not args.no_progress, device=args.device, **overrides,
    )


def run(args) -> int:
    from hbt_fast.evaluate import evaluate_beir, evaluate_lareqa, evaluate_tatoeba, write_report

    languages = args.languages.split(",") if args.languages else None
    encoder = _encoder(args)
    if args.task in ("xquad-r", "mlqa-r"):
        results = evaluate_lareqa(encoder, args.data, languages=languages, k=args.k,
                                  candidate_text=args.candidate_text, task=args.task)
    elif args.task == "tatoeba":
        results = evaluate_tatoeba(encoder, args.data, languages=languages)
    else:
        results = evaluate_beir(encoder, args.data, languages=languages, index=args.index)
    results.settings["model"] = args.model
    paths = write_report(results, args.output)
    headline = {k: results[k] for k in ("mono", "cross", "multi", "mean") if k in results}
    print(json.dumps(headline, indent=2))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
