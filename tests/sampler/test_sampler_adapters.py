"""DataLoader adapters: HybridBatchSampler and PairDataset."""

import pickle

import numpy as np
import pytest
from hbt_fast import HybridBatchSampler, HybridSampler, PairDataset, labels_to_ids
from hbt_fast.sampler import PairBatch
from hypothesis import given, settings
from hypothesis import strategies as st
from sampler_cases import pair_sets


def test_dataloader_batch_sampler_yields_text_pairs():
    torch = pytest.importorskip("torch")
    ids = labels_to_ids(["en", "de"] * 8, [f"q{i // 2}" for i in range(16)])
    queries = [f"query {i}" for i in range(16)]
    passages = [f"passage {i}" for i in range(16)]
    sampler = HybridSampler(ids.languages, ids.groups, 4, mode="xy", seed=0)
    loader = torch.utils.data.DataLoader(
        PairDataset(queries, passages), batch_sampler=HybridBatchSampler(sampler),
        collate_fn=lambda batch: tuple(zip(*batch)),
    )
    assert len(loader) == len(sampler)
    expected = list(sampler)
    for (batch_queries, batch_passages), (q, p) in zip(loader, expected, strict=True):
        assert list(batch_queries) == [queries[i] for i in q]
        assert list(batch_passages) == [passages[i] for i in p]


def test_adapter_batches_are_pair_sequences_that_carry_the_kind():
    ids = labels_to_ids(["en", "de", "fr"] * 8, [f"q{i // 3}" for i in range(24)])
    sampler = HybridSampler(ids.languages, ids.groups, 4, mode="hybrid", seed=1)
    for batch, expected in zip(HybridBatchSampler(sampler), sampler, strict=True):
        assert isinstance(batch, PairBatch) and len(batch) == 4
        assert list(batch) == list(zip(expected[0].tolist(), expected[1].tolist(), strict=True))
        assert batch[0] == (int(expected[0][0]), int(expected[1][0]))
        assert (batch.kind, batch.language) == (expected.kind, expected.language)
        assert pickle.loads(pickle.dumps(batch)) == batch  # DataLoader workers receive it pickled


def test_dataloader_with_workers_and_a_plain_dataset():
    torch = pytest.importorskip("torch")
    ids = labels_to_ids(["en", "de"] * 8, [f"q{i // 2}" for i in range(16)])
    sampler = HybridSampler(ids.languages, ids.groups, 4, mode="xy", seed=0)
    plain = [(f"q{i}", f"p{i}") for i in range(16)]  # indexed with each (query, passage) tuple

    class TupleIndexed(torch.utils.data.Dataset):
        def __len__(self):
            return 16

        def __getitem__(self, index):
            query_row, passage_row = index
            return plain[query_row][0], plain[passage_row][1]

    loader = torch.utils.data.DataLoader(TupleIndexed(), batch_sampler=HybridBatchSampler(sampler),
                                         collate_fn=list, num_workers=1)
    for got, (q, p) in zip(loader, sampler, strict=True):
        assert got == [(f"q{a}", f"p{b}") for a, b in zip(q.tolist(), p.tolist())]


def test_batch_sampler_needs_a_hybrid_sampler():
    with pytest.raises(TypeError, match="sampler must be a HybridSampler or a MultiSourceSampler, got list"):
        HybridBatchSampler([])


def test_pair_dataset_lengths_must_match():
    with pytest.raises(ValueError, match="same length, got 2 and 1"):
        PairDataset(["a", "b"], ["c"])


def test_batches_pickle_with_kind_and_language():
    sampler = HybridSampler(np.array([0, 1] * 4), np.repeat(np.arange(4), 2), 2, seed=0)
    for batch in sampler:
        copy = pickle.loads(pickle.dumps(batch))
        assert (copy.kind, copy.language) == (batch.kind, batch.language)
        assert all(np.array_equal(a, b) for a, b in zip(copy, batch, strict=True))


@settings(max_examples=40, deadline=None)
@given(pairs=pair_sets, batch_size=st.integers(1, 6), mode=st.sampled_from(["xx", "xy", "hybrid"]),
       seed=st.integers(0, 2**64 - 1))
@pytest.mark.filterwarnings("ignore:languages .* have fewer than")
def test_adapter_yields_the_sampler_batches_as_pairs(pairs, batch_size, mode, seed):
    languages, groups = pairs
    try:
        sampler = HybridSampler(languages, groups, batch_size, mode=mode, seed=seed)
    except ValueError:
        return
    texts = PairDataset([f"q{i}" for i in range(len(languages))], [f"p{i}" for i in range(len(languages))])
    adapter = HybridBatchSampler(sampler)
    batches = list(adapter)
    assert len(batches) == len(adapter) == len(sampler)
    for batch, expected in zip(batches, sampler, strict=True):
        assert list(batch) == list(zip(expected[0].tolist(), expected[1].tolist(), strict=True))
        assert texts.__getitems__(batch) == [texts[pair] for pair in batch]
