"""What a resume compares: the training data's content (texts included, digested while reading),
the number of processes (named as such), paths by the location they name (not their spelling),
and overridden settings that the run can actually apply."""

import json
import os

import pytest
import torch
from train_helpers import make_trainer, synthetic_corpus

from hbt_fast.data import PairCorpus, read_pairs
from hbt_fast.train.checkpoint import MANIFEST, STATE_FILE, sha256_of


def rewritten(corpus, text=lambda s: s.upper()):
    """The same groups and languages in the same order, every query and passage rewritten."""
    return PairCorpus([text(q) for q in corpus.queries], [text(p) for p in corpus.passages],
                      corpus.languages, corpus.groups)


def test_resume_refuses_data_whose_texts_were_rewritten(tiny_model_dir, tmp_path):
    corpus = synthetic_corpus()
    make_trainer(tiny_model_dir, tmp_path, corpus=corpus, steps=2).train()
    with pytest.raises(ValueError, match=r"resume: the training data unused differs from the data of the run in "
                                         r".*step-00000002 \(content digest \w+, saved \w+\)"):
        make_trainer(tiny_model_dir, tmp_path, corpus=rewritten(corpus), steps=4, resume=True,
                     override=("steps",))
    assert make_trainer(tiny_model_dir, tmp_path, corpus=synthetic_corpus(), steps=4, resume=True,
                        override=("steps",)).step == 2


def test_the_digest_covers_every_field_and_is_computed_while_reading(tmp_path, monkeypatch):
    corpus = synthetic_corpus(negatives=1)
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in corpus.records()), encoding="utf-8")
    lists_digest = corpus.digest

    def second_pass(self):
        raise AssertionError("the reader hashed the pairs again after reading them")

    monkeypatch.setattr(PairCorpus, "_content_digest", second_pass)
    assert read_pairs(path).digest == lists_digest  # the same digest, from the one pass over the file
    monkeypatch.undo()
    changes = [rewritten(corpus, lambda s: s + " "),
               PairCorpus(corpus.queries, corpus.passages, corpus.languages, [str(g) for g in corpus.groups]),
               PairCorpus.with_negative_lists(corpus.queries, corpus.passages, corpus.languages, corpus.groups,
                                              [[] for _ in corpus.queries]),
               # texts moved between fields: no two rows may read alike
               PairCorpus([q + p for q, p in zip(corpus.queries, corpus.passages)], [""] * len(corpus),
                          corpus.languages, corpus.groups)]
    assert len({lists_digest, *(changed.digest for changed in changes)}) == 1 + len(changes)


def rewrite_checkpoint_file(checkpoint, name, text):
    """``checkpoint/name`` replaced by ``text``, with a manifest that matches (as a run wrote it)."""
    (checkpoint / name).write_text(text)
    manifest = json.loads((checkpoint / MANIFEST).read_text())
    manifest["files"][name] = {"sha256": sha256_of(checkpoint / name), "bytes": (checkpoint / name).stat().st_size}
    (checkpoint / MANIFEST).write_text(json.dumps(manifest))


def test_a_run_saved_before_duplicate_masking_existed_does_not_resume_with_it_silently(tiny_model_dir, tmp_path):
    """That version never masked: resuming it with today's default (masking on) would change the
    training halfway, so the difference is named; keeping it off resumes."""
    make_trainer(tiny_model_dir, tmp_path, steps=2, mask_duplicates=False).train()
    checkpoint = tmp_path / "checkpoints" / "step-00000002"
    description = json.loads((checkpoint / "run_config.json").read_text())
    del description["config"]["mask_duplicates"]
    rewrite_checkpoint_file(checkpoint, "run_config.json", json.dumps(description))
    with pytest.raises(ValueError, match=r"settings differ .*: mask_duplicates \(saved False, now True\)"):
        make_trainer(tiny_model_dir, tmp_path, steps=4, resume=True, override=("steps",))
    resumed = make_trainer(tiny_model_dir, tmp_path, steps=4, resume=True, override=("steps",),
                           mask_duplicates=False)
    assert resumed.step == 2


def as_if_written_by_two_processes(checkpoint):
    """The files a 2-rank run with the same global batch writes: its world size in run_config.json
    and the sampler state, a random state per rank, a manifest that matches."""
    description = json.loads((checkpoint / "run_config.json").read_text())
    description["world_size"] = 2
    (checkpoint / "run_config.json").write_text(json.dumps(description))
    state = torch.load(checkpoint / STATE_FILE, weights_only=True)
    state["sampler"].update(world_size=2, batch_size=state["sampler"]["batch_size"] // 2)
    torch.save(state, checkpoint / STATE_FILE)
    torch.save(torch.load(checkpoint / "random-rank0.pt", weights_only=True), checkpoint / "random-rank1.pt")
    manifest = json.loads((checkpoint / MANIFEST).read_text())
    for path in checkpoint.rglob("*"):
        if path.is_file() and path.name != MANIFEST:
            manifest["files"][str(path.relative_to(checkpoint))] = {"sha256": sha256_of(path),
                                                                    "bytes": path.stat().st_size}
    (checkpoint / MANIFEST).write_text(json.dumps(manifest))


def test_resume_with_another_number_of_processes_says_world_size(tiny_model_dir, tmp_path):
    make_trainer(tiny_model_dir, tmp_path, steps=2).train()
    as_if_written_by_two_processes(tmp_path / "checkpoints" / "step-00000002")
    with pytest.raises(ValueError, match=r"resume: the run in .*step-00000002 ran on 2 process\(es\) \(world size "
                                         r"2\), this one on 1; resume with the same world size"):
        make_trainer(tiny_model_dir, tmp_path, steps=4, resume=True, override=("steps",))


def test_resume_compares_the_locations_paths_name_not_their_spelling(tiny_model_dir, tmp_path, monkeypatch):
    (tmp_path / "data.jsonl").write_text("", encoding="utf-8")
    run = tmp_path / "runs" / "first"
    make_trainer(tiny_model_dir, run, train=str(tmp_path / "data.jsonl"), steps=2).train()
    os.symlink(run, tmp_path / "latest")
    monkeypatch.chdir(tmp_path)
    for output in ("runs/first", "./runs/../runs/first", "latest"):
        resumed = make_trainer(tiny_model_dir, output, train="data.jsonl", steps=2, resume=True)
        assert resumed.step == 2, output
        resumed.close()  # one run at a time: release the folder's lock for the next spelling
    (tmp_path / "other.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match=r"settings differ .*: train \(saved '.*data.jsonl', now 'other.jsonl'\)"):
        make_trainer(tiny_model_dir, "runs/first", train="other.jsonl", steps=2, resume=True)


def test_an_overridden_token_length_reaches_the_resumed_model(tiny_model_dir, tmp_path):
    make_trainer(tiny_model_dir, tmp_path, steps=2, max_passage_length=16).train()
    resumed = make_trainer(tiny_model_dir, tmp_path, steps=4, resume=True, max_passage_length=24,
                           override=("steps", "max_passage_length"))
    assert resumed.encoder.settings.max_passage_length == 24
    assert max(map(len, resumed.tokens.passages)) <= 24
