"""``hbt-fast eval``: evaluate a model on one task and write results.json, results.md and a
heatmap."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hbt_fast.cli import HIDE_PROGRESS, LanguageList, token_length
from hbt_fast.models.settings import PRESETS as PRESET_SETTINGS

PRESETS = tuple(PRESET_SETTINGS)

TASKS = ("xquad-r", "mlqa-r", "tatoeba", "miracl", "mewsli-x", "xm3600")
BASELINE = "hashed-ngrams"
LAREQA_TASKS = ("xquad-r", "mlqa-r")
#: Options that mean something for some tasks only: given with another task, they are refused
#: rather than ignored.
TASK_OPTIONS = {"candidate_text": LAREQA_TASKS, "trained_on": ("tatoeba",),
                "seen_languages": ("tatoeba",), "min_lines": ("tatoeba",), "split": ("mewsli-x",)}


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
        "eval", help="evaluate a retriever (XQuAD-R, MLQA-R, Tatoeba, MIRACL/BEIR, Mewsli-X, "
                     "XM3600)",
        description=__doc__,
    )
    parser.add_argument("--model", required=True,
                        help="Hugging Face name or directory (e.g. saved by 'hbt-fast train'); "
                             f"'{BASELINE}' for the model-free baseline")
    parser.add_argument("--task", required=True, choices=TASKS,
                        help=f"what to evaluate: {', '.join(TASKS)} (miracl: any BEIR layout; "
                             "mewsli-x: XTREME-R's entity retrieval; xm3600: Crossmodal-3600 "
                             "captions, text to text)")
    parser.add_argument("--data", default=None,
                        help="data folder of the task (default: $HBT_DATA_DIR/<task>)")
    parser.add_argument("--output", required=True,
                        help="folder for the report files (outside the data and model folders)")
    parser.add_argument("--languages", action=LanguageList, default=None,
                        help="comma-separated language codes (default: all found)")
    parser.add_argument("--k", type=_positive_int, default=20,
                        help="mAP cut-off (xquad-r, mlqa-r, mewsli-x, xm3600)")
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
                        default=None,
                        help="xquad-r, mlqa-r: what a candidate's text is: 'sentence' (default, "
                             "the sentence alone) or 'sentence_context' (the sentence followed "
                             "by its paragraph, as LAReQA and XTREME-R encode candidates); "
                             "recorded in results.json")
    parser.add_argument("--split", choices=("dev", "test"), default=None,
                        help="mewsli-x: the WikiNews mentions to evaluate (default: test)")
    seen = parser.add_mutually_exclusive_group()
    seen.add_argument("--trained-on", default=None, metavar="PATH",
                      help="tatoeba: the model's training run folder (its run_config.json "
                           "'languages'), token store or training file; its languages are "
                           "reported as seen, the others as unseen")
    seen.add_argument("--seen-languages", default=None, metavar="CODES",
                      help="tatoeba: comma-separated languages the model was trained on "
                           "(ISO 639-1 codes such as de are mapped to Tatoeba's deu)")
    parser.add_argument("--min-lines", type=_positive_int, default=None,
                        help="tatoeba: skip, with a warning, a language with fewer lines "
                             "(default 2)")
    parser.add_argument("--index", choices=("exact", "ivf", "hnsw"), default="exact",
                        help="search index for MIRACL/BEIR: exact, ivf, hnsw (approximate ones "
                             "report their recall against exact search)")
    parser.add_argument("--embedding-cache", default=None, metavar="DIR",
                        help="MIRACL/BEIR: read the corpus as a stream and keep its passage "
                             "embeddings in shards in DIR/<language>/ (memory: one shard plus the "
                             "queries; reused by later runs of the same model, resumed after an "
                             "interruption; outside the data and model folders)")
    parser.add_argument("--shard-size", type=_positive_int, default=None, metavar="N",
                        help="passages per shard of --embedding-cache (default 100000)")
    parser.add_argument("--embedding-dtype", choices=("float32", "float16"), default=None,
                        help="how --embedding-cache stores embeddings (default float32; float16 "
                             "halves the disk and scores the rounded embeddings)")
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


def _check_task_options(args) -> None:
    for name, tasks in TASK_OPTIONS.items():
        if getattr(args, name) is not None and args.task not in tasks:
            raise ValueError(f"--{name.replace('_', '-')} applies to --task "
                             f"{' / '.join(tasks)}, not {args.task}")


def _training_languages(path: str) -> list:
    """The languages a model was trained on, from its run folder's run_config.json, a token
    store's manifest, or the ``lang`` values of a training file (JSONL, Parquet, save_to_disk)."""
    from hbt_fast.data import read_pairs
    from hbt_fast.data.files import read_json
    from hbt_fast.data.token_store import TokenStore, is_token_store
    from hbt_fast.train.resume import RUN_CONFIG

    location = Path(path)
    if not location.exists():
        raise FileNotFoundError(f"--trained-on {path}: no such file or folder")
    run_config = location / RUN_CONFIG
    if run_config.is_file():
        description = read_json(run_config)
        languages = description.get("languages") if isinstance(description, dict) else None
        if not isinstance(languages, list) or not languages \
                or not all(isinstance(lang, str) for lang in languages):
            raise ValueError(f"--trained-on {path}: {run_config} has no 'languages' list")
        return languages
    saved_dataset = any((location / name).is_file()
                        for name in ("dataset_info.json", "dataset_dict.json"))
    if location.is_dir() and not saved_dataset:
        if is_token_store(location):
            return list(TokenStore(location).language_names)
        raise FileNotFoundError(f"--trained-on {path}: a folder without {RUN_CONFIG}; give the "
                                "training run's folder, a token store or a training file")
    return list(read_pairs(location).language_names)


def _seen_languages(args):
    if args.seen_languages is not None:
        return args.seen_languages.split(",")
    return None if args.trained_on is None else _training_languages(args.trained_on)


def _evaluate(args, encoder, seen_languages):
    from hbt_fast.evaluate import (evaluate_beir, evaluate_lareqa, evaluate_mewsli_x,
                                   evaluate_tatoeba, evaluate_xm3600)

    languages = args.languages
    progress = not args.no_progress
    if args.task in LAREQA_TASKS:
        return evaluate_lareqa(encoder, args.data, languages=languages, k=args.k,
                               candidate_text=args.candidate_text or "sentence", task=args.task,
                               progress=progress)
    if args.task == "tatoeba":
        result = evaluate_tatoeba(encoder, args.data, languages=languages, progress=progress,
                                  seen_languages=seen_languages,
                                  **({} if args.min_lines is None else {"min_lines": args.min_lines}))
        if args.trained_on is not None:
            result.settings["trained_on"] = args.trained_on
        return result
    if args.task == "mewsli-x":
        return evaluate_mewsli_x(encoder, args.data, languages=languages, k=args.k,
                                 split=args.split or "test", progress=progress)
    if args.task == "xm3600":
        return evaluate_xm3600(encoder, args.data, languages=languages, k=args.k,
                               progress=progress)
    return evaluate_beir(encoder, args.data, languages=languages, index=args.index,
                         progress=progress, embedding_cache=args.embedding_cache,
                         shard_rows=args.shard_size, embedding_dtype=args.embedding_dtype)


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
    if args.trained_on is not None:
        inputs["the --trained-on run"] = args.trained_on
    return inputs


def _check_output(args) -> None:
    from hbt_fast.data.files import refuse_overlap

    refuse_overlap(args.output, _inputs(args), name="--output")
    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise NotADirectoryError(f"--output {args.output} exists and is not a folder")
    _check_embedding_cache(args)


def _check_embedding_cache(args) -> None:
    from hbt_fast.data.files import refuse_overlap

    cache_flags = {"--embedding-cache": args.embedding_cache, "--shard-size": args.shard_size,
                   "--embedding-dtype": args.embedding_dtype}
    given = [flag for flag, value in cache_flags.items() if value is not None]
    if given and args.task != "miracl":
        raise ValueError(f"{given[0]} applies to --task miracl (the BEIR layout) only")
    if given and args.embedding_cache is None:
        raise ValueError(f"{given[0]} needs --embedding-cache DIR")
    if args.embedding_cache is not None:
        refuse_overlap(args.embedding_cache, _inputs(args), name="--embedding-cache")
        if Path(args.embedding_cache).exists() and not Path(args.embedding_cache).is_dir():
            raise NotADirectoryError(f"--embedding-cache {args.embedding_cache} exists and is not "
                                     "a folder")


def run(args) -> int:
    from hbt_fast.cli import FAILURE, USAGE, reported_as, warnings_reported
    from hbt_fast.data import resolve_data_dir
    from hbt_fast.evaluate import write_report

    # every input problem ends here, before or after the (long) encoding
    with warnings_reported("eval"), reported_as(USAGE, flags=("languages", "k")):
        _check_task_options(args)
        _check_output(args)
        seen_languages = _seen_languages(args)  # a bad run folder fails before the model loads
        encoder = _encoder(args)
        result = _evaluate(args, encoder, seen_languages)
        result.settings["model"] = args.model
        result.settings["data"] = str(resolve_data_dir(args.data, args.task, args.task))
    with reported_as(FAILURE, (OSError,), prefix="writing the report failed: "):
        paths = write_report(result, args.output)
    print(json.dumps(result.headline, indent=2))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
