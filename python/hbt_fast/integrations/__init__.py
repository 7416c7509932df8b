"""Bridges to the tools users already train and evaluate with (optional extras)."""
