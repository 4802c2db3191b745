"""Hostile model files, written by the tests into a temporary folder (no binaries are committed).

Each hostile ``.skops`` file is a real one saved by poisonlab (or by plain ``skops.io.dump``) whose
``schema.json`` has one node swapped for a node that would do harm when skops constructs it: truncate
a file through ``numpy.memmap``, write one through ``numpy.save``, run ``touch`` through
``os.system`` or ``subprocess.Popen``, import a module from ``sys.path``. The harmful effect always
names ``target`` (a file that exists, holding known bytes) or ``marker`` (a file that must not
appear), so a test can check that nothing ran.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

TARGET_BYTES = b"precious data the user owns\n"


def json_node(value: Any) -> dict[str, Any]:
    return {"__class__": type(value).__name__, "__module__": "builtins", "__loader__": "JsonNode",
            "content": json.dumps(value), "is_json": True}


def tuple_node(*values: Any) -> dict[str, Any]:
    return {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode",
            "content": [v if isinstance(v, dict) else json_node(v) for v in values]}


def call_node(module: str, name: str, *args: Any, loader: str = "ConstructorFromReduceNode") -> dict[str, Any]:
    """A node that skops loads by calling ``module.name(*args)``."""
    if loader == "LossNode":  # reduce-style: constructor(*args), then its state
        return {"__class__": name, "__module__": module, "__loader__": "LossNode",
                "__reduce__": {"args": tuple_node(*args)},
                "content": {"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode",
                            "content": {}, "key_types": {"__class__": "list", "__module__": "builtins",
                                                         "__loader__": "ListNode", "content": []}}}
    return {"__class__": name, "__module__": module, "__loader__": loader, "content": tuple_node(*args)}


def function_node(module: str, name: str) -> dict[str, Any]:
    return {"__class__": name, "__module__": module, "__loader__": "FunctionNode"}


def object_node(module: str, name: str) -> dict[str, Any]:
    return {"__class__": name, "__module__": module, "__loader__": "ObjectNode",
            "content": {"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode",
                        "content": {}, "key_types": {"__class__": "list", "__module__": "builtins",
                                                     "__loader__": "ListNode", "content": []}}}


def rewrite(src: Path, dst: Path, *, schema: Callable[[dict[str, Any]], None] | None = None,
            raw_schema: bytes | None = None, extra: dict[str, bytes] | None = None) -> Path:
    """Copy the skops archive ``src`` to ``dst`` with its schema edited in place by ``schema``."""
    with zipfile.ZipFile(src) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    tree = json.loads(members["schema.json"])
    if schema is not None:
        schema(tree)
    members["schema.json"] = raw_schema if raw_schema is not None else json.dumps(tree).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in {**members, **(extra or {})}.items():
            archive.writestr(name, data)
    dst.write_bytes(buffer.getvalue())
    return dst


def find(tree: Any, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first node (depth first) for which ``predicate`` holds."""
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "__loader__" in item and predicate(item):
                return item
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    raise LookupError("no such node")


def replace_node(tree: dict[str, Any], predicate: Callable[[dict[str, Any]], bool],
                 node: dict[str, Any]) -> None:
    target = find(tree, predicate)
    target.clear()
    target.update(node)


def is_class(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda node: node.get("__class__") == name


def fitted_text_pipeline() -> Any:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline

    texts = ["win money now", "meeting at noon", "cheap pills", "lunch tomorrow", "free prize", "notes"]
    return make_pipeline(CountVectorizer(), MultinomialNB()).fit(texts, [1, 0, 1, 0, 1, 0])


def fitted_tabular_column_transformer() -> Any:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.DataFrame({"c": ["a", "b", "c"] * 6, "n": np.arange(18.0)})
    ct = ColumnTransformer([("onehot", OneHotEncoder(), ["c"]), ("scale", StandardScaler(), ["n"])])
    return make_pipeline(ct, LogisticRegression()).fit(frame, np.arange(18) % 2)
