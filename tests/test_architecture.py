"""The architecture as tests, beside import-linter's layers (which say which way the arrows run
between packages): no import cycles, inside packages too (a module never imports, however
indirectly, a module that imports it; function-level and type-checking imports count), and no
module imports another module's private names."""

from __future__ import annotations

import pytest

grimp = pytest.importorskip("grimp")  # installed with import-linter (the dev extra)


def test_no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph("poisonlab")
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if imported != module and graph.chain_exists(importer=imported, imported=module):
                cycles.append((module, imported))
    assert not cycles, cycles[:10]


def test_no_module_imports_another_modules_private_names() -> None:
    # a name with a leading underscore is its module's own; what crosses modules has a public
    # name and a docstring
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "src" / "poisonlab"
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("poisonlab"):
                found += [f"{path.relative_to(root)}:{node.lineno} {node.module}.{a.name}"
                          for a in node.names if a.name.startswith("_") and a.name != "__version__"]
    assert not found, found
