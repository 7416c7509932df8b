"""``python -m hbt_fast``: the ``hbt-fast`` command line."""

from hbt_fast.cli import main

raise SystemExit(main())
