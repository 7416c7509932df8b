"""The package's layering, checked by import-linter against the contracts in pyproject.toml
(``[tool.importlinter]``): pipeline layers, sentence-transformers only in ``integrations``, a
torch-free sampler, no import cycles. ``lint-imports`` from the repository root runs the same."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    pytest.importorskip("importlinter", reason="needs import-linter (the test extra)")
    done = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import "
                           "lint_imports_command; sys.exit(lint_imports_command())"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
