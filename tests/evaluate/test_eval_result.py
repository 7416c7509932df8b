"""TaskResult: named metrics, the dict view results.json is written from, metric directions."""

import math

import pytest

from hbt_fast.evaluate import TaskResult


@pytest.fixture
def result():
    return TaskResult(
        task="xquad-r",
        languages=["de", "en"],
        headline={"mono": {"map@20": 0.8, "setups": 2},
                  "multi": {"map@20": 0.5, "rank_distance": 12.0, "setups": 2}},
        per_language={"de": {"rank_distance": 10.0}, "en": {"rank_distance": 14.0}},
        matrix={"map@20": [[0.8, 0.4], [0.3, 0.8]]},
        settings={"k": 20},
    )


def test_metric_reads_a_headline_figure_by_section_and_name(result):
    assert result.metric("multi/map@20") == 0.5
    assert result.metric("multi/rank_distance") == 12.0


@pytest.mark.parametrize("name", ["multi/map@10", "cross/map@20", "multi", "multi/setups", ""])
def test_unknown_metric_names_the_metric_and_lists_the_available_ones(result, name):
    with pytest.raises(ValueError, match=r"not reported by task 'xquad-r'; available: mono/map@20"):
        result.metric(name)


def test_metrics_lists_every_float_figure_without_counts(result):
    assert result.metrics() == {"mono/map@20": 0.8, "multi/map@20": 0.5,
                                "multi/rank_distance": 12.0}


def test_mapping_access_matches_to_dict(result):
    as_dict = result.to_dict()
    assert list(as_dict) == ["task", "k", "languages", "mono", "multi", "matrix", "per_language"]
    assert dict(result) == as_dict
    assert result["mono"]["map@20"] == 0.8 and result["k"] == 20
    with pytest.raises(KeyError):
        result["cross"]


@pytest.mark.parametrize(
    "metric, better, worse",
    [("multi/map@20", 0.6, 0.4), ("multi/rank_distance", 11.0, 13.0)],
)
def test_is_better_follows_the_metric_direction(metric, better, worse, result):
    assert result.is_better(metric, None)
    assert result.is_better(metric, math.nan)
    assert not result.is_better(metric, better)
    assert result.is_better(metric, worse)
    assert TaskResult.higher_is_better(metric) == (better > worse)
