"""Allowed types with crafted contents: a tree whose indices point out of range is refused before it predicts.

Without the check each of these crashes the process (an out-of-bounds read in compiled code) or
loops forever the first time the model predicts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.datasets import load_digits

from poisonlab.exceptions import UntrustedModelError
from poisonlab.models.io import load_model


def _digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:200], y[:200]


def _rebuilt_tree(tree: Any, edit: Callable[[np.ndarray], None]) -> Any:
    from sklearn.tree._tree import Tree

    state = tree.__getstate__()
    nodes = state["nodes"].copy()
    edit(nodes)
    state["nodes"] = nodes
    new = Tree(tree.n_features, np.asarray(tree.n_classes, dtype=np.intp), tree.n_outputs)
    new.__setstate__(state)
    return new


def _tree_with(edit: Callable[[np.ndarray], None]) -> Any:
    from sklearn.tree import DecisionTreeClassifier

    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(*_digits())
    model.tree_ = _rebuilt_tree(model.tree_, edit)
    return model


def _forest_with(edit: Callable[[np.ndarray], None]) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(*_digits())
    member = model.estimators_[2]
    member.tree_ = _rebuilt_tree(member.tree_, edit)
    return model


def _boosting_with_child(child: int) -> Any:
    from sklearn.ensemble import GradientBoostingClassifier

    model = GradientBoostingClassifier(n_estimators=2, max_depth=2, random_state=0).fit(*_digits())
    member = model.estimators_[1, 0]
    member.tree_ = _rebuilt_tree(member.tree_, lambda nodes: nodes["left_child"].__setitem__(0, child))
    return model


def _hist_boosting_with_child(child: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(max_iter=2, random_state=0).fit(*_digits())
    nodes = model._predictors[0][0].nodes
    nodes["left"][int(np.flatnonzero(nodes["is_leaf"] == 0)[0])] = child
    return model


def _kd_tree_with_index(index: int) -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    model = KNeighborsClassifier(algorithm="kd_tree").fit(*_digits())
    state = list(model._tree.__getstate__())
    idx = np.array(state[1], copy=True)
    idx[0] = index
    state[1] = idx
    tree = type(model._tree).__new__(type(model._tree))
    tree.__setstate__(tuple(state))
    model._tree = tree
    return model


CASES: dict[str, tuple[Callable[[], Any], str]] = {
    "tree-child-past-the-end": (lambda: _tree_with(lambda n: n["left_child"].__setitem__(0, 10**6)),
                                "left child 1000000"),
    "tree-child-loops-back": (lambda: _tree_with(lambda n: n["right_child"].__setitem__(1, 0)), "right child 0"),
    "tree-feature-out-of-range": (lambda: _tree_with(lambda n: n["feature"].__setitem__(0, 999)), "feature 999 of 64"),
    "tree-negative-feature": (lambda: _tree_with(lambda n: n["feature"].__setitem__(0, -5)), "feature -5"),
    "forest-member": (lambda: _forest_with(lambda n: n["left_child"].__setitem__(0, 10**6)), "decision tree"),
    "gradient-boosting-member": (lambda: _boosting_with_child(10**6), "decision tree"),
    "hist-gradient-boosting": (lambda: _hist_boosting_with_child(10**6), "gradient-boosting tree"),
    "kd-tree-index": (lambda: _kd_tree_with_index(10**6), "neighbors tree"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_crafted_tree_is_refused(case: str, tmp_path: Path) -> None:
    make, expected = CASES[case]
    path = tmp_path / f"{case}.skops"
    sio.dump(make(), path)
    with pytest.raises(UntrustedModelError) as info:
        load_model(path)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("mode", ["filename", "file"])
def test_text_vectorizer_that_opens_paths_is_refused(tmp_path: Path, mode: str) -> None:
    # A pipeline fitted as usual, then switched to read its inputs as paths: scanning it would make
    # poisonlab open every path named in the user's rows. Measured before the check: load_model
    # returned it, and predict_proba(["/etc/hostname"]) read that file.
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts = ["cheap pills now", "meeting at noon", "win money now", "lunch tomorrow"] * 5
    y = [1, 0, 1, 0] * 5
    for vec in (CountVectorizer(), TfidfVectorizer()):
        model = make_pipeline(vec, LogisticRegression()).fit(texts, y)
        model[0].input = mode
        path = tmp_path / f"{type(vec).__name__}.skops"
        sio.dump(model, path)
        with pytest.raises(UntrustedModelError, match=f"input='{mode}' opens the paths"):
            load_model(path)
