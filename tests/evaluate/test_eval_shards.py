"""Passage embeddings in shards on disk: search shard by shard equal to search in memory bit for
bit (odd sizes, shards that do not divide them, ties, float16, normalised, approximate), resume
after a kill, damaged or foreign caches refused naming the file."""

import json
from importlib import import_module

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hbt_fast.evaluate._common import l2_normalize
from hbt_fast.evaluate.search import recall_against, recall_sample_rows, search, topk_from_scores
from hbt_fast.evaluate.shards import EmbeddingShards, search_shards

# (hbt_fast.evaluate.search is also the name of the function the package exports)
search_module = import_module("hbt_fast.evaluate.search")
shards_module = import_module("hbt_fast.evaluate.shards")


class Lookup:
    """Encodes the text "p<i>" as row i of a fixed matrix, counting what it is asked."""

    def __init__(self, passages):
        self.passages, self.encoded = passages, 0

    def __call__(self, texts):
        self.encoded += len(texts)
        return self.passages[[int(t[1:]) for t in texts]].astype(np.float32)


def texts_of(n):
    return [f"p{i}" for i in range(n)]


def write(folder, passages, shard_rows, *, dtype="float32", encode=None, texts=None):
    """Fill a cache the way an evaluation does; returns how many passages were encoded."""
    encode = encode or Lookup(passages)
    texts = texts or texts_of(len(passages))
    with EmbeddingShards(folder, dtype=dtype, shard_rows=shard_rows) as shards:
        for number, start in enumerate(range(0, len(texts), shard_rows)):
            shards.ensure(number, texts[start:start + shard_rows], encode)
        shards.finish(len(texts))
    return encode.encoded


def sharded(folder, queries, k, *, dtype="float32", shard_rows=None, **options):
    manifest = json.loads((folder / "manifest.json").read_text())
    with EmbeddingShards(folder, dtype=dtype, shard_rows=shard_rows or manifest["shard_rows"]) as shards:
        return search_shards(queries, shards, k, **options)


@pytest.fixture
def small_grid(monkeypatch):
    """A grid of 16 passages x 5 queries, so a few hundred rows cross many blocks and shards."""
    monkeypatch.setattr(search_module, "PASSAGE_BLOCK", 16)
    monkeypatch.setattr(shards_module, "PASSAGE_BLOCK", 16)
    monkeypatch.setattr(search_module, "QUERY_BLOCK", 5)


def assert_same(result, expected):
    np.testing.assert_array_equal(result.ids, expected.ids)
    np.testing.assert_array_equal(result.scores, expected.scores)


@pytest.mark.parametrize("n, shard_rows", [(1, 1), (1, 5), (7, 3), (7, 7), (97, 10), (97, 200),
                                           (1025, 100), (1025, 1024), (1025, 33)])
@pytest.mark.parametrize("k", [1, 10, 120])
def test_exact_search_over_shards_equals_search_in_memory_bit_for_bit(tmp_path, small_grid, n,
                                                                      shard_rows, k):
    rng = np.random.default_rng(n + k)
    passages = rng.standard_normal((n, 24)).astype(np.float32)
    queries = rng.standard_normal((13, 24)).astype(np.float32)
    write(tmp_path, passages, shard_rows)
    assert_same(sharded(tmp_path, queries, k), search(queries, passages, k))


def test_on_the_real_grid_blas_rounding_cannot_tell_shards_apart(tmp_path):
    """Gaussian embeddings (every score rounds somewhere), 9,000 passages in shards of 1,234
    against the 4,096-row grid, 1,100 queries (two query blocks)."""
    rng = np.random.default_rng(7)
    passages = rng.standard_normal((9000, 96)).astype(np.float32)
    queries = rng.standard_normal((1100, 96)).astype(np.float32)
    write(tmp_path, passages, 1234)
    assert_same(sharded(tmp_path, queries, 100), search(queries, passages, 100))


def test_identical_passages_far_apart_tie_exactly_in_memory():
    """Rows 10 and 2500 (and 1023 and 1500) are the same passage: every query scores them
    alike, and the lower row comes first. (faiss' flat index rounded them apart: its products
    cut the corpus into blocks of 1,024 rows.)"""
    rng = np.random.default_rng(0)
    passages = rng.standard_normal((3000, 384)).astype(np.float32)
    passages[2500], passages[1500] = passages[10], passages[1023]
    queries = rng.standard_normal((700, 384)).astype(np.float32)
    result = search(queries, passages, 3000)
    rank = np.argsort(result.ids, axis=1)
    for first, second in ((10, 2500), (1023, 1500)):
        pair = np.take_along_axis(result.scores, rank[:, [first, second]], 1)
        np.testing.assert_array_equal(pair[:, 0], pair[:, 1])
        assert (rank[:, second] == rank[:, first] + 1).all()


@pytest.mark.parametrize("k", [1, 7, 40])
def test_ties_across_shards_follow_the_tie_rule(tmp_path, small_grid, k):
    """Embeddings in {-1, 0, 1}^3: a few distinct passages repeated all over 1,025 rows, so
    every list is cut inside a tie; lower row numbers win wherever the shards end."""
    rng = np.random.default_rng(k)
    passages = rng.integers(-1, 2, size=(1025, 3)).astype(np.float32)
    queries = rng.integers(-1, 2, size=(11, 3)).astype(np.float32)
    write(tmp_path, passages, 97)
    result = sharded(tmp_path, queries, k)
    expected_scores, expected_ids = topk_from_scores(queries @ passages.T, k)
    np.testing.assert_array_equal(result.ids, expected_ids)
    np.testing.assert_array_equal(result.scores, expected_scores)
    assert_same(result, search(queries, passages, k))


def test_float16_shards_equal_search_over_the_rounded_embeddings(tmp_path, small_grid):
    rng = np.random.default_rng(3)
    passages = rng.standard_normal((301, 16)).astype(np.float32)
    queries = rng.standard_normal((9, 16)).astype(np.float32)
    write(tmp_path, passages, 50, dtype="float16")
    assert np.load(tmp_path / "passages-00000.npy").dtype == np.float16
    rounded = passages.astype(np.float16).astype(np.float32)
    assert_same(sharded(tmp_path, queries, 20, dtype="float16"), search(queries, rounded, 20))
    assert (tmp_path / "passages-00000.npy").stat().st_size < 50 * 16 * 4


def test_normalised_as_read_equals_normalised_in_memory(tmp_path, small_grid):
    rng = np.random.default_rng(4)
    passages = rng.standard_normal((203, 16)).astype(np.float32) * rng.uniform(0.1, 9, (203, 1)).astype(np.float32)
    queries = l2_normalize(rng.standard_normal((9, 16)).astype(np.float32))
    write(tmp_path, passages, 30)
    assert_same(sharded(tmp_path, queries, 15, normalize=True),
                search(queries, l2_normalize(passages), 15))


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_search_per_shard_reports_recall_against_exact(tmp_path, kind):
    rng = np.random.default_rng(1)
    passages = rng.standard_normal((3000, 16)).astype(np.float32)
    queries = rng.standard_normal((150, 16)).astype(np.float32)
    write(tmp_path, passages, 1100)
    result = sharded(tmp_path, queries, 10, index=kind, recall_sample=60)
    assert result.index == kind and result.ids.shape == (150, 10)
    assert (np.diff(result.scores, axis=1) <= 0).all() and (result.ids >= 0).all()
    sample = recall_sample_rows(150, 60, 0)
    exact = search(queries[sample], passages, 10).ids
    assert result.recall_vs_exact == recall_against(result.ids[sample], exact)
    assert 0.5 <= result.recall_vs_exact <= 1.0


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 120), shard_rows=st.integers(1, 50), k=st.integers(1, 130),
       distinct=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_any_sizes_give_the_in_memory_result(tmp_path_factory, n, shard_rows, k, distinct, seed):
    rng = np.random.default_rng(seed)
    patch = pytest.MonkeyPatch()
    try:
        patch.setattr(search_module, "PASSAGE_BLOCK", 8)
        patch.setattr(shards_module, "PASSAGE_BLOCK", 8)
        patch.setattr(search_module, "QUERY_BLOCK", 3)
        palette = rng.standard_normal((distinct, 5)).astype(np.float32)
        passages = palette[rng.integers(0, distinct, n)]
        queries = rng.standard_normal((7, 5)).astype(np.float32)
        folder = tmp_path_factory.mktemp("cache")
        write(folder, passages, shard_rows)
        assert_same(sharded(folder, queries, k), search(queries, passages, k))
    finally:
        patch.undo()


# ---------------------------------------------------------------------- resume


class Killed(Exception):
    pass


class DiesAfter(Lookup):
    def __init__(self, passages, calls):
        super().__init__(passages)
        self.calls = calls

    def __call__(self, texts):
        if self.calls == 0:
            raise Killed()
        self.calls -= 1
        return super().__call__(texts)


def test_an_interrupted_run_resumes_keeping_its_finished_shards(tmp_path, small_grid):
    rng = np.random.default_rng(5)
    passages = rng.standard_normal((95, 8)).astype(np.float32)
    queries = rng.standard_normal((6, 8)).astype(np.float32)
    with pytest.raises(Killed):
        write(tmp_path, passages, 20, encode=DiesAfter(passages, 2))
    assert sorted(p.name for p in tmp_path.glob("passages-*")) == ["passages-00000.npy", "passages-00001.npy"]
    # kill -9 while shard 2 was being written: a temporary file, not in the manifest
    (tmp_path / ".passages-00002.npy.tmp-4242").write_bytes(b"\x93NUMPY half a shard")
    encoded = write(tmp_path, passages, 20)
    assert encoded == 95 - 40 + shards_module.PROBE_ROWS  # shards 2..4, and the encoder check
    assert not list(tmp_path.glob(".*.tmp-*"))
    assert_same(sharded(tmp_path, queries, 30), search(queries, passages, 30))
    assert write(tmp_path, passages, 20) == shards_module.PROBE_ROWS  # complete: nothing to do


@pytest.mark.parametrize("harm, problem", [
    (lambda path: path.write_bytes(path.read_bytes()[:-40]), r"has \d+ bytes, the manifest says \d+ \(truncated\)"),
    (lambda path: path.unlink(), "is missing"),
])
def test_a_listed_shard_truncated_or_missing_is_encoded_again_with_a_warning(tmp_path, small_grid,
                                                                               harm, problem):
    rng = np.random.default_rng(6)
    passages = rng.standard_normal((70, 8)).astype(np.float32)
    queries = rng.standard_normal((6, 8)).astype(np.float32)
    write(tmp_path, passages, 20)
    harm(tmp_path / "passages-00002.npy")
    with pytest.warns(UserWarning, match=f"passages-00002.npy {problem}; encoding its passages again"):
        encoded = write(tmp_path, passages, 20)
    assert encoded == 20 + shards_module.PROBE_ROWS
    assert_same(sharded(tmp_path, queries, 25), search(queries, passages, 25))


# ---------------------------------------------------------------------- refusals


@pytest.fixture
def cache(tmp_path):
    rng = np.random.default_rng(8)
    passages = rng.standard_normal((50, 8)).astype(np.float32)
    write(tmp_path / "cache", passages, 20)
    return tmp_path / "cache", passages


def test_a_damaged_shard_is_refused_naming_it(cache):
    folder, passages = cache
    shard = folder / "passages-00001.npy"
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0x40  # same size, other content
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"cache: passages-00001.npy does not match the SHA-256 in manifest.json"):
        sharded(folder, passages[:2], 5)


def test_a_shard_with_another_shape_is_refused_naming_it(cache):
    folder, passages = cache
    shard = folder / "passages-00000.npy"
    size = shard.stat().st_size
    with open(shard, "wb") as handle:  # a valid .npy of the same size, 4 columns too wide
        np.lib.format.write_array(handle, np.zeros((10, 16), np.float32), version=(1, 0))
    assert shard.stat().st_size == size
    with pytest.raises(ValueError, match=r"passages-00000.npy holds float32 \(10, 16\), the manifest says "
                                         r"float32 \(20, 8\)"):
        sharded(folder, passages[:2], 5)


@pytest.mark.parametrize("text, message", [
    ("{not json", r"manifest.json:1: not valid JSON"),
    ('{"format": "something else"}', r"manifest.json: not an embedding cache manifest"),
    ({"rows": "20"}, r"manifest.json: damaged embedding cache manifest \(entry shards.rows"),
    ({"rows": True}, r"manifest.json: damaged embedding cache manifest \(entry shards.rows"),
])
def test_a_damaged_manifest_is_refused_naming_it(cache, text, message):
    folder, passages = cache
    manifest = folder / "manifest.json"
    if isinstance(text, dict):  # one shard's entries replaced
        document = json.loads(manifest.read_text())
        document["shards"][1].update(text)
        text = json.dumps(document)
    manifest.write_text(text)
    with pytest.raises(ValueError, match=message):
        write(folder, passages, 20)


def test_a_changed_corpus_is_refused_naming_the_shard(cache):
    folder, passages = cache
    texts = texts_of(50)
    texts[23], texts[24] = texts[24], texts[23]
    with pytest.raises(ValueError, match=r"passages-00001.npy encodes other passages than rows 20..39 "
                                         r"of this corpus \(it changed since\)"):
        write(folder, passages, 20, texts=texts)
    with pytest.raises(ValueError, match=r"passages-00002.npy lies beyond the corpus' 40 passages"):
        write(folder, passages[:40], 20)


def test_other_settings_are_refused_naming_each(cache):
    folder, passages = cache
    with pytest.raises(ValueError, match=r"dtype float32 \(cache\) vs float16 \(this run\); shard_rows 20 "
                                         r"\(cache\) vs 25 \(this run\)"):
        write(folder, passages, 25, dtype="float16")
    EmbeddingShards(folder.parent / "other", identity={"model": "a"}).close()
    with pytest.raises(ValueError, match=r"encoder model \"a\" \(cache\) vs \"b\" \(this run\)"):
        EmbeddingShards(folder.parent / "other", identity={"model": "b"})


def test_another_encoder_under_the_same_name_is_refused(cache):
    folder, passages = cache
    retrained = passages * np.float32(1.01)
    with pytest.raises(ValueError, match=r"passages-00000.npy was encoded by another encoder"):
        write(folder, retrained, 20)


def test_a_folder_that_is_not_a_cache_is_refused_and_a_second_user_too(tmp_path, cache):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"holds todo.txt but no manifest.json: it is not an embedding cache"):
        EmbeddingShards(tmp_path / "notes")
    folder, _ = cache
    with EmbeddingShards(folder, shard_rows=20):
        with pytest.raises(ValueError, match=r"embedding cache .*cache is in use by another run \(pid \d+\)"):
            EmbeddingShards(folder, shard_rows=20)


def test_bad_settings_name_themselves(tmp_path):
    with pytest.raises(ValueError, match=r"embedding dtype must be one of \('float32', 'float16'\), got 'int8'"):
        EmbeddingShards(tmp_path, dtype="int8")
    with pytest.raises(ValueError, match="shard_rows must be an integer >= 1, got 0"):
        EmbeddingShards(tmp_path, shard_rows=0)


def test_float16_overflow_is_refused(tmp_path):
    passages = np.full((3, 4), 1e6, dtype=np.float32)
    with pytest.raises(ValueError, match="exceed the range of float16"):
        write(tmp_path, passages, 2, dtype="float16")
