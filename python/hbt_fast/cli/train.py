"""``hbt-fast train``: flags mirror :class:`hbt_fast.train.TrainConfig`; ``--config`` reads a
TOML file with the same keys (flags given on the command line win over the file)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# (flag, type, help); the destination is the TrainConfig field of the same name.
OPTIONS = [
    ("--model", str, "Hugging Face name or local path (or a model saved by hbt-fast train)"),
    ("--train", str, "training pairs, JSONL with group/lang/query/passage"),
    ("--output", str, "run directory: checkpoints, logs, model/ and best/"),
    ("--preset", str, "xlmr (mean pooling) or labse (CLS + dense pooler); default from the name"),
    ("--mode", str, "xx, xy or hybrid (default hybrid)"),
    ("--alpha", float, "probability of an X-X batch in hybrid mode (default 0.5)"),
    ("--lang-exponent", float, "X-X language weight n_lang ** e (default 0: uniform)"),
    ("--batch-size", int, "global batch size over all ranks (default 100)"),
    ("--lr", float, "AdamW learning rate (default 3e-5)"),
    ("--weight-decay", float, "AdamW weight decay (default 0.01)"),
    ("--temperature", float, "InfoNCE temperature (default 0.05)"),
    ("--steps", int, "number of optimisation steps"),
    ("--epochs", float, "number of sampler epochs (instead of --steps)"),
    ("--warmup", float, "fraction of steps with linear warm-up (default 0.1)"),
    ("--max-grad-norm", float, "gradient clipping norm, 0 to disable (default 1.0)"),
    ("--chunk-size", int, "GradCache: embed at most this many rows per forward pass"),
    ("--max-query-length", int, "query tokens (default 64)"),
    ("--max-passage-length", int, "passage tokens (default 256)"),
    ("--seed", int, "seed of sampler and initialisation (default 0)"),
    ("--eval", str, "periodic evaluation, xquad-r:DIR or mlqa-r:DIR"),
    ("--eval-every", int, "evaluate every N steps (default: at the end only)"),
    ("--eval-metric", str, "metric that picks best/, e.g. multi/map@20 (default)"),
    ("--save-every", int, "checkpoint every N steps (default: at the end only)"),
    ("--keep-checkpoints", int, "how many step checkpoints to keep (default 2)"),
    ("--log-every", int, "write a log line every N steps (default 1)"),
]
SWITCHES = [
    ("--symmetric", "add the passage->query direction to the loss"),
    ("--prefixes", 'prepend "Query: " / "Passage: " as in the study'),
    ("--gradient-checkpointing", "recompute activations in the backward pass"),
    ("--resume", "continue from OUTPUT/checkpoints/latest"),
]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="fine-tune an encoder with hybrid batches",
        description="Fine-tune a multilingual encoder with X-X / X-Y / hybrid batches.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", type=Path, help="TOML file with TrainConfig keys")
    for flag, kind, text in OPTIONS:
        parser.add_argument(flag, type=kind, help=text)
    for flag, text in SWITCHES:
        parser.add_argument(flag, action="store_true", help=text)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction,
                        help="bf16 autocast (default: on for CUDA devices that support it)")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.set_defaults(func=run)


def read_toml(path: Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    try:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: invalid TOML ({error})") from None
    return {key.replace("-", "_"): value for key, value in values.items()}


def config_from_args(args: argparse.Namespace):
    import dataclasses

    from hbt_fast.train import TrainConfig

    values = read_toml(args.config) if getattr(args, "config", None) else {}
    flags = {k: v for k, v in vars(args).items() if k not in ("config", "func", "command")}
    for given, other in (("steps", "epochs"), ("epochs", "steps")):
        if given in flags:  # a length on the command line replaces the file's length
            values.pop(other, None)
    values.update(flags)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown training settings: {unknown}")
    missing = [name for name in ("model", "train", "output") if name not in values]
    if missing:
        raise ValueError(f"missing required settings: {missing} (flags or --config)")
    return TrainConfig(**values)


def run(args: argparse.Namespace) -> int:
    from hbt_fast.train import Trainer, init_distributed

    try:  # every input problem stops here, before the first step
        config = config_from_args(args)
        init_distributed()
        trainer = Trainer(config)
    except (ValueError, TypeError, OSError) as error:  # OSError: model or file not found
        print(f"hbt-fast train: error: {error}", file=sys.stderr)
        return 2
    result = trainer.train()
    for section in ("mono", "cross", "multi"):
        if result and section in result:
            print(f"{section}: " + ", ".join(f"{k}={v:.4f}" for k, v in result[section].items()
                                             if isinstance(v, float)))
    return 0
