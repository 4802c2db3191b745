"""Deep Partition Aggregation (Levine and Feizi, ICLR 2021) with a certificate for every prediction.

Each training row goes to one of ``k`` partitions by a hash of its *content* (the row's features,
canonically encoded as in :mod:`poisonlab.provenance.hashing`: NFC UTF-8 for text; dtype, shape and
bytes for arrays), never of its position, so inserting or removing a row leaves every other row in
its partition. One base model is trained per partition, on that partition's rows in a fixed order
(sorted by content digest) with a seed derived from the partition number, so a base model is a
function of its partition's rows alone. The ensemble predicts the plurality vote, ties going to the
smallest class index; an empty partition abstains.

The certificate (Levine and Feizi, Theorem 1): with ``n_c`` base models voting for class ``c`` and
prediction ``c*``, inserting or removing ``r`` training rows changes at most ``r`` partitions, each of
which can move one vote from ``c*`` to another class; the prediction cannot change while
``n_c* >= max_{c != c*} (n_c + 1[c < c*]) + 2r``. :func:`certified_radius` returns the largest such
``r``. A row whose label changes but not its features stays in its partition, so a label flip counts
once; a row whose features change may move partitions and counts as one removal and one insertion.

The guarantee needs the training itself to be deterministic: it holds for an integer
``random_state`` (recorded with the ensemble). The hash need not be secret: an attacker who chooses
the partitions of their rows is the worst case the certificate already covers.

ART's ``DeepPartitionEnsemble`` trains such an ensemble but hashes rows by the sum of their input
values and computes no certificate.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from poisonlab.data.dataset import Dataset
from poisonlab.defend.compare import (
    DefenseResult,
    Progress,
    attack_rows,
    attack_scores,
    check_options,
    run_request,
)
from poisonlab.exceptions import ModelError, NotFittedError, ParameterError, check_param
from poisonlab.models.ensemble import ENSEMBLE_FORMAT, ENSEMBLE_FORMAT_VERSION, MANIFEST_NAME
from poisonlab.models.ensemble import MEMBER_FILE as _MEMBER_FILE
from poisonlab.models.ensemble import load_ensemble as load_ensemble  # read by models.ensemble

HASH_NAME = "blake2b-64 of the provenance content digest (poisonlab.provenance.hashing), keyed by hash_seed"
TIE_BREAK = "smallest class index"
_PERSON = b"poisonlab.dpa"
OPTIONS = ("n_partitions", "hash_seed", "n_jobs", "scheduler", "model_params", "radii")


# ---------------------------------------------------------------------------------- hashing
def content_digests(X: np.ndarray) -> list[bytes]:
    """The provenance content digest of every row: text in NFC UTF-8, arrays by dtype/shape/bytes."""
    from poisonlab.provenance.hashing import hash_array, hash_text

    X = np.asarray(X)
    if X.dtype == object:
        out = []
        for i, x in enumerate(X):
            if not isinstance(x, str):
                raise ParameterError(f"Row {i} is a {type(x).__name__}, not text; text rows must be str.")
            out.append(hash_text(x))
        return out
    return [hash_array(x) for x in X]


def assign_partitions(X: np.ndarray, n_partitions: int, *, hash_seed: int = 0) -> np.ndarray:
    """The partition (0..n_partitions-1) of each row, from a hash of its content alone.

    A keyed BLAKE2b of the row's content digest, read as a 64-bit integer modulo ``n_partitions``.
    Equal rows share a partition; a row's partition never depends on the other rows or its position.
    """
    check_param("n_partitions", "assign_partitions", isinstance(n_partitions, (int, np.integer))
                and n_partitions >= 1, "an integer >= 1", n_partitions)
    return _partitions(content_digests(X), int(n_partitions), _key(hash_seed))


def _key(hash_seed: int) -> bytes:
    check_param("hash_seed", "PartitionEnsemble", isinstance(hash_seed, (int, np.integer))
                and 0 <= hash_seed < 2**64, "an integer in [0, 2**64)", hash_seed)
    return int(hash_seed).to_bytes(8, "little")


def _partitions(digests: list[bytes], k: int, key: bytes) -> np.ndarray:
    out = np.empty(len(digests), dtype=np.int64)
    for i, d in enumerate(digests):
        h = hashlib.blake2b(d, digest_size=8, key=key, person=_PERSON).digest()
        out[i] = int.from_bytes(h, "little") % k
    return out


# ---------------------------------------------------------------------------------- certificates
def vote_counts(member_predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, K) vote counts from (M, N) member predictions, where -1 means the member abstains."""
    P = np.asarray(member_predictions, dtype=np.int64)
    if P.ndim != 2:
        raise ParameterError(f"member_predictions must be (members, rows); got shape {P.shape}.")
    counts = np.zeros((P.shape[1], n_classes), dtype=np.int64)
    cols = np.broadcast_to(np.arange(P.shape[1]), P.shape)
    voted = P >= 0
    np.add.at(counts, (cols[voted], P[voted]), 1)
    return counts


def certified_radius(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plurality prediction (ties to the smallest class) and its certified radius, per row.

    ``counts`` is (N, K) votes. The radius is ``floor((n_c* - max_{c != c*}(n_c + 1[c < c*])) / 2)``:
    the number of training rows that can be inserted or removed without changing the prediction.
    """
    C = np.asarray(counts, dtype=np.int64)
    if C.ndim != 2 or C.shape[1] < 2:
        raise ParameterError(f"counts must be (N, K) with K >= 2 classes; got shape {C.shape}.")
    pred = np.argmax(C, axis=1)  # the first maximum: the smallest class index wins a tie
    rows = np.arange(len(C))
    rival = C + (np.arange(C.shape[1])[None, :] < pred[:, None])
    rival[rows, pred] = np.iinfo(np.int64).min
    radius = (C[rows, pred] - rival.max(axis=1)) // 2
    return pred, radius


def certified_accuracy(radius: np.ndarray, correct: np.ndarray,
                       radii: np.ndarray | list[int] | None = None) -> list[dict[str, float]]:
    """Certified accuracy at each radius: the share of rows predicted correctly *and* certified at it.

    Without ``radii``, every radius from 0 to one past the largest certified one.
    """
    radius = np.asarray(radius)
    correct = np.asarray(correct, dtype=bool)
    if radii is None:
        top = int(radius[correct].max()) + 1 if correct.any() else 0
        radii = np.arange(top + 1)
    n = max(len(radius), 1)
    return [{"radius": int(r), "accuracy": round(float(np.sum(correct & (radius >= r)) / n), 4)}
            for r in sorted(int(r) for r in radii)]


def median_certified_radius(radius: np.ndarray, correct: np.ndarray) -> int | None:
    """The largest radius at which at least half the rows are certified correct (the paper's median
    certified robustness: the median radius with misclassified rows counted as -1); ``None`` when
    fewer than half are correct."""
    radius = np.asarray(radius)
    scores = np.where(np.asarray(correct, dtype=bool), radius, -1)
    if len(scores) == 0:
        return None
    ordered = np.sort(scores)[::-1]
    value = int(ordered[(len(ordered) + 1) // 2 - 1])
    return None if value < 0 else value


# ---------------------------------------------------------------------------------- members
def resolve_member_model(model: Any, X: np.ndarray) -> Any:
    """A spec name, or an unfitted model object (a raw scikit-learn estimator gets wrapped)."""
    if model is None:
        from poisonlab.models import MEMBER_SPECS

        # Base model per partition: see MEMBER_SPECS (images get logreg, text nb-text).
        X = np.asarray(X)
        return MEMBER_SPECS["text" if X.dtype == object else "image" if X.ndim == 4 else "tabular"]
    if isinstance(model, str):
        from poisonlab.models import SPECS

        if model not in SPECS:
            raise ModelError(f"Unknown model spec {model!r}; choose one of {list(SPECS)}.")
        return model
    if not hasattr(model, "fit"):
        raise ParameterError(
            f"The 'model' parameter must be a spec name or an unfitted model; got {type(model).__name__}.")
    if not hasattr(model, "n_classes_") and not _follows_contract(model):
        from poisonlab.models.sklearn import SklearnModel

        return SklearnModel(estimator=model)
    return model


def _follows_contract(model: Any) -> bool:
    from poisonlab.models.sklearn import SklearnModel

    if isinstance(model, SklearnModel):
        return True
    return type(model).__name__ == "TorchClassifier" or hasattr(model, "features")


def member_spec_name(model: Any) -> str:
    """The spec name (or estimator class name) an ensemble reports for its members."""
    if isinstance(model, str):
        return model
    return str(getattr(model, "spec", None) or type(getattr(model, "estimator", model)).__name__)


def make_member(model: Any, seed: int, model_params: dict[str, Any] | None) -> Any:
    """A fresh, unfitted base model with its own seed."""
    from sklearn.base import clone

    if isinstance(model, str):
        from poisonlab.models import TORCH_SPECS, make_model

        params = dict(model_params or {})
        if model in TORCH_SPECS:
            params.setdefault("n_threads", 1)
        return make_model(model, random_state=seed, **params)
    member = clone(model)
    names = member.get_params()
    if "random_state" in names:
        member.set_params(random_state=seed)
    if model_params:
        member.set_params(**model_params)
    return member


def fit_member(model: Any, X: np.ndarray, y: np.ndarray, n_classes: int, seed: int,
               model_params: dict[str, Any] | None) -> Any:
    """Train one base model; a partition with one class gets a constant model, an empty one None."""
    if len(y) == 0:
        return None
    if len(np.unique(y)) == 1:
        from sklearn.dummy import DummyClassifier

        from poisonlab.models.sklearn import SklearnModel

        return SklearnModel(estimator=DummyClassifier(strategy="most_frequent"),
                            spec="constant").fit(X, y, n_classes=n_classes)
    return make_member(model, seed, model_params).fit(X, y, n_classes=n_classes)


def _predict_member(member: Any, X: np.ndarray) -> np.ndarray:
    if member is None:
        return np.full(len(X), -1, dtype=np.int64)
    return np.asarray(member.predict(X), dtype=np.int64)


class SharedCounts:
    """Word counts of text inputs computed once for many ``nb-text``-style members.

    A member whose pipeline starts with a plain ``CountVectorizer`` (same settings as every other
    such member, vocabulary learned from its own partition) sees exactly the columns of one shared
    count matrix of the inputs that hold its words, so tokenizing the inputs once and selecting
    columns per member gives the same predictions as ``member.predict(X)`` at a fraction of the
    cost when there are hundreds of members.
    """

    def __init__(self, reference: Any, X: np.ndarray) -> None:
        from sklearn.feature_extraction.text import CountVectorizer

        self.params = _vectorizer_params(reference)
        vec = CountVectorizer(**self.params)
        self.counts = vec.fit_transform(X).tocsr()
        self.index = vec.vocabulary_
        self.n = len(X)

    @classmethod
    def for_members(cls, members: list[Any], X: np.ndarray) -> SharedCounts | None:
        candidates = [m for m in members if _count_pipeline(m) is not None]
        if len(candidates) < 8 or np.asarray(X).dtype != object or len(X) == 0:
            return None
        try:
            return cls(_count_pipeline(candidates[0]), np.asarray(X))
        except ValueError:  # empty vocabulary: inputs without a single word
            return None

    def handles(self, member: Any) -> bool:
        vec = _count_pipeline(member)
        return vec is not None and _vectorizer_params(vec) == self.params

    def predict(self, member: Any) -> np.ndarray:
        import scipy.sparse as sp

        pipe = member.estimator_
        vocab = pipe.steps[0][1].vocabulary_
        rows, cols = [], []
        for term, j in vocab.items():
            i = self.index.get(term)
            if i is not None:
                rows.append(i)
                cols.append(j)
        select = sp.csr_matrix((np.ones(len(rows), dtype=np.int64), (rows, cols)),
                               shape=(self.counts.shape[1], len(vocab)))
        Z = (self.counts @ select).astype(np.int64)
        proba = pipe[1:].predict_proba(Z)
        seen = np.asarray(pipe.classes_, dtype=np.int64)
        return seen[np.argmax(proba, axis=1)]


def _count_pipeline(member: Any) -> Any:
    """The CountVectorizer opening a member's pipeline (exactly that class), or None."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.pipeline import Pipeline

    pipe = getattr(member, "estimator_", None)
    if not isinstance(pipe, Pipeline) or len(pipe.steps) < 2:
        return None
    first = pipe.steps[0][1]
    return first if type(first) is CountVectorizer and hasattr(first, "vocabulary_") else None


def _vectorizer_params(vec: Any) -> dict[str, Any]:
    params = dict(vec.get_params())
    for key in ("vocabulary", "max_df", "min_df", "max_features"):
        params.pop(key, None)
    return params


def member_seeds(random_state: Any, n: int) -> list[int]:
    """One seed per member, from ``random_state``: fixed for an int, fresh for None."""
    base = int(np.random.default_rng(random_state).integers(2**31 - 1))
    return [int(s) for s in np.random.SeedSequence([base, 0x5EED]).generate_state(n)]


def run_parallel(tasks: list[Any], *, n_jobs: int | None, scheduler: Any,
                 progress: Progress | None = None, step: str = "") -> list[Any]:
    """Run ``joblib.delayed`` tasks in order with joblib (``n_jobs``), or on a Dask cluster when
    ``scheduler`` is given (an address such as ``tcp://host:8786`` or a ``distributed.Client``)."""
    from joblib import Parallel, parallel_config

    total = len(tasks)
    if progress is not None:
        progress(step, 0, total)
    client = None
    backend: dict[str, Any] = {}
    if scheduler is not None:
        from poisonlab.exceptions import require

        require("distributed", "dask")
        from distributed import Client

        client = scheduler if isinstance(scheduler, Client) else Client(scheduler)  # type: ignore[no-untyped-call]
        backend = {"backend": "dask"}
    try:
        with parallel_config(**backend):
            runner = Parallel(n_jobs=n_jobs if scheduler is None else -1, return_as="generator")
            results = []
            for i, res in enumerate(runner(tasks), start=1):
                results.append(res)
                if progress is not None and (i == total or i % max(1, total // 50) == 0):
                    progress(step, i, total)
    finally:
        if client is not None and client is not scheduler:
            client.close()  # type: ignore[no-untyped-call]
    return results


def ensure_fitted(model: Any) -> None:
    if not hasattr(model, "members_"):
        raise NotFittedError("This ensemble is not fitted yet: call fit first.")


# ---------------------------------------------------------------------------------- the ensemble
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
    :meth:`certify` returns predictions and certified radii.
    """

    def __init__(self, *, n_partitions: int = 50, model: Any = None, hash_seed: int = 0,
                 n_jobs: int | None = None, scheduler: Any = None,
                 random_state: int | None = 0, model_params: dict[str, Any] | None = None) -> None:
        self.n_partitions = n_partitions
        self.model = model
        self.hash_seed = hash_seed
        self.n_jobs = n_jobs
        self.scheduler = scheduler
        self.random_state = random_state
        self.model_params = model_params

    def fit(self, X: np.ndarray, y: np.ndarray, *, n_classes: int | None = None,
            progress: Progress | None = None) -> PartitionEnsemble:
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
        self.partition_ = _partitions(digests, k, _key(self.hash_seed))
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
        self.members_ = run_parallel(tasks, n_jobs=self.n_jobs, scheduler=self.scheduler,
                                     progress=progress, step=f"training {k} partition models")
        self.fit_seconds_ = time.perf_counter() - t
        return self

    def member_predictions(self, X: np.ndarray) -> np.ndarray:
        """(k, N) predictions of every base model; -1 where a partition was empty (abstains)."""
        ensure_fitted(self)
        shared = SharedCounts.for_members(self.members_, X)
        if shared is not None:
            preds = [shared.predict(m) if shared.handles(m) else _predict_member(m, X)
                     for m in self.members_]
        elif self.n_jobs in (None, 1) or len(self.members_) < 8:
            preds = [_predict_member(m, X) for m in self.members_]
        else:
            from joblib import Parallel, delayed

            preds = Parallel(n_jobs=self.n_jobs)(delayed(_predict_member)(m, X) for m in self.members_)
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


# ---------------------------------------------------------------------------------- files
def save_members(ensemble: Any, path: Path, *, classes: tuple[str, ...], method: str,
                 extra: dict[str, Any]) -> Path:
    """Save each member with :func:`poisonlab.models.io.save_model` and a JSON manifest beside them."""
    from poisonlab.models.io import save_model

    if path.exists() and not path.is_dir():
        raise ParameterError(f"{path}: exists and is not a folder; an ensemble is saved as a folder.")
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("member-*"):
        if _MEMBER_FILE.match(old.name):
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


# ---------------------------------------------------------------------------------- the defense
def defend_partition(train: Dataset, *, model: Any = None, test: Dataset | None = None,
                     ground_truth: Any | None = None, random_state: int = 0,
                     progress: Progress | None = None, **options: Any) -> DefenseResult:
    """Train a partition ensemble on ``train`` and certify its predictions on ``test``.

    Options: ``n_partitions`` (default 50), ``hash_seed`` (0), ``n_jobs``, ``scheduler`` (Dask),
    ``model_params`` (dict for every base model), ``radii`` (radii for the summary's
    ``certified_at``; the full curve is always in ``certified``).

    The summary holds the partition sizes, clean accuracy, mean base-model accuracy, attack success
    (with a backdoor's ground truth), the median certified radius and, with ground truth, the share
    of test rows whose certified radius covers the number of planted rows (their prediction is
    provably the one the ensemble would make without those rows).
    """
    check_options("partition", options, OPTIONS)
    ensemble = PartitionEnsemble(
        n_partitions=options.get("n_partitions", 50), model=model,
        hash_seed=options.get("hash_seed", 0), n_jobs=options.get("n_jobs"),
        scheduler=options.get("scheduler"), random_state=random_state,
        model_params=options.get("model_params"))
    ensemble.fit(train.X, train.y, n_classes=train.n_classes, progress=progress)
    sizes = ensemble.partition_sizes_
    summary: dict[str, Any] = {
        "method": "partition", "dataset": train.name, "model": ensemble.spec_,
        "n_rows": len(train), "n_partitions": int(ensemble.n_partitions),
        "hash_seed": int(ensemble.hash_seed), "hash": HASH_NAME, "tie_break": TIE_BREAK,
        "partition_rows": {"min": int(sizes.min()), "median": float(np.median(sizes)),
                           "max": int(sizes.max()), "empty": int(np.sum(sizes == 0))},
        "fit_seconds": round(ensemble.fit_seconds_, 2),
    }
    certified = None
    if test is not None:
        if progress is not None:
            progress("certifying the test rows", 0, 1)
        P = ensemble.member_predictions(test.X)
        pred, radius = certified_radius(vote_counts(P, ensemble.n_classes_))
        correct = pred == test.y
        certified = certified_accuracy(radius, correct)
        voted = P >= 0
        base_acc = [float(np.mean(p[v] == test.y[v])) for p, v in zip(P, voted, strict=True) if v.any()]
        summary.update({
            "clean_accuracy": round(float(np.mean(correct)), 4),
            "base_accuracy": round(float(np.mean(base_acc)), 4) if base_acc else None,
            "median_certified_radius": median_certified_radius(radius, correct),
            "certified_at": certified_accuracy(radius, correct, options.get("radii")
                                               or _default_radii(ensemble.n_partitions)),
            "measured_on": f"{len(test)} test rows",
        })
        triggered = attack_rows(test, ground_truth)
        if triggered is not None:
            X_t, target = triggered
            pred_t, radius_t = ensemble.certify(X_t)
            rows = test.y != target
            summary.update(attack_scores(pred_t, pred[rows], test.y[rows], target))
            summary["triggered_median_radius"] = float(np.median(radius_t))
        if ground_truth is not None:
            n_poison = int(ground_truth.n_poison)
            summary["n_poison"] = n_poison
            summary["certified_against_planted_rows"] = round(float(np.mean(radius >= n_poison)), 4)
            if triggered is not None:
                summary["triggered_certified_against_planted_rows"] = round(
                    float(np.mean(radius_t >= n_poison)), 4)
    return DefenseResult("partition", ensemble, summary, certified)


def _default_radii(k: int) -> list[int]:
    return sorted({r for r in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500) if r <= k // 2} | {0})


def run(request: Any) -> dict[str, Any]:
    """``poisonlab defend --method partition``: train, certify on the test rows, save model and summary.

    ``request`` is a :class:`poisonlab.defend.DefendRequest`; its ``options`` may hold any option of
    :func:`defend_partition`.
    """
    return run_request(request, defend_partition, OPTIONS)


__all__ = [
    "PartitionEnsemble",
    "assign_partitions",
    "certified_accuracy",
    "certified_radius",
    "content_digests",
    "defend_partition",
    "load_ensemble",
    "median_certified_radius",
    "vote_counts",
]
