"""Build information: which back-ends the compiled extension carries."""

from hbt_fast import _C


def info() -> dict:
    """Return the version and the back-ends compiled into ``hbt_fast._C``."""
    from hbt_fast import __version__

    return {"version": __version__, **_C.build_info()}
