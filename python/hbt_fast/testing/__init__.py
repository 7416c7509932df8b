"""Plain reference implementations: the oracles of the test suite and the baselines of
``hbt-fast bench``. Readable first; never used on a training path."""

from hbt_fast.sampler.reference import ReferenceHybridSampler

__all__ = ["ReferenceHybridSampler"]
