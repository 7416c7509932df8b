"""HybridTrainer: sentence-transformers' trainer fed by HybridSampler.

Texts in these datasets name their group and language ("q 7 de", "p 7 ru"), so the batches the
loss receives can be read back and checked against the sampler's rules."""

from __future__ import annotations

import json
import re
import warnings

import pytest

pytest.importorskip("sentence_transformers", reason="needs sentence-transformers")
datasets = pytest.importorskip("datasets", reason="needs datasets")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from sentence_transformers import (  # noqa: E402
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)

from st_helpers import pair_rows, tiny_sentence_transformer  # noqa: E402
from hbt_fast import HybridBatchSampler, HybridSampler, labels_to_ids  # noqa: E402
from hbt_fast.integrations.sentence_transformers import HybridTrainer  # noqa: E402
from hbt_fast.losses import MultipleNegativesRankingLoss  # noqa: E402


class RecordingCollator:
    """Keeps the rows of every collated batch, then collates as the trainer would."""

    def __init__(self, collator):
        self.collator, self.batches = collator, []
        self.valid_label_columns = collator.valid_label_columns  # read by the evaluation loader

    def __call__(self, features):
        self.batches.append(features)
        return self.collator(features)


def make_trainer(model_dir, output_dir, dataset=None, *, record=True, args=None, model=None,
                 **options):
    model = model if model is not None else tiny_sentence_transformer(model_dir)
    args = {"per_device_train_batch_size": 8, "max_steps": 4, "report_to": "none",
            "use_cpu": True, "save_strategy": "no", "disable_tqdm": True, **(args or {})}
    trainer = HybridTrainer(
        model=model, args=SentenceTransformerTrainingArguments(str(output_dir), **args),
        train_dataset=dataset if dataset is not None else datasets.Dataset.from_dict(pair_rows(40)),
        loss=MultipleNegativesRankingLoss(model), **options)
    if record:
        trainer.data_collator = RecordingCollator(trainer.data_collator)
    return trainer


def parse(text):
    _, group, language = text.split()
    return group, language


def check_batch(rows, batch_size, negatives=0):
    """The rules of a hybrid batch, read from the texts the loss receives."""
    assert len(rows) == batch_size
    queries = [parse(row["query"]) for row in rows]
    passages = [parse(row["passage"]) for row in rows]
    assert [g for g, _ in queries] == [g for g, _ in passages]  # each pair is one group
    assert len({g for g, _ in queries}) == batch_size  # distinct groups: no false negatives
    same_language = [q == p for q, p in zip(queries, passages)]
    for k in range(1, negatives + 1):  # negatives come with the passage's row
        assert [parse(row[f"negative_{k}"]) for row in rows] == passages
    if all(same_language):  # X-X: one language for the whole batch
        assert len({language for _, language in queries}) == 1
        return "xx"
    assert not any(same_language)  # X-Y: every pair crosses languages
    return "xy"


def epoch_of_batches(trainer):
    loader = trainer.get_train_dataloader()
    loader.set_epoch(0)
    for batch in loader:
        assert {key.split("_")[0] for key in batch} <= {"query", "passage", "negative"}
    return trainer.data_collator.batches


@pytest.mark.parametrize("mode, kinds", [("xx", {"xx"}), ("xy", {"xy"}), ("hybrid", {"xx", "xy"})])
def test_batches_follow_the_mode(st_model_dir, tmp_path, mode, kinds):
    trainer = make_trainer(st_model_dir, tmp_path, mode=mode)
    batches = epoch_of_batches(trainer)
    assert len(batches) == len(trainer.hybrid_sampler) > 0
    assert {check_batch(rows, 8) for rows in batches} == kinds


@pytest.mark.parametrize("batch_size", [4, 16])
def test_per_device_batch_size_is_the_batch_size(st_model_dir, tmp_path, batch_size):
    trainer = make_trainer(st_model_dir, tmp_path, args={"per_device_train_batch_size": batch_size})
    for rows in epoch_of_batches(trainer):
        check_batch(rows, batch_size)


def test_hard_negatives_come_from_the_passage_row(st_model_dir, tmp_path):
    dataset = datasets.Dataset.from_dict(pair_rows(40, negatives=2))
    trainer = make_trainer(st_model_dir, tmp_path, dataset,
                           negative_columns=["negative_1", "negative_2"])
    for rows in epoch_of_batches(trainer):
        check_batch(rows, 8, negatives=2)
        assert list(rows[0]) == ["query", "passage", "negative_1", "negative_2"]


def test_rows_seen_are_the_pairs_no_cross_product(st_model_dir, tmp_path):
    dataset = datasets.Dataset.from_dict(pair_rows(40))
    trainer = make_trainer(st_model_dir, tmp_path, dataset)
    loader = trainer.get_train_dataloader()
    assert len(loader.dataset) == trainer.num_examples(loader) == dataset.num_rows
    assert trainer.train_dataset is dataset


def test_label_columns_never_reach_the_model_nor_the_evaluation(st_model_dir, tmp_path):
    dataset = datasets.Dataset.from_dict(pair_rows(40))
    trainer = make_trainer(st_model_dir, tmp_path, dataset, eval_dataset=dataset,
                           args={"eval_strategy": "steps", "eval_steps": 2, "max_steps": 2})
    assert trainer.eval_dataset.column_names == ["query", "passage"]
    trainer.train()
    assert all(set(rows[0]) == {"query", "passage"} for rows in trainer.data_collator.batches)


def test_each_epoch_draws_that_epochs_batches(st_model_dir, tmp_path):
    dataset = datasets.Dataset.from_dict(pair_rows(20))
    trainer = make_trainer(st_model_dir, tmp_path, dataset,
                           args={"max_steps": -1, "num_train_epochs": 2})
    trainer.train()
    per_epoch = len(trainer.hybrid_sampler)
    recorded = trainer.data_collator.batches
    assert len(recorded) == 2 * per_epoch
    ids = _ids(trainer)
    reference = HybridSampler(ids.languages, ids.groups, 8, seed=trainer.args.seed, drop_last=False)
    for epoch in (0, 1):
        reference.set_epoch(epoch)
        rows = [batch for batch in reference]
        texts = [[trainer.train_dataset[int(q)]["query"] for q in query_rows]
                 for query_rows, _ in rows]
        assert [[row["query"] for row in batch]
                for batch in recorded[epoch * per_epoch:(epoch + 1) * per_epoch]] == texts
    assert recorded[:per_epoch] != recorded[per_epoch:]


def _ids(trainer):
    table = trainer.train_dataset
    return labels_to_ids(table["language"], table["group"])


def test_resume_continues_the_batch_sequence(st_model_dir, tmp_path):
    args = {"max_steps": 6, "save_strategy": "steps", "save_steps": 3}
    uninterrupted = make_trainer(st_model_dir, tmp_path / "a", args=args)
    uninterrupted.train()
    checkpoint = tmp_path / "a" / "checkpoint-3"
    state = json.loads((checkpoint / "hybrid_sampler.json").read_text())
    assert (state["epoch"], state["position"], state["mode"]) == (0, 3, "hybrid")

    resumed = make_trainer(st_model_dir, tmp_path / "b", args=args)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.data_collator.batches == uninterrupted.data_collator.batches[3:]


def test_resume_with_other_sampler_settings_is_an_error(st_model_dir, tmp_path):
    args = {"max_steps": 2, "save_strategy": "steps", "save_steps": 2}
    make_trainer(st_model_dir, tmp_path / "a", args=args).train()
    checkpoint = tmp_path / "a" / "checkpoint-2"
    with pytest.raises(ValueError, match="alpha=0.5 but this sampler has alpha=0.25"):
        make_trainer(st_model_dir, tmp_path / "b", args=args, alpha=0.25).train(
            resume_from_checkpoint=str(checkpoint))
    (checkpoint / "hybrid_sampler.json").unlink()
    with pytest.raises(ValueError, match="hybrid_sampler.json does not exist"):
        make_trainer(st_model_dir, tmp_path / "c", args=args).train(
            resume_from_checkpoint=str(checkpoint))


def test_model_card_records_the_sampler(st_model_dir, tmp_path):
    trainer = make_trainer(st_model_dir, tmp_path, mode="xy", lang_exponent=0.3,
                           args={"max_steps": 1})
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    card = (tmp_path / "final" / "README.md").read_text()
    for entry in ("`hybrid_mode`: xy", "`hybrid_alpha`: 0.5", "`hybrid_lang_exponent`: 0.3",
                  "`batch_sampler`: hbt_fast.HybridSampler", "hybrid-batch-training"):
        assert entry in card


def _sampler_for(dataset):
    ids = labels_to_ids(dataset["language"], dataset["group"])
    return HybridSampler(ids.languages, ids.groups, 8)


@pytest.mark.parametrize("make_batch_sampler", [
    lambda dataset: HybridSampler,
    lambda dataset: HybridBatchSampler,
    _sampler_for,
    lambda dataset: HybridBatchSampler(_sampler_for(dataset)),
], ids=["HybridSampler", "HybridBatchSampler", "HybridSampler instance", "HybridBatchSampler instance"])
def test_stock_trainer_refuses_our_samplers(st_model_dir, tmp_path, make_batch_sampler):
    dataset = datasets.Dataset.from_dict(pair_rows(40))
    model = tiny_sentence_transformer(st_model_dir)
    args = SentenceTransformerTrainingArguments(
        str(tmp_path), batch_sampler=make_batch_sampler(dataset), report_to="none", use_cpu=True)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset,
                                         loss=MultipleNegativesRankingLoss(model))
    with pytest.raises(TypeError, match="Use hbt_fast.integrations.sentence_transformers.HybridTrainer"):
        trainer.get_train_dataloader()


@pytest.mark.parametrize("dataset_change, options, error, message", [
    (None, {"mode": "zz"}, ValueError, "mode.*'zz'"),
    (None, {"alpha": 1.5}, ValueError, "alpha.*1.5"),
    (None, {"language_column": "lang"}, ValueError, "no column 'lang'"),
    (None, {"args": {"batch_sampler": "no_duplicates"}}, ValueError, "batch_sampler"),
    (lambda d: d.cast_column("group", datasets.Value("string")).map(
        lambda row, i: {"group": None if i == 5 else row["group"]}, with_indices=True),
     {}, ValueError, "'group' has no value at row 5"),
    (lambda d: d.map(lambda row: {"query": 1}), {}, TypeError, "'query' must hold strings"),
    (lambda d: d.to_iterable_dataset(), {}, TypeError, "must be a datasets.Dataset of pair rows, or a DatasetDict"),
    (lambda d: {"a": d, "b": d.to_iterable_dataset()}, {}, TypeError, r"train_dataset\['b'\] must be a datasets.Dataset"),
])
def test_bad_arguments_raise_at_construction(st_model_dir, tmp_path, dataset_change, options,
                                             error, message):
    dataset = datasets.Dataset.from_dict(pair_rows(40))
    if dataset_change is not None:
        dataset = dataset_change(dataset)
    with pytest.raises(error, match=message):
        make_trainer(st_model_dir, tmp_path, dataset, **options)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(num_groups=st.integers(24, 48), batch_size=st.integers(2, 8),
       mode=st.sampled_from(["xx", "xy", "hybrid"]), alpha=st.floats(0, 1),
       seed=st.integers(0, 2**16))
def test_property_every_batch_obeys_the_rules(st_model_dir, tmp_path, num_groups, batch_size,
                                              mode, alpha, seed):
    dataset = datasets.Dataset.from_dict(pair_rows(num_groups, seed=seed))
    with warnings.catch_warnings():  # a language too small for X-X batches is allowed here
        warnings.filterwarnings("ignore", "languages .* have fewer than", UserWarning)
        trainer = make_trainer(st_model_dir, tmp_path, dataset, mode=mode, alpha=alpha,
                               args={"per_device_train_batch_size": batch_size, "seed": seed})
    kinds = {check_batch(rows, batch_size) for rows in epoch_of_batches(trainer)}
    assert kinds <= ({"xx"} if mode == "xx" else {"xy"} if mode == "xy" else {"xx", "xy"})


@pytest.mark.parametrize("column, row, value", [
    ("query", 3, ""), ("query", 0, "  \n"), ("passage", 7, "\t"), ("negative_1", 2, " "),
])
def test_empty_texts_are_refused_like_the_jsonl_reader_does(st_model_dir, tmp_path, column,
                                                            row, value):
    dataset = datasets.Dataset.from_dict(pair_rows(10, negatives=1)).map(
        lambda r, i: {column: value if i == row else r[column]}, with_indices=True)
    with pytest.raises(ValueError, match=rf"column '{column}' must hold non-empty strings, "
                                         rf"found {re.escape(repr(value))} at row {row}"):
        make_trainer(st_model_dir, tmp_path, dataset, negative_columns=["negative_1"])


def test_nan_groups_are_refused_not_merged(st_model_dir, tmp_path):
    # every NaN group would be one group: unrelated rows trained as translations of each other
    dataset = datasets.Dataset.from_dict(pair_rows(10)).map(
        lambda r, i: {"group": float("nan") if i in (4, 9) else float(i // 3)}, with_indices=True)
    with pytest.raises(ValueError, match=r"'group' \(groups\): groups: row 4 has no label"):
        make_trainer(st_model_dir, tmp_path, dataset)


# ---------------------------------------------------------------- language column
def test_the_lang_column_of_hbt_fast_pairs_is_read_without_naming_it(st_model_dir, tmp_path):
    dataset = datasets.Dataset.from_dict(pair_rows(40))
    named = make_trainer(st_model_dir, tmp_path / "a", dataset)
    renamed = make_trainer(st_model_dir, tmp_path / "b", dataset.rename_column("language", "lang"))
    assert epoch_of_batches(renamed) == epoch_of_batches(named)
    assert "lang" not in renamed.preprocess_dataset(dataset.rename_column("language", "lang"),
                                                    dataset_name="eval").column_names


@pytest.mark.parametrize("columns, problem", [
    (lambda d: d.add_column("lang", d["language"]), "both"),
    (lambda d: d.remove_columns("language"), "neither"),
])
def test_an_unclear_language_column_must_be_named(st_model_dir, tmp_path, columns, problem):
    dataset = columns(datasets.Dataset.from_dict(pair_rows(40)))
    with pytest.raises(ValueError, match=f"has {problem} of the columns 'language' and 'lang'"):
        make_trainer(st_model_dir, tmp_path, dataset)


def test_split_lareqa_pairs_train_as_written(st_model_dir, data_dir, tmp_path):
    from hbt_fast.data import split_lareqa

    split_lareqa(data_dir / "xquad-r", tmp_path / "pairs", languages=["de", "en", "ru"])
    dataset = datasets.Dataset.from_json(str(tmp_path / "pairs" / "train.jsonl"))
    trainer = make_trainer(st_model_dir, tmp_path / "run", dataset)
    assert trainer._label_columns[0] == "lang"
    for rows in epoch_of_batches(trainer)[:3]:
        assert len(rows) == 8


# ---------------------------------------------------------------- unused hard negatives
@pytest.mark.parametrize("negative_columns, unread", [
    ([], ["negative_1", "negative_2", "hard_negs", "negatives"]),
    (["negative_1"], ["negative_2", "hard_negs", "negatives"]),
    (["negative_1", "negative_2", "hard_negs"], ["negatives"]),
])
def test_columns_that_look_like_negatives_but_are_not_read_are_named_once(
        st_model_dir, tmp_path, negative_columns, unread):
    rows = pair_rows(40, negatives=2)
    rows["hard_negs"] = rows["negative_1"]
    rows["negatives"] = [[text] for text in rows["negative_2"]]  # hbt-fast's JSONL: a list
    rows["negative_score"] = [0.5] * len(rows["query"])  # not texts
    rows["negation"] = rows["query"]  # not a negative
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_trainer(st_model_dir, tmp_path, datasets.Dataset.from_dict(rows),
                     negative_columns=negative_columns)
    said = [w for w in caught if "hard negatives" in str(w.message)]
    assert len(said) == 1 and f"columns {unread} look like hard negatives" in str(said[0].message)
    assert said[0].filename == __file__  # points at the user's line


def test_no_warning_when_every_negative_column_is_read(st_model_dir, tmp_path):
    dataset = datasets.Dataset.from_dict(pair_rows(40, negatives=2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_trainer(st_model_dir, tmp_path, dataset, negative_columns=["negative_1", "negative_2"])


# ---------------------------------------------------------------- batch kinds in the logs
@pytest.mark.parametrize("mode, accumulation", [("hybrid", 1), ("hybrid", 2), ("mixed", 1)])
def test_logs_carry_the_share_of_each_batch_kind_so_far(st_model_dir, tmp_path, mode, accumulation):
    trainer = make_trainer(st_model_dir, tmp_path, mode=mode, args={
        "max_steps": 8, "logging_steps": 1, "gradient_accumulation_steps": accumulation,
        "per_device_train_batch_size": 4})
    trainer.train()
    kinds = [check_batch(rows, 4) if mode != "mixed" else "mixed"
             for rows in trainer.data_collator.batches]
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in logs] == list(range(1, 9))
    expected_kinds = {"hybrid": {"xx", "xy"}, "mixed": {"mixed"}}[mode]
    for entry in logs:
        trained = kinds[:entry["step"] * accumulation]  # the loader may have fetched more
        shares = {key: value for key, value in entry.items() if key.startswith("batches/")}
        assert shares == pytest.approx(
            {f"batches/{kind}_share": trained.count(kind) / len(trained) for kind in expected_kinds})
    if mode == "hybrid":
        assert 0 < logs[-1]["batches/xx_share"] < 1
