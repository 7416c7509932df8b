"""What the command line says: flags that turn something off say what they do, every command
takes languages as one comma-separated list, and errors name flags (or the --config file's keys),
never Python keyword arguments."""

import argparse

import pytest

from hbt_fast.cli import build_parser, main


def _subparsers() -> dict:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _option(command: str, flag: str) -> argparse.Action:
    return next(a for a in _subparsers()[command]._actions if flag in a.option_strings)


def error_lines(stderr: str) -> list:
    return [line for line in stderr.splitlines() if line.startswith("hbt-fast")]


@pytest.mark.parametrize("command", ["train", "prepare", "eval"])
def test_no_progress_says_it_hides_the_bar(command):
    assert "hide the progress bar" in _option(command, "--no-progress").help


def test_no_length_buckets_says_what_it_does():
    text = _option("train", "--no-length-buckets").help
    assert text.startswith("embed each side as one batch padded to its longest text")


def test_every_flag_that_turns_a_setting_off_has_its_own_help():
    for command, parser in _subparsers().items():
        for action in parser._actions:
            if isinstance(action, argparse._StoreFalseAction):
                assert action.help and not action.help.startswith(("show", "embed each side in")), \
                    (command, action.option_strings, action.help)


# ---------------------------------------------------------------- languages
REQUIRED = {
    "split-lareqa": ["--data", "d", "--output", "o"],
    "convert-mmarco": ["--root", "r", "--output", "o"],
    "convert-tatoeba": ["--data", "d", "--output", "o"],
    "eval": ["--model", "m", "--task", "xquad-r", "--output", "o"],
    "experiment": ["--output", "o"],
}
LANGUAGE_FLAGS = [(command, "--languages") for command in REQUIRED] + [
    ("experiment", "--tatoeba-languages")]


@pytest.mark.parametrize("command, flag", LANGUAGE_FLAGS)
def test_every_command_takes_comma_separated_languages(command, flag, capsys):
    args = build_parser().parse_args([command, *REQUIRED[command], flag, "de,en, ru"])
    assert getattr(args, flag[2:].replace("-", "_")) == ["de", "en", "ru"]
    assert capsys.readouterr().err == ""
    assert "LANG,..." in _subparsers()[command].format_usage()


@pytest.mark.parametrize("command, flag", LANGUAGE_FLAGS)
def test_the_old_space_separated_form_still_works_with_a_warning(command, flag, capsys):
    args = build_parser().parse_args([command, *REQUIRED[command], flag, "de", "en"])
    assert getattr(args, flag[2:].replace("-", "_")) == ["de", "en"]
    warning = capsys.readouterr().err.splitlines()
    assert warning == [f"hbt-fast {command}: warning: {flag} de en: space-separated languages are "
                       f"deprecated; write {flag} de,en"]


def test_an_empty_language_code_is_refused_naming_the_flag(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    assert main(["split-lareqa", "--data", str(tmp_path / "data"), "--output", str(tmp_path / "out"),
                 "--languages", "de,,en"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        "hbt-fast split-lareqa: error: --languages: '' is not a language code (it names a file or "
        "folder inside the data folder)"]


def test_experiment_tatoeba_languages_alone_skips_tatoeba():
    args = build_parser().parse_args(["experiment", "--output", "o", "--tatoeba-languages"])
    assert args.tatoeba_languages == []


# ---------------------------------------------------------------- errors name flags
TRAIN = ["train", "--model", "m", "--train", "t", "--output", "o"]


@pytest.mark.parametrize("arguments, message", [
    (["--steps", "2", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--steps", "2", "--epochs", "1"], "give exactly one of --steps and --epochs"),
    ([], "give exactly one of --steps and --epochs"),
    (["--steps", "2", "--mode", "xy", "--alpha", "0.3"], "--alpha applies to --mode 'hybrid' only"),
    (["--steps", "2", "--prefixes", "--query-prefix", "q"],
     "--prefixes (the study's shorthand) and --query-prefix/--passage-prefix exclude each other"),
    (["--steps", "2", "--override", "mode"], "--override: --mode cannot change when resuming"),
    (["--steps", "2", "--eval", "x"], "--eval must look like 'xquad-r:DIR'"),
    (["--steps", "2", "--max-query-length", "1"], "--max-query-length must be >= 2, got 1"),
    (["--steps", "2", "--lr", "nan"], "--lr must be a finite number"),
])
def test_train_errors_name_the_flags(arguments, message, capsys):
    assert main(TRAIN + arguments) == 2
    error = error_lines(capsys.readouterr().err)
    assert error == [f"hbt-fast train: error: {message}"] or \
        (len(error) == 1 and error[0].startswith(f"hbt-fast train: error: {message}")), error


def test_train_errors_name_the_config_files_key_where_it_set_the_value(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text("batch_size = 0\nsteps = 2\n")
    assert main(TRAIN + ["--config", str(config)]) == 2
    assert error_lines(capsys.readouterr().err) == [
        f"hbt-fast train: error: {config}: batch_size must be >= 1, got 0"]
    assert main(TRAIN + ["--config", str(config), "--batch-size", "-1"]) == 2  # the flag wins
    assert error_lines(capsys.readouterr().err) == [
        "hbt-fast train: error: --batch-size must be >= 1, got -1"]
    config.write_text('mode = "xy"\nsteps = 2\n')
    assert main(TRAIN + ["--config", str(config), "--alpha", "0.3"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        f"hbt-fast train: error: {config}: --alpha applies to mode 'hybrid' only; mode 'xy' never "
        "mixes batch kinds, so leave --alpha out"]


def test_missing_required_settings_are_named_as_flags(capsys):
    assert main(["train", "--train", "t", "--steps", "2"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        "hbt-fast train: error: missing required settings: --model, --output (flags, or keys of "
        "the --config file)"]


@pytest.mark.parametrize("command", ["prepare", "eval"])
def test_a_length_below_two_tokens_is_refused_naming_the_flag(command, capsys):
    arguments = {"prepare": ["--model", "m", "--train", "t", "--output", "o"],
                 "eval": REQUIRED["eval"]}[command]
    with pytest.raises(SystemExit) as exit_info:
        main([command, *arguments, "--max-query-length", "1"])
    assert exit_info.value.code == 2
    assert "argument --max-query-length: expected an integer >= 2" in capsys.readouterr().err
