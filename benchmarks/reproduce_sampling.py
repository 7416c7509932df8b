"""Reproduce the study's X-X / X-Y / hybrid comparison at CPU scale.

Same as ``hbt-fast experiment``; see :mod:`hbt_fast.experiments.sampling`. Example::

    HBT_DATA_DIR=../shared/data python benchmarks/reproduce_sampling.py --output runs/sampling --seeds 0 1 2
"""

import sys

from hbt_fast.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", *sys.argv[1:]]))
