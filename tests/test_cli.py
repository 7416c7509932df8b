"""The hbt-fast command line: parser wiring and the bench table."""

import json
import sys
import types

import pytest

from hbt_fast import __version__
from hbt_fast.bench import Result
from hbt_fast.cli.bench import cpu_description, format_seconds, render_table
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


@pytest.mark.parametrize("seconds, text", [(None, "-"), (5.4e-5, "54 us"), (9.996e-4, "1000 us"),
                                           (1e-3, "1.0 ms"), (0.25, "250.0 ms"), (93.0, "93.00 s")])
def test_bench_times_keep_their_digits(seconds, text):
    # a 54 us loss step against a 77 us reference must not print as "0.1 ms" against "0.1 ms"
    assert format_seconds(seconds) == text


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


@pytest.mark.parametrize("flags, extensions", [
    ("fpu sse2 avx2 fma", "(AVX2)"),
    ("avx2 avx512f avx512bw", "(AVX2, AVX-512)"),
    ("avx2 avx512f amx_tile amx_bf16", "(AVX2, AVX-512, AMX)"),
    ("sse2", "(no AVX2)"),
])
def test_cpu_description_names_model_and_vector_extensions(flags, extensions):
    cpuinfo = f"processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: {flags}\n"
    assert cpu_description(cpuinfo) == f"AMD EPYC 7B13 {extensions}"


def test_bench_runs_one_suite_and_writes_json(tmp_path, capsys, monkeypatch):
    import hbt_fast.cli.bench as bench

    calls = []

    suite = types.ModuleType("fake_suite")
    suite.run = lambda quick: calls.append(quick) or [Result("sampler", "tiny", 2.0, 1.0)]
    monkeypatch.setitem(sys.modules, "fake_suite", suite)
    monkeypatch.setattr(bench, "SUITES", {"sampler": "fake_suite", "loss": "not_imported"})
    assert main(["bench", "--quick", "--suite", "sampler", "--json", str(tmp_path / "r.json")]) == 0
    assert calls == [True]
    out = capsys.readouterr().out
    assert out.startswith("Machine: ") and "2.00x" in out
    assert json.loads((tmp_path / "r.json").read_text())[0]["speedup"] == 2.0


def test_bench_rejects_unknown_suite_and_missing_json_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--suite", "gpu"])
    assert exit_info.value.code == 2
    assert main(["bench", "--json", str(tmp_path / "missing" / "r.json")]) == 2
    assert "--json" in capsys.readouterr().err
