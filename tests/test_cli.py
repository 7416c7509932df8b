"""The hbt-fast command line: parser wiring and the bench table."""

import pytest

from hbt_fast import __version__
from hbt_fast.bench import Result
from hbt_fast.cli.bench import render_table
from hbt_fast.cli import build_parser, main


def test_version_and_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out
    args = build_parser().parse_args(["bench", "--quick"])
    assert args.quick and callable(args.func)


def test_missing_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2


def test_bench_table_reports_out_of_memory_reference():
    results = [
        Result("loss", "B=65536", None, 2.0, None, 3 * 2**20, note="reference: out of memory"),
        Result("sampler", "epoch", 1.0, 0.25, 2**20, 2**21),
        Result("loss", "B=4096", 1.5, 1.0, extra={"efficiency": 1.125}),
    ]
    table = render_table(results).splitlines()
    assert table[2].split("|")[3].strip() == "-"
    assert "out of memory" in table[2]
    assert "4.00x" in table[3] and "1.0 MiB" in table[3]
    assert "1.50x" in table[4] and "efficiency 1.12 vs 3 torch.mm" in table[4]
