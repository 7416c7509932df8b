"""HybridTrainer at scale: label columns read as whole Arrow arrays (the ids labels_to_ids
gives, without a Python object per row), and a DatasetDict of several sources with per-source
kinds, weights and losses."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

pytest.importorskip("sentence_transformers", reason="needs sentence-transformers")
datasets = pytest.importorskip("datasets", reason="needs datasets")

from sentence_transformers import SentenceTransformerTrainingArguments  # noqa: E402

from st_helpers import pair_rows, tiny_sentence_transformer  # noqa: E402
from test_hybrid_trainer import RecordingCollator, check_batch, epoch_of_batches  # noqa: E402
from hbt_fast import labels_to_ids  # noqa: E402
from hbt_fast.integrations.sentence_transformers import HybridTrainer  # noqa: E402
from hbt_fast.integrations.sentence_transformers.columns import pair_ids  # noqa: E402
from hbt_fast.losses import MultipleNegativesRankingLoss  # noqa: E402


@pytest.mark.parametrize("labels", ["strings", "integers", "floats", "shuffled", "chunks"])
def test_arrow_ids_are_those_of_labels_to_ids(labels):
    rng = np.random.default_rng(0)
    languages = rng.choice(["ru", "de", "ä", "en", "zh", "Zz"], 500).tolist()
    groups = rng.integers(-50, 80, 500)
    columns = {"language": languages, "group": [f"g{g}" for g in groups]}
    if labels == "integers":
        columns["group"] = groups.tolist()
    elif labels == "floats":
        columns["group"] = (groups / 4).tolist()
    dataset = datasets.Dataset.from_dict(columns)
    if labels == "shuffled":
        dataset = dataset.shuffle(seed=3).select(range(10, 400))
    elif labels == "chunks":
        dataset = datasets.concatenate_datasets([dataset.select(range(200)), dataset.select(range(200, 500))])
    ids = pair_ids(dataset, "language", "group")
    expected = labels_to_ids(dataset["language"], dataset["group"])
    np.testing.assert_array_equal(ids.languages, expected.languages)
    np.testing.assert_array_equal(ids.groups, expected.groups)
    assert ids.language_names.to_pylist() == expected.language_names.tolist()


def test_label_columns_are_read_without_a_python_object_per_row(st_model_dir):
    rows = 200_000
    languages = np.array(["de", "en", "es", "ru"])[np.arange(rows) % 4]
    dataset = datasets.Dataset.from_dict({"language": languages, "group": np.arange(rows) // 4})
    dataset = dataset.cast_column("group", datasets.Value("string"))
    tracemalloc.start()
    try:
        pair_ids(dataset, "language", "group")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Python strings for each label would cost over 100 bytes per row; the ids cost 8 each.
    assert peak / rows < 64, peak / rows


def tagged_rows(num_groups, languages, tag, negatives=0):
    columns = pair_rows(num_groups, languages, negatives=negatives)
    for column in [c for c in columns if c not in ("language", "group")]:
        columns[column] = [f"{text[0]}{tag} {text.split(' ', 1)[1]}" for text in columns[column]]
    return datasets.Dataset.from_dict(columns)


def sources():
    return datasets.DatasetDict({"xquad": tagged_rows(40, ("de", "en", "es"), "X"),
                                 "tatoeba": tagged_rows(60, ("en", "tr", "sw", "is"), "T")})


def make_trainer(model_dir, output_dir, train_dataset, *, loss=None, args=None, **options):
    model = tiny_sentence_transformer(model_dir)
    args = {"per_device_train_batch_size": 8, "max_steps": 4, "report_to": "none", "use_cpu": True,
            "save_strategy": "no", "disable_tqdm": True, **(args or {})}
    trainer = HybridTrainer(model=model, args=SentenceTransformerTrainingArguments(str(output_dir), **args),
                            train_dataset=train_dataset, loss=loss or MultipleNegativesRankingLoss(model),
                            **options)
    trainer.data_collator = RecordingCollator(trainer.data_collator)
    return trainer


def source_of(rows):
    tags = {row["query"][1] for row in rows} | {row["passage"][1] for row in rows}
    assert len(tags) == 1, tags
    return {"X": "xquad", "T": "tatoeba"}[tags.pop()]


def test_a_dataset_dict_draws_each_batch_from_one_source_with_the_kind_it_serves(st_model_dir, tmp_path):
    trainer = make_trainer(st_model_dir, tmp_path, sources(), source_kinds={"tatoeba": "xy", "xquad": "xx"},
                           source_weights="uniform")
    batches = epoch_of_batches(trainer)
    assert len(batches) == len(trainer.hybrid_sampler)
    served = {(source_of(rows), check_batch(rows, 8)) for rows in batches}
    assert served == {("xquad", "xx"), ("tatoeba", "xy")}
    counts = trainer.hybrid_sampler.counts
    assert abs(int(counts[0]) - int(counts[1])) <= 1  # uniform, alpha 0.5


def test_a_loss_per_source_is_routed_by_split_name(st_model_dir, tmp_path):
    model = tiny_sentence_transformer(st_model_dir)
    calls = []

    class Recording(MultipleNegativesRankingLoss):
        def __init__(self, name):
            super().__init__(model)
            self.name = name

        def forward(self, features, labels):
            calls.append(self.name)
            return super().forward(features, labels)

    trainer = HybridTrainer(
        model=model, args=SentenceTransformerTrainingArguments(
            str(tmp_path), per_device_train_batch_size=8, max_steps=6, report_to="none", use_cpu=True,
            save_strategy="no", disable_tqdm=True),
        train_dataset=sources(), loss={"xquad": Recording("xquad"), "tatoeba": Recording("tatoeba")},
        source_kinds=["xx", "xy"])
    trainer.data_collator = RecordingCollator(trainer.data_collator)
    trainer.train()
    assert len(calls) == 6  # the data loader may have collated one batch ahead
    assert calls == [source_of(rows) for rows in trainer.data_collator.batches[:6]]
    assert set(calls) == {"xquad", "tatoeba"}


def test_a_dataset_dict_run_resumes_its_batch_sequence(st_model_dir, tmp_path):
    args = {"max_steps": 6, "save_strategy": "steps", "save_steps": 3}
    options = dict(source_kinds=["xx", "both"], source_weights={"xquad": 1.0, "tatoeba": 2.0})
    uninterrupted = make_trainer(st_model_dir, tmp_path / "a", sources(), args=args, **options)
    uninterrupted.train()
    checkpoint = tmp_path / "a" / "checkpoint-3"
    state = json.loads((checkpoint / "hybrid_sampler.json").read_text())
    assert (state["position"], state["kinds"], state["weights"]) == (3, ["xx", "both"], [1.0, 2.0])
    resumed = make_trainer(st_model_dir, tmp_path / "b", sources(), args=args, **options)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.data_collator.batches == uninterrupted.data_collator.batches[3:]
    trainer = make_trainer(st_model_dir, tmp_path / "c", sources(), args=args, source_kinds=["xx", "both"])
    with pytest.raises(ValueError, match=r"cannot resume from .*: state\['weights'\] is \[1.0, 2.0\]"):
        trainer.train(resume_from_checkpoint=str(checkpoint))


def test_the_model_card_names_the_sources_settings(st_model_dir, tmp_path):
    trainer = make_trainer(st_model_dir, tmp_path, sources(), source_kinds=["xx", "xy"], args={"max_steps": 1})
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    card = (tmp_path / "final" / "README.md").read_text()
    for entry in ("`batch_sampler`: hbt_fast.MultiSourceSampler", "`hybrid_source_kinds`: ['xx', 'xy']",
                  "`hybrid_source_weights`: proportional"):
        assert entry in card


@pytest.mark.parametrize("train, options, error, message", [
    (lambda: sources(), {"source_kinds": {"xquad": "xx"}}, ValueError,
     r"source_kinds names the splits \['xquad'\], train_dataset has \['xquad', 'tatoeba'\]"),
    (lambda: sources(), {"source_kinds": ["xy", "xy"]}, ValueError,
     r"mode 'hybrid' draws X-X batches \(alpha 0.5\), but no source serves them"),
    (lambda: sources(), {"source_weights": [1.0, -1.0]}, ValueError, r"weights\[1\] must be a finite number > 0"),
    (lambda: sources()["xquad"], {"source_kinds": ["xx"]}, ValueError,
     r"source_kinds and source_weights apply to several sources"),
    (lambda: datasets.DatasetDict({"xquad": sources()["xquad"], "other": sources()["tatoeba"].rename_column(
        "language", "lang")}), {}, ValueError, r"train_dataset\['other'\] has no column 'language'"),
    (lambda: datasets.DatasetDict({"xquad": sources()["xquad"], "ids": sources()["tatoeba"].map(
        lambda row, i: {"language": i % 3}, with_indices=True)}), {}, TypeError,
     r"the sources' language labels are of different types"),
    (lambda: datasets.DatasetDict({"xquad": sources()["xquad"], "blank": sources()["tatoeba"].map(
        lambda row, i: {"query": " " if i == 4 else row["query"]}, with_indices=True)}), {}, ValueError,
     r"train_dataset\['blank'\] column 'query' must hold non-empty strings, found ' ' at row 4"),
])
def test_bad_sources_are_explained_at_construction(st_model_dir, tmp_path, train, options, error, message):
    with pytest.raises(error, match=message):
        make_trainer(st_model_dir, tmp_path, train(), **options)
