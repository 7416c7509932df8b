"""Fixtures of the sentence-transformers integration tests."""

import pytest


@pytest.fixture(scope="session")
def st_model_dir(tiny_model_dir):
    pytest.importorskip("sentence_transformers", reason="needs sentence-transformers")
    return tiny_model_dir
