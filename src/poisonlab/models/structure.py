"""Checks on the node arrays of a loaded model, before it predicts.

scikit-learn's compiled trees index their node arrays without bounds checks: a ``.skops`` file made
only of allowed types can hold a decision tree whose child index points past the end of its node
array (a crash when it predicts) or back at an ancestor (a loop that never ends). These checks walk
the loaded object and refuse, in one line, any decision tree (``Tree``), HistGradientBoosting
predictor (``TreePredictor``) or neighbors tree (``KDTree``/``BallTree``) whose indices are out of
range: children after their parent and inside the array, features inside the model's input width,
sample indices inside the stored data. A text vectorizer must read its inputs as text
(``input="content"``): with ``"filename"`` or ``"file"`` it opens the paths it is given, so a model
file could make poisonlab read any file named in the data it scans.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.exceptions import UntrustedModelError

MAX_OBJECTS = 1_000_000


def check_structure(obj: object, path: Path) -> None:
    """Raise :class:`UntrustedModelError` if any tree inside ``obj`` has an index out of range."""
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer
    from sklearn.neighbors import BallTree, KDTree
    from sklearn.tree._tree import Tree

    seen: set[int] = set()
    stack: list[tuple[Any, int | None]] = [(obj, None)]
    while stack:
        item, width = stack.pop()
        if isinstance(item, np.ndarray) and item.dtype == object:  # GradientBoosting's estimators_
            stack.extend((v, width) for v in item.ravel())
            continue
        if id(item) in seen or isinstance(item, (str, bytes, int, float, bool, type(None), np.ndarray)):
            continue
        seen.add(id(item))
        if len(seen) > MAX_OBJECTS:
            raise UntrustedModelError(f"{path}: the model holds more than {MAX_OBJECTS} objects.")
        if isinstance(item, Tree):
            _check_tree(item, width, path)
            continue
        if isinstance(item, TreePredictor):
            _check_predictor(item, width, path)
            continue
        if isinstance(item, (KDTree, BallTree)):
            _check_neighbors_tree(item, path)
            continue
        if isinstance(item, (CountVectorizer, HashingVectorizer)) and \
                getattr(item, "input", "content") != "content":
            _refuse(path, type(item).__name__, f"input={item.input!r} opens the paths it is given "
                    "instead of reading them as text (poisonlab passes your rows as text)")
        if isinstance(item, dict):
            stack.extend((v, width) for v in item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend((v, width) for v in item)
        elif hasattr(item, "__dict__"):
            attrs = vars(item)
            own = attrs.get("n_features_in_")
            inner = int(own) if isinstance(own, (int, np.integer)) else width
            stack.extend((v, inner) for v in attrs.values())


def _refuse(path: Path, what: str, why: str) -> None:
    raise UntrustedModelError(f"{path}: refusing a {what} whose {why}; the file is damaged or crafted.")


def _check_children(left: np.ndarray, right: np.ndarray, leaf: np.ndarray, path: Path, what: str) -> None:
    n = len(left)
    index = np.arange(n)
    inner = ~leaf
    for name, child in (("left", left), ("right", right)):
        bad = inner & ((child <= index) | (child >= n))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            _refuse(path, what, f"node {i} has {name} child {int(child[i])} (nodes run 0..{n - 1}, children "
                    "come after their parent)")


def _check_tree(tree: Any, width: int | None, path: Path) -> None:
    left = np.asarray(tree.children_left)
    right = np.asarray(tree.children_right)
    leaf = (left == -1) & (right == -1)
    if ((left == -1) != (right == -1)).any():
        _refuse(path, "decision tree", "nodes have one child")
    _check_children(left, right, leaf, path, "decision tree")
    feature = np.asarray(tree.feature)
    n_features = int(tree.n_features) if width is None else min(int(tree.n_features), width)
    bad = ~leaf & ((feature < 0) | (feature >= n_features))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        _refuse(path, "decision tree", f"node {i} splits on feature {int(feature[i])} of {n_features}")
    if n_features < 1 or (width is not None and int(tree.n_features) != width):
        _refuse(path, "decision tree", f"input width {int(tree.n_features)} differs from its model's ({width})")


def _check_predictor(predictor: Any, width: int | None, path: Path) -> None:
    nodes = predictor.nodes
    leaf = nodes["is_leaf"].astype(bool)
    _check_children(nodes["left"].astype(np.int64), nodes["right"].astype(np.int64), leaf, path,
                    "gradient-boosting tree")
    feature = nodes["feature_idx"].astype(np.int64)
    if width is not None and (~leaf & ((feature < 0) | (feature >= width))).any():
        _refuse(path, "gradient-boosting tree", f"splits use a feature outside 0..{width - 1}")
    categorical = ~leaf & nodes["is_categorical"].astype(bool)
    n_bitsets = min(len(predictor.raw_left_cat_bitsets), len(predictor.binned_left_cat_bitsets))
    if (categorical & (nodes["bitset_idx"].astype(np.int64) >= n_bitsets)).any():
        _refuse(path, "gradient-boosting tree", "categorical split points past its bitsets")


def _check_neighbors_tree(tree: Any, path: Path) -> None:
    data, idx_array, node_data, _ = tree.get_arrays()
    n_samples, n_nodes = len(data), len(node_data)
    idx = np.asarray(idx_array)
    if len(idx) != n_samples or ((idx < 0) | (idx >= n_samples)).any():
        _refuse(path, "neighbors tree", f"sample indices fall outside 0..{n_samples - 1}")
    start, end = node_data["idx_start"].astype(np.int64), node_data["idx_end"].astype(np.int64)
    if ((start < 0) | (end > n_samples) | (start > end)).any():
        _refuse(path, "neighbors tree", f"nodes cover rows outside 0..{n_samples}")
    inner = np.flatnonzero(~node_data["is_leaf"].astype(bool))
    if len(inner) and int(inner.max()) * 2 + 2 >= n_nodes:
        _refuse(path, "neighbors tree", f"inner node {int(inner.max())} has children past its {n_nodes} nodes")
