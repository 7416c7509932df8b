"""Without sentence-transformers, the integration and the cached loss fail on import with an
ImportError that says what to install (the rest of hbt_fast keeps working)."""

import importlib
import sys

import pytest


@pytest.mark.parametrize("module, install", [
    ("hbt_fast.integrations.sentence_transformers.trainer", "sentence-transformers[train]"),
    ("hbt_fast.integrations.sentence_transformers.cached_multiple_negatives_ranking", "pip install sentence-transformers"),
])
def test_clear_import_error_without_sentence_transformers(monkeypatch, module, install):
    # None in sys.modules makes an import fail; submodules loaded by earlier tests too
    for name in [key for key in sys.modules if key.split(".")[0] == "sentence_transformers"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ImportError, match=install.replace("[", r"\[").replace("]", r"\]")):
        importlib.import_module(module)
