"""Saving and loading models without running code from the file.

* scikit-learn models go to ``.skops`` files. Loading reads the file's schema first and refuses,
  before anything is constructed, every type outside an explicit allow-list of what a fitted
  scikit-learn model holds (:mod:`poisonlab.models.allowlist`): ``numpy.memmap``, ``numpy.load``,
  ``builtins.eval``, ``os.system`` and everything else not listed. The message names each
  refused type.
* PyTorch models go to ``.safetensors`` files: tensors only, with the architecture spec as JSON
  metadata; ``.pt`` files are read with ``torch.load(weights_only=True)``.
* Pickle and joblib files run code when loaded; they are read only with ``trust_pickle=True``.
* A file that is not what its suffix claims (a pickle named ``.skops``, a torch archive named
  ``.safetensors``) is refused with one line saying what it looks like.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from poisonlab import __version__
from poisonlab.exceptions import ModelError, UntrustedModelError
from poisonlab.models.allowlist import SAFE_BUILTINS as SAFE_BUILTINS  # re-exported
from poisonlab.models.allowlist import audit_skops
from poisonlab.models.allowlist import refusal_reason as refusal_reason  # re-exported

FORMAT = "poisonlab-model"
FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")


@dataclass
class SavedModel:
    """A loaded model with the class names it predicts and the spec it was built from."""

    model: Any
    classes: tuple[str, ...]
    spec: str | None
    path: Path


def save_model(model: Any, path: str | Path, *, classes: tuple[str, ...], spec: str | None) -> Path:
    """Write a fitted model; the suffix is added when missing (``.skops`` or ``.safetensors``)."""
    path = Path(path)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "poisonlab": __version__,
            "classes": list(classes), "spec": spec}
    path.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "net_"):
        from safetensors.torch import save_file

        if path.suffix != ".safetensors":
            path = path.with_name(path.name + ".safetensors")
        meta["torch"] = model.state()
        meta["params"] = {k: v for k, v in model.get_params().items()
                          if isinstance(v, (int, float, str, bool, type(None)))}
        state = {k: v.detach().cpu().contiguous() for k, v in model.net_.state_dict().items()}
        tmp = path.with_name(path.name + ".partial")
        save_file(state, str(tmp), metadata={"poisonlab": json.dumps(meta)})
        tmp.replace(path)
        return path
    import skops.io as sio

    if path.suffix != ".skops":
        path = path.with_name(path.name + ".skops")
    from poisonlab.models.sklearn import SklearnModel

    # unwrap poisonlab's adapter only: a forest's or a bagging model's own estimator_ is its
    # unfitted template, not the model
    estimator = model.estimator_ if isinstance(model, SklearnModel) else model
    payload = {"meta": json.dumps(meta), "estimator": estimator}
    tmp = path.with_name(path.name + ".partial")
    sio.dump(payload, tmp)
    tmp.replace(path)
    return path


def load_model(path: str | Path, *, trust_pickle: bool = False) -> SavedModel:
    """Load a model saved by :func:`save_model` (or a plain scikit-learn/torch file) safely."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such model file.")
    if path.is_dir():
        # An ensemble written by `poisonlab defend --method partition|bagging`.
        from poisonlab.defend.partition import load_ensemble

        ensemble: SavedModel = load_ensemble(path)
        return ensemble
    suffix = path.suffix.lower()
    if suffix == ".skops":
        return _load_skops(path)
    if suffix == ".safetensors":
        return _load_safetensors(path)
    if suffix in (".pt", ".pth"):
        return _load_torch_weights(path)
    if suffix in PICKLE_SUFFIXES:
        return _load_pickle(path, trust_pickle)
    raise ModelError(
        f"{path}: unknown model format {suffix!r} ({_looks_like(path)}); poisonlab reads .skops, "
        ".safetensors, .pt, ensemble folders, and (with --trust-pickle) .pkl/.joblib."
    )


def _load_skops(path: Path) -> SavedModel:
    import skops.io as sio

    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path}: not a skops file ({_looks_like(path)}; a skops file is a zip "
                         "archive).")
    found = audit_skops(path)  # refuses anything outside the allow-list before skops reads a node
    try:
        obj = sio.load(path, trusted=found)
    except Exception as exc:  # skops raises a variety of errors for a damaged file
        raise ModelError(f"{path}: the skops file could not be loaded ({_first_line(exc)}).") from None
    return _wrap_sklearn(obj, path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _looks_like(path: Path) -> str:
    """What the first bytes of a file say it is, in a few words."""
    try:
        with path.open("rb") as handle:
            head = handle.read(64)
    except OSError:
        return "unreadable"
    if not head:
        return "it is empty"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return "it looks like a pickle"
    if head.startswith(b"PK"):
        try:
            names = zipfile.ZipFile(path).namelist()
        except zipfile.BadZipFile:
            return "it looks like a damaged zip archive"
        if "schema.json" in names:
            return "it looks like a skops archive"
        if any(n.endswith("data.pkl") for n in names):
            return "it looks like a PyTorch archive (torch.save)"
        return "it is a zip archive of another kind"
    if len(head) >= 9 and head[8:9] == b"{":
        return "it looks like a safetensors file"
    if head.lstrip()[:1] in (b"{", b"["):
        return "it looks like JSON text"
    return "its contents are not a model format poisonlab knows"


def _wrap_sklearn(obj: Any, path: Path) -> SavedModel:
    from poisonlab.models.sklearn import SklearnModel

    if isinstance(obj, dict) and "meta" in obj and "estimator" in obj:
        meta = _meta(obj["meta"], path)
        estimator = obj["estimator"]
        classes = tuple(meta["classes"])
        spec = meta.get("spec")
    else:
        estimator = obj
        if not hasattr(estimator, "predict_proba"):
            raise ModelError(f"{path}: the file holds a {type(obj).__name__}, not a classifier.")
        classes = tuple(str(c) for c in getattr(estimator, "classes_", []))
        spec = None
    if isinstance(estimator, SklearnModel):
        return SavedModel(estimator, classes, spec, path)
    if not hasattr(estimator, "predict_proba"):
        raise ModelError(f"{path}: the model has no predict_proba.")
    labels = np.asarray(getattr(estimator, "classes_", []))
    if len(labels) and not np.array_equal(labels, np.arange(len(labels))):
        estimator = _IndexedClasses(estimator)  # string or shifted labels: columns by position
    model = SklearnModel(estimator=estimator, spec=spec)
    model.estimator_ = estimator
    model.n_classes_ = len(classes) or len(getattr(estimator, "classes_", []))
    model.classes_ = np.arange(model.n_classes_)
    return SavedModel(model, classes, spec, path)


class _IndexedClasses:
    """A fitted scikit-learn classifier whose ``classes_`` are names, seen as indices 0..K-1.

    Everything else (``predict_proba``, ``steps``, a vectorizer's vocabulary) is the wrapped
    estimator's; the class names stay in :attr:`SavedModel.classes`.
    """

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        self.classes_ = np.arange(len(estimator.classes_))

    def predict_proba(self, X: Any) -> Any:
        return self.estimator.predict_proba(X)

    def predict(self, X: Any) -> Any:
        return np.argmax(self.estimator.predict_proba(X), axis=1)

    def __getattr__(self, name: str) -> Any:
        if name == "estimator":
            raise AttributeError(name)
        return getattr(self.estimator, name)


def _meta(raw: str, path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise ModelError(f"{path}: its poisonlab metadata is not valid JSON.") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{path}: not a poisonlab model file.")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelError(
            f"{path}: written by a newer poisonlab (model format {meta['format_version']}); "
            "upgrade poisonlab to read it."
        )
    return meta


def _load_safetensors(path: Path) -> SavedModel:
    from poisonlab.exceptions import require

    require("torch", "torch")
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            raw_meta = (handle.metadata() or {}).get("poisonlab")
            state = {k: handle.get_tensor(k) for k in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable safetensors file ({_looks_like(path)}: "
                         f"{_first_line(exc)}).") from None
    if raw_meta is None:
        raise ModelError(
            f"{path}: the safetensors file has no poisonlab architecture spec; weights alone "
            "cannot be rebuilt into a model."
        )
    return _rebuild_torch(_meta(raw_meta, path), state, path)


def _load_torch_weights(path: Path) -> SavedModel:
    from poisonlab.exceptions import require

    require("torch", "torch")
    import torch

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only raises UnpicklingError for anything but tensors
        raise UntrustedModelError(
            f"{path}: not a weights-only torch file ({_looks_like(path)}; torch refused it with "
            f"weights_only=True: {_first_line(exc)}). Save the state_dict, or use .safetensors."
        ) from None
    if not isinstance(blob, dict) or "state_dict" not in blob or "poisonlab" not in blob:
        raise ModelError(
            f"{path}: expected a dict with 'state_dict' and a 'poisonlab' architecture spec."
        )
    return _rebuild_torch(_meta(blob["poisonlab"], path), blob["state_dict"], path)


def _rebuild_torch(meta: dict[str, Any], state: dict[str, Any], path: Path) -> SavedModel:
    from poisonlab.models.torch import TorchClassifier, build_network

    spec = meta.get("torch") or {}
    try:
        shape = tuple(int(s) for s in spec["input_shape"])
        net = build_network(str(spec["arch"]), shape, int(spec["n_classes"]))  # type: ignore[arg-type]
        net.load_state_dict(state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ModelError(
            f"{path}: the weights do not match the architecture spec ({str(exc).splitlines()[0]})."
        ) from None
    net.eval()
    params = {k: v for k, v in (meta.get("params") or {}).items()
              if k in TorchClassifier().get_params()}
    model = TorchClassifier(**params)
    model.net_ = net
    model.input_shape_ = shape
    model.n_classes_ = int(spec["n_classes"])
    model.classes_ = np.arange(model.n_classes_)
    return SavedModel(model, tuple(meta["classes"]), meta.get("spec"), path)


def _load_pickle(path: Path, trust_pickle: bool) -> SavedModel:
    if not trust_pickle:
        raise UntrustedModelError(
            f"{path}: pickle and joblib files run code when loaded; poisonlab loads them only "
            "with --trust-pickle (and only files you would run as a program)."
        )
    warnings.warn(
        f"Loading {path} with pickle: unpickling runs whatever code the file contains, so a "
        "model file from someone else can take over this machine; prefer .skops or .safetensors.",
        UserWarning, stacklevel=2,
    )
    import joblib

    try:
        obj = joblib.load(path)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable pickle/joblib file ({_looks_like(path)}: "
                         f"{_first_line(exc)}).") from None
    if hasattr(obj, "net_") and hasattr(obj, "predict_proba"):  # a pickled TorchClassifier
        n = int(getattr(obj, "n_classes_", 0))
        return SavedModel(obj, tuple(str(k) for k in range(n)), getattr(obj, "arch", None), path)
    return _wrap_sklearn(obj, path)
