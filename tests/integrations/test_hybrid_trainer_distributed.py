"""HybridTrainer under torchrun (2 gloo processes): the ranks of a step share the batch kind and
language and hold disjoint groups, so their gathered batch has no false negatives."""

import json
from pathlib import Path

import pytest
from torchrun_launch import run_torchrun, stderr_tail

pytest.importorskip("sentence_transformers", reason="needs sentence-transformers")
pytest.importorskip("datasets", reason="needs datasets")


@pytest.mark.slow
def test_ranks_of_a_step_share_kind_and_language_and_split_groups(st_model_dir, tmp_path):
    worker = Path(__file__).parent / "hybrid_trainer_worker.py"
    # It hung in 2 of about 8 full-suite CI runs (0 of 14 alone; 1 of 3 beside a busy core):
    # rank 0 freeing the trainer after destroy_process_group; the worker now leaves by os._exit
    # after its barrier. Two attempts stay until that is shown to be the whole story.
    done = run_torchrun(["--nproc_per_node=2", worker, st_model_dir, tmp_path], timeout=180, attempts=2)
    assert done.returncode == 0, stderr_tail(done.stderr, keep=6000)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) > 0
    for step in zip(*ranks):
        pairs = [[(q.split()[1:], p.split()[1:]) for q, p in rows] for rows in step]
        kinds = [{q[1] == p[1] for q, p in rows} for rows in pairs]
        assert kinds[0] == kinds[1] and len(kinds[0]) == 1  # one kind per step
        if kinds[0] == {True}:  # X-X: one language across both ranks
            assert len({q[1] for rows in pairs for q, _ in rows}) == 1
        groups = [{q[0] for q, _ in rows} for rows in pairs]
        assert len(groups[0]) == len(groups[1]) == 4 and not groups[0] & groups[1]
