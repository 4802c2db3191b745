"""The members of an ensemble: which rows each trains on, how each is built, trained and run, and
how their votes count.

These are the pieces :class:`~poisonlab.models.ensemble.PartitionEnsemble` and
:class:`~poisonlab.models.ensemble.BaggingEnsemble` need to fit and to predict. They live in the
models layer, below the defenses (:mod:`poisonlab.defend.partition`, :mod:`poisonlab.defend.bagging`)
that train and measure those ensembles, so that a saved ensemble folder is read back like any
other model file without importing a defense. Nothing here imports :mod:`poisonlab.defend`.

Rows go to partitions by a keyed hash of their *content* (:func:`content_digests`,
:func:`assign_partitions`); a member votes for one class per input, ``-1`` where it abstains (an
empty partition), and :func:`vote_counts` / :func:`certified_radius` turn the votes into the
plurality prediction (ties to the smallest class index) and its certificate (Levine and Feizi,
Theorem 1; see :mod:`poisonlab.defend.partition`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar, cast

import numpy as np

from poisonlab.data.hashing import hash_array, hash_text
from poisonlab.exceptions import ModelError, ParameterError, check_param

if TYPE_CHECKING:
    from distributed import Client
    from sklearn.feature_extraction.text import CountVectorizer

    from poisonlab.models.protocols import Classifier, ModelAdapter, ProbabilisticClassifier
    from poisonlab.models.sklearn import SklearnModel

_T = TypeVar("_T")  # what the tasks of run_parallel return

Progress = Callable[[str, int, int], None]
"""``progress(step, done, total)``: the same callback as :data:`poisonlab.defend.compare.Progress`."""

HASH_NAME = "blake2b-64 of the provenance content digest (poisonlab.provenance.hashing), keyed by hash_seed"
TIE_BREAK = "smallest class index"
_PERSON = b"poisonlab.dpa"


# ---------------------------------------------------------------------------------- hashing
def content_digests(X: np.ndarray) -> list[bytes]:
    """The provenance content digest of every row: text in NFC UTF-8, arrays by dtype/shape/bytes."""
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
    return partitions_of_digests(content_digests(X), int(n_partitions), hash_seed=hash_seed)


def partitions_of_digests(digests: list[bytes], n_partitions: int, *, hash_seed: int = 0) -> np.ndarray:
    """The partition of each row from its :func:`content_digests` entry (what
    :func:`assign_partitions` computes, for a caller that keeps the digests to order rows by)."""
    check_param("hash_seed", "PartitionEnsemble", isinstance(hash_seed, (int, np.integer))
                and 0 <= hash_seed < 2**64, "an integer in [0, 2**64)", hash_seed)
    key = int(hash_seed).to_bytes(8, "little")
    out = np.empty(len(digests), dtype=np.int64)
    for i, d in enumerate(digests):
        h = hashlib.blake2b(d, digest_size=8, key=key, person=_PERSON).digest()
        out[i] = int.from_bytes(h, "little") % n_partitions
    return out


# ---------------------------------------------------------------------------------- votes
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


def vote_disagreement(member_predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """Per input, the share of voting members that do not vote for the plurality class (0 when
    they all agree). ``member_predictions`` is (M, N), -1 where a member abstains."""
    counts = vote_counts(member_predictions, n_classes)
    total = counts.sum(axis=1)
    return np.where(total > 0, 1.0 - counts.max(axis=1) / np.maximum(total, 1), 0.0)


def out_of_bag_disagreement(member_predictions: np.ndarray, in_bag: np.ndarray,
                            y: np.ndarray) -> np.ndarray:
    """Per training row, the share of out-of-bag members whose prediction is not the row's label.

    Rows that every member trained on fall back to all members (they have no out-of-bag vote).
    """
    P = np.asarray(member_predictions)
    in_bag = np.asarray(in_bag, dtype=bool)
    wrong = P != np.asarray(y)[None, :]
    oob = ~in_bag
    n_oob = oob.sum(axis=0)
    oob_share = (wrong & oob).sum(axis=0) / np.maximum(n_oob, 1)
    return np.where(n_oob > 0, oob_share, wrong.mean(axis=0))


# ---------------------------------------------------------------------------------- members
def resolve_member_model(model: str | ModelAdapter | ProbabilisticClassifier | None,
                         X: np.ndarray) -> str | ModelAdapter:
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
    # it has n_classes_ or features: a model of poisonlab's fit(X, y, n_classes=) contract
    return cast("ModelAdapter", model)


def _follows_contract(model: Any) -> bool:
    from poisonlab.models.sklearn import SklearnModel

    if isinstance(model, SklearnModel):
        return True
    return type(model).__name__ == "TorchClassifier" or hasattr(model, "features")


def member_spec_name(model: object) -> str:
    """The spec name (or estimator class name) an ensemble reports for its members."""
    if isinstance(model, str):
        return model
    return str(getattr(model, "spec", None) or type(getattr(model, "estimator", model)).__name__)


def make_member(model: str | ModelAdapter, seed: int,
                model_params: Mapping[str, object] | None) -> ModelAdapter:
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


def fit_member(model: str | ModelAdapter, X: np.ndarray, y: np.ndarray, n_classes: int, seed: int,
               model_params: Mapping[str, object] | None) -> ModelAdapter | None:
    """Train one base model; a partition with one class gets a constant model, an empty one None."""
    if len(y) == 0:
        return None
    if len(np.unique(y)) == 1:
        from sklearn.dummy import DummyClassifier

        from poisonlab.models.sklearn import SklearnModel

        return SklearnModel(estimator=DummyClassifier(strategy="most_frequent"),
                            spec="constant").fit(X, y, n_classes=n_classes)
    return make_member(model, seed, model_params).fit(X, y, n_classes=n_classes)


def predict_member(member: Classifier | None, X: np.ndarray) -> np.ndarray:
    """One member's class index for every row of ``X``, or ``-1`` everywhere for ``None`` (an empty
    partition, which abstains)."""
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

    def __init__(self, reference: CountVectorizer, X: np.ndarray) -> None:
        from sklearn.feature_extraction.text import CountVectorizer

        self.params = _vectorizer_params(reference)
        vec = CountVectorizer(**self.params)
        self.counts = vec.fit_transform(X).tocsr()
        self.index = vec.vocabulary_
        self.n = len(X)

    @classmethod
    def for_members(cls, members: Sequence[Classifier | None], X: np.ndarray) -> SharedCounts | None:
        """The shared count matrix of ``X`` for these members, or None where it does not pay: fewer than eight
        count-pipeline members, inputs that are not text, or inputs without a single word.
        """
        candidates = [m for m in members if _count_pipeline(m) is not None]
        if len(candidates) < 8 or np.asarray(X).dtype != object or len(X) == 0:
            return None
        try:
            return cls(_count_pipeline(candidates[0]), np.asarray(X))
        except ValueError:  # empty vocabulary: inputs without a single word
            return None

    def handles(self, member: Classifier | None) -> TypeGuard[Classifier]:
        """True where ``member`` opens with a ``CountVectorizer`` of the shared settings, so that
        :meth:`predict` can answer for it.
        """
        vec = _count_pipeline(member)
        return vec is not None and _vectorizer_params(vec) == self.params

    def predict(self, member: Classifier) -> np.ndarray:
        """``member.predict(X)`` from the shared counts: the member's vocabulary columns are selected and
        passed through the rest of its pipeline.
        """
        import scipy.sparse as sp

        pipe = cast("SklearnModel", member).estimator_  # handles(member): a SklearnModel over a Pipeline
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


def member_seeds(random_state: int | np.random.Generator | None, n: int) -> list[int]:
    """One seed per member, from ``random_state``: fixed for an int, fresh for None."""
    base = int(np.random.default_rng(random_state).integers(2**31 - 1))
    return [int(s) for s in np.random.SeedSequence([base, 0x5EED]).generate_state(n)]


def run_parallel(tasks: Sequence[tuple[Callable[..., _T], tuple[object, ...], dict[str, object]]], *,
                 n_jobs: int | None, scheduler: str | Client | None,
                 progress: Progress | None = None, step: str = "") -> list[_T]:
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


__all__ = [
    "HASH_NAME",
    "TIE_BREAK",
    "Progress",
    "SharedCounts",
    "assign_partitions",
    "certified_radius",
    "content_digests",
    "fit_member",
    "make_member",
    "member_seeds",
    "member_spec_name",
    "out_of_bag_disagreement",
    "partitions_of_digests",
    "predict_member",
    "resolve_member_model",
    "run_parallel",
    "vote_counts",
    "vote_disagreement",
]
