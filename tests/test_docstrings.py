"""Every public name in poisonlab has a docstring: module-level functions and classes, and the
methods and properties of public classes, in every public module (``@overload`` stubs excepted:
the implementation carries the docstring)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "poisonlab"


Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _public(node: Definition) -> bool:
    """Not private, and not an ``@overload`` stub."""
    overload = any((isinstance(d, ast.Name) and d.id == "overload")
                   or (isinstance(d, ast.Attribute) and d.attr == "overload") for d in node.decorator_list)
    return not node.name.startswith("_") and not (overload and not isinstance(node, ast.ClassDef))


def missing_docstrings(root: Path = ROOT) -> list[str]:
    """``path:line name`` of every public function, class, method or property without a docstring."""
    missing = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if any(part.startswith("_") and part != "__init__.py" for part in relative.parts):
            continue  # a private module or package
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not isinstance(node, Definition) or not _public(node):
                continue
            if not ast.get_docstring(node):
                missing.append(f"{relative}:{node.lineno} {node.name}")
            if isinstance(node, ast.ClassDef):
                missing += [f"{relative}:{m.lineno} {node.name}.{m.name}" for m in node.body
                            if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and _public(m)
                            and not ast.get_docstring(m)]
    return missing


def test_every_public_name_has_a_docstring() -> None:
    missing = missing_docstrings()
    assert not missing, f"{len(missing)} public names have no docstring:\n" + "\n".join(missing)


def test_the_walk_finds_what_it_should(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text(
        "from typing import overload\n"
        "def bare(): pass\n"
        "def _private(): pass\n"
        "@overload\n"
        "def over(x: int) -> int: ...\n"
        "def over(x):\n"
        "    '''Documented.'''\n"
        "class Thing:\n"
        "    '''Documented.'''\n"
        "    def method(self): pass\n"
        "    @property\n"
        "    def prop(self): return 1\n"
        "    def _helper(self): pass\n",
        encoding="utf-8")
    (tmp_path / "_hidden.py").write_text("def bare(): pass\n", encoding="utf-8")
    assert missing_docstrings(tmp_path) == ["mod.py:2 bare", "mod.py:10 Thing.method",
                                            "mod.py:12 Thing.prop"]
