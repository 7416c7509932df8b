"""``hbt-fast train``: one flag per :class:`hbt_fast.train.TrainConfig` field (generated from
its metadata); ``--config`` reads a TOML file with the same keys (flags win over the file)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional


def add_parser(subparsers) -> None:
    from hbt_fast.train.config import add_config_arguments

    parser = subparsers.add_parser(
        "train", help="fine-tune an encoder with hybrid batches",
        description="Fine-tune a multilingual encoder with X-X / X-Y / hybrid batches.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", type=Path, help="TOML file with TrainConfig keys")
    add_config_arguments(parser)
    parser.set_defaults(func=run)


def read_toml(path: Path) -> dict:
    """The file's settings, each type-checked; errors name the file."""
    from hbt_fast.train.config import coerce_settings

    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    try:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"config file {path} is a folder") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: invalid TOML ({error})") from None
    try:
        return coerce_settings(values)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{path}: {error}") from None


class SettingNames:
    """How errors name a setting: by its flag, or, where the ``--config`` file set it, by the
    file's key (the user's words, not the Python field name); :meth:`located` then puts the
    file in front of the message."""

    def __init__(self, flags, config_file: Optional[Path], file_settings):
        self.flags, self.config_file, self.file_settings = set(flags), config_file, set(file_settings)
        self.from_file = False

    def __call__(self, name: str) -> str:
        from hbt_fast.train.config import flag_name

        if name in self.file_settings and name not in self.flags:
            self.from_file = True
            return name
        return flag_name(name)

    def located(self, error: Exception) -> Exception:
        if not self.from_file:
            return error
        return type(error)(f"{self.config_file}: {error}")


def config_from_args(args: argparse.Namespace):
    from hbt_fast.train import TrainConfig
    from hbt_fast.train.config import flag_name

    values = read_toml(args.config) if getattr(args, "config", None) else {}
    flags = {k: v for k, v in vars(args).items() if k not in ("config", "func", "command")}
    for given, other in (("steps", "epochs"), ("epochs", "steps")):
        if given in flags:  # a length on the command line replaces the file's length
            values.pop(other, None)
    names = SettingNames(flags, getattr(args, "config", None), values)
    values.update(flags)
    missing = [flag_name(name) for name in ("model", "train", "output") if name not in values]
    if missing:
        raise ValueError(f"missing required settings: {', '.join(missing)} (flags, or keys of "
                         "the --config file)")
    config = TrainConfig(**values)
    try:
        config.validate(names)
    except (TypeError, ValueError) as error:
        raise names.located(error) from None
    return config


def run(args: argparse.Namespace) -> int:
    from safetensors import SafetensorError

    from hbt_fast.cli import BAD_INPUT, FAILURE, USAGE, reported_as
    from hbt_fast.train import Trainer

    with reported_as(USAGE):  # every input problem stops here, before the first step
        config = config_from_args(args)
        trainer = Trainer(config)  # joins torchrun's process group, and leaves it at the end
    # A non-finite loss, a failed checkpoint (CheckpointError), a full disk, a folder gone
    with reported_as(FAILURE, (*BAD_INPUT, RuntimeError, SafetensorError)):
        result = trainer.train()
    for section in ("mono", "cross", "multi"):
        if result is not None and section in result:
            print(f"{section}: " + ", ".join(f"{k}={v:.4f}" for k, v in result[section].items()
                                             if isinstance(v, float)))
    return 0
