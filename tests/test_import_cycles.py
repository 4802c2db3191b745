"""No import cycles in poisonlab: a module never imports, however indirectly, a module that
imports it (function-level and type-checking imports count). import-linter's layers say which
way the arrows run between packages; this holds inside them too."""

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
