"""Hostile ensemble folders: members cannot be read from outside the folder, and are held to the allow-list."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hostile_files import TARGET_BYTES, call_node, find, is_class, rewrite
from typer.testing import CliRunner

from poisonlab.cli import app
from poisonlab.defend.partition import PartitionEnsemble
from poisonlab.exceptions import ModelError
from poisonlab.models.io import load_model


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    words = ["win money now", "meeting at noon", "cheap pills", "lunch tomorrow", "free prize", "notes"]
    X = np.array([words[i % 6] + f" {i}" for i in range(24)], dtype=object)
    y = np.array([1, 0, 1, 0, 1, 0] * 4)
    ensemble = PartitionEnsemble(n_partitions=2, model="nb-text").fit(X, y, n_classes=2)
    return ensemble.save(tmp_path / "ensemble", classes=("ham", "spam"))


def _manifest(folder: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = folder / "ensemble.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def _assert_one_line(path: Path, expected: str, data: Path) -> None:
    with pytest.raises(ModelError) as info:
        load_model(path)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)
    result = CliRunner().invoke(app, ["evaluate", str(path), "--data", str(data)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_a_saved_ensemble_loads(folder: Path) -> None:
    saved = load_model(folder)
    assert saved.classes == ("ham", "spam")
    assert saved.model.predict(np.array(["free prize"], dtype=object)).shape == (1,)


MANIFESTS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "parent-path": (lambda m: m["members"].__setitem__(0, "../member-0000.skops"), "refusing member file name"),
    "absolute-path": (lambda m: m["members"].__setitem__(0, "/tmp/member-0000.skops"), "refusing member file name"),
    "pickle-member": (lambda m: m["members"].__setitem__(0, "member-0000.pkl"), "refusing member file name"),
    "missing-member": (lambda m: m["members"].__setitem__(0, "member-0099.skops"), "not a regular file inside"),
    "partitions-as-text": (lambda m: m.update(n_partitions="2"), "'n_partitions' is '2'"),
    "classes-not-a-list": (lambda m: m.update(classes="ham"), "'classes' must be a list"),
    "too-many-classes": (lambda m: m.update(n_classes=7), "n_classes 7 for 2 class names"),
    "unknown-method": (lambda m: m.update(method="exec"), "unknown ensemble method 'exec'"),
    "members-not-a-list": (lambda m: m.update(members={"a": 1}), "'members' must list"),
    "threshold-out-of-range": (lambda m: m.update(method="bagging", threshold=7), "'threshold' is 7"),
}


@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_bad_manifest_is_one_line(case: str, folder: Path, tmp_path: Path) -> None:
    edit, expected = MANIFESTS[case]
    _manifest(folder, edit)
    data = tmp_path / "data.csv"
    data.write_text("text,label\nfree prize,spam\nnotes,ham\n")
    _assert_one_line(folder, expected, data)


def test_a_member_that_is_a_symbolic_link_out_of_the_folder_is_refused(folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.skops"
    member = folder / "member-0000.skops"
    member.replace(outside)  # a valid model file, but not inside the folder
    member.symlink_to(outside)
    data = tmp_path / "data.csv"
    data.write_text("text,label\nfree prize,spam\n")
    _assert_one_line(folder, "symbolic link", data)


def test_a_member_that_is_a_folder_is_refused(folder: Path, tmp_path: Path) -> None:
    (folder / "member-0000.skops").unlink()
    (folder / "member-0000.skops").mkdir()
    data = tmp_path / "data.csv"
    data.write_text("text,label\nfree prize,spam\n")
    _assert_one_line(folder, "not a regular file inside", data)


def test_a_hostile_member_is_held_to_the_allow_list(folder: Path, tmp_path: Path) -> None:
    target = tmp_path / "precious.txt"
    target.write_bytes(TARGET_BYTES)
    member = folder / "member-0001.skops"
    copy = tmp_path / "copy.skops"
    member.replace(copy)

    def edit(tree: dict[str, Any]) -> None:
        node = find(tree, is_class("MultinomialNB"))["content"]["content"]["alpha"]
        node.clear()
        node.update(call_node("numpy", "memmap", str(target), "uint8", "w+", 0, 4))
    rewrite(copy, member, schema=edit)
    data = tmp_path / "data.csv"
    data.write_text("text,label\nfree prize,spam\n")
    _assert_one_line(folder, "numpy.memmap", data)
    assert target.read_bytes() == TARGET_BYTES
