"""``hbt-fast eval``: evaluate a model on one task and write results.json, results.md and a
heatmap."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hbt_fast.cli import HIDE_PROGRESS, LanguageList, token_length
from hbt_fast.models.settings import PRESETS as PRESET_SETTINGS

PRESETS = tuple(PRESET_SETTINGS)

TASKS = ("xquad-r", "mlqa-r", "tatoeba", "miracl")
BASELINE = "hashed-ngrams"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval", help="evaluate a retriever (XQuAD-R, MLQA-R, Tatoeba, MIRACL/BEIR)",
        description=__doc__,
    )
    parser.add_argument("--model", required=True,
                        help="Hugging Face name or directory (e.g. saved by 'hbt-fast train'); "
                             f"'{BASELINE}' for the model-free baseline")
    parser.add_argument("--task", required=True, choices=TASKS,
                        help=f"what to evaluate: {', '.join(TASKS)} (miracl: any BEIR layout)")
    parser.add_argument("--data", default=None,
                        help="data folder of the task (default: $HBT_DATA_DIR/<task>)")
    parser.add_argument("--output", required=True,
                        help="folder for the report files (outside the data and model folders)")
    parser.add_argument("--languages", action=LanguageList, default=None,
                        help="comma-separated language codes (default: all found)")
    parser.add_argument("--k", type=_positive_int, default=20, help="mAP cut-off for LAReQA tasks")
    parser.add_argument("--preset", choices=PRESETS, default=None,
                        help=f"encoder preset: {', '.join(PRESETS)} (default: from the model)")
    parser.add_argument("--prefixes", action="store_true",
                        help="prepend 'Query: ' / 'Passage: ' as in the study")
    parser.add_argument("--query-prefix", default=None, help="text put before every query")
    parser.add_argument("--passage-prefix", default=None, help="text put before every passage")
    parser.add_argument("--batch-size", type=_positive_int, default=64)
    parser.add_argument("--max-query-length", type=token_length, default=None,
                        help="query tokens (default: the model's maximum length)")
    parser.add_argument("--max-passage-length", type=token_length, default=None,
                        help="passage tokens (default: the model's maximum length)")
    parser.add_argument("--candidate-text", choices=("sentence", "sentence_context"),
                        default="sentence", help="LAReQA candidates: sentence, sentence_context")
    parser.add_argument("--index", choices=("exact", "ivf", "hnsw"), default="exact",
                        help="search index for MIRACL/BEIR: exact, ivf, hnsw (approximate ones "
                             "report their recall against exact search)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-progress", action="store_true", help=HIDE_PROGRESS)
    parser.set_defaults(func=run)
    return parser


def _encoder(args):
    if args.model == BASELINE:
        from hbt_fast.evaluate.baselines import HashedNgramEncoder

        return HashedNgramEncoder()
    model = Path(args.model)
    if not model.exists() and (args.model.startswith((".", "~", "/")) or args.model.count("/") > 1):
        raise FileNotFoundError(f"--model {args.model}: no such folder")
    import torch

    from hbt_fast.models import TextEncoder

    if args.device is not None:
        try:
            torch.empty(0, device=args.device)
        except (RuntimeError, AssertionError) as error:  # unknown name, or not available here
            raise ValueError(f"--device {args.device}: {str(error).strip().splitlines()[0]}") \
                from None
    overrides = {name: getattr(args, name) for name in
                 ("max_query_length", "max_passage_length", "query_prefix", "passage_prefix")
                 if getattr(args, name) is not None}
    try:
        return TextEncoder.from_pretrained(
            args.model, preset=args.preset, prefixes=args.prefixes, batch_size=args.batch_size,
            show_progress=False, device=args.device, **overrides)
    except (OSError, ValueError) as error:  # transformers: unreadable folder, unknown model,
        # not on the hub or offline
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise OSError(f"--model {args.model}: cannot load a model ({first})") from None


def _evaluate(args, encoder):
    from hbt_fast.evaluate import evaluate_beir, evaluate_lareqa, evaluate_tatoeba

    languages = args.languages
    progress = not args.no_progress
    if args.task in ("xquad-r", "mlqa-r"):
        return evaluate_lareqa(encoder, args.data, languages=languages, k=args.k,
                               candidate_text=args.candidate_text, task=args.task,
                               progress=progress)
    if args.task == "tatoeba":
        return evaluate_tatoeba(encoder, args.data, languages=languages, progress=progress)
    return evaluate_beir(encoder, args.data, languages=languages, index=args.index,
                         progress=progress)


def _inputs(args) -> dict:
    """What the evaluation reads: the data folder (the whole $HBT_DATA_DIR when found there)
    and a local model folder."""
    import os

    from hbt_fast.data import DATA_ENV

    if args.data:
        inputs = {"the --data folder": args.data}
    else:
        inputs = {f"the data folder found through ${DATA_ENV}": os.environ.get(DATA_ENV) or None}
    if args.model != BASELINE and Path(args.model).exists():
        inputs["the --model folder"] = args.model
    return inputs


def _check_output(args) -> None:
    from hbt_fast.data.files import refuse_overlap

    refuse_overlap(args.output, _inputs(args), name="--output")
    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise NotADirectoryError(f"--output {args.output} exists and is not a folder")


def run(args) -> int:
    from hbt_fast.cli import FAILURE, USAGE, reported_as
    from hbt_fast.data import resolve_data_dir
    from hbt_fast.evaluate import write_report

    # every input problem ends here, before or after the (long) encoding
    with reported_as(USAGE, flags=("languages", "k")):
        _check_output(args)
        encoder = _encoder(args)
        result = _evaluate(args, encoder)
        result.settings["model"] = args.model
        result.settings["data"] = str(resolve_data_dir(args.data, args.task, args.task))
    with reported_as(FAILURE, (OSError,), prefix="writing the report failed: "):
        paths = write_report(result, args.output)
    print(json.dumps(result.headline, indent=2))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
