"""hbt_fast.integrations.mteb: XQuAD-R / MLQA-R as MTEB tasks over a local folder give the same
mono / cross / multi mAP@20 as hbt_fast's own evaluation, offline."""


import pytest

pytest.importorskip("sentence_transformers", reason="needs sentence-transformers")
mteb = pytest.importorskip("mteb", reason="needs mteb (the test extra)")

from lareqa_files import paragraph, write_language  # noqa: E402
from sentence_transformers.sentence_transformer.modules import Normalize  # noqa: E402
from st_helpers import tiny_sentence_transformer  # noqa: E402

from hbt_fast.evaluate import evaluate_lareqa  # noqa: E402
from hbt_fast.integrations.mteb import LAReQARetrieval, lareqa_tasks, macro_average  # noqa: E402


@pytest.fixture
def small_xquad(tmp_path):
    """Three languages, two paragraphs each, three questions: enough for imperfect rankings."""
    folder = tmp_path / "xquad-r"
    folder.mkdir()
    texts = {
        "en": (["The river flows north.", "The city has a bridge."], ["Football is popular.",
               "The team won twice.", "Fans sing loudly."], ["where does the river flow?",
               "what is popular?", "how often did the team win?"]),
        "de": (["Der Fluss fließt nach Norden.", "Die Stadt hat eine Brücke."], ["Fußball ist "
               "beliebt.", "Die Mannschaft gewann zweimal.", "Fans singen laut."],
               ["wohin fließt der Fluss?", "was ist beliebt?", "wie oft gewann die Mannschaft?"]),
        "es": (["El río fluye al norte.", "La ciudad tiene un puente."], ["El fútbol es popular.",
               "El equipo ganó dos veces.", "Los aficionados cantan."],
               ["¿adónde fluye el río?", "¿qué es popular?", "¿cuántas veces ganó el equipo?"]),
    }
    for language, (first, second, questions) in texts.items():
        start_second = len(second[0]) + 1
        write_language(folder, language,
                       paragraph(first, [("q1", questions[0], 0)]),
                       paragraph(second, [("q2", questions[1], 0), ("q3", questions[2], start_second)]))
    return folder


class PromptedEncoder:
    """hbt_fast's encoder interface over a SentenceTransformer, as MTEB calls it."""

    def __init__(self, model):
        self.model = model

    def encode_queries(self, texts):
        return self.model.encode_query(list(texts), convert_to_numpy=True)

    def encode_passages(self, texts):
        return self.model.encode_document(list(texts), convert_to_numpy=True)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")
def test_mteb_scores_equal_hbt_fast_evaluation(st_model_dir, small_xquad, tmp_path):
    # MTEB scores with the model's similarity (cosine); normalised embeddings make the dot
    # product hbt_fast ranks with the same cosine.
    model = tiny_sentence_transformer(st_model_dir)
    model.append(Normalize())
    tasks = lareqa_tasks(small_xquad)
    assert [task.metadata.name for task in tasks] == ["XQuADR-mono", "XQuADR-cross", "XQuADR-multi"]
    results = mteb.evaluate(model, tasks=tasks, cache=None)
    got = macro_average(results)
    want = evaluate_lareqa(PromptedEncoder(model), small_xquad)
    for setting in ("mono", "cross", "multi"):
        # MTEB rounds each subset's score to 5 decimals.
        assert got[f"XQuADR-{setting}"] == pytest.approx(want[setting]["map@20"], abs=1e-5)
    assert 0 < want["multi"]["map@20"] < 1  # an imperfect ranking: the comparison means something
    subsets = {name for entry in results.task_results if entry.task_name == "XQuADR-cross"
               for split in entry.scores.values() for name in (s["hf_subset"] for s in split)}
    assert subsets == {f"{x}-{y}" for x in ("de", "en", "es") for y in ("de", "en", "es") if x != y}


def test_multi_setting_has_one_relevant_candidate_per_language(small_xquad):
    task = LAReQARetrieval(small_xquad, "multi")
    task.load_data()
    split = task.dataset["de"]["test"]
    assert len(split["corpus"]) == 15 and len(split["queries"]) == 3
    assert split["relevant_docs"]["de/q3"] == {"de/3": 1, "en/3": 1, "es/3": 1}


@pytest.mark.parametrize("kwargs, message", [
    ({"setting": "both"}, "setting must be one of"),
    ({"task": "squad"}, "task must be one of"),
    ({"candidate_text": "title"}, "candidate_text must be"),
])
def test_bad_settings_are_refused(small_xquad, kwargs, message):
    with pytest.raises(ValueError, match=message):
        LAReQARetrieval(small_xquad, **kwargs)
