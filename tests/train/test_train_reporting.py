"""What a run reports, as the transformers Trainer does (issue 24, items 3 and 4): several
``report_to`` destinations, wandb / mlflow through transformers' integrations, TensorBoard's
gradient norm and hyperparameters, one printed line per evaluation, and a model card whose
YAML front matter is what sentence-transformers and the Hub read."""

import contextlib
import importlib.machinery
import io
import sys
import types

import pytest
import yaml
from train_helpers import log_records, make_trainer, synthetic_corpus

from hbt_fast.cli import build_parser, main
from hbt_fast.cli.train import config_from_args
from hbt_fast.data import split_lareqa
from hbt_fast.train import TrainConfig
from hbt_fast.train import trainer as trainer_module
from hbt_fast.train.card import card_languages, hub_base_model

# Language labels as users write them: codes, a code with its region, a name.
LANGUAGES = ("en", "pt-BR", "german")


@pytest.fixture(scope="module")
def xquad_split(data_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("xquad-split")
    split_lareqa(data_dir / "xquad-r", output, eval_fraction=0.25, seed=0, languages=["en", "de", "es", "zh"])
    return output


@pytest.fixture(scope="module")
def evaluated_run(tiny_model_dir, xquad_split, tmp_path_factory):
    """Two steps, evaluated after each, reported to jsonl and TensorBoard, with the progress
    bar on: the folder, what was printed, and the ``progress`` each evaluation was given."""
    output = tmp_path_factory.mktemp("evaluated") / "run"
    shown = []

    def evaluate(encoder, spec, *, progress=False):
        shown.append(progress)
        return real_evaluate(encoder, spec, progress=progress)

    real_evaluate = trainer_module.evaluate_during_training
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setattr(trainer_module, "evaluate_during_training", evaluate)
        trainer = make_trainer(tiny_model_dir, output, corpus=synthetic_corpus(languages=LANGUAGES), steps=2,
                               eval=f"xquad-r:{xquad_split / 'eval'}", eval_every=1, progress=True,
                               report_to=("jsonl", "tensorboard"), card_datasets=("org/parallel-pairs",))
        result = trainer.train()
    return {"output": output, "printed": printed.getvalue(), "shown": shown, "result": result}


def test_evaluations_during_training_show_progress_and_print_one_line_each(evaluated_run):
    assert evaluated_run["shown"] == [True, True]  # the scheduled evaluation too, not only the final one
    lines = evaluated_run["printed"].splitlines()
    evaluations = [r for r in log_records(evaluated_run["output"]) if "eval" in r]
    assert [line.split(" ")[:2] for line in lines] == [["step", "1/2"], ["step", "2/2"]]
    for line, record in zip(lines, evaluations):
        assert line.split(" ")[2] == "xquad-r:"
        for section, values in record["eval"].items():
            for name, value in values.items():
                assert f" {section}/{name}={value:.4f}" in line
        assert f"; multi/map@20 {record['score']:.4f}" in line
    assert lines[0].endswith("(best so far)")


def tensorboard_events(folder):
    pytest.importorskip("tensorboard", reason="needs the tensorboard extra")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return accumulator


def test_tensorboard_gets_the_gradient_norm_and_the_hyperparameters(evaluated_run):
    pytest.importorskip("tensorboard", reason="needs the tensorboard extra")
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    events = tensorboard_events(evaluated_run["output"] / "tensorboard")
    steps = [r for r in log_records(evaluated_run["output"]) if "loss" in r]
    norms = [event.value for event in events.Scalars("train/grad_norm")]
    assert norms == pytest.approx([r["grad_norm"] for r in steps], rel=1e-6) and all(n > 0 for n in norms)
    plugin = {tag: HParamsPluginData.FromString(content)
              for tag, content in events.PluginTagToContent("hparams").items()}
    settings = plugin["_hparams_/session_start_info"].session_start_info.hparams
    assert settings["lr"].number_value == pytest.approx(1e-3)
    assert settings["mode"].string_value == "hybrid" and settings["batch_size"].number_value == 8
    assert settings["report_to"].string_value == "jsonl,tensorboard"
    metrics = {info.name.tag for info in plugin["_hparams_/experiment"].experiment.metric_infos}
    assert {"train/loss", "eval/multi/map@20", "eval/mono/recall@1"} <= metrics
    assert metrics <= set(events.Tags()["scalars"])  # each shown with its newest logged value


def front_matter(card_path):
    text = card_path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1]), text


@pytest.mark.parametrize("folder", ["model", "best"])
def test_model_card_front_matter_is_what_the_hub_and_sentence_transformers_read(evaluated_run, tiny_model_dir,
                                                                                folder):
    metadata, text = front_matter(evaluated_run["output"] / folder / "README.md")
    assert metadata["library_name"] == "sentence-transformers"
    assert metadata["pipeline_tag"] == "sentence-similarity"
    assert {"sentence-transformers", "sentence-similarity", "hbt-fast"} <= set(metadata["tags"])
    assert metadata["language"] == ["en", "pt"]  # "german" is no ISO 639 code
    assert metadata["datasets"] == ["org/parallel-pairs"]
    # A local model folder without a card of its own: no base_model the Hub could resolve, and
    # its absolute path nowhere in the card.
    assert "base_model" not in metadata and str(tiny_model_dir) not in text
    assert f"the local model `{tiny_model_dir.name}`" in text
    [entry] = metadata["model-index"]
    assert entry["name"] == "run"
    result = evaluated_run["result"] if folder == "model" else None
    by_section = {r["dataset"]["config"]: r for r in entry["results"]}
    assert set(by_section) == {"mono", "cross", "multi"}
    for section, found in by_section.items():
        assert found["task"]["type"] == "information-retrieval"
        assert found["dataset"] == {"name": f"XQuAD-R {section}", "type": "xquad-r", "config": section}
        metrics = {m["type"]: m["value"] for m in found["metrics"]}
        assert metrics and all(isinstance(v, float) for v in metrics.values())
        if result is not None:
            assert metrics == {name: value for name, value in result[section].items() if isinstance(value, float)}


def test_card_languages_keep_iso_codes_once():
    assert card_languages(["en", "de", "pt-BR", "english", "zh_Hant", "en", "ang", "EN"]) == ["en", "de", "pt", "zh",
                                                                                               "ang"]


def test_base_model_is_the_hub_id_never_a_local_path(tmp_path, tiny_model_dir):
    assert hub_base_model("xlm-roberta-base") == "xlm-roberta-base"
    assert hub_base_model("intfloat/multilingual-e5-small") == "intfloat/multilingual-e5-small"
    snapshot = tmp_path / "hub" / "models--intfloat--multilingual-e5-small" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    assert hub_base_model(str(snapshot)) == "intfloat/multilingual-e5-small"
    assert hub_base_model(str(tiny_model_dir)) is None  # no card: nothing the Hub knows
    fine_tuned = tmp_path / "fine-tuned"
    fine_tuned.mkdir()
    (fine_tuned / "README.md").write_text("---\nbase_model: FacebookAI/xlm-roberta-base\n---\n# earlier run\n")
    assert hub_base_model(str(fine_tuned)) == "FacebookAI/xlm-roberta-base"
    (fine_tuned / "README.md").write_text(f"---\nbase_model: {tiny_model_dir}\n---\n")  # an older card's path
    assert hub_base_model(str(fine_tuned)) is None
    (fine_tuned / "README.md").write_text("---\nbase_model: [unclosed\n---\n")
    assert hub_base_model(str(fine_tuned)) is None


def test_report_to_takes_several_destinations_and_transformers_flag_names():
    parse = lambda *flags: config_from_args(build_parser().parse_args(  # noqa: E731
        ["train", "--model", "m", "--train", "t", "--output", "o", "--steps", "1", *flags]))
    assert parse("--report-to", "jsonl,tensorboard").report_to == ("jsonl", "tensorboard")
    assert parse().report_to == ("jsonl",)
    assert parse("--grad-accum", "4").gradient_accumulation_steps == 4
    assert parse("--gradient-accumulation-steps", "3").gradient_accumulation_steps == 3
    assert parse("--push-to-hub", "me/model").hub_model_id == parse("--hub-model-id", "me/model").hub_model_id
    assert parse("--fp16").fp16 is True
    with pytest.raises(ValueError, match="--report-to 'none' excludes every destination"):
        parse("--report-to", "none,jsonl")
    with pytest.raises(ValueError, match=r"--report-to must be one of .*got 'csv'"):
        parse("--report-to", "jsonl,csv")
    config = TrainConfig(model="m", train="t", output="o", steps=1, report_to=["tensorboard", "jsonl"])
    config.validate()
    assert config.report_to == ("tensorboard", "jsonl")


@pytest.mark.parametrize("package", ["wandb", "mlflow"])
def test_a_destination_whose_package_is_missing_is_named_before_training(tiny_model_dir, tmp_path, capsys,
                                                                          monkeypatch, package):
    monkeypatch.setitem(sys.modules, package, None)  # import and find_spec both fail, as when not installed
    code = main(["train", "--model", str(tiny_model_dir), "--train", str(tmp_path / "pairs.jsonl"), "--output",
                 str(tmp_path / "run"), "--steps", "1", "--report-to", f"jsonl,{package}"])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1
    assert f"report_to '{package}' needs the {package} package (pip install {package})" in error[0]


class Recorder:
    """Answers any attribute with a callable that records its calls (the fakes' backends)."""

    def __init__(self, calls, prefix, answers=None):
        self._calls, self._prefix, self._answers = calls, prefix, answers or {}

    def __getattr__(self, name):
        def record(*args, **kwargs):
            self._calls.append((f"{self._prefix}{name}", args, kwargs))
            return self._answers.get(name)
        return record


def fake_module(name, monkeypatch, **attributes):
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__version__ = "3.0.0"
    module.__dict__.update(attributes)
    monkeypatch.setitem(sys.modules, name, module)
    return module


def fake_wandb(monkeypatch, calls):
    class Config(dict):
        def update(self, values, allow_val_change=False):
            super().update(values)

    class Run(Recorder):
        summary = {}
        id = name = "fake-run"

    wandb = fake_module("wandb", monkeypatch, run=None, config=Config(), termwarn=lambda *a, **k: None)

    def init(**kwargs):
        calls.append(("wandb.init", (), kwargs))
        wandb.run = Run(calls, "wandb.run.")
        return wandb.run

    wandb.init = init
    wandb.define_metric = lambda *args, **kwargs: None
    wandb.log = lambda values, **kwargs: calls.append(("wandb.log", (values,), kwargs))
    for name in ("wandb.sdk", "wandb.sdk.lib"):
        fake_module(name, monkeypatch)
    fake_module("wandb.sdk.lib.config_util", monkeypatch, ConfigError=type("ConfigError", (Exception,), {}))
    return wandb


def fake_mlflow(monkeypatch, calls):
    state = {"run": None}
    mlflow = fake_module("mlflow", monkeypatch)
    mlflow.utils = types.SimpleNamespace(validation=types.SimpleNamespace(
        MAX_PARAM_VAL_LENGTH=6000, MAX_PARAMS_TAGS_PER_BATCH=100))
    mlflow.is_tracking_uri_set = lambda: True
    mlflow.get_tracking_uri = lambda: "file:///nowhere"
    mlflow.active_run = lambda: state["run"]

    def start_run(**kwargs):
        calls.append(("mlflow.start_run", (), kwargs))
        state["run"] = types.SimpleNamespace(info=types.SimpleNamespace(run_id="fake"))

    def end_run():
        calls.append(("mlflow.end_run", (), {}))
        state["run"] = None

    mlflow.start_run, mlflow.end_run = start_run, end_run
    mlflow.log_params = lambda params, **kwargs: calls.append(("mlflow.log_params", (params,), kwargs))
    mlflow.log_metrics = lambda metrics, step, **kwargs: calls.append(("mlflow.log_metrics", (metrics,),
                                                                        {"step": step}))
    return mlflow


def test_wandb_and_mlflow_receive_the_run_through_transformers_integrations(tiny_model_dir, tmp_path, monkeypatch):
    """transformers' own WandbCallback and MLflowCallback run, against stand-ins for the two
    packages (neither is installed here, and neither may reach a server)."""
    calls = []
    wandb = fake_wandb(monkeypatch, calls)
    fake_mlflow(monkeypatch, calls)
    output = tmp_path / "run"
    make_trainer(tiny_model_dir, output, steps=2, report_to=("wandb", "mlflow")).train()
    assert not (output / "train_log.jsonl").exists()  # jsonl was not asked for
    [init] = [c for c in calls if c[0] == "wandb.init"]
    assert init[2]["name"] == "run"  # the run folder's name (transformers warns when it is the path)
    assert wandb.config["alpha"] == 0.5 and wandb.config["learning_rate"] == 1e-3
    assert wandb.config["report_to"] == ("wandb", "mlflow")
    logged = [c[1][0] for c in calls if c[0] == "wandb.log"]
    assert [entry["train/global_step"] for entry in logged] == [1, 2]
    assert all({"train/loss", "train/grad_norm", "train/learning_rate"} <= set(entry) for entry in logged)
    metrics = [(c[2]["step"], c[1][0]) for c in calls if c[0] == "mlflow.log_metrics"]
    assert [step for step, _ in metrics] == [1, 2]
    assert [m["loss"] for _, m in metrics] == [e["train/loss"] for e in logged]
    parameters = {k: v for c in calls if c[0] == "mlflow.log_params" for k, v in c[1][0].items()}
    assert parameters["batch_size"] == 8 and parameters["max_steps"] == 2
    names = [c[0] for c in calls if c[0].startswith("mlflow.") and c[0].endswith("_run")]
    assert names == ["mlflow.start_run", "mlflow.end_run"]
