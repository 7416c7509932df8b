"""``python -m hbt_fast.cli``: what ``hbt-fast`` runs (and ``torchrun -m hbt_fast.cli``)."""

from hbt_fast.cli import main

raise SystemExit(main())
