"""Hostile ``.skops`` files: each is refused with one line before skops constructs anything.

Every case edits the schema of a real saved model so that loading it would truncate ``target``
(``numpy.memmap(path, "uint8", "w+", 0, 4)``), create ``marker`` (``numpy.save``, ``os.system``,
``subprocess.Popen``, ``builtins.open``/``eval``/``exec``), or import a module from ``sys.path``.
The checks: the library raises a ModelError naming the refused type in one line; the CLI
(``poisonlab evaluate``) exits 1 with that line and no traceback; ``target`` keeps its bytes and
no file appears anywhere under the test's folder.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from hostile_files import (
    TARGET_BYTES,
    call_node,
    find,
    fitted_tabular_column_transformer,
    fitted_text_pipeline,
    function_node,
    is_class,
    json_node,
    object_node,
    replace_node,
    rewrite,
    tuple_node,
)
from typer.testing import CliRunner

from poisonlab.cli import app
from poisonlab.exceptions import ModelError, UntrustedModelError
from poisonlab.models import allowlist
from poisonlab.models.io import load_model
from poisonlab.models.sklearn import SklearnModel

Edit = Callable[[dict[str, Any], Path, Path], None]


def _alpha(tree: dict[str, Any]) -> dict[str, Any]:
    """The ``alpha`` parameter node of the MultinomialNB inside the saved pipeline."""
    nb = find(tree, is_class("MultinomialNB"))
    node: dict[str, Any] = nb["content"]["content"]["alpha"]
    return node


def _swap_alpha(make: Callable[[Path, Path], dict[str, Any]]) -> Edit:
    def edit(tree: dict[str, Any], target: Path, marker: Path) -> None:
        node = _alpha(tree)
        node.clear()
        node.update(make(target, marker))
    return edit


def _array_as(cls: str) -> Edit:
    def edit(tree: dict[str, Any], target: Path, marker: Path) -> None:
        find(tree, lambda n: n["__loader__"] == "NdArrayNode")["__class__"] = cls
    return edit


def _method(tree: dict[str, Any], target: Path, marker: Path) -> None:
    array = dict(find(tree, lambda n: n["__loader__"] == "NdArrayNode"))
    node = _alpha(tree)
    node.clear()
    node.update({"__class__": "ndarray", "__module__": "numpy", "__loader__": "MethodNode",
                 "content": {"func": "tofile", "obj": array}})


def _partial(tree: dict[str, Any], target: Path, marker: Path) -> None:
    node = _alpha(tree)
    node.clear()
    node.update({"__class__": "partial", "__module__": "functools", "__loader__": "PartialNode",
                 "content": {"func": function_node("numpy", "save"), "args": tuple_node(str(marker)),
                             "kwds": json_node(None), "namespace": json_node(None)}})


def _operator(tree: dict[str, Any], target: Path, marker: Path) -> None:
    node = _alpha(tree)
    node.clear()
    node.update({"__class__": "methodcaller", "__module__": "operator", "__loader__": "OperatorFuncNode",
                 "attrs": tuple_node("tofile", str(marker))})


def _custom_class(tree: dict[str, Any], target: Path, marker: Path) -> None:
    node = _alpha(tree)
    node.clear()
    node.update(object_node("poisonlab_evil_module", "Evil"))


MEMMAP = ("numpy", "memmap")
CASES: dict[str, tuple[Edit, str]] = {
    # the hole: numpy.memmap(target, "uint8", "w+", 0, 4) zeroes the user's file
    "memmap-reduce": (_swap_alpha(lambda t, m: call_node(*MEMMAP, str(t), "uint8", "w+", 0, 4)), "numpy.memmap"),
    "memmap-loss-reduce": (_swap_alpha(lambda t, m: call_node(*MEMMAP, str(t), "uint8", "w+", 0, 4,
                                                              loader="LossNode")), "numpy.memmap"),
    "memmap-object": (_swap_alpha(lambda t, m: object_node(*MEMMAP)), "numpy.memmap"),
    "memmap-array": (_array_as("memmap"), "numpy.memmap"),
    "memmap-type": (_swap_alpha(lambda t, m: {"__class__": "memmap", "__module__": "numpy",
                                              "__loader__": "TypeNode"}), "numpy.memmap"),
    "numpy-save-reduce": (_swap_alpha(lambda t, m: call_node("numpy", "save", str(m), [1, 2])), "numpy.save"),
    "numpy-fromfile-reduce": (_swap_alpha(lambda t, m: call_node("numpy", "fromfile", str(t))), "numpy.fromfile"),
    "numpy-loadtxt-reduce": (_swap_alpha(lambda t, m: call_node("numpy", "loadtxt", str(t))), "numpy.loadtxt"),
    "numpy-load-function": (_swap_alpha(lambda t, m: function_node("numpy", "load")), "numpy.load"),
    "numpy-loadtxt-function": (_swap_alpha(lambda t, m: function_node("numpy", "loadtxt")), "numpy.loadtxt"),
    "numpy-fromfile-function": (_swap_alpha(lambda t, m: function_node("numpy", "fromfile")), "numpy.fromfile"),
    "numpy-save-function": (_swap_alpha(lambda t, m: function_node("numpy", "save")), "numpy.save"),
    "numpy-memmap-function": (_swap_alpha(lambda t, m: function_node(*MEMMAP)), "numpy.memmap"),
    "numpy-lib-format": (_swap_alpha(lambda t, m: call_node("numpy.lib.format", "open_memmap", str(m), "w+")),
                         "numpy.lib.format.open_memmap"),
    "numpy-ctypeslib": (_swap_alpha(lambda t, m: call_node("numpy.ctypeslib", "load_library", "libc", str(m))),
                        "numpy.ctypeslib.load_library"),
    "os-system": (_swap_alpha(lambda t, m: call_node("os", "system", f"touch {m}")), "os.system"),
    "posix-system-reduce": (_swap_alpha(lambda t, m: call_node("posix", "system", f"touch {m}",
                                                               loader="LossNode")), "posix.system"),
    "subprocess-popen": (_swap_alpha(lambda t, m: call_node("subprocess", "Popen", ["touch", str(m)])),
                         "subprocess.Popen"),
    "builtins-eval": (_swap_alpha(lambda t, m: call_node("builtins", "eval", f"open({str(m)!r}, 'w')")),
                      "builtins.eval"),
    "builtins-exec": (_swap_alpha(lambda t, m: call_node("builtins", "exec", f"open({str(m)!r}, 'w')")),
                      "builtins.exec"),
    "builtins-open": (_swap_alpha(lambda t, m: call_node("builtins", "open", str(m), "w")), "builtins.open"),
    "builtins-getattr": (_swap_alpha(lambda t, m: call_node("builtins", "getattr", "x", "upper")),
                         "builtins.getattr"),
    "builtins-type": (_swap_alpha(lambda t, m: {"__class__": "type", "__module__": "builtins",
                                                "__loader__": "TypeNode"}), "builtins.type"),
    "builtins-object": (_swap_alpha(lambda t, m: object_node("builtins", "object")), "builtins.object"),
    "method-node": (_method, "MethodNode"),
    "partial-node": (_partial, "functools.partial"),
    "operator-node": (_operator, "operator.methodcaller"),
    "custom-class-on-sys-path": (_custom_class, "poisonlab_evil_module.Evil"),
}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def evil_module(tmp_path: Path, marker: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module on sys.path whose import alone would create ``marker``."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "poisonlab_evil_module.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n\nclass Evil:\n    def __setstate__(self, state):\n"
        f"        open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(folder))
    return "poisonlab_evil_module"


def _assert_refused(path: Path, expected: str, *, folder: Path, target: Path, marker: Path,
                    data: Path) -> None:
    before = _snapshot(folder)
    with pytest.raises(ModelError) as info:
        load_model(path)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    result = CliRunner().invoke(app, ["evaluate", str(path), "--data", str(data)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert expected in result.output.replace("\n", "")
    assert target.read_bytes() == TARGET_BYTES
    assert not marker.exists()
    assert _snapshot(folder) == before  # no file created, changed or removed
    assert "poisonlab_evil_module" not in sys.modules


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_skops_file_is_refused_before_anything_is_built(
        case: str, tmp_path: Path, saved_skops: Path, target: Path, marker: Path, text_csv: Path,
        evil_module: str) -> None:
    edit, expected = CASES[case]
    path = rewrite(saved_skops, tmp_path / f"{case}.skops", schema=lambda tree: edit(tree, target, marker))
    with pytest.raises(UntrustedModelError):
        load_model(path)
    _assert_refused(path, expected, folder=tmp_path, target=target, marker=marker, data=text_csv)


def _memmap_at(cls_name: str, attr: str) -> Callable[[dict[str, Any], Path], None]:
    def edit(tree: dict[str, Any], target: Path) -> None:
        owner = find(tree, lambda n: is_class(cls_name)(n) and attr in n["content"]["content"])
        node = owner["content"]["content"][attr]
        node.clear()
        node.update(call_node(*MEMMAP, str(target), "uint8", "w+", 0, 4))
    return edit


def _sklearn_model_wrapper() -> SklearnModel:
    texts = ["win money now", "meeting at noon", "cheap pills", "lunch tomorrow"]
    return SklearnModel(estimator=fitted_text_pipeline()).fit(np.array(texts, dtype=object), np.array([1, 0, 1, 0]))


NESTED = {
    "pipeline": (fitted_text_pipeline, _memmap_at("CountVectorizer", "vocabulary_")),
    "column-transformer": (fitted_tabular_column_transformer, _memmap_at("StandardScaler", "mean_")),
    "sklearn-model-wrapper": (_sklearn_model_wrapper, _memmap_at("MultinomialNB", "feature_count_")),
}


@pytest.mark.parametrize("case", sorted(NESTED))
def test_memmap_nested_in_a_plain_skops_dump_is_refused(case: str, tmp_path: Path, target: Path,
                                                        marker: Path, text_csv: Path) -> None:
    make, edit = NESTED[case]
    plain = tmp_path / "plain.skops"
    sio.dump(make(), plain)
    path = rewrite(plain, tmp_path / f"{case}.skops", schema=lambda tree: edit(tree, target))
    _assert_refused(path, "numpy.memmap", folder=tmp_path, target=target, marker=marker, data=text_csv)


def test_every_refused_type_is_named(tmp_path: Path, saved_skops: Path, target: Path, marker: Path) -> None:
    def edit(tree: dict[str, Any]) -> None:
        _swap_alpha(lambda t, m: call_node("os", "system", "true"))(tree, target, marker)
        replace_node(tree, lambda n: n["__loader__"] == "NdArrayNode", function_node("numpy", "load"))
    path = rewrite(saved_skops, tmp_path / "two.skops", schema=edit)
    with pytest.raises(UntrustedModelError) as info:
        load_model(path)
    message = str(info.value)
    assert "refusing to load 2 type(s)" in message
    assert "numpy.load (reads or writes files)" in message
    assert "os.system" in message


ARCHIVES: dict[str, tuple[dict[str, Any], str]] = {
    "parent-member": ({"extra": {"../escape.txt": b"x"}}, "points outside the archive"),
    "nested-parent-member": ({"extra": {"a/../../escape.txt": b"x"}}, "points outside the archive"),
    "absolute-member": ({"extra": {"/etc/escape.txt": b"x"}}, "points outside the archive"),
    "schema-not-json": ({"raw_schema": b"\xff\xfe{not json"}, "schema.json is not valid JSON"),
    "schema-not-an-object": ({"raw_schema": b"[1, 2, 3]"}, "does not describe an object"),
    "schema-too-deep": ({"raw_schema": b"[" * 200_000}, "schema.json is not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(ARCHIVES))
def test_damaged_or_hostile_archive_gets_one_line(case: str, tmp_path: Path, saved_skops: Path,
                                                  target: Path, marker: Path, text_csv: Path) -> None:
    options, expected = ARCHIVES[case]
    path = rewrite(saved_skops, tmp_path / f"{case}.skops", **options)
    _assert_refused(path, expected, folder=tmp_path, target=target, marker=marker, data=text_csv)


def test_a_member_the_archive_lacks_is_one_line(tmp_path: Path, saved_skops: Path, target: Path,
                                                marker: Path, text_csv: Path) -> None:
    def edit(tree: dict[str, Any]) -> None:
        find(tree, lambda n: n["__loader__"] == "NdArrayNode")["file"] = "../../victim/precious.txt"
    path = rewrite(saved_skops, tmp_path / "missing.skops", schema=edit)
    _assert_refused(path, "names a member", folder=tmp_path, target=target, marker=marker, data=text_csv)


def test_an_archive_that_inflates_past_the_bound_is_refused_unread(
        tmp_path: Path, saved_skops: Path, target: Path, marker: Path, text_csv: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the bound is 4 GiB; a 1 MiB bound and an 8 MiB member of zeros (8 KiB compressed) test the same check
    monkeypatch.setattr(allowlist, "MAX_UNCOMPRESSED_BYTES", 1 << 20)
    path = rewrite(saved_skops, tmp_path / "bomb.skops", extra={"bomb.bin": bytes(8 << 20)})
    assert path.stat().st_size < 1 << 20
    _assert_refused(path, "inflates to", folder=tmp_path, target=target, marker=marker, data=text_csv)
