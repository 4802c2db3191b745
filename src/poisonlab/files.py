"""Writing result files: JSON that numpy values survive, written so a reader never sees half a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def to_jsonable(value: Any) -> Any:
    """``json.dumps``'s ``default``: numpy scalars and arrays, and paths, as plain JSON values."""
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(obj: Any) -> str:
    """``obj`` as indented JSON."""
    return json.dumps(obj, indent=2, default=to_jsonable)


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary sibling, so the file is whole or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(dumps(obj), encoding="utf-8")
    tmp.replace(path)
