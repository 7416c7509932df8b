"""The package version: one owner, read by the build (pyproject.toml) and by ``hbt_fast``."""

__version__ = "0.1.0"
