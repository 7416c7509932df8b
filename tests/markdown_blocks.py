"""The code blocks of the project's Markdown files, for the tests that run them as written."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(path: Path) -> list:
    """The ```python blocks of a Markdown file, in order."""
    text = path.read_text(encoding="utf-8")
    return [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]


def block_with(path: Path, marker: str) -> str:
    """The one ```python block of ``path`` that contains ``marker``."""
    (block,) = [block for block in python_blocks(path) if marker in block]
    return block
