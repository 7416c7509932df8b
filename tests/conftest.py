import os
import sys
from pathlib import Path

import pytest

# Let tests import helpers that live next to them (reference implementations, fixtures).
sys.path.insert(0, str(Path(__file__).parent))

# CI passes HBT_DATA_DIR relative to where pytest starts (../shared/data); tests that change
# directory, and the subprocesses they start, must still find it.
if os.environ.get("HBT_DATA_DIR"):
    os.environ["HBT_DATA_DIR"] = str(Path(os.environ["HBT_DATA_DIR"]).resolve())


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data directory from HBT_DATA_DIR; tests needing it skip when it is absent."""
    root = os.environ.get("HBT_DATA_DIR")
    if not root or not Path(root).is_dir():
        pytest.skip("HBT_DATA_DIR is not set to a directory with xquad-r/ and tatoeba/")
    return Path(root)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny XLM-R model + tokenizer (2 layers, hidden 32), built without downloads."""
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-xlmr"))
