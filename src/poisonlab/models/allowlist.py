"""What a ``.skops`` model file may hold: an explicit, reviewed list of types, checked before loading.

skops rebuilds objects from ``schema.json`` inside a zip archive: every node names a loader
(``ObjectNode``, ``NdArrayNode``, ...) and a type (``__module__`` + ``__class__``), and loading calls
that type. A type that does something when called is enough to attack whoever loads the file:
``numpy.memmap(path, "uint8", "w+", 0, 4)`` zeroes ``path``, ``numpy.save`` writes one,
``subprocess.Popen`` runs a program. So poisonlab reads ``schema.json`` itself first, before skops
builds anything, and refuses the file unless

* every node uses a loader in :data:`ALLOWED_LOADERS` (not the ones that call a stored constructor
  with stored arguments, bind a method, or build a ``functools.partial`` or an ``operator`` call);
* every type is in :func:`allowed_types`: the public scikit-learn estimators
  (``sklearn.utils.all_estimators``), the scikit-learn internals that fitted trees, forests,
  gradient boosting, neural networks and calibrated classifiers hold (:data:`SKLEARN_INTERNALS`),
  ``numpy.ndarray``, ``numpy.dtype`` and the numpy scalar types, ``RandomState``, the scipy.sparse
  matrix and array classes, :data:`SAFE_BUILTINS`, and poisonlab's ``SklearnModel`` and
  ``SentenceEmbedder`` (its parameters only: the weights come from the installed package);
* every stored function (a ``FunctionNode``) is a numpy ufunc (``numpy.log1p`` in a
  ``FunctionTransformer``): elementwise arithmetic, no file or process access;
* the archive has no member name that climbs out of it, no duplicate names, and no more than
  :data:`MAX_UNCOMPRESSED_BYTES` once inflated (a zip bomb is refused before it is read).

Never allowed, by name, because they read or write files or run code: ``numpy.memmap``,
``numpy.load``/``loadtxt``/``genfromtxt``/``fromfile``/``fromregex``/``save``/``savez``/
``savetxt``, ``numpy.lib.format``, ``numpy.ctypeslib``, ``builtins.eval``/``exec``/``open``/
``getattr``/``type``/``object``, ``os``, ``subprocess`` and anything else not listed.
"""

from __future__ import annotations

import functools
import json
import posixpath
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from poisonlab.exceptions import ModelError, UntrustedModelError

# Loaders that build plain data, arrays, or an allowed class with its attributes set. Refused:
# ConstructorFromReduceNode (calls a stored type with stored arguments), MethodNode, PartialNode,
# OperatorFuncNode, DefaultDictNode, MaskedArrayNode, QuantileForestNode.
ALLOWED_LOADERS = frozenset({
    "DictNode", "ListNode", "TupleNode", "SetNode", "JsonNode", "BytesNode", "BytearrayNode",
    "SliceNode", "NdArrayNode", "DTypeNode", "SparseMatrixNode", "ObjectNode", "TreeNode",
    "LossNode", "TypeNode", "FunctionNode", "RandomStateNode", "RandomGeneratorNode", "CachedNode",
})
# A numpy Generator (HistGradientBoosting keeps one) is rebuilt by calling the bit generator its
# state names: only numpy's own bit generators.
BIT_GENERATORS = frozenset({"numpy.random.PCG64", "numpy.random.PCG64DXSM", "numpy.random.MT19937",
                            "numpy.random.Philox", "numpy.random.SFC64"})
# Of the builtins, only plain containers and scalars.
SAFE_BUILTINS = frozenset({"dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray",
                           "int", "float", "complex", "bool", "slice", "NoneType"})
# Internals a fitted model holds that all_estimators does not list (measured with
# skops.io.get_untrusted_types over fitted forests, boosting, MLP, calibration, voting, stacking).
SKLEARN_INTERNALS = (
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.utils._bunch.Bunch",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn._loss.link.HalfLogitLink", "sklearn._loss.link.IdentityLink", "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink", "sklearn._loss.link.LogLink", "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.loss.AbsoluteError", "sklearn._loss.loss.ExponentialLoss",
    "sklearn._loss.loss.HalfBinomialLoss", "sklearn._loss.loss.HalfGammaLoss",
    "sklearn._loss.loss.HalfMultinomialLoss", "sklearn._loss.loss.HalfPoissonLoss",
    "sklearn._loss.loss.HalfSquaredError", "sklearn._loss.loss.HuberLoss",
    "sklearn._loss.loss.PinballLoss", "sklearn._loss.loss.HalfTweedieLoss",
    "sklearn._loss.loss.HalfTweedieLossIdentity",
    "sklearn._loss._loss.CyHalfBinomialLoss", "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss._loss.CyHalfSquaredError", "sklearn._loss._loss.CyAbsoluteError",
    "sklearn._loss._loss.CyExponentialLoss", "sklearn._loss._loss.CyHalfPoissonLoss",
    "sklearn._loss._loss.CyHalfGammaLoss", "sklearn._loss._loss.CyHuberLoss",
    "sklearn._loss._loss.CyPinballLoss", "sklearn._loss._loss.CyHalfTweedieLoss",
    "sklearn._loss._loss.CyHalfTweedieLossIdentity",
    "poisonlab.models.sklearn.SklearnModel",
    # holds its three parameters only; the weights are read from the installed wordllama package
    "poisonlab.models.embed.SentenceEmbedder",
)
# The distances a fitted neighbors tree keeps (not PyFuncDistance, which calls a function).
DISTANCE_METRICS = tuple(
    f"sklearn.metrics._dist_metrics.{name}Distance{bits}"
    for name in ("Euclidean", "SEuclidean", "Manhattan", "Chebyshev", "Minkowski", "Mahalanobis",
                 "Hamming", "Canberra", "BrayCurtis", "Jaccard", "Matching", "Dice", "Kulsinski",
                 "RogersTanimoto", "RussellRao", "SokalMichener", "SokalSneath", "Haversine")
    for bits in (32, 64)
)
# numpy's scalar types as skops names them ("numpy.float64"), and arrays, dtypes, RandomState.
NUMPY_TYPES = (
    "numpy.ndarray", "numpy.dtype", "numpy.random.mtrand.RandomState",
    "numpy.random._generator.Generator",
    "numpy.bool", "numpy.bool_", "numpy.int8", "numpy.int16", "numpy.int32", "numpy.int64",
    "numpy.uint8", "numpy.uint16", "numpy.uint32", "numpy.uint64", "numpy.intc", "numpy.uintc",
    "numpy.longlong", "numpy.ulonglong", "numpy.float16", "numpy.float32", "numpy.float64",
    "numpy.longdouble", "numpy.complex64", "numpy.complex128", "numpy.clongdouble", "numpy.str_",
    "numpy.bytes_", "numpy.void", "numpy.object_", "numpy.datetime64", "numpy.timedelta64",
)
# Never allowed: named here so that a refusal says why.
FILE_ACCESS = frozenset({
    "numpy.memmap", "numpy.load", "numpy.loadtxt", "numpy.genfromtxt", "numpy.fromfile",
    "numpy.fromregex", "numpy.save", "numpy.savez", "numpy.savez_compressed", "numpy.savetxt",
    "numpy.DataSource", "numpy.lib.npyio.DataSource", "numpy.core.memmap.memmap",
    "numpy._core.memmap.memmap", "builtins.open", "io.open", "io.FileIO", "pathlib.Path",
})
# An archive that inflates to more than this is refused before any member is read.
MAX_UNCOMPRESSED_BYTES = 4 * 1024**3
MAX_SCHEMA_BYTES = 256 * 1024**2
MAX_MEMBERS = 1_000_000


@functools.lru_cache(maxsize=1)
def allowed_types() -> frozenset[str]:
    """Every type name (``module.Class``) a ``.skops`` file may hold."""
    import scipy.sparse as sp
    from sklearn.utils import all_estimators

    estimators = {f"{cls.__module__}.{cls.__qualname__}" for _, cls in all_estimators()}
    sparse = {f"{cls.__module__}.{cls.__qualname__}" for cls in (
        sp.csr_matrix, sp.csc_matrix, sp.coo_matrix, sp.bsr_matrix, sp.dia_matrix,
        sp.csr_array, sp.csc_array, sp.coo_array, sp.bsr_array, sp.dia_array)}
    builtins = {f"builtins.{name}" for name in SAFE_BUILTINS}
    return frozenset(estimators | sparse | builtins | set(SKLEARN_INTERNALS)
                     | set(DISTANCE_METRICS) | set(NUMPY_TYPES))


@functools.lru_cache(maxsize=1)
def allowed_functions() -> frozenset[str]:
    """Functions a ``.skops`` file may name: numpy's ufuncs (``numpy.log1p``), nothing else."""
    import numpy as np

    return frozenset(f"numpy.{name}" for name in dir(np)
                     if isinstance(getattr(np, name, None), np.ufunc))


def refusal_reason(type_name: str, *, loader: str | None = None) -> str | None:
    """Why ``type_name`` (``module.Class`` as skops stores it) may not be loaded, or None when it may."""
    if loader == "bit generator":
        return None if type_name in BIT_GENERATORS else "not one of numpy's bit generators"
    if loader is not None and loader not in ALLOWED_LOADERS:
        return f"stored as a {loader}, which calls what the file names"
    if loader == "FunctionNode":
        if type_name in allowed_functions():
            return None
    elif type_name in allowed_types():
        return None
    if type_name in FILE_ACCESS:
        return "reads or writes files"
    if type_name.rpartition(".")[0] == "builtins":
        return "a builtin outside the safe list"
    if type_name.startswith(("sklearn.", "numpy.", "scipy.")):
        found = _resolve(type_name)
        if found is None:
            return "not found in the installed packages"
        if not isinstance(found, type):
            return "a function, not a numpy ufunc" if loader == "FunctionNode" else "a function, not a class"
        return "a class outside the allow-list"
    return "outside the allow-list"


def _resolve(type_name: str) -> Any:
    """The object a dotted name names, importing only scikit-learn, numpy or scipy; None if absent."""
    import importlib

    parts = type_name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            return None
        return obj
    return None


def audit_skops(path: Path) -> list[str]:
    """Check a ``.skops`` archive without building anything; return the type names it holds.

    Raises :class:`UntrustedModelError` naming every refused type (or member name), and
    :class:`ModelError` for an archive that is damaged or not a skops file.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable skops file ({_first_line(exc)}).") from None
    with archive:
        members = archive.infolist()
        _check_members(path, members)
        names = {m.filename for m in members}
        if "schema.json" not in names:
            raise ModelError(f"{path}: not a skops file (the archive has no schema.json).")
        try:
            raw = archive.read("schema.json")
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise ModelError(f"{path}: its schema.json cannot be read ({_first_line(exc)}).") from None
    try:
        schema = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ModelError(f"{path}: its schema.json is not valid JSON, so it is not a skops file "
                         "poisonlab can read.") from None
    if not isinstance(schema, dict) or "__loader__" not in schema:
        raise ModelError(f"{path}: its schema.json does not describe an object.")
    found: dict[str, str | None] = {}
    for loader, type_name, member in _nodes(schema, path):
        if member is not None and member not in names:
            raise ModelError(f"{path}: schema.json names a member {member!r} the archive lacks.")
        key = type_name if loader in ALLOWED_LOADERS or loader == "bit generator" else f"{type_name} via {loader}"
        if key not in found:
            found[key] = refusal_reason(type_name, loader=loader)
    refused = {name: why for name, why in sorted(found.items()) if why}
    if refused:
        listed = "; ".join(f"{name} ({why})" for name, why in refused.items())
        raise UntrustedModelError(
            f"{path}: refusing to load {len(refused)} type(s): {listed}. Allowed: the classes of "
            "fitted scikit-learn models (estimators, pipelines and their internals), numpy arrays, "
            "dtypes and scalars, numpy ufuncs, scipy.sparse matrices, and the builtins "
            f"{', '.join(sorted(SAFE_BUILTINS))} (see SECURITY.md)."
        )
    return sorted(found)


def _check_members(path: Path, members: list[zipfile.ZipInfo]) -> None:
    if len(members) > MAX_MEMBERS:
        raise UntrustedModelError(f"{path}: the archive has {len(members)} members; refusing more "
                                  f"than {MAX_MEMBERS}.")
    seen: set[str] = set()
    total = 0
    for member in members:
        name = member.filename
        parts = name.replace("\\", "/").split("/")
        if (name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]
                or posixpath.normpath(name.replace("\\", "/")) != name.replace("\\", "/").rstrip("/")):
            raise UntrustedModelError(f"{path}: refusing an archive member named {name!r} "
                                      "(it points outside the archive).")
        if name in seen:
            raise UntrustedModelError(f"{path}: the archive holds {name!r} twice; refusing it.")
        seen.add(name)
        total += member.file_size
        if member.filename == "schema.json" and member.file_size > MAX_SCHEMA_BYTES:
            raise UntrustedModelError(f"{path}: its schema.json inflates to {member.file_size} bytes; "
                                      f"refusing more than {MAX_SCHEMA_BYTES}.")
    if total > MAX_UNCOMPRESSED_BYTES:
        raise UntrustedModelError(
            f"{path}: the archive inflates to {total} bytes; refusing more than "
            f"{MAX_UNCOMPRESSED_BYTES} (raise poisonlab.models.allowlist.MAX_UNCOMPRESSED_BYTES "
            "for a model you know is this large)."
        )


def _nodes(schema: dict[str, Any], path: Path) -> Iterator[tuple[str, str, str | None]]:
    """(loader, type name, archive member or None) for every node in a skops schema, iteratively."""
    stack: list[Any] = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, (dict, list)))
            continue
        if not isinstance(item, dict):
            continue
        if "__loader__" in item:
            loader, module, cls = item.get("__loader__"), item.get("__module__"), item.get("__class__")
            if loader == "CachedNode" and module is None and cls is None:
                pass  # a reference to a node already listed
            elif not all(isinstance(v, str) for v in (loader, module, cls)):
                raise ModelError(f"{path}: schema.json has a node without a loader, module and class.")
            else:
                member = item.get("file")
                yield str(loader), f"{module}.{cls}", member if isinstance(member, str) else None
                if loader == "RandomGeneratorNode":
                    yield "bit generator", f"numpy.random.{_bit_generator_name(item, path)}", None
        stack.extend(v for v in item.values() if isinstance(v, (dict, list)))


def _bit_generator_name(node: dict[str, Any], path: Path) -> str:
    try:
        name = json.loads(node["content"]["bit_generator"]["content"]["bit_generator"]["content"])
    except (KeyError, TypeError, ValueError):
        name = None
    if not isinstance(name, str):
        raise ModelError(f"{path}: schema.json has a numpy Generator without its bit generator's name.")
    return name


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
