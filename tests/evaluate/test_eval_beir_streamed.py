"""BEIR layout with an embedding cache: the corpus read as a stream and encoded in shards gives
the in-memory figures exactly, reuses and resumes its shards, names bad lines and repeated ids;
``hbt-fast eval --embedding-cache``."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import hbt_fast.data.beir as beir_data
from hbt_fast.cli import main
from hbt_fast.data.beir import CorpusIds
from hbt_fast.evaluate import HashedNgramEncoder, evaluate_beir
from hbt_fast.evaluate.shards import PROBE_ROWS


def write_language(folder, rng, n_docs=61, n_queries=9):
    folder.mkdir(parents=True)
    words = [f"w{i}" for i in range(30)]
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for i in range(n_docs):
            # every fifth passage repeats an earlier text: ties in every ranking
            text = " ".join(rng.choice(words, 5)) if i % 5 else f"same text {i % 3}"
            handle.write(json.dumps({"_id": f"d{i}", "title": "", "text": text}) + "\n")
    queries = {f"q{i}": " ".join(rng.choice(words, 3)) for i in range(n_queries)}
    (folder / "queries.tsv").write_text("".join(f"{q}\t{t}\n" for q, t in queries.items()),
                                        encoding="utf-8")
    lines = [f"{q} Q0 d{d} {rng.integers(1, 3)}\n" for q in queries
             for d in rng.choice(n_docs, 3, replace=False)]
    (folder / "qrels.txt").write_text("".join(lines), encoding="utf-8")


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    write_language(tmp_path / "data" / "xx", rng)
    write_language(tmp_path / "data" / "yy", rng, n_docs=23)
    return tmp_path / "data"


class Counting(HashedNgramEncoder):
    def __init__(self, *args, round_to=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.passages, self.round_to, self.cleared = 0, round_to, 0

    def encode_passages(self, texts):
        self.passages += len(texts)
        embeddings = self.encode(texts)
        return embeddings if self.round_to is None else embeddings.astype(self.round_to).astype(np.float32)

    def clear_cache(self):
        self.cleared += 1


@pytest.mark.parametrize("normalize", [False, True])
def test_streamed_figures_equal_the_in_memory_ones(data, tmp_path, normalize):
    in_memory = evaluate_beir(HashedNgramEncoder(dim=32), data, normalize=normalize)
    streamed = evaluate_beir(HashedNgramEncoder(dim=32), data, normalize=normalize,
                             embedding_cache=tmp_path / "cache", shard_rows=7)
    assert streamed.per_language == in_memory.per_language
    assert streamed.headline == in_memory.headline
    assert streamed.per_language["xx"]["documents"] == 61
    assert streamed.settings == {"index": "exact", "embedding_dtype": "float32"}
    assert sorted(p.name for p in (tmp_path / "cache" / "xx").glob("*.npy"))[-1] == "passages-00008.npy"


def test_float16_figures_are_those_of_the_rounded_embeddings(data, tmp_path):
    rounded = evaluate_beir(Counting(dim=32, round_to=np.float16), data)
    streamed = evaluate_beir(Counting(dim=32), data, embedding_cache=tmp_path / "cache",
                             shard_rows=10, embedding_dtype="float16")
    assert streamed.per_language == rounded.per_language


def test_a_second_run_encodes_only_the_queries_and_a_check(data, tmp_path):
    first, second = Counting(dim=32), Counting(dim=32)
    a = evaluate_beir(first, data, embedding_cache=tmp_path / "cache", shard_rows=10)
    b = evaluate_beir(second, data, embedding_cache=tmp_path / "cache", shard_rows=10)
    assert a.per_language == b.per_language
    assert first.passages == 61 + 23 and first.cleared == 7 + 3  # after every chunk encoded
    assert second.passages == 2 * PROBE_ROWS


def test_a_malformed_line_names_it_and_keeps_the_shards_before_it(data, tmp_path):
    corpus = data / "xx" / "corpus.jsonl"
    lines = corpus.read_text(encoding="utf-8").splitlines(keepends=True)
    good = lines[25]
    lines[25] = '{"_id": "d25", "text": 7}\n'
    corpus.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(ValueError, match=r"corpus.jsonl:26: 'title' and 'text' must be strings"):
        evaluate_beir(Counting(dim=32), data, languages=["xx"], embedding_cache=tmp_path / "cache",
                      shard_rows=10)
    manifest = json.loads((tmp_path / "cache" / "xx" / "manifest.json").read_text())
    assert [entry["file"] for entry in manifest["shards"]] == ["passages-00000.npy", "passages-00001.npy"]
    lines[25] = good
    corpus.write_text("".join(lines), encoding="utf-8")
    encoder = Counting(dim=32)
    result = evaluate_beir(encoder, data, languages=["xx"], embedding_cache=tmp_path / "cache",
                           shard_rows=10)
    assert encoder.passages == 61 - 20 + PROBE_ROWS
    assert result.per_language == evaluate_beir(Counting(dim=32), data, languages=["xx"]).per_language


@pytest.mark.parametrize("colliding", [False, True])
def test_a_repeated_document_id_names_both_lines(data, tmp_path, monkeypatch, colliding):
    if colliding:  # every id hashes alike: distinct ids must still pass, repeats still be found
        monkeypatch.setattr(beir_data, "hash", lambda text: 42, raising=False)
        evaluate_beir(HashedNgramEncoder(dim=32), data, languages=["yy"],
                      embedding_cache=tmp_path / "ok", shard_rows=4)
    corpus = data / "xx" / "corpus.jsonl"
    with open(corpus, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"_id": "d17", "text": "again"}) + "\n")
    expected = r"corpus.jsonl:62: document id 'd17' already on line 18"
    with pytest.raises(ValueError, match=expected):
        evaluate_beir(HashedNgramEncoder(dim=32), data, languages=["xx"])
    with pytest.raises(ValueError, match=expected):
        evaluate_beir(HashedNgramEncoder(dim=32), data, languages=["xx"],
                      embedding_cache=tmp_path / "cache", shard_rows=4)


def test_only_the_judged_documents_ids_are_kept(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "text": "t"}) + "\n" for i in range(50)))
    ids = CorpusIds(corpus, {"d3", "d41", "gone"})
    records = list(beir_data.iter_corpus(corpus))
    for start in range(0, 50, 16):
        lines, docids, _ = zip(*records[start:start + 16])
        ids.add(docids, lines)
    assert ids.rows == {"d3": 3, "d41": 41} and ids.count == 50


def test_cache_options_are_checked(data, tmp_path):
    with pytest.raises(ValueError, match="shard_rows applies to an embedding cache; give embedding_cache too"):
        evaluate_beir(HashedNgramEncoder(dim=32), data, shard_rows=10)
    with pytest.raises(ValueError, match=r"embedding_cache .* lies inside the data folder"):
        evaluate_beir(HashedNgramEncoder(dim=32), data, embedding_cache=data / "xx" / "cache")
    with pytest.raises(ValueError, match="embedding dtype must be one of"):
        evaluate_beir(HashedNgramEncoder(dim=32), data, embedding_cache=tmp_path / "c",
                      embedding_dtype="bfloat16")


def test_cli_with_an_embedding_cache(data, tmp_path, capsys):
    common = ["eval", "--model", "hashed-ngrams", "--task", "miracl", "--data", str(data),
              "--no-progress"]
    assert main([*common, "--output", str(tmp_path / "memory")]) == 0
    assert main([*common, "--output", str(tmp_path / "streamed"), "--embedding-cache",
                 str(tmp_path / "cache"), "--shard-size", "9", "--embedding-dtype", "float32"]) == 0
    memory, streamed = (json.loads((tmp_path / name / "results.json").read_text())
                        for name in ("memory", "streamed"))
    assert streamed["per_language"] == memory["per_language"]
    assert (tmp_path / "cache" / "yy" / "passages-00002.npy").is_file()


@pytest.mark.parametrize("flags, message", [
    (["--embedding-cache", "{data}/xx/cache"], r"--embedding-cache .* lies inside the --data folder"),
    (["--shard-size", "10"], "--shard-size needs --embedding-cache DIR"),
    (["--embedding-cache", "{tmp}/notes.txt"], "--embedding-cache .*notes.txt exists and is not a folder"),
    (["--task", "tatoeba", "--embedding-dtype", "float16"], "--embedding-dtype applies to --task miracl"),
])
def test_cli_refuses_bad_cache_options_in_one_line(data, tmp_path, capsys, flags, message):
    (tmp_path / "notes.txt").write_text("mine")
    flags = [flag.format(data=data, tmp=tmp_path) for flag in flags]
    task = [] if "--task" in flags else ["--task", "miracl"]
    code = main(["eval", "--model", "hashed-ngrams", *task, "--data", str(data), "--output",
                 str(tmp_path / "out"), "--no-progress", *flags])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert re.search(message, err), err


def test_kill_9_mid_encoding_resumes_keeping_the_finished_shards(tmp_path):
    """``hbt-fast eval --embedding-cache`` killed while it writes shards (one passage each, so
    the kill lands among the writes of shards and manifest): the next run keeps every listed
    shard untouched and ends with the figures of a run never interrupted."""
    write_language(tmp_path / "data" / "xx", np.random.default_rng(1), n_docs=150)
    common = ["eval", "--model", "hashed-ngrams", "--task", "miracl", "--data", str(tmp_path / "data"),
              "--no-progress", "--embedding-cache", str(tmp_path / "cache"), "--shard-size", "1"]
    cli = "import sys; from hbt_fast.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with open(tmp_path / "killed.stderr", "w") as errors:
        process = subprocess.Popen([sys.executable, "-c", cli, *common, "--output", str(tmp_path / "killed")],
                                   env=env, stdout=subprocess.DEVNULL, stderr=errors)
    shards = tmp_path / "cache" / "xx"
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if len(list(shards.glob("passages-*.npy"))) >= 10:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    process.wait()
    assert process.returncode == -signal.SIGKILL, (tmp_path / "killed.stderr").read_text()[-2000:]
    listed = {entry["file"]: (shards / entry["file"]).stat().st_mtime_ns
              for entry in json.loads((shards / "manifest.json").read_text())["shards"]}
    assert 9 <= len(listed) < 150  # the 10th may be renamed into place but not yet listed
    assert main([*common, "--output", str(tmp_path / "resumed")]) == 0
    assert {name: (shards / name).stat().st_mtime_ns for name in listed} == listed
    assert main(["eval", "--model", "hashed-ngrams", "--task", "miracl", "--data", str(tmp_path / "data"),
                 "--no-progress", "--output", str(tmp_path / "memory")]) == 0
    resumed, memory = (json.loads((tmp_path / name / "results.json").read_text())
                       for name in ("resumed", "memory"))
    assert resumed["per_language"] == memory["per_language"]


def test_one_progress_bar_counts_every_text_once(data, tmp_path, capsys):
    for _ in range(2):  # encoding, then reusing the shards (after encoding a few to check)
        evaluate_beir(HashedNgramEncoder(dim=32), data, embedding_cache=tmp_path / "cache",
                      shard_rows=10, progress=True)
        err = capsys.readouterr().err
        assert "evaluating miracl: 100%" in err and "102/102" in err, err[-500:]
        assert err.count("100%") == 1


def test_the_scale_benchmark_corpus_is_a_beir_folder_with_findable_answers(tmp_path):
    from hbt_fast.bench.scale import synthetic_beir

    synthetic_beir(tmp_path / "beir", 3000, queries=40)
    result = evaluate_beir(HashedNgramEncoder(dim=256), tmp_path / "beir",
                           embedding_cache=tmp_path / "cache", shard_rows=1000)
    figures = result.per_language["xx"]
    assert figures["documents"] == 3000 and figures["queries"] == 40
    assert figures["recall@100"] > 0.3  # queries are words of their first relevant passage


def test_a_text_encoder_is_recognised_by_its_weights(data, tmp_path, tiny_model_dir):
    import torch

    from hbt_fast.models import TextEncoder

    def encoder():
        return TextEncoder.from_pretrained(tiny_model_dir, show_progress=False)

    first = evaluate_beir(encoder(), data, languages=["yy"], embedding_cache=tmp_path / "cache",
                          shard_rows=10)
    shard = tmp_path / "cache" / "yy" / "passages-00000.npy"
    written = shard.stat().st_mtime_ns
    assert evaluate_beir(encoder(), data, languages=["yy"], embedding_cache=tmp_path / "cache",
                         shard_rows=10).per_language == first.per_language
    assert shard.stat().st_mtime_ns == written
    changed = encoder()
    with torch.no_grad():
        changed.model.embeddings.word_embeddings.weight[7, 0] += 1e-3  # "trained a little"
    with pytest.raises(ValueError, match=r"other settings: encoder weights_sha256 \"[0-9a-f]{64}\" \(cache\) "
                                         r"vs \"[0-9a-f]{64}\" \(this run\)"):
        evaluate_beir(changed, data, languages=["yy"], embedding_cache=tmp_path / "cache", shard_rows=10)
