"""LAReQAEvaluator inside sentence-transformers: the same figures as our scorer, prompts used."""

import pytest

from lareqa_files import paragraph, write_language

sentence_transformers = pytest.importorskip("sentence_transformers")


@pytest.fixture(scope="module")
def prompted_model(tiny_model_dir, tmp_path_factory):
    from hbt_fast.models import TextEncoder

    folder = tmp_path_factory.mktemp("st-model") / "saved"
    TextEncoder.from_pretrained(tiny_model_dir, show_progress=False).save(folder)
    model = sentence_transformers.SentenceTransformer(str(folder), device="cpu")
    model.prompts = {"query": "query: ", "document": "passage: "}  # e5-style prompts
    return model


@pytest.fixture
def lareqa_folder(tmp_path):
    write_language(tmp_path, "aa", paragraph(["the river city.", "music school war.", "king team."],
                                             [("q1", "which river?", 0), ("q2", "which king?", 35)]))
    write_language(tmp_path, "bb", paragraph(["der Fluss Stadt.", "der König Team."],
                                             [("q1", "welcher Fluss?", 0), ("q2", "welcher König?", 17)]))
    return tmp_path


def test_figures_equal_the_scorer_on_prompted_embeddings(prompted_model, lareqa_folder):
    from hbt_fast.evaluate import load_lareqa, score_lareqa
    from hbt_fast.integrations.sentence_transformers import LAReQAEvaluator

    evaluator = LAReQAEvaluator(lareqa_folder, name="tiny")
    metrics = evaluator(prompted_model)
    assert evaluator.primary_metric == "tiny_multi_map@20" and evaluator.primary_metric in metrics
    data = load_lareqa(lareqa_folder)
    queries = {lang: prompted_model.encode(["query: " + q for q in e.questions])
               for lang, e in data.by_language.items()}
    candidates = {lang: prompted_model.encode(["passage: " + s for s in e.sentences])
                  for lang, e in data.by_language.items()}
    expected = score_lareqa(data, queries, candidates)
    for name, value in expected.metrics().items():
        assert metrics[f"tiny_{name.replace('/', '_')}"] == pytest.approx(value, abs=1e-6)
    assert set(metrics) == {f"tiny_{s}_{m}" for s, m in (
        ("mono", "map@20"), ("mono", "recall@1"), ("cross", "map@20"), ("cross", "recall@1"),
        ("multi", "map@20"), ("multi", "recall@10"), ("multi", "rank_distance"))}


def test_runs_as_the_evaluator_of_a_trainer(prompted_model, lareqa_folder, tmp_path):
    Dataset = pytest.importorskip("datasets", reason="needs the datasets extra").Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from hbt_fast.integrations.sentence_transformers import LAReQAEvaluator

    train = Dataset.from_dict({"anchor": ["which river?", "which king?"],
                               "positive": ["the river city.", "king team."]})
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "run"), max_steps=1,
                                                per_device_train_batch_size=2, report_to=[],
                                                use_cpu=True)
    trainer = SentenceTransformerTrainer(model=prompted_model, args=args, train_dataset=train,
                                         loss=MultipleNegativesRankingLoss(prompted_model),
                                         evaluator=LAReQAEvaluator(lareqa_folder))
    scores = trainer.evaluate()
    assert 0 <= scores["eval_xquad-r_multi_map@20"] <= 1
    assert scores["eval_xquad-r_multi_rank_distance"] >= 1  # two relevant candidates per query


def test_bad_data_fails_when_the_evaluator_is_built(tmp_path):
    from hbt_fast.integrations.sentence_transformers import LAReQAEvaluator

    with pytest.raises(FileNotFoundError, match="no <lang>.json files"):
        LAReQAEvaluator(tmp_path)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        LAReQAEvaluator(tmp_path, batch_size=0)
