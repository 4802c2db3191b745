"""Reading an ensemble folder written by ``poisonlab defend --method partition|bagging``.

The folder holds ``ensemble.json`` and one model file per member. Reading it runs no code from it:
the manifest is JSON checked field by field; a member is opened only when its name is
``member-NNNN.skops`` or ``member-NNNN.safetensors``, it is a regular file directly inside the
folder (not a symbolic link, not reached through ``..`` or an absolute path), and it is read with
:func:`poisonlab.models.io.load_model`, so the same skops allow-list and safetensors checks apply.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poisonlab.exceptions import ModelError, is_int

ENSEMBLE_FORMAT = "poisonlab-ensemble"
ENSEMBLE_FORMAT_VERSION = 1
MANIFEST_NAME = "ensemble.json"
MEMBER_FILE = re.compile(r"^member-\d{1,7}\.(skops|safetensors)$")
MAX_MEMBERS = 100_000
MAX_MANIFEST_BYTES = 64 * 1024**2


@dataclass
class EnsembleFolder:
    """A checked ensemble manifest with its members loaded (``None`` for an empty partition)."""

    path: Path
    manifest: dict[str, Any]
    method: str
    classes: tuple[str, ...]
    n_classes: int
    spec: str | None
    members: list[Any]


def read_ensemble_folder(path: str | Path) -> EnsembleFolder:
    """Check ``path/ensemble.json`` and load every member it lists; one line for anything off."""
    from poisonlab.models.io import load_model

    path = Path(path)
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file() or manifest_path.is_symlink():
        raise ModelError(f"{path}: not an ensemble folder (no {MANIFEST_NAME}).")
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ModelError(f"{manifest_path}: larger than {MAX_MANIFEST_BYTES} bytes; not a manifest.")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelError(f"{manifest_path}: not readable JSON ({str(exc).splitlines()[0]}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ENSEMBLE_FORMAT:
        raise ModelError(f"{manifest_path}: not a poisonlab ensemble manifest.")
    version: Any = manifest.get("format_version")
    if not is_int(version, 0, 1 << 31):
        raise ModelError(f"{manifest_path}: its format_version {version!r} is not a number.")
    if version > ENSEMBLE_FORMAT_VERSION:
        raise ModelError(f"{manifest_path}: written by a newer poisonlab; upgrade to read it.")
    method = manifest.get("method")
    if method not in ("partition", "bagging"):
        raise ModelError(f"{manifest_path}: unknown ensemble method {method!r}.")
    classes = manifest.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise ModelError(f"{manifest_path}: malformed manifest ('classes' must be a list of names).")
    n_classes: Any = manifest.get("n_classes")
    if not is_int(n_classes, 1, len(classes)):
        raise ModelError(f"{manifest_path}: malformed manifest (n_classes {n_classes!r} for "
                         f"{len(classes)} class names).")
    spec = manifest.get("spec")
    if spec is not None and not isinstance(spec, str):
        raise ModelError(f"{manifest_path}: malformed manifest ('spec' must be a name).")
    names = manifest.get("members")
    if not isinstance(names, list) or not 1 <= len(names) <= MAX_MEMBERS:
        raise ModelError(f"{manifest_path}: malformed manifest ('members' must list 1 to {MAX_MEMBERS} "
                         "member files).")
    folder = path.resolve()
    members: list[Any] = []
    for name in names:
        if name is None:
            members.append(None)
            continue
        if not isinstance(name, str) or not MEMBER_FILE.match(name):
            raise ModelError(f"{manifest_path}: refusing member file name {name!r}.")
        member = path / name
        if member.is_symlink() or not member.is_file() or member.resolve().parent != folder:
            raise ModelError(f"{manifest_path}: refusing member {name!r}: not a regular file inside "
                             f"{path} (a missing file, a folder or a symbolic link).")
        members.append(load_model(member).model)
    return EnsembleFolder(path, manifest, method, tuple(classes), n_classes, spec, members)


def load_ensemble(path: str | Path) -> Any:
    """Read an ensemble folder into a :class:`poisonlab.models.io.SavedModel` that predicts like the saved one.

    A partition ensemble also certifies; a bagging ensemble also flags disagreement.
    """
    from poisonlab.models.io import SavedModel

    folder = read_ensemble_folder(path)
    manifest_path = folder.path / MANIFEST_NAME
    manifest = folder.manifest
    try:
        if folder.method == "partition":
            from poisonlab.defend.partition import PartitionEnsemble

            model: Any = PartitionEnsemble(n_partitions=_count(manifest, "n_partitions"),
                                           hash_seed=_count(manifest, "hash_seed", low=0),
                                           model=folder.spec,
                                           random_state=_seed(manifest.get("random_state")))
            if len(folder.members) != model.n_partitions:
                raise ModelError(f"{manifest_path}: lists {len(folder.members)} members for "
                                 f"{model.n_partitions} partitions.")
            import numpy as np

            sizes = manifest.get("partition_sizes") or []
            if not isinstance(sizes, list) or not all(is_int(s, 0, 1 << 62) for s in sizes):
                raise ModelError(f"{manifest_path}: malformed manifest ('partition_sizes').")
            model.partition_sizes_ = np.asarray(sizes, dtype=np.int64)
        else:
            from poisonlab.defend.bagging import BaggingEnsemble

            model = BaggingEnsemble(n_estimators=len(folder.members), model=folder.spec,
                                    threshold=_rate(manifest, "threshold", 0.5))
            model.input_threshold_ = _rate(manifest, "input_threshold", model.threshold)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{manifest_path}: malformed manifest ({exc}).") from None
    import numpy as np

    model.members_ = folder.members
    model.n_classes_ = folder.n_classes
    model.classes_ = np.arange(folder.n_classes)
    model.spec_ = folder.spec
    return SavedModel(model, folder.classes, f"{folder.method}:{folder.spec}", folder.path)


def _count(manifest: dict[str, Any], key: str, *, low: int = 1) -> int:
    value: Any = manifest.get(key)
    if not is_int(value, low, MAX_MEMBERS if low else 1 << 62):
        raise ValueError(f"{key!r} is {value!r}")
    return int(value)


def _seed(value: Any) -> int | None:
    if value is None or is_int(value, 0, (1 << 63) - 1):
        return value
    raise ValueError(f"'random_state' is {value!r}")


def _rate(manifest: dict[str, Any], key: str, default: float) -> float:
    value = manifest.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{key!r} is {value!r}; expected a number in [0, 1]")
    return float(value)
