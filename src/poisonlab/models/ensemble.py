"""Ensembles of base models, and the folder they are saved as.

:class:`PartitionEnsemble` (Deep Partition Aggregation: a plurality vote with a certified radius
for every prediction) and :class:`BaggingEnsemble` (mean-probability predictions with disagreement
flags) are trained models, so they live here in the models layer; the defenses that train and
measure them, :mod:`poisonlab.defend.partition` and :mod:`poisonlab.defend.bagging`, import them
from here (and re-export them under the same names). Their members are built, trained and counted
by :mod:`poisonlab.models.members`.

``ensemble.save(folder, classes=...)`` (:func:`save_members`) writes ``ensemble.json`` and one
model file per member; no class path goes into either, only the method name (``partition`` or
``bagging``). Reading a folder (:func:`read_ensemble_folder`, :func:`load_ensemble`) runs no code
from it: the manifest is JSON checked field by field; a member is opened only when its name is
``member-NNNN.skops`` or ``member-NNNN.safetensors``, it is a regular file directly inside the
folder (not a symbolic link, not reached through ``..`` or an absolute path), and it is read with
:func:`poisonlab.models.io.load_model`, so the same skops allow-list and safetensors checks apply.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from poisonlab.exceptions import ModelError, NotFittedError, ParameterError, check_param, is_int
from poisonlab.models.members import (
    HASH_NAME,
    TIE_BREAK,
    Progress,
    SharedCounts,
    certified_radius,
    content_digests,
    fit_member,
    member_seeds,
    member_spec_name,
    out_of_bag_disagreement,
    partitions_of_digests,
    predict_member,
    resolve_member_model,
    run_parallel,
    vote_counts,
    vote_disagreement,
)

if TYPE_CHECKING:
    from distributed import Client

    from poisonlab.models.model_files import SavedModel
    from poisonlab.models.protocols import Classifier, ModelAdapter, ProbabilisticClassifier

ENSEMBLE_FORMAT = "poisonlab-ensemble"
ENSEMBLE_FORMAT_VERSION = 1
MANIFEST_NAME = "ensemble.json"
MEMBER_FILE = re.compile(r"^member-\d{1,7}\.(skops|safetensors)$")
MAX_MEMBERS = 100_000
MAX_MANIFEST_BYTES = 64 * 1024**2


def ensure_fitted(model: object) -> None:
    """Raise :class:`~poisonlab.exceptions.NotFittedError` unless the ensemble has members."""
    if not hasattr(model, "members_"):
        raise NotFittedError("This ensemble is not fitted yet: call fit first.")


# ---------------------------------------------------------------------------------- partition
class PartitionEnsemble(ClassifierMixin, BaseEstimator):
    """``n_partitions`` base models on content-hashed partitions; plurality vote with certificates.

    ``model``: a spec name (``nb-text``, ``logreg``, ``cnn``, ...) or an unfitted model (cloned per
    partition; a plain scikit-learn classifier is wrapped); ``None`` picks ``nb-text`` for text and
    ``logreg`` otherwise. ``model_params`` go to every base model (torch options for a torch spec).
    ``n_jobs`` trains the base models in parallel with joblib; ``scheduler`` (a Dask address or
    client) trains them on a cluster instead. ``random_state`` must be an int for the certificate
    to describe a reproducible training procedure.

    After ``fit``: ``members_`` (``None`` for an empty partition), ``partition_`` (each training
    row's partition), ``partition_sizes_``, ``member_seeds_``, ``fit_seconds_``.
    :meth:`certify` returns predictions and certified radii. The defense around it (certified
    accuracy, the summary, ``poisonlab defend --method partition``) is
    :mod:`poisonlab.defend.partition`.
    """

    def __init__(self, *, n_partitions: int = 50,
                 model: str | ModelAdapter | ProbabilisticClassifier | None = None, hash_seed: int = 0,
                 n_jobs: int | None = None, scheduler: str | Client | None = None,
                 random_state: int | None = 0, model_params: Mapping[str, object] | None = None) -> None:
        self.n_partitions = n_partitions
        self.model = model
        self.hash_seed = hash_seed
        self.n_jobs = n_jobs
        self.scheduler = scheduler
        self.random_state = random_state
        self.model_params = model_params

    def fit(self, X: np.ndarray, y: np.ndarray, *, n_classes: int | None = None,
            progress: Progress | None = None) -> PartitionEnsemble:
        """Split the training rows into ``n_partitions`` by a hash of their content and train one base model
        on each partition.

        A row's partition depends only on its content (and ``hash_seed``), so inserting or removing one
        training row changes one base model: the vote margin then bounds how many rows an attacker must
        change to flip a prediction (:meth:`certify`).

        Parameters
        ----------
        X : ndarray
            Training rows: texts (an object array of ``str``), images or tables.
        y : ndarray of int, shape (N,)
            Integer labels.
        n_classes : int, optional
            K, the number of classes (default ``y.max() + 1``).
        progress : callable, optional
            Called as ``progress(step, done, total)`` while the base models train.

        Returns
        -------
        PartitionEnsemble
            ``self``, with ``members_`` (``None`` for an empty partition), ``partition_``,
            ``partition_sizes_``, ``member_seeds_`` and ``fit_seconds_``.

        Raises
        ------
        ParameterError
            For ``n_partitions`` below 1, ``X`` and ``y`` of different lengths, or fewer than two classes.

        References
        ----------
        .. [1] Levine and Feizi, "Deep Partition Aggregation: Provable Defenses against General
           Poisoning Attacks", ICLR 2021. https://arxiv.org/abs/2006.14768
        """
        from joblib import delayed

        owner = type(self).__name__
        check_param("n_partitions", owner, isinstance(self.n_partitions, (int, np.integer))
                    and self.n_partitions >= 1, "an integer >= 1", self.n_partitions)
        y = np.asarray(y, dtype=np.int64)
        if len(X) != len(y):
            raise ParameterError(f"X has {len(X)} rows but y has {len(y)}.")
        self.n_classes_ = int(n_classes if n_classes is not None else y.max() + 1)
        if self.n_classes_ < 2:
            raise ParameterError(f"{owner} needs at least two classes; got {self.n_classes_}.")
        self.classes_ = np.arange(self.n_classes_)
        base = resolve_member_model(self.model, X)
        self.spec_ = member_spec_name(base)
        t = time.perf_counter()
        digests = content_digests(X)
        k = int(self.n_partitions)
        self.partition_ = partitions_of_digests(digests, k, hash_seed=self.hash_seed)
        self.partition_sizes_ = np.bincount(self.partition_, minlength=k)
        self.member_seeds_ = member_seeds(self.random_state, k)
        # Rows of a partition in content order (label second), so a base model never depends on
        # where its rows sat in the file.
        order = sorted(range(len(y)), key=lambda i: (int(self.partition_[i]), digests[i], int(y[i])))
        order_arr = np.asarray(order, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(self.partition_sizes_)])
        tasks = [delayed(fit_member)(base, X[order_arr[starts[j]:starts[j + 1]]],
                                     y[order_arr[starts[j]:starts[j + 1]]], self.n_classes_,
                                     self.member_seeds_[j], self.model_params)
                 for j in range(k)]
        self.members_: list[Classifier | None] = run_parallel(
            tasks, n_jobs=self.n_jobs, scheduler=self.scheduler, progress=progress,
            step=f"training {k} partition models")
        self.fit_seconds_ = time.perf_counter() - t
        return self

    def member_predictions(self, X: np.ndarray) -> np.ndarray:
        """(k, N) predictions of every base model; -1 where a partition was empty (abstains)."""
        ensure_fitted(self)
        shared = SharedCounts.for_members(self.members_, X)
        if shared is not None:
            preds = [shared.predict(m) if shared.handles(m) else predict_member(m, X)
                     for m in self.members_]
        elif self.n_jobs in (None, 1) or len(self.members_) < 8:
            preds = [predict_member(m, X) for m in self.members_]
        else:
            from joblib import Parallel, delayed

            preds = Parallel(n_jobs=self.n_jobs)(delayed(predict_member)(m, X) for m in self.members_)
        return np.vstack(preds) if preds else np.zeros((0, len(X)), dtype=np.int64)

    def vote_counts(self, X: np.ndarray) -> np.ndarray:
        """(N, K) votes per class."""
        return vote_counts(self.member_predictions(X), self.n_classes_)

    def certify(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictions and, for each, how many training rows can be inserted or removed without
        changing it."""
        return certified_radius(self.vote_counts(X))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Vote shares among the partitions that voted."""
        counts = self.vote_counts(X).astype(np.float64)
        return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The plurality class of the partitions' votes for each input (ties go to the smallest class index)."""
        return certified_radius(self.vote_counts(X))[0]

    def save(self, path: str | Path, *, classes: tuple[str, ...]) -> Path:
        """Write the folder ``path``: one member file per non-empty partition and ``ensemble.json``."""
        ensure_fitted(self)
        return save_members(self, Path(path), classes=classes, method="partition", extra={
            "n_partitions": int(self.n_partitions), "hash_seed": int(self.hash_seed),
            "hash": HASH_NAME, "tie_break": TIE_BREAK,
            "random_state": self.random_state if isinstance(self.random_state, int) else None,
            "partition_sizes": [int(s) for s in self.partition_sizes_],
        })


# ---------------------------------------------------------------------------------- bagging
class BaggingEnsemble(ClassifierMixin, BaseEstimator):
    """Base models on random subsets; mean-probability predictions; disagreement flags.

    ``model``: a spec name or an unfitted model (as for :class:`PartitionEnsemble`). ``threshold``:
    flag a training row when more than this share of its out-of-bag members contradict its label.
    ``input_threshold``: flag an input when more than this share of members vote against the
    plurality.

    After ``fit``: ``members_``, ``in_bag_`` (M, N booleans: which rows each member saw),
    ``train_scores_``, ``train_flags_``, ``input_threshold_``, ``fit_seconds_``. The defense around
    it (the summary, ``flags.csv``, ``poisonlab defend --method bagging``) is
    :mod:`poisonlab.defend.bagging`.
    """

    def __init__(self, *, n_estimators: int = 10, max_samples: float = 0.5, bootstrap: bool = False,
                 model: str | ModelAdapter | ProbabilisticClassifier | None = None, threshold: float = 0.5,
                 input_threshold: float | None = None, n_jobs: int | None = None,
                 scheduler: str | Client | None = None,
                 random_state: int | np.random.Generator | None = None,
                 model_params: Mapping[str, object] | None = None) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.bootstrap = bootstrap
        self.model = model
        self.threshold = threshold
        self.input_threshold = input_threshold
        self.n_jobs = n_jobs
        self.scheduler = scheduler
        self.random_state = random_state
        self.model_params = model_params

    def _validate(self) -> None:
        owner = type(self).__name__
        check_param("n_estimators", owner, isinstance(self.n_estimators, (int, np.integer))
                    and self.n_estimators >= 2, "an integer >= 2", self.n_estimators)
        check_param("max_samples", owner, isinstance(self.max_samples, (float, int))
                    and 0 < self.max_samples <= 1, "a float in (0, 1]", self.max_samples)
        check_param("threshold", owner, isinstance(self.threshold, (float, int))
                    and 0 <= self.threshold <= 1, "a float in [0, 1]", self.threshold)
        check_param("input_threshold", owner, self.input_threshold is None
                    or (isinstance(self.input_threshold, (float, int)) and 0 <= self.input_threshold <= 1),
                    "a float in [0, 1] or None (the same as threshold)", self.input_threshold)

    def fit(self, X: np.ndarray, y: np.ndarray, *, n_classes: int | None = None,
            progress: Progress | None = None) -> BaggingEnsemble:
        """Train ``n_estimators`` base models on random subsets of the rows and score every training row by
        how many of the members that did not see it contradict its label.

        Parameters
        ----------
        X : ndarray
            Training rows: texts (an object array of ``str``), images or tables.
        y : ndarray of int, shape (N,)
            Integer labels.
        n_classes : int, optional
            K, the number of classes (default ``y.max() + 1``).
        progress : callable, optional
            Called as ``progress(step, done, total)`` while the members train.

        Returns
        -------
        BaggingEnsemble
            ``self``, with ``members_``, ``in_bag_``, ``train_scores_`` (out-of-bag disagreement in
            [0, 1], higher is more suspicious), ``train_flags_`` (True above ``threshold``),
            ``input_threshold_`` and ``fit_seconds_``.

        Raises
        ------
        ParameterError
            For ``n_estimators``, ``max_samples``, ``threshold`` or ``input_threshold`` out of range, or
            ``X`` and ``y`` of different lengths.

        References
        ----------
        .. [1] Breiman, "Bagging Predictors", Machine Learning 24, 1996.
           https://doi.org/10.1007/BF00058655
        """
        from joblib import delayed

        self._validate()
        y = np.asarray(y, dtype=np.int64)
        if len(X) != len(y):
            raise ParameterError(f"X has {len(X)} rows but y has {len(y)}.")
        n = len(y)
        self.n_classes_ = int(n_classes if n_classes is not None else y.max() + 1)
        self.classes_ = np.arange(self.n_classes_)
        base = resolve_member_model(self.model, X)
        self.spec_ = member_spec_name(base)
        rng = np.random.default_rng(self.random_state)
        m = int(self.n_estimators)
        size = max(1, round(self.max_samples * n))
        seeds = member_seeds(rng, m)
        self.in_bag_ = np.zeros((m, n), dtype=bool)
        subsets = []
        for j in range(m):
            idx = np.sort(rng.choice(n, size=size, replace=bool(self.bootstrap)))
            self.in_bag_[j, idx] = True
            subsets.append(idx)
        t = time.perf_counter()
        tasks = [delayed(fit_member)(base, X[idx], y[idx], self.n_classes_, seeds[j], self.model_params)
                 for j, idx in enumerate(subsets)]
        self.members_: list[Classifier | None] = run_parallel(
            tasks, n_jobs=self.n_jobs, scheduler=self.scheduler, progress=progress,
            step=f"training {m} bagged models")
        self.fit_seconds_ = time.perf_counter() - t
        P = self.member_predictions(X)
        self.train_scores_ = out_of_bag_disagreement(P, self.in_bag_, y)
        self.train_flags_ = self.train_scores_ > self.threshold
        self.input_threshold_ = float(self.threshold if self.input_threshold is None
                                      else self.input_threshold)
        return self

    def member_predictions(self, X: np.ndarray) -> np.ndarray:
        """(M, N) predictions of every member (-1 for a member with no rows)."""
        ensure_fitted(self)
        return np.vstack([predict_member(member, X) for member in self.members_])

    def disagreement(self, X: np.ndarray) -> np.ndarray:
        """Per input, the share of members voting against the plurality (higher = more suspicious)."""
        return vote_disagreement(self.member_predictions(X), self.n_classes_)

    def flag_inputs(self, X: np.ndarray) -> np.ndarray:
        """True where the members disagree on an input beyond ``input_threshold_``."""
        return self.disagreement(X) > self.input_threshold_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """The mean of the members' class probabilities."""
        ensure_fitted(self)
        total = np.zeros((len(X), self.n_classes_))
        used = 0
        for member in self.members_:
            if member is not None:
                total += member.predict_proba(X)
                used += 1
        return total / max(used, 1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The class with the highest mean member probability for each input."""
        return np.argmax(self.predict_proba(X), axis=1)

    def save(self, path: str | Path, *, classes: tuple[str, ...]) -> Path:
        """Write the folder ``path``: one file per member and ``ensemble.json``."""
        ensure_fitted(self)
        return save_members(self, Path(path), classes=classes, method="bagging", extra={
            "n_estimators": int(self.n_estimators), "max_samples": float(self.max_samples),
            "bootstrap": bool(self.bootstrap), "threshold": float(self.threshold),
            "input_threshold": self.input_threshold_, "aggregation": "mean of member probabilities",
        })


# ---------------------------------------------------------------------------------- files
def save_members(ensemble: PartitionEnsemble | BaggingEnsemble, path: Path, *, classes: tuple[str, ...],
                 method: str, extra: Mapping[str, object]) -> Path:
    """Save each member with :func:`poisonlab.models.io.save_model` and a JSON manifest beside them."""
    from poisonlab.models.model_files import save_model

    if path.exists() and not path.is_dir():
        raise ParameterError(f"{path}: exists and is not a folder; an ensemble is saved as a folder.")
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("member-*"):
        if MEMBER_FILE.match(old.name):
            old.unlink()
    files: list[str | None] = []
    specs: list[str | None] = []
    for j, member in enumerate(ensemble.members_):
        if member is None:
            files.append(None)
            specs.append(None)
            continue
        spec = getattr(member, "spec", None) if not hasattr(member, "net_") else ensemble.spec_
        written = save_model(member, path / f"member-{j:04d}", classes=classes, spec=spec)
        files.append(written.name)
        specs.append(spec)
    manifest = {
        "format": ENSEMBLE_FORMAT, "format_version": ENSEMBLE_FORMAT_VERSION, "method": method,
        "classes": list(classes), "n_classes": int(ensemble.n_classes_), "spec": ensemble.spec_,
        **extra, "members": files, "member_specs": specs,
    }
    tmp = path / (MANIFEST_NAME + ".partial")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(path / MANIFEST_NAME)
    return path


@dataclass
class EnsembleFolder:
    """A checked ensemble manifest with its members loaded (``None`` for an empty partition)."""

    path: Path
    manifest: dict[str, object]
    method: str
    classes: tuple[str, ...]
    n_classes: int
    spec: str | None
    members: list[Classifier | None]


def read_ensemble_folder(path: str | Path) -> EnsembleFolder:
    """Check ``path/ensemble.json`` and load every member it lists; one line for anything off."""
    from poisonlab.models.model_files import load_model_file as load_model

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
    members: list[Classifier | None] = []
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


def load_ensemble(path: str | Path) -> SavedModel:
    """Read an ensemble folder into a :class:`poisonlab.models.io.SavedModel` that predicts like the saved one.

    A partition ensemble also certifies; a bagging ensemble also flags disagreement.
    """
    from poisonlab.models.model_files import SavedModel

    folder = read_ensemble_folder(path)
    manifest_path = folder.path / MANIFEST_NAME
    manifest = folder.manifest
    try:
        if folder.method == "partition":
            model: Any = PartitionEnsemble(n_partitions=_count(manifest, "n_partitions"),
                                           hash_seed=_count(manifest, "hash_seed", low=0),
                                           model=folder.spec,
                                           random_state=_seed(manifest.get("random_state")))
            if len(folder.members) != model.n_partitions:
                raise ModelError(f"{manifest_path}: lists {len(folder.members)} members for "
                                 f"{model.n_partitions} partitions.")
            sizes = manifest.get("partition_sizes") or []
            if not isinstance(sizes, list) or not all(is_int(s, 0, 1 << 62) for s in sizes):
                raise ModelError(f"{manifest_path}: malformed manifest ('partition_sizes').")
            model.partition_sizes_ = np.asarray(sizes, dtype=np.int64)
        else:
            model = BaggingEnsemble(n_estimators=len(folder.members), model=folder.spec,
                                    threshold=_rate(manifest, "threshold", 0.5))
            model.input_threshold_ = _rate(manifest, "input_threshold", model.threshold)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{manifest_path}: malformed manifest ({exc}).") from None
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
