"""TrainConfig and ``hbt-fast train``'s flags: generated from the fields, type-checked, finite,
and every misuse ends in one line on stderr with exit code 2, before any model is loaded."""

import dataclasses
import math
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hbt_fast.cli import build_parser, main
from hbt_fast.cli.train import config_from_args
from hbt_fast.train import TrainConfig

REQUIRED = ["--model", "m", "--train", "t.jsonl", "--output", "out"]


def parse(*flags):
    return config_from_args(build_parser().parse_args(["train", *REQUIRED, *flags]))


def train_parser():
    parser = build_parser()
    return next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith("train"))


def test_every_setting_has_exactly_one_flag_named_after_it():
    destinations = {a.dest for a in train_parser()._actions} - {"help", "config"}
    assert destinations == {f.name for f in dataclasses.fields(TrainConfig)}


def test_help_shows_defaults_written_once_in_the_dataclass():
    text = train_parser().format_help()
    assert "global batch size over all ranks (default 100)" in text
    assert "--bf16, --no-bf16" in text and "--no-progress" in text


def test_defaults_come_from_the_dataclass():
    config = parse("--steps", "3")
    assert config == TrainConfig(model="m", train="t.jsonl", output="out", steps=3)


def test_toml_config_with_flags_overriding_it(tmp_path):
    config_file = tmp_path / "run.toml"
    config_file.write_text('model = "m"\ntrain = "t.jsonl"\noutput = "out"\nsteps = 1000\nlr = 1e-4\n'
                           'batch-size = 64\noverride = ["lr"]\n', encoding="utf-8")
    args = build_parser().parse_args(["train", "--config", str(config_file), "--epochs", "2", "--lr", "3e-5"])
    config = config_from_args(args)
    assert (config.steps, config.epochs, config.lr, config.batch_size, config.override) == (
        None, 2.0, 3e-5, 64, ("lr",))


@pytest.mark.parametrize("flag, value", [
    ("--weight-decay", "nan"), ("--temperature", "inf"), ("--epochs", "inf"), ("--lr", "nan"),
    ("--alpha", "nan"), ("--lang-exponent", "inf"), ("--warmup", "-inf"), ("--max-grad-norm", "nan"),
])
def test_non_finite_hyper_parameters_are_refused_before_the_model_loads(tmp_path, capsys, flag, value):
    lengths = [] if flag == "--epochs" else ["--steps", "2"]
    code = main(["train", "--model", str(tmp_path / "no-such-model"), "--train", str(tmp_path / "none.jsonl"),
                 "--output", str(tmp_path / "run"), *lengths, f"{flag}={value}"])
    error = capsys.readouterr().err
    assert code == 2
    assert error.count("\n") == 1 and error.startswith("hbt-fast train: error: ")
    assert f"{flag} must be a finite number" in error
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("line, message", [
    ("batch_size = true", "batch_size must be int, got True (bool)"),
    ("lr = \"3e-5\"", "lr must be float"),
    ("symmetric = 1", "symmetric must be bool"),
    ("mode = 3", "mode must be str"),
    ("unknown_key = 1", "unknown training setting 'unknown_key'"),
])
def test_toml_values_are_type_checked(tmp_path, capsys, line, message):
    config_file = tmp_path / "run.toml"
    config_file.write_text(f'model = "m"\ntrain = "t"\noutput = "o"\nsteps = 1\n{line}\n', encoding="utf-8")
    assert main(["train", "--config", str(config_file)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{config_file}: {message}" in error


def test_invalid_toml_names_the_file(tmp_path, capsys):
    config_file = tmp_path / "run.toml"
    config_file.write_text("steps = = 1\n", encoding="utf-8")
    assert main(["train", "--config", str(config_file)]) == 2
    assert f"{config_file}: invalid TOML" in capsys.readouterr().err


def test_output_that_is_a_file_is_refused(tmp_path, capsys):
    output = tmp_path / "taken"
    output.write_text("mine", encoding="utf-8")
    code = main(["train", "--model", str(tmp_path / "no-model"), "--train", "x", "--output", str(output),
                 "--steps", "1"])
    assert code == 2
    assert f"output {output} is a file, not a folder" in capsys.readouterr().err
    assert output.read_text(encoding="utf-8") == "mine"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_output_is_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code = main(["train", "--model", "m", "--train", "x", "--output", str(locked / "run"), "--steps", "1"])
    assert code == 2
    assert "is not writable" in capsys.readouterr().err


def test_unwritable_output_is_refused_as_root_too(tmp_path, capsys):
    """/proc is read-only for everyone, root included."""
    code = main(["train", "--model", "m", "--train", "x", "--output", "/proc/hbt-run", "--steps", "1"])
    assert code == 2
    assert "output /proc/hbt-run is not writable" in capsys.readouterr().err


def test_cli_reports_a_missing_model(tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"group": 1, "lang": "en", "query": "q", "passage": "p"}\n', encoding="utf-8")
    code = main(["train", "--model", str(tmp_path / "no-such-model"), "--train", str(pairs),
                 "--output", str(tmp_path / "run"), "--steps", "1", "--mode", "xx", "--batch-size", "1"])
    assert code == 2
    assert "no-such-model" in capsys.readouterr().err


def test_cli_reports_malformed_training_file(tiny_model_dir, tmp_path, capsys):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"group": 1, "lang": "en", "query": "q", "passage": "p"}\n{oops\n', encoding="utf-8")
    code = main(["train", "--model", str(tiny_model_dir), "--train", str(bad), "--output",
                 str(tmp_path / "run"), "--steps", "1", "--no-progress"])
    assert code == 2
    assert f"{bad}:2: not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_prefix_flags_and_the_study_shorthand_exclude_each_other():
    assert parse("--steps", "1", "--query-prefix", "query: ").query_prefix == "query: "
    with pytest.raises(ValueError, match="exclude each other"):
        parse("--steps", "1", "--prefixes", "--query-prefix", "query: ")


def test_override_names_must_be_settings():
    assert parse("--steps", "1", "--override", "lr,max-query-length").override == ("lr", "max_query_length")
    with pytest.raises(ValueError, match=r"override names unknown settings: \['learning_rate'\]"):
        parse("--steps", "1", "--override", "learning_rate")


NUMBER_FLAGS = {f.name: f for f in dataclasses.fields(TrainConfig)
                if f.type in ("int", "float", "Optional[int]", "Optional[float]")}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(NUMBER_FLAGS)),
       text=st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                      st.integers(-10**20, 10**20).map(str), st.text(max_size=8)))
def test_any_number_flag_gives_a_valid_config_or_one_clear_error(name, text):
    flag = "--" + name.replace("_", "-")
    lengths = [] if name in ("steps", "epochs") else ["--steps", "5"]
    try:
        args = build_parser().parse_args(["train", *REQUIRED, *lengths, f"{flag}={text}"])
    except SystemExit as stop:  # argparse: not a number of the flag's type
        assert stop.code == 2
        return
    try:
        config = config_from_args(args)
    except (ValueError, TypeError) as error:
        assert flag in str(error) or "--steps and --epochs" in str(error)
        return
    value = getattr(config, name)
    assert not isinstance(value, float) or math.isfinite(value)
    assert value == type(value)(text) if value is not None else True


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from([f.name for f in dataclasses.fields(TrainConfig)]),
                       st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(),
                                 st.text(max_size=6), st.lists(st.text(max_size=3), max_size=2)),
                       max_size=4))
def test_any_python_values_give_a_valid_config_or_one_clear_error(values):
    values = {"model": "m", "train": "t", "output": "o", "steps": 3, **values}
    try:
        config = TrainConfig(**values)
        config.validate()
    except (ValueError, TypeError) as error:
        assert any(name in str(error) for name in values) or "steps and epochs" in str(error)
        return
    for field in dataclasses.fields(TrainConfig):
        value = getattr(config, field.name)
        assert not isinstance(value, float) or math.isfinite(value)


def run_cli(capsys, *flags):
    """``hbt-fast train`` with a model that does not exist: a setting refused up front says so
    before anything is loaded; returns (exit code, stderr)."""
    code = main(["train", *flags])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("flag, value, message", [
    ("--epochs", "1e308", r"epochs must be in \(0, 9223372036854775807\] \(the run's step count is a 64-bit"),
    ("--lr", "1e39", r"lr must be in \(0, 1\] \(AdamW moves each weight by about lr per step"),
    ("--lr", "1.5", r"lr must be in \(0, 1\]"),
    ("--temperature", "1e-45", r"temperature must be >= 0.0001 \(.*1 / temperature must stay finite in float16"),
    ("--temperature", "5e-5", r"temperature must be >= 0.0001"),
    ("--hard-negatives", str(2**63), r"--hard-negatives must be at most 9223372036854775807 \(a signed 64-bit integer\)"),
    ("--seed", str(2**64), r"seed must be at most 9223372036854775807"),
    ("--steps", str(2**63), r"steps must be at most 9223372036854775807"),
    ("--chunk-size", str(2**63), r"--chunk-size must be at most 9223372036854775807"),
    ("--max-passage-length", str(2**64), r"--max-passage-length must be at most 9223372036854775807"),
])
def test_settings_that_would_crash_later_are_refused_up_front_with_their_bounds(tmp_path, capsys, flag, value,
                                                                                message):
    lengths = [] if flag in ("--epochs", "--steps") else ["--steps", "2"]
    code, error = run_cli(capsys, "--model", str(tmp_path / "no-such-model"), "--train", str(tmp_path / "none.jsonl"),
                          "--output", str(tmp_path / "run"), *lengths, f"{flag}={value}")
    assert code == 2
    assert error.count("\n") == 1 and error.startswith("hbt-fast train: error: ")
    assert re.search(message, error), error
    assert not (tmp_path / "run").exists()


def test_help_shows_each_bound():
    text = " ".join(train_parser().format_help().split())
    assert "InfoNCE temperature (default 0.05); >= 0.0001" in text
    assert "AdamW learning rate (default 3e-05); in (0, 1]" in text


def test_toml_keys_naming_one_setting_twice_are_refused(tmp_path, capsys):
    config_file = tmp_path / "run.toml"
    config_file.write_text('model = "m"\ntrain = "t"\noutput = "o"\nsteps = 1\nbatch-size = 8\nbatch_size = 16\n',
                           encoding="utf-8")
    code, error = run_cli(capsys, "--config", str(config_file))
    assert code == 2 and error.count("\n") == 1
    assert f"{config_file}: 'batch-size' and 'batch_size' both set batch_size; keep one" in error


@pytest.mark.parametrize("name, reason", [
    ("model", "a resumed run continues"), ("preset", "a resumed run continues"),
    ("prefixes", "a resumed run continues"),
    ("mode", "the sampler's saved position"), ("alpha", "the sampler's saved position"),
    ("batch-size", "the sampler's saved position"), ("seed", "the sampler's saved position"),
    ("lang-exponent", "the sampler's saved position"),
])
def test_override_of_a_setting_resume_cannot_change_is_refused_up_front(tmp_path, capsys, name, reason):
    code, error = run_cli(capsys, "--model", str(tmp_path / "no-such-model"), "--train", "t.jsonl", "--output",
                          str(tmp_path / "run"), "--steps", "1", "--resume", "--override", f"lr,{name}")
    assert code == 2 and error.count("\n") == 1
    assert f"--override: --{name} cannot change when resuming ({reason}" in error
    assert not (tmp_path / "run").exists()


def test_alpha_is_refused_with_a_mode_that_ignores_it(tmp_path, capsys):
    assert parse("--steps", "1", "--mode", "xx").alpha == 0.5  # not given: nothing to ignore
    assert parse("--steps", "1", "--alpha", "0.3").alpha == 0.3
    with pytest.raises(ValueError, match=r"--alpha applies to --mode 'hybrid' only; --mode 'xx'"):
        parse("--steps", "1", "--mode", "xx", "--alpha", "0.5")
    config_file = tmp_path / "run.toml"
    config_file.write_text('model = "m"\ntrain = "t"\noutput = "o"\nsteps = 1\nmode = "xy"\nalpha = 0.9\n',
                           encoding="utf-8")
    code, error = run_cli(capsys, "--config", str(config_file))
    assert code == 2 and f"{config_file}: alpha applies to mode 'hybrid' only; mode 'xy'" in error
    with pytest.raises(ValueError, match="alpha applies to mode 'hybrid' only"):
        TrainConfig(model="m", train="t", output="o", steps=1, mode="xx", alpha=0.2).validate()
