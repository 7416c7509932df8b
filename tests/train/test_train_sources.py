"""Several sources in one run (``--train A --train B``, a TOML list): X-X batches from one
source, X-Y batches from another, per-source weights; stated in run_config.json and the model
card; the same losses from files as from the pairs in memory; bad combinations explained."""

import json

import numpy as np
import pytest
from train_helpers import Crash, CrashAt, log_losses, log_records, settings, synthetic_corpus

from hbt_fast.cli import main
from hbt_fast.cli.train import add_parser, config_from_args
from hbt_fast.data import PairCorpus, read_pairs, write_pairs_jsonl
from hbt_fast.train import TrainConfig, Trainer

XX_LANGUAGES = ("en", "de", "fr")
XY_LANGUAGES = ("en", "tr", "sw", "hi", "is")



def tatoeba_like(num_groups=30):
    """English pivots with translations: X-Y material (X-X batches would pair a sentence with itself)."""
    corpus = synthetic_corpus(num_groups=num_groups, languages=XY_LANGUAGES, negatives=1)
    return PairCorpus.with_negative_lists(
        [f"tatoeba {q}" for q in corpus.queries], [f"tatoeba {p}" for p in corpus.passages],
        corpus.languages, [f"t{g}" for g in corpus.groups],
        [[f"tatoeba {n}" for n in corpus.negatives_of(i)] for i in range(len(corpus))])


@pytest.fixture(scope="module")
def source_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sources")
    write_pairs_jsonl(folder / "xquad.jsonl", synthetic_corpus(languages=XX_LANGUAGES, negatives=1).records())
    write_pairs_jsonl(folder / "tatoeba.jsonl", tatoeba_like().records())
    return folder / "xquad.jsonl", folder / "tatoeba.jsonl"


def two_source_settings(model, output, files, **overrides):
    values = dict(train=[str(f) for f in files], source_kinds=("xx", "xy"), source_weights="uniform",
                  steps=6, hard_negatives=1)
    values.update(overrides)
    return TrainConfig(**settings(model, output, **values))


def test_two_sources_from_files_train_as_from_memory_each_batch_from_its_source(tiny_model_dir, tmp_path,
                                                                                  source_files):
    memory = Trainer(two_source_settings(tiny_model_dir, tmp_path / "memory", source_files),
                     corpus=[read_pairs(f) for f in source_files])
    memory.train()
    files = Trainer(two_source_settings(tiny_model_dir, tmp_path / "files", source_files))
    assert [s.path.name for s in files.corpus.corpora] == ["token_store-1", "token_store-2"]
    files.train()
    np.testing.assert_allclose(log_losses(tmp_path / "files"), log_losses(tmp_path / "memory"), rtol=0,
                               atol=1e-6)
    kinds = [r["batch"] for r in log_records(tmp_path / "files") if "batch" in r]
    assert "xy" in kinds and any(k.startswith("xx:") for k in kinds)
    assert {k[3:] for k in kinds if k.startswith("xx:")} <= set(XX_LANGUAGES)
    for batch in files.sampler:  # X-X rows from the first source only, X-Y rows from the second
        first = batch[0] < files.corpus.row_offsets[1]
        assert first.all() if batch.kind == "xx" else not first.any()

    description = json.loads((tmp_path / "files" / "run_config.json").read_text())
    sources = description["sources"]
    assert [(s["kind"], s["pairs"], s["languages"]) for s in sources] == [
        ("xx", 72, sorted(XX_LANGUAGES)), ("xy", 150, sorted(XY_LANGUAGES))]
    assert set(sources[0]["batches_per_epoch"]) == {"xx"} and set(sources[1]["batches_per_epoch"]) == {"xy"}
    assert sum(sum(s["batches_per_epoch"].values()) for s in sources) == len(files.sampler)
    assert description["config"]["source_weights"] == "uniform"
    assert description["languages"] == sorted(set(XX_LANGUAGES) | set(XY_LANGUAGES))
    card = (tmp_path / "files" / "model" / "README.md").read_text()
    assert "2 sources" in card and "kind xx" in card and "kind xy" in card


def test_groups_of_two_sources_never_share_an_id(tiny_model_dir, tmp_path, source_files):
    trainer = Trainer(two_source_settings(tiny_model_dir, tmp_path / "run", source_files),
                      corpus=[read_pairs(f) for f in source_files])
    trainer.close()
    seen = {0: set(), 1: set()}
    for batch in trainer.sampler:
        inputs = trainer.tokens.step_inputs(*batch)
        source = 0 if batch.kind == "xx" else 1
        # Keys are (group, text id) rows when duplicates are masked: the group is column 0.
        seen[source] |= set(inputs.passage_groups[:, 0].tolist()) | set(inputs.query_groups[:, 0].tolist())
    assert seen[0] and seen[1] and not seen[0] & seen[1]


def test_a_two_source_run_resumes_exactly(tiny_model_dir, tmp_path, source_files):
    corpora = [read_pairs(f) for f in source_files]
    Trainer(two_source_settings(tiny_model_dir, tmp_path / "straight", source_files, save_every=2),
            corpus=corpora).train()
    with pytest.raises(Crash):
        Trainer(two_source_settings(tiny_model_dir, tmp_path / "crashed", source_files, save_every=2),
                corpus=corpora, callbacks=[CrashAt(5)]).train()
    resumed = Trainer(two_source_settings(tiny_model_dir, tmp_path / "crashed", source_files, save_every=2,
                                          resume=True), corpus=corpora)
    assert resumed.step == 4
    resumed.train()
    np.testing.assert_allclose(log_losses(tmp_path / "crashed"), log_losses(tmp_path / "straight"),
                               rtol=1e-6, atol=1e-7)


def test_an_xy_source_with_a_language_that_has_no_partner_is_named(tiny_model_dir, tmp_path, source_files):
    lonely = tatoeba_like()
    lonely = PairCorpus(lonely.queries + ["only here"], lonely.passages + ["nowhere else"],
                        lonely.languages + ["xh"], lonely.groups + ["alone"])
    with pytest.raises(ValueError, match=r"source 2 \(.*tatoeba.jsonl\) \(kind xy\) serves X-Y batches, but "
                                         r"language\(s\) \['xh'\] share no group with another language in it"):
        Trainer(two_source_settings(tiny_model_dir, tmp_path / "run", source_files),
                corpus=[read_pairs(source_files[0]), lonely])


def test_corpora_must_match_the_sources(tiny_model_dir, tmp_path, source_files):
    with pytest.raises(ValueError, match=r"corpus holds 3 corpora, but train names 2 source\(s\)"):
        Trainer(two_source_settings(tiny_model_dir, tmp_path / "run", source_files),
                corpus=[read_pairs(source_files[0])] * 3)


def parse(argv):
    import argparse

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return config_from_args(parser.parse_args(["train", *argv]))


def test_each_train_flag_is_a_source_and_its_paths_one_source():
    config = parse(["--model", "m", "--output", "o", "--steps", "1", "--train", "a1.jsonl", "a2.jsonl",
                    "--train", "b.jsonl", "--source-kinds", "xx,xy", "--source-weights", "1,3"])
    assert config.train == (("a1.jsonl", "a2.jsonl"), "b.jsonl")
    assert config.source_kinds == ("xx", "xy") and config.source_weights == (1.0, 3.0)
    assert parse(["--model", "m", "--output", "o", "--steps", "1", "--train", "a.jsonl"]).train == "a.jsonl"


def test_a_toml_list_of_sources(tmp_path):
    (tmp_path / "run.toml").write_text(
        'model = "m"\noutput = "o"\nsteps = 1\ntrain = ["xquad.jsonl", ["t1.jsonl", "t2.jsonl"]]\n'
        'source-kinds = ["xx", "xy"]\nsource-weights = [1, 2.5]\n')
    config = parse(["--config", str(tmp_path / "run.toml")])
    assert config.train == ("xquad.jsonl", ("t1.jsonl", "t2.jsonl"))
    assert config.source_kinds == ("xx", "xy") and config.source_weights == (1.0, 2.5)


@pytest.mark.parametrize("flags, message", [
    (["--source-kinds", "xy,xy"], r"source_kinds: mode 'hybrid' draws X-X batches \(alpha 0.5\), but no "
                                  r"source serves them"),
    (["--source-kinds", "xx,xy", "--mode", "xy"], r"source_kinds: source 1 \(.*xquad.jsonl\) serves X-X "
                                                  r"batches only, but mode 'xy'"),
    (["--source-weights", "1,2,3"], r"source_weights must give one number per source \(2\), got 3"),
    (["--source-weights", "1,-2"], r"source_weights\[1\] must be a finite number > 0, got -2.0"),
    (["--source-weights", "even"], r"source_weights must be proportional or uniform, or one number per source"),
    (["--source-kinds", "xx"], r"source_kinds gives 1 kind\(s\) \['xx'\] for 2 source\(s\)"),
])
def test_bad_source_settings_stop_the_cli_with_one_line_before_anything_is_prepared(
        tiny_model_dir, tmp_path, source_files, capsys, flags, message):
    argv = ["train", "--model", str(tiny_model_dir), "--train", str(source_files[0]), "--train",
            str(source_files[1]), "--output", str(tmp_path / "run"), "--steps", "1", *flags]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert __import__("re").search(message, error), error
    assert not list(tmp_path.glob("run/*token_store*"))
