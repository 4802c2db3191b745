"""Model files, one at a time: saving and loading without running code from the file.

What is trusted and refused, format by format (skops allow-list, safetensors metadata, pickles
only with ``trust_pickle=True``, a suffix that lies), is said once, in :mod:`poisonlab.models.io`,
which adds ensemble folders and re-exports these names.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from poisonlab.exceptions import ModelError, PoisonlabError, UntrustedModelError, is_int
from poisonlab.models.allowlist import SAFE_BUILTINS as SAFE_BUILTINS  # re-exported
from poisonlab.models.allowlist import audit_skops
from poisonlab.models.allowlist import refusal_reason as refusal_reason  # re-exported
from poisonlab.models.structure import check_structure
from poisonlab.version import __version__

if TYPE_CHECKING:
    from collections.abc import Mapping

    from torch import nn

    from poisonlab.models.protocols import Classifier, MarginClassifier, ModelLike, ProbabilisticClassifier

FORMAT = "poisonlab-model"
FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")


@dataclass
class SavedModel:
    """A loaded model with the class names it predicts and the spec it was built from."""

    model: Classifier
    classes: tuple[str, ...]
    spec: str | None
    path: Path


class _NetworkModel(Protocol):
    """A fitted torch model save_model writes as .safetensors (TorchClassifier, DPTorchClassifier)."""

    net_: nn.Module

    def state(self) -> Mapping[str, object]: ...

    def get_params(self, deep: bool = True) -> dict[str, object]: ...


def check_can_save(model: ModelLike | MarginClassifier | Path | None) -> None:
    """Raise :class:`MissingExtraError` now if a model of this kind could not be saved later.

    ``model`` is a built-in spec name (``"cnn"``, ``"nb-text"``, ...), ``None`` for a
    scikit-learn default, or a model object. Torch models are saved as ``.safetensors`` and need
    torch and the ``safetensors`` package; scikit-learn models need ``skops``. Call it before
    training for minutes: a missing package otherwise surfaces only when the work is saved.
    """
    import importlib

    from poisonlab.exceptions import MissingExtraError, require

    if _is_torch_model(model):
        require("torch", "torch")
        require("safetensors", "torch")
        return
    try:
        importlib.import_module("skops.io")
    except ImportError as exc:
        raise MissingExtraError("Saving a scikit-learn model needs the 'skops' package, a poisonlab "
                                "dependency: pip install skops") from exc


def _is_torch_model(model: object) -> bool:
    from poisonlab.models import TORCH_SPECS

    if isinstance(model, (str, Path)):  # a spec name, or a model file to start from
        return str(model) in TORCH_SPECS or str(model).lower().endswith((".safetensors", ".pt", ".pth"))
    if hasattr(model, "net_"):
        return True
    return type(model).__name__ == "TorchClassifier" or getattr(model, "arch", None) in ("cnn", "mlp")


def save_model(model: ProbabilisticClassifier | MarginClassifier, path: str | Path, *,
               classes: tuple[str, ...], spec: str | None) -> Path:
    """Write a fitted model; the suffix is added when missing (``.skops`` or ``.safetensors``)."""
    check_can_save(model)
    path = Path(path)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "poisonlab": __version__,
            "classes": list(classes), "spec": spec}
    path.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "net_"):
        from safetensors.torch import save_file

        if path.suffix != ".safetensors":
            path = path.with_name(path.name + ".safetensors")
        network = cast("_NetworkModel", model)
        meta["torch"] = network.state()
        meta["params"] = {k: v for k, v in network.get_params().items()
                          if isinstance(v, (int, float, str, bool, type(None)))}
        state = {k: v.detach().cpu().contiguous() for k, v in network.net_.state_dict().items()}
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
    estimator = model.fitted_estimator() if isinstance(model, SklearnModel) else model
    payload = {"meta": json.dumps(meta), "estimator": estimator}
    tmp = path.with_name(path.name + ".partial")
    sio.dump(payload, tmp)
    tmp.replace(path)
    return path


def load_model_file(path: str | Path, *, trust_pickle: bool = False) -> SavedModel:
    """Load one model file saved by :func:`save_model` (or a plain scikit-learn/torch file)
    safely; :func:`poisonlab.models.io.load_model` also reads ensemble folders."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such model file.")
    if path.is_dir():
        raise ModelError(f"{path}: a folder, not a model file (poisonlab.models.io.load_model "
                         "reads ensemble folders).")
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
    check_structure(obj, path)  # tree indices in range before the model predicts
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
        own_file = True
    else:
        estimator = obj
        if not (hasattr(estimator, "predict_proba") or hasattr(estimator, "decision_function")):
            raise ModelError(f"{path}: the file holds a {type(obj).__name__}, not a classifier.")
        classes = tuple(str(c) for c in getattr(estimator, "classes_", []))
        spec = None
        own_file = False
    if isinstance(estimator, SklearnModel):
        return SavedModel(estimator, classes, spec, path)
    if not (hasattr(estimator, "predict_proba") or hasattr(estimator, "decision_function")):
        raise ModelError(f"{path}: the model has neither predict_proba nor decision_function.")
    labels = np.asarray(getattr(estimator, "classes_", []))
    # poisonlab's own file names all K classes; an estimator fitted on some of them (a partition
    # member that saw three digits, a one-class partition's constant model) keeps integer labels
    # that index those K classes, and SklearnModel spreads its columns over them. Only labels that
    # are not such indices (names, or shifted numbers in a file without poisonlab's metadata) are
    # renumbered 0..k-1 by position.
    indexes_classes = len(labels) > 0 and labels.dtype.kind in "iu" and len(classes) > 0 and \
        bool(np.all((labels >= 0) & (labels < len(classes)))) and len(set(labels.tolist())) == len(labels)
    if len(labels) and not np.array_equal(labels, np.arange(len(labels))) and \
            not (own_file and indexes_classes):
        estimator = IndexedClasses(estimator)  # string or shifted labels: columns by position
    model = SklearnModel(estimator=estimator, spec=spec)
    model.estimator_ = estimator
    model.n_classes_ = len(classes) or len(getattr(estimator, "classes_", []))
    model.classes_ = np.arange(model.n_classes_)
    return SavedModel(model, classes, spec, path)


def unwrap_estimator(model: object) -> object:
    """The user's own estimator inside poisonlab's loading wrappers (:class:`SklearnModel`,
    :class:`IndexedClasses`), which add nothing; any other object is returned as it is."""
    from poisonlab.models.sklearn import SklearnModel

    for _ in range(4):
        if isinstance(model, SklearnModel) and hasattr(model, "estimator_"):
            model = model.estimator_
        elif isinstance(model, IndexedClasses):
            model = model.estimator
        else:
            break
    return model


class IndexedClasses:
    """A fitted scikit-learn classifier whose ``classes_`` are names, seen as indices 0..K-1.

    Everything else (``predict_proba``, ``steps``, a vectorizer's vocabulary) is the wrapped
    estimator's; the class names stay in :attr:`SavedModel.classes`.
    """

    def __init__(self, estimator: Any) -> None:  # a fitted scikit-learn classifier: untyped
        self.estimator = estimator
        self.classes_ = np.arange(len(estimator.classes_))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """The wrapped estimator's class probabilities, one column per class in ``classes_`` order; for an
        estimator with only ``decision_function``, its margins mapped to a ranking of the classes.
        """
        if not hasattr(self.estimator, "predict_proba"):
            from poisonlab.models.sklearn import margin_probabilities

            return margin_probabilities(self.estimator.decision_function(X))
        return self.estimator.predict_proba(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable class index (0..K-1) of each row."""
        return np.argmax(self.predict_proba(X), axis=1)

    def __getattr__(self, name: str) -> Any:  # the wrapped estimator's attribute: untyped
        if name == "estimator":
            raise AttributeError(name)
        return getattr(self.estimator, name)


# What the poisonlab metadata of a model file may hold, and the bounds on its values.
META_KEYS = frozenset({"format", "format_version", "poisonlab", "classes", "spec", "torch", "params"})
TORCH_SPEC_KEYS = frozenset({"arch", "input_shape", "n_classes"})
MAX_META_CHARS = 1 << 20
MAX_CLASSES = 100_000
MAX_INPUT_SIDE = 4096
MAX_INPUT_VALUES = 1 << 24  # C*H*W of one input
MAX_HEADER_BYTES = 64 * 1024**2  # a safetensors header (the JSON before the tensors)


def _meta(raw: Any, path: Path, *, torch: bool = False) -> dict[str, Any]:
    """The poisonlab metadata of a model file, checked against its schema; one line when it is off."""
    if not isinstance(raw, str):
        raise ModelError(f"{path}: its poisonlab metadata is a {type(raw).__name__}, not JSON text.")
    if len(raw) > MAX_META_CHARS:
        raise ModelError(f"{path}: its poisonlab metadata is {len(raw)} characters; refusing more "
                         f"than {MAX_META_CHARS}.")
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise ModelError(f"{path}: its poisonlab metadata is not valid JSON.") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{path}: not a poisonlab model file.")
    version: Any = meta.get("format_version")
    if not is_int(version, 0, 1 << 31):
        raise ModelError(f"{path}: its model format version {version!r} is not a number.")
    if version > FORMAT_VERSION:
        raise ModelError(
            f"{path}: written by a newer poisonlab (model format {meta['format_version']}); "
            "upgrade poisonlab to read it."
        )
    unexpected = sorted(set(meta) - META_KEYS)
    if unexpected:
        raise ModelError(f"{path}: its poisonlab metadata has unexpected keys {unexpected}.")
    classes = meta.get("classes")
    if (not isinstance(classes, list) or not 1 <= len(classes) <= MAX_CLASSES
            or not all(isinstance(c, str) and len(c) <= 1000 for c in classes)):
        raise ModelError(f"{path}: its poisonlab metadata needs 'classes', a list of 1 to {MAX_CLASSES} "
                         "names.")
    if not (meta.get("spec") is None or (isinstance(meta["spec"], str) and len(meta["spec"]) <= 200)):
        raise ModelError(f"{path}: its poisonlab metadata has a 'spec' that is not a short name.")
    if torch:
        _check_torch_spec(meta, path)
    return meta


def _check_torch_spec(meta: dict[str, Any], path: Path) -> None:
    from poisonlab.models.torch import ARCHITECTURES

    spec = meta.get("torch")
    if not isinstance(spec, dict):
        raise ModelError(f"{path}: its poisonlab metadata has no architecture spec ('torch').")
    unexpected = sorted(set(spec) - TORCH_SPEC_KEYS)
    missing = sorted(TORCH_SPEC_KEYS - set(spec))
    if unexpected or missing:
        raise ModelError(f"{path}: its architecture spec must have exactly {sorted(TORCH_SPEC_KEYS)}; "
                         f"missing {missing}, unexpected {unexpected}.")
    if spec["arch"] not in ARCHITECTURES:
        raise ModelError(f"{path}: unknown architecture {spec['arch']!r}; poisonlab builds {list(ARCHITECTURES)}.")
    shape = spec["input_shape"]
    if (not isinstance(shape, list) or len(shape) != 3
            or not all(is_int(s, 1, MAX_INPUT_SIDE) for s in shape)
            or shape[0] * shape[1] * shape[2] > MAX_INPUT_VALUES):
        raise ModelError(f"{path}: its input_shape {shape!r} is not 3 sizes (C, H, W) of 1 to "
                         f"{MAX_INPUT_SIDE} with at most {MAX_INPUT_VALUES} values.")
    if not is_int(spec["n_classes"], 2, MAX_CLASSES) or spec["n_classes"] != len(meta["classes"]):
        raise ModelError(f"{path}: its n_classes {spec['n_classes']!r} does not match its "
                         f"{len(meta['classes'])} class names.")
    params = meta.get("params", {})
    if not isinstance(params, dict):
        raise ModelError(f"{path}: its training parameters are not a mapping.")
    from poisonlab.models.torch import TorchClassifier

    # A defense's own settings (DP-SGD's epsilon, delta) are kept beside the classifier's; only the
    # classifier's are used when loading, and every one must be a short name with a scalar value.
    if len(params) > 100:
        raise ModelError(f"{path}: its metadata has {len(params)} training parameters; refusing more than 100.")
    for name, value in params.items():
        if not name.isidentifier() or len(name) > 64:
            raise ModelError(f"{path}: training parameter name {name[:64]!r} is not a short identifier.")
        if not isinstance(value, (int, float, str, bool, type(None))) or (
                isinstance(value, str) and len(value) > 100):
            raise ModelError(f"{path}: training parameter {name!r} has a value of the wrong kind.")
    known = TorchClassifier().get_params()
    for name in ("max_epochs", "batch_size"):
        if name in params and name in known and not is_int(params[name], 1, 1 << 31):
            raise ModelError(f"{path}: training parameter {name!r} is {params[name]!r}; expected an int >= 1.")
    device = params.get("device", "auto")
    if not isinstance(device, str) or not (device in ("auto", "cpu", "cuda", "mps")
                                           or (device.startswith("cuda:") and device[5:].isdigit())):
        raise ModelError(f"{path}: training parameter 'device' is {device!r}; expected auto, cpu or cuda.")


def _safetensors_header_size(path: Path) -> int:
    """The length of a safetensors file's JSON header, checked before the library reads it."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
    if len(head) < 8:
        raise ModelError(f"{path}: not a readable safetensors file ({_looks_like(path)}: shorter than "
                         "its 8-byte header length).")
    n = int.from_bytes(head, "little")
    if n > MAX_HEADER_BYTES or n > size - 8:
        raise ModelError(f"{path}: not a readable safetensors file ({_looks_like(path)}: its header "
                         f"claims {n} bytes; the file has {size - 8} after the length and poisonlab "
                         f"reads at most {MAX_HEADER_BYTES}).")
    return n


def _load_safetensors(path: Path) -> SavedModel:
    from poisonlab.exceptions import require

    require("torch", "torch")
    from safetensors import SafetensorError, safe_open

    _safetensors_header_size(path)
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
    return _rebuild_torch(_meta(raw_meta, path, torch=True), state, path)


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
    if (not isinstance(blob, dict) or "state_dict" not in blob or "poisonlab" not in blob
            or not isinstance(blob["state_dict"], dict)):
        raise ModelError(
            f"{path}: expected a dict with 'state_dict' and a 'poisonlab' architecture spec."
        )
    return _rebuild_torch(_meta(blob["poisonlab"], path, torch=True), blob["state_dict"], path)


def _rebuild_torch(meta: dict[str, Any], state: dict[str, Any], path: Path) -> SavedModel:
    """The network the (checked) spec describes, with the file's tensors once each one matches."""
    import torch

    from poisonlab.models.torch import TorchClassifier, build_network

    spec = meta["torch"]
    shape = tuple(int(s) for s in spec["input_shape"])
    with torch.device("meta"):  # shapes and dtypes only: nothing is allocated for a hostile spec
        try:
            expected = build_network(str(spec["arch"]), shape, int(spec["n_classes"])).state_dict()  # type: ignore[arg-type]
        except PoisonlabError as exc:
            raise ModelError(f"{path}: its architecture spec cannot be built ({exc})") from None
    _check_tensors(expected, state, path)
    net = build_network(str(spec["arch"]), shape, int(spec["n_classes"]))  # type: ignore[arg-type]
    net.load_state_dict(state, strict=True)
    net.eval()
    params = {k: v for k, v in (meta.get("params") or {}).items()
              if k in TorchClassifier().get_params()}
    model = TorchClassifier(**params)
    model.net_ = net
    model.input_shape_ = shape
    model.n_classes_ = int(spec["n_classes"])
    model.classes_ = np.arange(model.n_classes_)
    return SavedModel(model, tuple(meta["classes"]), meta.get("spec"), path)


def _check_tensors(expected: dict[str, Any], state: dict[str, Any], path: Path) -> None:
    import torch

    missing = sorted(set(expected) - set(state))
    unexpected = sorted(str(k) for k in set(state) - set(expected))
    if missing or unexpected:
        raise ModelError(f"{path}: the weights do not match the architecture spec (missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}).")
    for name, want in expected.items():
        got = state[name]
        if not isinstance(got, torch.Tensor):
            raise ModelError(f"{path}: weight {name!r} is a {type(got).__name__}, not a tensor.")
        if tuple(got.shape) != tuple(want.shape) or got.dtype != want.dtype:
            raise ModelError(
                f"{path}: weight {name!r} is {got.dtype} {tuple(got.shape)}; the architecture spec "
                f"needs {want.dtype} {tuple(want.shape)}."
            )


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
