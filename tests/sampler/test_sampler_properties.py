"""Property-based: for any arguments, HybridSampler gives one clear exception or batches that
keep every invariant. Arguments that once crashed the process (overflowing products, huge
exponents, threads) run in a subprocess, so a regression fails the test instead of the run."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hbt_fast import HybridSampler
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sampler_cases import MODES, check_batch, pair_sets

anything = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.text(max_size=4), st.lists(st.integers(0, 3), max_size=3),
)
batch_sizes = st.one_of(st.integers(1, 8), st.integers(-2, 2**64), anything)
world_sizes = st.one_of(st.integers(1, 3), st.integers(-2, 2**64), anything)
ranks = st.one_of(st.integers(0, 2), st.integers(-2, 2**64), anything)
modes = st.one_of(st.sampled_from(MODES), anything)
alphas = st.one_of(st.floats(0, 1), st.floats(allow_nan=True, allow_infinity=True), anything)
exponents = st.one_of(st.floats(-3, 3), st.floats(allow_nan=True, allow_infinity=True), anything)
seeds = st.one_of(st.integers(0, 2**64 - 1), anything)
drop_lasts = st.one_of(st.booleans(), anything)

# The messages a rejection may give: each names the argument or the limit that was hit.
EXPECTED = (
    "batch_size", "world_size", "rank", "mode", "alpha", "lang_exponent", "seed", "drop_last",
    "exceeds", "no group has pairs in two languages",
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs=pair_sets, batch_size=batch_sizes, world_size=world_sizes, rank=ranks, mode=modes,
       alpha=alphas, lang_exponent=exponents, seed=seeds, drop_last=drop_lasts)
@pytest.mark.filterwarnings("ignore:languages .* have fewer than")
def test_any_arguments_give_a_clear_error_or_valid_batches(
    pairs, batch_size, world_size, rank, mode, alpha, lang_exponent, seed, drop_last
):
    languages, groups = pairs
    try:
        sampler = HybridSampler(languages, groups, batch_size, mode=mode, alpha=alpha,
                                lang_exponent=lang_exponent, seed=seed, rank=rank,
                                world_size=world_size, drop_last=drop_last)
    except (TypeError, ValueError) as error:
        assert any(name in str(error) for name in EXPECTED), str(error)
        return
    batches = list(sampler)
    assert len(batches) == len(sampler) >= 1
    for batch in batches:
        assert batch.kind == check_batch(*batch, languages, groups, batch_size, sampler.mode)
        assert batch.language == (languages[batch[0][0]] if batch.kind == "xx" else -1)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.integers(-(2**64), 2**64), min_size=1, max_size=6),
       dtype=st.sampled_from([np.int64, np.uint64, np.int32, np.uint8, object]))
def test_any_ids_give_a_clear_error_or_a_sampler(values, dtype):
    try:
        array = np.array(values, dtype=dtype)
    except OverflowError:
        return  # numpy itself refuses the values for this dtype
    try:
        HybridSampler(array, np.arange(len(array)) % 2, 1, mode="xx")
    except (TypeError, ValueError) as error:
        message = str(error)
        assert message.startswith(("languages", "groups", "pairs must", "batch_size")), message
        for value in values:  # a reported id is one the caller passed
            if f"got {value} at row" in message:
                break
        else:
            assert "at row" not in message, message


@settings(max_examples=50, deadline=None)
@given(pairs=pair_sets, stop=st.integers(0, 50), seed=st.integers(0, 2**64 - 1),
       epoch=st.integers(0, 2**40), mode=st.sampled_from(MODES))
@pytest.mark.filterwarnings("ignore:languages .* have fewer than")
def test_resume_anywhere_continues_the_same_epoch(pairs, stop, seed, epoch, mode):
    languages, groups = pairs
    try:
        sampler = HybridSampler(languages, groups, 2, mode=mode, seed=seed)
    except ValueError:
        return
    sampler.set_epoch(epoch)
    expected = [b[0] for b in sampler]
    iterator = iter(sampler)
    seen = [next(iterator)[0] for _ in range(min(stop, len(sampler)))]
    resumed = HybridSampler(languages, groups, 2, mode=mode, seed=seed)
    resumed.load_state_dict(sampler.state_dict())
    got = seen + [b[0] for b in resumed]
    assert len(got) == len(expected) and all(np.array_equal(a, b) for a, b in zip(got, expected))


CRASHERS = {
    "overflowing global batch": "HybridSampler(l, g, 2**32, world_size=2**32)",
    "overflowing global batch 2": "HybridSampler(l, g, 2**62, world_size=4)",
    "huge exponent": "list(HybridSampler(l, g, 2, mode='xx', lang_exponent=1e308))",
    "huge negative exponent": "list(HybridSampler(l, g, 2, mode='xx', lang_exponent=-1e308))",
    "threads": textwrap.dedent("""
        import threading
        s = HybridSampler(l, g, 2, mode='xy')
        ts = [threading.Thread(target=lambda: [s.epoch_batches() for _ in range(200)]) for _ in range(8)]
        [t.start() for t in ts]; [t.join() for t in ts]
    """),
    "nested iterators": "s = HybridSampler(l, g, 2); assert sum(1 for _ in s for _ in s) == len(s) ** 2",
}


@pytest.mark.parametrize("code", CRASHERS.values(), ids=CRASHERS.keys())
def test_former_crashes_end_cleanly_in_a_subprocess(code):
    script = "\n".join([
        "import numpy as np",
        "from hbt_fast import HybridSampler",
        "l = np.tile(np.arange(4), 30); g = np.repeat(np.arange(30), 4)",
        "try:",
        textwrap.indent(code.strip(), "    "),
        "except ValueError as error:",
        "    print('ValueError:', error)",
    ])
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    if "2**" in code:
        assert "batch_size * world_size" in done.stdout and "overflows" in done.stdout
