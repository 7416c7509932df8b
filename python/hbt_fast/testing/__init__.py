"""Plain reference implementations: the oracles of the test suite and the baselines of
``hbt-fast bench``. Readable first; never used on a training path.

``ReferenceHybridSampler`` (numpy) for :class:`hbt_fast.HybridSampler`; ``reference_lareqa_ranks``
and ``reference_topk`` for :mod:`hbt_fast.evaluate`'s ranking pass; ``info_nce_reference``
(plain torch, materialises B x M; imported on first use, so this package needs no torch) for
:func:`hbt_fast.losses.info_nce`.
"""

from hbt_fast.testing.ranking import reference_lareqa_ranks, reference_topk
from hbt_fast.testing.sampler import ReferenceHybridSampler

__all__ = ["ReferenceHybridSampler", "info_nce_reference", "reference_lareqa_ranks",
           "reference_topk"]


def __getattr__(name):
    if name == "info_nce_reference":
        # torch is imported here only, so the sampler's oracle works without torch.
        from hbt_fast.testing.info_nce import info_nce_reference

        globals()[name] = info_nce_reference
        return info_nce_reference
    raise AttributeError(f"module 'hbt_fast.testing' has no attribute {name!r}")
