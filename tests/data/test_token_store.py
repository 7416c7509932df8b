"""The token store: exact ids, labels numbered as in memory, deduplication, every input format,
damaged and mismatched stores refused naming the file or the difference, kill -9 restarts."""

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from hbt_fast.data import read_pairs
from hbt_fast.data.token_store import TokenStore, reader, write_token_store
from hbt_fast.models import EncoderSettings
from hbt_fast.models.encoder import pad_ids

SETTINGS = EncoderSettings(query_prefix="Q: ", passage_prefix="P: ", max_query_length=8,
                           max_passage_length=12)
WORDS = "river city year team music king school war the of und der la el".split()


@pytest.fixture(scope="module")
def encoder(tiny_model_dir):
    from hbt_fast.models import TextEncoder

    return TextEncoder.from_pretrained(tiny_model_dir, show_progress=False, query_prefix="Q: ",
                                       passage_prefix="P: ", max_query_length=8, max_passage_length=12)


def pair_records(groups=30, languages=("en", "de", "fr"), negatives=2, seed=0):
    rng = np.random.default_rng(seed)
    records = []
    for g in range(groups):
        for lang in languages:
            words = " ".join(rng.choice(WORDS, rng.integers(1, 20)))
            record = {"group": f"g{g}", "lang": lang, "query": f"{lang} {words} {g}",
                      "passage": f"{lang} answer {g % 7}"}  # passages repeat across groups
            if negatives:
                record["negatives"] = [f"{lang} answer {(g + k + 1) % 7}" for k in range(negatives)]
            records.append(record)
    return records


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def prepare(inputs, output, tokenizer, **options):
    options.setdefault("progress", False)
    return write_token_store(inputs, output, tokenizer, options.pop("settings", SETTINGS),
                             tokenizer_name="tiny", **options)


def file_digests(store: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(store.iterdir())}


@pytest.fixture
def corpus_file(tmp_path):
    return write_jsonl(tmp_path / "pairs.jsonl", pair_records())


# ------------------------------------------------------------------ round trip


def test_ids_and_labels_are_those_of_the_in_memory_path(tmp_path, encoder, corpus_file):
    store = TokenStore(prepare([corpus_file], tmp_path / "store", encoder.tokenizer, chunk_pairs=7),
                       verify=True)
    corpus = read_pairs(corpus_file)
    as_lists = lambda rows: [row.tolist() for row in rows]  # noqa: E731
    assert as_lists(store.token_ids(store.query_text_ids)) == encoder.tokenize_all(corpus.queries, "query")
    assert as_lists(store.token_ids(store.passage_text_ids)) == encoder.tokenize_all(corpus.passages, "passage")
    assert as_lists(store.token_ids(store.negative_text_ids)) == encoder.tokenize_all(corpus.negatives, "passage")
    np.testing.assert_array_equal(store.negative_offsets, corpus.negative_offsets)
    np.testing.assert_array_equal(store.language_ids, corpus.language_ids)
    np.testing.assert_array_equal(store.group_ids, corpus.group_ids)
    assert store.language_names == corpus.language_names
    assert store.group_names() == sorted({str(g) for g in corpus.groups})
    assert store.cross_lingual_languages() == corpus.cross_lingual_languages()


def test_identical_token_ids_share_one_text_and_are_stored_once(tmp_path, encoder, corpus_file):
    store = TokenStore(prepare([corpus_file], tmp_path / "store", encoder.tokenizer, chunk_pairs=5))
    texts = np.concatenate([store.query_text_ids, store.passage_text_ids, store.negative_text_ids])
    ids = [tuple(row) for row in store.token_ids(texts)]
    # One text id per distinct id sequence, and the other way round.
    assert len(set(zip(texts.tolist(), ids))) == len(set(ids)) == len(set(texts.tolist()))
    assert store.manifest["counts"]["texts"] == len(set(ids)) == len(store.text_offsets) - 1
    assert store.manifest["counts"]["tokens"] == sum(len(i) for i in set(ids))
    # Truncation makes different strings one text: both exceed max_query_length in their prefix.
    long = tmp_path / "long.jsonl"
    write_jsonl(long, [{"group": 1, "lang": "en", "query": "river " * 20 + "city", "passage": "a"},
                       {"group": 2, "lang": "en", "query": "river " * 20 + "king", "passage": "b"}])
    store = TokenStore(prepare([long], tmp_path / "long", encoder.tokenizer))
    assert store.query_text_ids[0] == store.query_text_ids[1]


def test_negatives_take_the_group_of_the_first_pair_with_their_passage(tmp_path, encoder):
    records = [
        {"group": "b", "lang": "en", "query": "q1", "passage": "shared", "negatives": ["shared", "own"]},
        {"group": "a", "lang": "en", "query": "q2", "passage": "other", "negatives": ["other"]},
        {"group": "c", "lang": "en", "query": "q3", "passage": "shared", "negatives": ["own"]},
    ]
    store = TokenStore(prepare([write_jsonl(tmp_path / "p.jsonl", records)], tmp_path / "s",
                               encoder.tokenizer, chunk_pairs=1))
    # groups are numbered by sorted label: a=0, b=1, c=2; "shared" first appears with group b
    assert store.group_ids.tolist() == [1, 0, 2]
    assert store.negative_groups.tolist() == [1, -1, 0, -1]


def test_chunk_size_does_not_change_the_store(tmp_path, encoder, corpus_file):
    stores = [prepare([corpus_file], tmp_path / f"s{size}", encoder.tokenizer, chunk_pairs=size)
              for size in (1, 13, 10_000)]
    digests = [file_digests(store) for store in stores]
    assert digests[0] == digests[1] == digests[2]


def test_every_input_format_gives_the_same_store(tmp_path, encoder):
    datasets = pytest.importorskip("datasets", reason="needs the datasets extra")

    records = pair_records(groups=12)
    whole = prepare([write_jsonl(tmp_path / "all.jsonl", records)], tmp_path / "whole", encoder.tokenizer)
    expected = {k: v for k, v in file_digests(whole).items() if k != "manifest.json"}
    parts = tmp_path / "parts"
    parts.mkdir()
    write_jsonl(parts / "a.jsonl", records[:10])
    with gzip.open(parts / "b.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records[10:20])
    rest = [dict(r, group=str(r["group"])) for r in records[20:]]  # one type per column
    datasets.Dataset.from_list(rest[:8]).to_parquet(str(parts / "c.parquet"))
    datasets.Dataset.from_list(rest[8:]).save_to_disk(str(tmp_path / "d_saved"))
    mixed = prepare([str(parts / "a.jsonl"), str(parts / "b.*"), parts / "c.parquet", tmp_path / "d_saved"],
                    tmp_path / "mixed", encoder.tokenizer, chunk_pairs=4)
    assert {k: v for k, v in file_digests(mixed).items() if k != "manifest.json"} == expected
    manifest = TokenStore(mixed).manifest
    assert [Path(p).name for p in manifest["source"]["inputs"]] == ["a.jsonl", "b.jsonl.gz", "c.parquet", "d_saved"]


def test_padded_batches_match_the_encoder_padding(tmp_path, encoder, corpus_file):
    store = TokenStore(prepare([corpus_file], tmp_path / "s", encoder.tokenizer))
    texts = store.query_text_ids[[3, 0, 7, 7]]
    for left in (False, True):
        expected = pad_ids([row.tolist() for row in store.token_ids(texts)], 1, left=left)
        got = store.padded(texts, 1, left=left)
        for key in expected:
            assert got[key].dtype == expected[key].dtype
            assert got[key].tolist() == expected[key].tolist()


# ------------------------------------------------------------------ bad input


def test_malformed_line_names_file_and_line_and_leaves_nothing(tmp_path, encoder):
    lines = [json.dumps(r) for r in pair_records(groups=10)]
    lines[17] = '{"group": 1, "lang": "en", "query": "q"'
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"^{path}:18: not valid JSON"):
        prepare([path], tmp_path / "store", encoder.tokenizer, chunk_pairs=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]


def test_a_pair_repeated_in_another_chunk_or_file_names_both_places(tmp_path, encoder):
    records = pair_records(groups=6, negatives=0)
    first = write_jsonl(tmp_path / "one.jsonl", records)
    second = write_jsonl(tmp_path / "two.jsonl", [records[0] | {"query": "another"}])
    with pytest.raises(ValueError, match=rf"^{second}:1: group 'g0' already has a pair in language "
                                         rf"'en' \({first}:1\)"):
        prepare([first, second], tmp_path / "store", encoder.tokenizer, chunk_pairs=4)
    same_file = write_jsonl(tmp_path / "three.jsonl", records + [records[4] | {"passage": "x"}])
    with pytest.raises(ValueError, match=rf"^{same_file}:19: group 'g1' already has a pair in "
                                         rf"language 'de' \({same_file}:5\)"):
        prepare([same_file], tmp_path / "store", encoder.tokenizer, chunk_pairs=4)
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("damage, message", [
    (lambda s: (s / "tokens.npy").write_bytes((s / "tokens.npy").read_bytes()[:-4]),
     r"tokens\.npy has \d+ bytes, the manifest says \d+ .*truncated"),
    (lambda s: (s / "groups.npy").unlink(), r"groups\.npy is missing"),
    (lambda s: (s / "manifest.json").write_text('{"format": '), r"manifest\.json:1: not valid JSON"),
    (lambda s: _edit_manifest(s, lambda m: m.update(version=99)), r"manifest\.json: token store version 99"),
    (lambda s: _edit_manifest(s, lambda m: m["counts"].pop("texts")), r"manifest\.json: damaged .*'texts'"),
    (lambda s: _edit_manifest(s, lambda m: m["counts"].update(texts=True)),
     r"manifest\.json: damaged token store manifest \(entry counts\.texts"),
    (lambda s: _edit_manifest(s, lambda m: m["files"]["tokens.npy"].update(bytes=False)),
     r"manifest\.json: damaged token store manifest \(entry tokens\.npy"),
    (lambda s: _edit_manifest(s, lambda m: m.update(format="something else")),
     r"manifest\.json: not a token store manifest"),
    (lambda s: _edit_manifest(s, lambda m: m["counts"].update(pairs=m["counts"]["pairs"] + 1)),
     r"queries\.npy has \d+ values, the manifest's counts need"),
    (lambda s: _flip_byte(s / "passages.npy"), r"passages\.npy does not match the SHA-256"),
    (lambda s: _flip_byte(s / "group_names.jsonl"), r"group_names\.jsonl does not match the SHA-256"),
])
def test_a_damaged_store_is_refused_naming_the_file(tmp_path, encoder, corpus_file, damage, message):
    store = prepare([corpus_file], tmp_path / "store", encoder.tokenizer)
    TokenStore(store, verify=True)
    damage(store)
    with pytest.raises(ValueError, match=message):
        TokenStore(store, verify=True)


@pytest.mark.parametrize("file", ["tokens.npy", "text_offsets.npy", "negatives.npy", "negative_groups.npy",
                                  "groups.npy", "languages.npy", "negative_offsets.npy", "group_names.jsonl"])
def test_a_background_check_refuses_a_damaged_file_before_its_ids_are_read(tmp_path, encoder, corpus_file, file):
    store = prepare([corpus_file], tmp_path / "store", encoder.tokenizer)
    _flip_byte(store / file, middle=True)  # the ends of the offsets are checked on opening
    message = rf"{file.replace('.', '[.]')} does not match the SHA-256"
    opened = TokenStore(store)
    if file in ("tokens.npy", "text_offsets.npy", "negatives.npy", "negative_groups.npy"):
        opened.verify(background=True)  # the sampler's columns are intact: no error yet
        for read in (opened.wait_verified, lambda: opened.token_ids([0]), lambda: opened.padded([0], 0)):
            with pytest.raises(ValueError, match=message):
                read()
    else:  # what the sampler reads is checked before verify returns
        with pytest.raises(ValueError, match=message):
            opened.verify(background=True)


def test_a_background_check_of_an_intact_store_reads_as_a_full_one(tmp_path, encoder, corpus_file):
    store = prepare([corpus_file], tmp_path / "store", encoder.tokenizer)
    checked, background = TokenStore(store, verify=True), TokenStore(store)
    background.verify(background=True)
    texts = np.arange(len(checked.text_offsets) - 1)
    assert all(np.array_equal(a, b) for a, b in zip(background.token_ids(texts), checked.token_ids(texts)))
    background.wait_verified()


def test_a_background_check_that_cannot_read_a_file_is_an_error_not_a_pass(tmp_path, encoder, corpus_file,
                                                                            monkeypatch):
    store = TokenStore(prepare([corpus_file], tmp_path / "store", encoder.tokenizer))
    real = reader.file_sha256

    def unreadable(path):
        if path.name == "tokens.npy":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(reader, "file_sha256", unreadable)
    store.verify(background=True)
    with pytest.raises(ValueError, match=r"checking its SHA-256 failed \(PermissionError.*tokens\.npy"):
        store.wait_verified()


def _edit_manifest(store, change):
    manifest = json.loads((store / "manifest.json").read_text())
    change(manifest)
    (store / "manifest.json").write_text(json.dumps(manifest))


def _flip_byte(path, middle=False):
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if middle else -2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_store_for_other_settings_or_tokenizer_is_refused_naming_the_difference(tmp_path, encoder, corpus_file):
    from tiny_model import build_tokenizer, synthetic_sentences

    store = TokenStore(prepare([corpus_file], tmp_path / "store", encoder.tokenizer))
    store.check_tokenization(encoder.tokenizer, encoder.settings)
    other = EncoderSettings(query_prefix="query: ", passage_prefix="P: ", max_query_length=8,
                            max_passage_length=32)
    with pytest.raises(ValueError, match=r"query_prefix 'Q: ' \(store\) vs 'query: ' \(this run\); "
                                         r"max_passage_length 12 \(store\) vs 32"):
        store.check_tokenization(encoder.tokenizer, other)
    with pytest.raises(ValueError, match=r"tokenizer: the store was prepared with 'tiny'"):
        store.check_tokenization(build_tokenizer(synthetic_sentences(seed=1), 300), encoder.settings)


def test_output_rules(tmp_path, encoder, corpus_file):
    with pytest.raises(ValueError, match="is training input 1"):
        prepare([corpus_file], corpus_file, encoder.tokenizer)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="exists and is not a token store"):
        prepare([corpus_file], tmp_path / "taken", encoder.tokenizer)
    store = prepare([corpus_file], tmp_path / "store", encoder.tokenizer)
    again = prepare([write_jsonl(tmp_path / "small.jsonl", pair_records(groups=2))], store, encoder.tokenizer)
    assert len(TokenStore(again)) == 6  # an existing store is replaced whole


# ------------------------------------------------------------------ interruption

KILL_SCRIPT = """
import sys
from tiny_model import build_tokenizer, synthetic_sentences
from hbt_fast.data.token_store import write_token_store
from hbt_fast.models import EncoderSettings
settings = EncoderSettings(query_prefix="Q: ", passage_prefix="P: ", max_query_length=8, max_passage_length=12)
write_token_store([sys.argv[1]], sys.argv[2], build_tokenizer(synthetic_sentences()), settings,
                  tokenizer_name="tiny", chunk_pairs=3, progress=False)
"""


def test_a_preparation_killed_midway_restarts_to_the_same_store(tmp_path):
    from tiny_model import build_tokenizer, synthetic_sentences

    corpus = write_jsonl(tmp_path / "pairs.jsonl", pair_records(groups=400))
    script = tmp_path / "prepare.py"
    script.write_text(KILL_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1])] + sys.path))
    output = tmp_path / "store"
    process = subprocess.Popen([sys.executable, str(script), str(corpus), str(output)], env=env,
                               start_new_session=True)
    work = tmp_path / ".store.preparing" / "work"
    deadline = time.monotonic() + 300
    while not (work / "groups-5.jsonl").exists():  # a few chunks written
        assert process.poll() is None, "the preparation ended before it could be killed"
        assert time.monotonic() < deadline, "the preparation never got going"
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not output.exists() and work.exists()
    tokenizer = build_tokenizer(synthetic_sentences())
    restarted = prepare([corpus], output, tokenizer, chunk_pairs=3)
    uninterrupted = prepare([corpus], tmp_path / "clean", tokenizer, chunk_pairs=3)
    assert file_digests(restarted) == file_digests(uninterrupted)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean", "pairs.jsonl", "prepare.py", "store"]


# ------------------------------------------------------------------ property


texts = st.text(alphabet="ab c\u00e9\u4e2d", min_size=1, max_size=12).filter(lambda t: t.strip())


@st.composite
def corpora(draw):
    count = draw(st.integers(1, 12))
    # One kind of group per corpus (every reader refuses a mix of integers and strings).
    group = draw(st.sampled_from([st.integers(-3, 5), st.sampled_from(["x", "y", "10", "-1"])]))
    keys = draw(st.lists(st.tuples(group, st.sampled_from(["en", "de", "zh"])),
                         min_size=count, max_size=count, unique_by=lambda k: (str(k[0]), k[1])))
    pool = draw(st.lists(texts, min_size=1, max_size=6))  # few texts: many duplicates
    pick = st.sampled_from(pool)
    return [{"group": g, "lang": lang, "query": draw(pick), "passage": draw(pick),
             "negatives": draw(st.lists(pick, max_size=3))} for g, lang in keys]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=corpora(), chunk=st.integers(1, 5))
def test_property_store_equals_the_in_memory_corpus(tmp_path_factory, encoder, records, chunk):
    folder = tmp_path_factory.mktemp("prop")
    path = write_jsonl(folder / "p.jsonl", records)
    store = TokenStore(prepare([path], folder / "s", encoder.tokenizer, chunk_pairs=chunk), verify=True)
    corpus = read_pairs(path)
    all_ids = {"query": encoder.tokenize_all(corpus.queries, "query"),
               "passage": encoder.tokenize_all(corpus.passages, "passage"),
               "negative": encoder.tokenize_all(corpus.negatives, "passage") if corpus.negatives else []}
    text_ids = {"query": store.query_text_ids, "passage": store.passage_text_ids,
                "negative": store.negative_text_ids}
    by_ids = {}
    for side, expected in all_ids.items():
        got = [row.tolist() for row in store.token_ids(text_ids[side])]
        assert got == expected
        for text_id, ids in zip(text_ids[side].tolist(), expected):
            assert by_ids.setdefault(tuple(ids), text_id) == text_id  # same ids, same text id
    assert len(set(by_ids.values())) == len(by_ids)  # different ids, different text ids
    np.testing.assert_array_equal(store.group_ids, corpus.group_ids)
    np.testing.assert_array_equal(store.language_ids, corpus.language_ids)
    first_group = {}
    for ids, group in zip(all_ids["passage"], corpus.group_ids.tolist()):
        first_group.setdefault(tuple(ids), group)
    assert store.negative_groups.tolist() == [first_group.get(tuple(ids), -1) for ids in all_ids["negative"]]


def test_unset_maximum_lengths_are_refused_not_guessed(encoder, tmp_path):
    """A tokenizer alone cannot say the model's length (its positions are in the model's config):
    the lengths come set, as the encoder's own settings have them."""
    source = write_jsonl(tmp_path / "pairs.jsonl", pair_records(groups=3))
    with pytest.raises(ValueError, match=r"settings.max_query_length is None \(the model's own length\)"):
        prepare([source], tmp_path / "store", encoder.tokenizer, settings=EncoderSettings())
    assert not (tmp_path / "store").exists()
