"""The type stubs of the compiled modules name exactly what the modules export."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import hbt_fast

PACKAGE = Path(hbt_fast.__file__).parent


def _stub_names(module: str) -> dict:
    """Top-level names of ``<module>.pyi``, each with the members its class defines."""
    tree = ast.parse((PACKAGE / f"{module}.pyi").read_text(encoding="utf-8"))
    names = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names[node.name] = {_member_name(item) for item in node.body} - {None}
        elif isinstance(node, ast.FunctionDef):
            names[node.name] = set()
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hbt_fast"):
            names.update({alias.name: set() for alias in node.names})  # defined in C++ under that name
    return names


def _member_name(item):
    if isinstance(item, (ast.FunctionDef, ast.ClassDef)) and not item.name.startswith("_"):
        return item.name
    if (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            and not item.target.id.startswith("_")):
        return item.target.id
    return None


def _public(obj) -> set:
    return {name for name in dir(obj) if not name.startswith("_")}


def _module_or_skip(module: str):
    if module == "_C_cuda":
        from hbt_fast import _cuda

        loaded, why = _cuda.load()
        if loaded is None:
            pytest.skip(f"hbt_fast._C_cuda unavailable: {why}")
        return loaded
    return importlib.import_module(f"hbt_fast.{module}")


@pytest.mark.parametrize("module", ["_C", "_C_cuda"])
def test_stub_matches_module(module):
    compiled = _module_or_skip(module)
    stub = _stub_names(module)
    exported = {name for name in _public(compiled) if not isinstance(getattr(compiled, name), type(ast))}
    assert set(stub) == exported
    for name, members in stub.items():
        value = getattr(compiled, name)
        if isinstance(value, type) and members:
            assert members <= _public(value), f"{name}: stub members missing in the module"
