"""Audit a training set: rank the rows that look planted or mislabeled, with reasons and triggers.

:func:`audit` trains the model on the data (and out of fold where a detector needs unbiased
probabilities), computes what the model learned about each row (:mod:`poisonlab.detect.
representations`), runs the detectors of :mod:`poisonlab.detect`, and combines them into one score
per row:

    evidence_d(i) = (score_d(i) - median_d) / (threshold_d - median_d)     (1 at the detector's cut)
    score(i)      = max over the voting detectors of evidence_d(i)
    flagged(i)    = score(i) > 1, i.e. at least one voting detector flags the row

Every detector's threshold comes from ``contamination="auto"``, so no poison rate is needed.
Voting detectors: the robust spectral detector, confident learning, near-duplicate conflicts,
(text) trigger keywords and (tables) planted feature values. The out-of-fold models are kept
(:class:`HeldOutModels`): the trigger tests ask the model that never saw a row how it reads the row
once the suspected trigger is removed. :attr:`AuditResult.removal_flags` (what
:func:`poisonlab.defend.sanitize` removes) adds the robust spectral detector's wider cut to the
flagged rows. Confident learning runs on the *consensus* of two independent witnesses,
the out-of-fold model probabilities and the label distribution of each row's 10 nearest neighbors
in input space (product of experts, renormalized): a row whose label both the model and its
neighbors reject. On mnist with 10% random flips this lifts cleanlab's precision from 0.76 to 0.89
at the same recall (0.90 -> 0.95). Plain spectral signatures, activation clustering and kNN label
consistency alone are computed and reported but do not vote: on every scenario of
``benchmarks/audit_vs_art.py`` they flag clean rows that the voting detectors do not.

On images the robust spectral detector also reads the raw pixels (a trigger stamped on the pixels
moves the planted rows together there even where the network's penultimate layer mixes them with
clean rows); a row is flagged when either view flags it. When a trigger detector flags rows, the
label-issue detectors are run again with out-of-fold models that never saw any of those rows and
with those rows left out of everyone's neighbors: a backdoor teaches the model that the source
class reads as the target, which made confident learning flag clean source-class rows
(:func:`_recheck_label_issues`).

:func:`write_audit` writes ``flags.csv``, ``summary.json`` and ``report.html``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.exceptions import DataError, ParameterError

if TYPE_CHECKING:
    import pandas as pd
    import scipy.sparse as sp

    from poisonlab.models.protocols import ModelAdapter, ModelLike

Progress = Callable[[str, int, int], None]
"""``progress(step, done, total)``: called as each step of a long run starts."""

DETECTORS = ("robust_spectral", "spectral_signature", "activation_clustering",
             "confident_learning", "knn_labels", "duplicates", "trigger_keywords", "value_triggers",
             "feature_collisions")
VOTING = ("robust_spectral", "confident_learning", "duplicates", "trigger_keywords", "value_triggers",
          "feature_collisions")
ONLY_FOR = {"trigger_keywords": "text", "value_triggers": "tabular", "feature_collisions": "image"}
OPT_IN = ("feature_collisions",)
"""Detectors that run only when named in ``detectors``: ``feature_collisions`` reads a representation
the victim's model shares with the attacker's (a frozen, pretrained extractor; pass it as ``model``),
and on the network an audit trains itself it separates poisons less well
(:mod:`poisonlab.detect.collisions`)."""
TITLES = {
    "robust_spectral": "robust spectral (SPECTRE-style)",
    "spectral_signature": "spectral signature",
    "activation_clustering": "activation clustering",
    "confident_learning": "label issue (confident learning)",
    "knn_labels": "kNN label consistency",
    "duplicates": "near-duplicate label conflict",
    "trigger_keywords": "text trigger",
    "value_triggers": "planted feature value",
    "feature_collisions": "feature collision",
    "representation_agreement": "spectral signature and activation clustering agree",
}
AGREEMENT_JACCARD = 0.5
"""Per class, the overlap (intersection over union) at which the rows that spectral signature and
activation clustering both flag vote (:func:`_agreement_outcome`)."""
AGREEMENT_MIN_ROWS = 5
"""...and the fewest such rows in the class."""


@dataclass
class DetectorOutcome:
    """One detector's result on the audited rows."""

    name: str
    scores: np.ndarray
    flags: np.ndarray
    threshold: float
    votes: bool
    seconds: float
    details: dict[str, object] = field(default_factory=dict)
    reason: Callable[[int], str] | None = field(default=None, repr=False)

    @property
    def evidence(self) -> np.ndarray:
        """Scores rescaled so that the median row reads 0 and the threshold reads 1."""
        med = float(np.median(self.scores)) if len(self.scores) else 0.0
        thr = self.threshold
        if not math.isfinite(thr) or thr <= med:
            span = float(np.max(self.scores, initial=med) - med) or 1.0
            thr = med + span if not math.isfinite(thr) or thr <= med else thr
            if thr <= med:
                return np.zeros_like(self.scores)
        return (self.scores - med) / (thr - med)

    def summary(self) -> dict[str, object]:
        """This detector's entry in ``summary.json``: its title, whether it votes, how many rows it flagged,
        its threshold (None where not finite), its run time in seconds and its own details.
        """
        return {
            "title": TITLES.get(self.name, self.name),
            "votes": self.votes,
            "n_flagged": int(self.flags.sum()),
            "threshold": _finite(self.threshold),
            "seconds": round(self.seconds, 3),
            **self.details,
        }


@dataclass
class AuditResult:
    """What :func:`audit` found. ``scores``/``flags``/``reasons`` have one entry per input row."""

    dataset: Dataset
    model_spec: str
    representation: str
    scores: np.ndarray
    flags: np.ndarray
    reasons: list[str]
    detectors: dict[str, DetectorOutcome]
    suspected_triggers: list[dict[str, object]]
    timings: dict[str, float]
    oof_accuracy: float
    model: ModelAdapter | None = field(repr=False, default=None)
    evaluation: dict[str, object] | None = None
    groups: dict[str, object] | None = None
    extra: dict[str, object] = field(default_factory=dict)
    arrays: dict[str, np.ndarray | tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def summary(self) -> dict[str, object]:
        """The JSON summary written to ``summary.json``."""
        ds = self.dataset
        per_class = []
        for k, name in enumerate(ds.classes):
            rows = ds.y == k
            per_class.append({"class": name, "n_rows": int(rows.sum()),
                              "n_flagged": int(self.flags[rows].sum())})
        out: dict[str, object] = {
            "dataset": ds.name,
            "kind": ds.kind,
            "n_rows": len(ds),
            "n_flagged": int(self.flags.sum()),
            "flagged_rate": float(self.flags.mean()) if len(ds) else 0.0,
            "classes": per_class,
            "model": self.model_spec,
            "representation": self.representation,
            "out_of_fold_accuracy": round(self.oof_accuracy, 4),
            "combination": "score = max over voting detectors of (score - median) / "
                           "(threshold - median); flagged when score > 1",
            "detectors": {name: d.summary() for name, d in self.detectors.items()},
            "suspected_triggers": self.suspected_triggers,
            "seconds": {k: round(v, 2) for k, v in self.timings.items()},
        }
        if self.groups is not None:
            out["groups"] = self.groups
        if self.evaluation is not None:
            out["evaluation"] = self.evaluation
        out.update(self.extra)
        return out

    def ranked(self, limit: int | None = None) -> np.ndarray:
        """Row positions, most suspicious first."""
        order = np.argsort(-self.scores, kind="stable")
        return order if limit is None else order[:limit]

    @property
    def triggers(self) -> list[dict[str, object]]:
        """The suspected triggers (text), as in ``summary.json``."""
        return self.suspected_triggers

    @property
    def removal_flags(self) -> np.ndarray:
        """The rows a sanitizer should drop: the flagged rows, and the rows the robust spectral
        detector puts on a planted cluster's side with posterior above its ``removal_posterior``
        (a planted row left in the training set keeps the backdoor; a clean row removed costs
        little)."""
        extra = self.arrays.get("removal_flags")
        return self.flags if extra is None else (self.flags | extra)

    @property
    def flagged(self) -> np.ndarray:
        """The same as ``flags``: True where a row looks planted or mislabeled."""
        return self.flags

    def save(self, out_dir: str | Path, *, html: bool = True) -> dict[str, Path]:
        """Write ``flags.csv``, ``summary.json`` and ``report.html``, as ``poisonlab audit`` does."""
        from poisonlab.files import saved_as_result_set

        return saved_as_result_set(out_dir, "audit", lambda tmp: write_audit(self, tmp, html=html))

    def to_frame(self) -> pd.DataFrame:
        """One row per audited row (pandas): id, label, score, flagged, reasons."""
        from poisonlab.report.notebook import frame

        ds = self.dataset
        return frame({"id": ds.ids, "label": np.array([ds.classes[k] for k in ds.y], dtype=object),
                      "score": self.scores, "flagged": self.flags,
                      "reasons": np.array(self.reasons, dtype=object)})

    def _repr_html_(self) -> str:
        from poisonlab.report.notebook import html_table

        ds = self.dataset
        rows = [[int(i), ds.ids[i], ds.classes[ds.y[i]], f"{self.scores[i]:.2f}", self.reasons[i]]
                for i in self.ranked(10) if self.flags[i]]
        return html_table(
            f"poisonlab audit of {ds.name}: {int(self.flags.sum())} of {len(ds)} rows flagged",
            [("model", self.model_spec), ("representation", self.representation),
             ("suspected triggers", ", ".join(str(t["trigger"]) for t in self.suspected_triggers[:5])
              or "none")],
            ["row", "id", "label", "score", "reasons"], rows)


# ---------------------------------------------------------------------------------- pipeline
def audit(
    dataset: Dataset,
    *,
    model: ModelLike | None = None,
    representation: str = "auto",
    detectors: tuple[str, ...] | None = None,
    n_folds: int | None = None,
    random_state: int = 0,
    progress: Progress | None = None,
    torch_params: Mapping[str, object] | None = None,
    fitted_model: ModelAdapter | None = None,
) -> AuditResult:
    """Audit ``dataset`` (see the module docstring).

    ``model``: a built-in spec (``nb-text``, ``logreg-text``, ``logreg``, ``mlp``, ``cnn``,
    ``torch-mlp``), a scikit-learn estimator or pipeline, a torch ``nn.Module``, a poisonlab model
    object (anything :func:`poisonlab.models.resolve_model` takes; it is cloned and trained here),
    or None for the default of the data's kind (``logreg-text`` for text, ``cnn`` for images,
    ``logreg`` for tables). ``representation``: see
    :func:`poisonlab.detect.model_representation`. ``detectors``: names from :data:`DETECTORS`
    (default: all that apply, except those in :data:`OPT_IN`). ``n_folds``: folds for out-of-fold
    probabilities (default 5; 3 for networks and above 20,000 rows). ``fitted_model``: the model
    already trained on exactly these rows (skips the first step; the out-of-fold models are still
    trained fresh).
    """
    n = len(dataset)
    if n < 10:
        raise DataError(f"{dataset.name}: an audit needs at least 10 rows; got {n}.")
    counts = np.bincount(dataset.y, minlength=dataset.n_classes)
    if np.count_nonzero(counts) < 2:
        raise DataError(f"{dataset.name}: every row has the label {dataset.classes[int(np.argmax(counts))]!r}; "
                        "an audit needs at least two classes.")
    names = _check_detectors(detectors, dataset.kind)
    from poisonlab.detect.representations import REPRESENTATIONS

    if representation not in REPRESENTATIONS:
        raise ParameterError(
            f"The 'representation' parameter of audit must be one of {list(REPRESENTATIONS)}. "
            f"Got {representation!r} instead."
        )
    from sklearn.base import clone

    from poisonlab.models import describe_model, resolve_model

    spec = resolve_model(model, dataset.kind, random_state=random_state, **dict(torch_params or {}))
    spec_name = describe_model(default_model(dataset.kind) if model is None else model)

    def fresh() -> Any:
        return clone(spec)

    is_torch = type(spec).__name__ == "TorchClassifier"
    folds = n_folds if n_folds is not None else (3 if is_torch or n > 20000 else 5)
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ParameterError(f"The 'n_folds' parameter of audit must be an int >= 2. Got {folds!r} instead.")
    steps = ["training the model", f"out-of-fold probabilities ({folds} folds)", "representations",
             "nearest neighbors", "detectors", "combining"]
    timings: dict[str, float] = {}
    tick = _Ticker(progress, steps, timings)
    X, y, K = dataset.X, dataset.y, dataset.n_classes

    tick.start(0)
    fitted = fitted_model if fitted_model is not None else fresh().fit(X, y, n_classes=K)
    tick.start(1, sub=lambda i: progress(f"{steps[1]}: fold {i + 1}/{folds}", 1, len(steps))
               if progress else None)
    held_out: list[HeldOutModels] = []
    oof = out_of_fold_proba(fresh, fitted, X, y, K, n_folds=folds, random_state=random_state,
                            on_fold=tick.sub, held_out=held_out)
    tick.start(2)
    from poisonlab.detect.representations import model_representation

    rep, rep_kind = model_representation(fitted, X, y, kind=representation,
                                         random_state=random_state)
    tick.start(3)
    inputs = input_features(dataset)
    from poisonlab.detect.labels import neighbor_search

    neighbors = neighbor_search(inputs, 10, 20000, np.random.default_rng(random_state))
    tick.start(4)
    outcomes = _run_detectors(names, dataset, fitted, oof, rep, inputs, neighbors, random_state,
                              held_out[0])
    _recheck_label_issues(outcomes, names, dataset, oof, inputs, neighbors, held_out[0])
    if dataset.kind != "text" and "spectral_signature" in outcomes and "activation_clustering" in outcomes:
        outcomes["representation_agreement"] = _agreement_outcome(outcomes, dataset)
    tick.start(5)
    voting = [o for o in outcomes.values() if o.votes]
    if voting:
        evidence = np.vstack([o.evidence for o in voting])
        scores = evidence.max(axis=0)
        flags = np.zeros(n, dtype=bool)
        for o in voting:
            flags |= o.flags
        # Keep "flagged" and "score > 1" the same statement.
        scores = np.where(flags, np.maximum(scores, 1.0 + 1e-9), np.minimum(scores, 1.0))
    else:
        scores, flags = np.zeros(n), np.zeros(n, dtype=bool)
    reasons = _reasons(outcomes, flags)
    tick.done()
    # the trigger detectors' details hold their suspected triggers' JSON documents (_run_detectors)
    triggers = [t for name in ("trigger_keywords", "value_triggers") if name in outcomes
                for t in cast("list[dict[str, object]]", outcomes[name].details.get("suspected_triggers", []))]
    result = AuditResult(
        dataset=dataset, model_spec=spec_name, representation=rep_kind, scores=scores, flags=flags,
        reasons=reasons, detectors=outcomes, suspected_triggers=triggers, timings=timings,
        oof_accuracy=float(np.mean(np.argmax(oof, axis=1) == y)), model=fitted,
        arrays={"pred_probs": oof, "representation": rep, "neighbors": neighbors},
    )
    if "robust_spectral" in outcomes:
        result.arrays["removal_flags"] = cast("np.ndarray", outcomes["robust_spectral"].details.pop("_removal_flags"))
    if dataset.source is not None or dataset.labeler is not None:
        result.groups = contributions(dataset, flags)
    return result


def default_model(kind: str) -> str:
    """The model an audit trains when none is named: logreg-text, cnn or logreg.

    Text gets logistic regression rather than naive Bayes because its per-feature contributions
    carry what it learned (a trigger's weight); see the representation table in the README.
    """
    from poisonlab.models import default_spec

    return default_spec(kind)


def _check_detectors(detectors: tuple[str, ...] | None, kind: str) -> tuple[str, ...]:
    if detectors is None:
        return tuple(d for d in DETECTORS if ONLY_FOR.get(d, kind) == kind and d not in OPT_IN)
    unknown = [d for d in detectors if d not in DETECTORS]
    if unknown:
        raise ParameterError(
            f"The 'detectors' parameter of audit must list names from {list(DETECTORS)}. "
            f"Got {unknown[0]!r} instead."
        )
    for d in detectors:
        if ONLY_FOR.get(d, kind) != kind:
            raise ParameterError(f"The {d} detector reads {ONLY_FOR[d]} data; this data is {kind}.")
    return tuple(detectors)


class _Ticker:
    def __init__(self, progress: Progress | None, steps: list[str], timings: dict[str, float]):
        self.progress, self.steps, self.timings = progress, steps, timings
        self.current: int | None = None
        self.t0 = time.perf_counter()
        self.sub: Callable[[int], None] | None = None

    def start(self, i: int, sub: Callable[[int], Any] | None = None) -> None:
        self._stop()
        self.current, self.t0 = i, time.perf_counter()
        self.sub = sub
        if self.progress is not None:
            self.progress(self.steps[i], i, len(self.steps))

    def _stop(self) -> None:
        if self.current is not None:
            self.timings[self.steps[self.current].split(" (")[0]] = time.perf_counter() - self.t0

    def done(self) -> None:
        self._stop()
        self.current = None
        if self.progress is not None:
            self.progress("done", len(self.steps), len(self.steps))


# ---------------------------------------------------------------------------------- arrays
def out_of_fold_proba(
    fresh: Callable[[], ModelAdapter],
    fitted: ModelAdapter,
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    n_folds: int = 5,
    random_state: int = 0,
    on_fold: Callable[[int], None] | None = None,
    held_out: list[HeldOutModels] | None = None,
) -> np.ndarray:
    """Cross-validated N×K probabilities: each row scored by a model that never saw it.

    With ``held_out`` (an empty list), a :class:`HeldOutModels` holding the fold models is appended
    to it, so that edited copies of a row can be scored by the model that never saw the row.

    For a scikit-learn pipeline the label-free steps (vectorizer, scaler) fitted on all rows are
    reused and only the final classifier is refitted per fold, which gives the same answer for a
    fraction of the time (the vocabulary is shared; no label leaks).
    """
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import Pipeline

    counts = np.bincount(y, minlength=n_classes)
    min_count = counts[counts > 0].min()
    splits = max(2, min(n_folds, int(min_count)))
    if min_count < 2:
        from sklearn.model_selection import KFold

        cv: Any = KFold(n_splits=n_folds, shuffle=True, random_state=random_state)
    else:
        cv = StratifiedKFold(n_splits=splits, shuffle=True, random_state=random_state)
    out = np.zeros((len(y), n_classes))
    fold_of = np.zeros(len(y), dtype=np.int64)
    predictors: list[Callable[[np.ndarray], np.ndarray]] = []
    est: Any = getattr(fitted, "estimator_", None)
    fast = isinstance(est, Pipeline) and len(est.steps) > 1
    if fast:
        Z = est[:-1].transform(X if X.dtype == object else X.reshape(len(X), -1))
        final = est.steps[-1][1]
    for i, (tr, te) in enumerate(cv.split(np.zeros(len(y)), y)):
        if on_fold is not None:
            on_fold(i)
        fold_of[te] = i
        if fast:
            clf = clone(final).fit(Z[tr], y[tr])
            proba = clf.predict_proba(Z[te])
            out[np.ix_(te, np.asarray(clf.classes_, dtype=np.int64))] = proba
            predictors.append(_pipeline_head(est[:-1], clf, n_classes))
        else:
            model = fresh().fit(X[tr], y[tr], n_classes=n_classes)
            out[te] = model.predict_proba(X[te])
            predictors.append(model.predict_proba)
    if held_out is not None:
        if fast:
            def refit(keep: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
                return _pipeline_head(est[:-1], clone(final).fit(Z[keep], y[keep]), n_classes)
        else:
            def refit(keep: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
                return fresh().fit(X[keep], y[keep], n_classes=n_classes).predict_proba
        held_out.append(HeldOutModels(fold_of, predictors, refit))
    sums = out.sum(axis=1, keepdims=True)
    return out / np.where(sums > 0, sums, 1.0)


def _pipeline_head(transform: Any, clf: Any, n_classes: int) -> Callable[[np.ndarray], np.ndarray]:
    cols = np.asarray(clf.classes_, dtype=np.int64)

    def predict_proba(X: np.ndarray) -> np.ndarray:
        Z = transform.transform(X if X.dtype == object else X.reshape(len(X), -1))
        out = np.zeros((Z.shape[0], n_classes))
        out[:, cols] = clf.predict_proba(Z)
        return out

    return predict_proba


@dataclass
class HeldOutModels:
    """The out-of-fold models of an audit: ``fold_of[i]`` is the fold that held row ``i`` out, and
    ``predictors[f]`` the ``predict_proba`` of the model trained without fold ``f``."""

    fold_of: np.ndarray
    predictors: list[Callable[[np.ndarray], np.ndarray]]
    refit: Callable[[np.ndarray], Callable[[np.ndarray], np.ndarray]] | None = None
    """``refit(keep)``: the ``predict_proba`` of a model of the same kind trained only on the rows
    where the boolean ``keep`` is True (the trigger search's exclusion test)."""

    def __call__(self, X: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Probabilities of ``X[j]`` (an edited copy of row ``rows[j]``) by the model that never saw
        that row."""
        rows = np.asarray(rows, dtype=np.int64)
        out: np.ndarray | None = None
        for f, predict in enumerate(self.predictors):
            mine = np.flatnonzero(self.fold_of[rows] == f)
            if not len(mine):
                continue
            p = np.asarray(predict(X[mine]), dtype=np.float64)
            if out is None:
                out = np.zeros((len(rows), p.shape[1]))
            out[mine] = p
        return out if out is not None else np.zeros((0, 0))


def consensus_probs(pred_probs: np.ndarray, neighbor_idx: np.ndarray, y: np.ndarray,
                    n_classes: int, smoothing: float = 0.1,
                    exclude: np.ndarray | None = None) -> np.ndarray:
    """Product of experts of model probabilities and neighbor label shares, renormalized.

    Neighbor shares are smoothed, ``(count_k + smoothing) / (k + smoothing * K)``, and the two
    distributions are combined by their geometric mean. Neighbors where the boolean ``exclude``
    is True do not count (``k`` is then each row's number of counted neighbors).
    """
    n, k = neighbor_idx.shape
    counts = np.zeros((n, n_classes))
    weight = np.ones((n, k)) if exclude is None else (~exclude[neighbor_idx]).astype(np.float64)
    if k:
        np.add.at(counts, (np.repeat(np.arange(n), k), y[neighbor_idx].ravel()), weight.ravel())
    shares = (counts + smoothing) / (weight.sum(axis=1, keepdims=True) + smoothing * n_classes)
    geo = np.sqrt(np.clip(pred_probs, 1e-12, 1.0) * shares)
    return geo / geo.sum(axis=1, keepdims=True)


def input_features(dataset: Dataset, *, n_dims: int = 64) -> np.ndarray | sp.csr_matrix:
    """What kNN and duplicate checks compare: TF-IDF for text; pixels or standardized columns,
    projected on their top ``n_dims`` principal components when wider (centered, so cosine
    similarity compares deviations from the mean image)."""
    if dataset.kind == "text":
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(lowercase=True, sublinear_tf=True, min_df=2, max_features=200_000,
                              dtype=np.float32)
        try:
            return vec.fit_transform(dataset.X).tocsr()
        except ValueError:  # no word occurs twice
            vec = TfidfVectorizer(lowercase=True, sublinear_tf=True, token_pattern=r"(?u)\b\w+\b")
            return vec.fit_transform(dataset.X).tocsr()
    X = np.asarray(dataset.X, dtype=np.float64).reshape(len(dataset), -1)
    if dataset.kind == "tabular":
        sd = X.std(axis=0)
        X = (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    if X.shape[1] > n_dims:
        from sklearn.decomposition import PCA

        X = PCA(n_components=n_dims, svd_solver="randomized", random_state=0).fit_transform(X)
    return X


def contributions(dataset: Dataset, flags: np.ndarray) -> dict[str, object] | None:
    """Flagged counts per source and labeler (via poisonlab.provenance when it is installed)."""
    try:
        from poisonlab.provenance import contributions_by_group
    except ImportError:  # pragma: no cover - provenance ships with poisonlab
        return _simple_groups(dataset, flags)
    return contributions_by_group(dataset, flags)


def _simple_groups(dataset: Dataset, flags: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in ("source", "labeler"):
        values = getattr(dataset, col)
        if values is None:
            continue
        groups: dict[str, dict[str, int]] = {}
        for v, f in zip(values, flags, strict=True):
            g = groups.setdefault(str(v), {"n_rows": 0, "n_flagged": 0})
            g["n_rows"] += 1
            g["n_flagged"] += int(f)
        out[f"by_{col}"] = groups
    return out


# ---------------------------------------------------------------------------------- detectors
def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and the seconds it took."""
    t = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t


def _recheck_label_issues(outcomes: dict[str, DetectorOutcome], names: tuple[str, ...],
                          dataset: Dataset, oof: np.ndarray, inputs: Any,
                          neighbors: tuple[np.ndarray, np.ndarray], held_out: HeldOutModels) -> None:
    """Redo confident learning and the near-duplicate ties with out-of-fold models that saw none of
    the rows a trigger detector flagged.

    A backdoor teaches the model that the source class reads as the target: with OpenBackdoor's
    rare words in 20% of SpamAssassin's ham, the out-of-fold models read 39% of the spam rows as
    ham, so confident learning flagged 118 rows of which 62 were clean, and the near-duplicate
    ties fell to the planted copy's label (dev cell ``spam/ob-badnets/0.2/tfidf-lr/s0``,
    2026-12-04; after: 6 flags). The planted rows the trigger detectors
    flag are left out of every fold's training set, do not count as anyone's neighbors and do not
    set confident learning's per-class thresholds (they are flagged already); the rows that remain
    are scored as before, by the fold model that never saw them.
    """
    if held_out.refit is None or not ({"confident_learning", "duplicates"} & set(names)):
        return
    planted = np.zeros(len(dataset), dtype=bool)
    for name in ("trigger_keywords", "value_triggers"):
        if name in outcomes:
            planted |= outcomes[name].flags
    y = dataset.y
    keep_all = ~planted
    if not planted.any() or len(np.unique(y[keep_all])) < len(np.unique(y)):
        return
    fresh_oof = oof.copy()
    for f in range(len(held_out.predictors)):
        mine = held_out.fold_of == f
        train = keep_all & ~mine
        if len(np.unique(y[train])) < len(np.unique(y[keep_all])):
            return
        predict = held_out.refit(train)
        p = np.asarray(predict(dataset.X[mine]), dtype=np.float64)
        sums = p.sum(axis=1, keepdims=True)
        fresh_oof[mine] = p / np.where(sums > 0, sums, 1.0)
    from poisonlab.detect.labels import neighbor_majority

    knn_label = neighbor_majority(neighbors[0][:, :10], y, dataset.n_classes)
    note = (f"out-of-fold models trained without the {int(planted.sum())} rows the trigger "
            "detectors flagged")
    redone = _label_issue_outcomes(names, dataset, fresh_oof, inputs, neighbors, knn_label, note,
                                   exclude=planted)
    for name, o in redone.items():
        o.seconds += outcomes[name].seconds
        outcomes[name] = o


def _label_issue_outcomes(names: tuple[str, ...], dataset: Dataset, oof: np.ndarray, inputs: Any,
                          neighbors: tuple[np.ndarray, np.ndarray], neighbor_label: np.ndarray,
                          note: str = "", exclude: np.ndarray | None = None
                          ) -> dict[str, DetectorOutcome]:
    """The confident-learning and near-duplicate outcomes, from out-of-fold probabilities ``oof``
    (rows where ``exclude`` is True do not count as neighbors)."""
    from poisonlab.detect import ConfidentLearningDetector, DuplicateConflictDetector

    y, classes = dataset.y, dataset.classes
    out: dict[str, DetectorOutcome] = {}

    if "confident_learning" in names:
        consensus = consensus_probs(oof, neighbors[0][:, :10], y, dataset.n_classes,
                                    exclude=exclude)
        # Rows in `exclude` are judged elsewhere; they do not set the per-class thresholds.
        judged = np.flatnonzero(~exclude) if exclude is not None else np.arange(len(y))
        cl, secs = _timed(lambda: ConfidentLearningDetector().fit(consensus[judged], y[judged]))
        cl_scores = np.zeros(len(y))
        cl_scores[judged] = cl.scores_
        cl_flags = np.zeros(len(y), dtype=bool)
        cl_flags[judged] = cl.flags_

        def cl_reason(i: int) -> str:
            pred = int(np.argmax(oof[i]))
            other = int(neighbor_label[i])
            return (f"label issue: a model that never saw this row gives its label "
                    f"{classes[y[i]]!r} p={oof[i, y[i]]:.2f} and predicts {classes[pred]!r} "
                    f"(p={oof[i, pred]:.2f}); its nearest rows mostly say {classes[other]!r}")

        out["confident_learning"] = DetectorOutcome(
            "confident_learning", cl_scores, cl_flags, cl.threshold_, True, secs,
            {"method": "cleanlab find_label_issues (prune_by_noise_rate) on the consensus of "
                       "out-of-fold probabilities and 10-nearest-neighbor label shares",
             "n_issues_estimated": int(getattr(cl, "n_issues_", 0))}, cl_reason)
    if "duplicates" in names:
        own = oof[np.arange(len(y)), y]
        dup, secs = _timed(lambda: DuplicateConflictDetector().fit(inputs, y, neighbors=neighbors,
                                                                  label_probs=own))

        def dup_reason(i: int) -> str:
            idx, sim = neighbors
            others = [int(j) for j, s in zip(idx[i], sim[i], strict=True)
                      if s >= dup.min_similarity_ - 1e-9 and y[j] != y[i]]
            who = f"row {others[0]} labeled {classes[y[others[0]]]!r}" if others else \
                "rows with another label"
            return f"near-duplicate of {who} (cosine similarity {dup.scores_[i]:.3f})"

        out["duplicates"] = DetectorOutcome(
            "duplicates", dup.scores_, dup.flags_, dup.threshold_, True, secs,
            {"min_similarity": dup.min_similarity_,
             "n_conflict_groups": len(np.unique(dup.groups_[dup.groups_ >= 0]))}, dup_reason)
    for o in out.values():
        if note:
            o.details["recomputed"] = note
    return out


def _run_detectors(names: tuple[str, ...], dataset: Dataset, model: Any, oof: np.ndarray,
                   rep: np.ndarray, inputs: Any, neighbors: tuple[np.ndarray, np.ndarray],
                   random_state: int, held_out: HeldOutModels | None = None
                   ) -> dict[str, DetectorOutcome]:
    from poisonlab.detect import (
        ActivationClusteringDetector,
        KnnLabelDetector,
        SpectralSignatureDetector,
        TriggerKeywordDetector,
    )

    y, classes = dataset.y, dataset.classes
    out: dict[str, DetectorOutcome] = {}

    # kNN label consistency first: its scores orient the spectral and clustering splits.
    knn, secs = _timed(lambda: KnnLabelDetector(n_neighbors=10).fit(inputs, y, neighbors=neighbors))
    reference = knn.scores_
    if "knn_labels" in names:
        idx = neighbors[0][:, :10]

        def knn_reason(i: int) -> str:
            other = int(knn.neighbor_label_[i])
            n_other = int(np.sum(y[idx[i]] == other))
            return (f"kNN: {n_other} of its {idx.shape[1]} nearest rows in input space are labeled "
                    f"{classes[other]!r}, not {classes[y[i]]!r}")

        out["knn_labels"] = DetectorOutcome("knn_labels", knn.scores_, knn.flags_,
                                            knn.threshold_, "knn_labels" in VOTING, secs,
                                            {"n_neighbors": 10}, knn_reason)
    out.update(_label_issue_outcomes(names, dataset, oof, inputs, neighbors, knn.neighbor_label_))
    if "spectral_signature" in names:
        ss, secs = _timed(lambda: SpectralSignatureDetector().fit(rep, y))
        out["spectral_signature"] = DetectorOutcome(
            "spectral_signature", ss.scores_, ss.flags_, ss.threshold_, False, secs,
            {"note": "Tran et al. 2018 on the representation, normalized per class; reported for "
                     "reference, does not vote (see robust_spectral)"},
            lambda i: f"spectral signature score {ss.scores_[i]:.1f} in class {classes[y[i]]!r}")
    if "robust_spectral" in names:
        out["robust_spectral"] = _robust_spectral_outcome(dataset, rep, reference)
    if "activation_clustering" in names:
        ac, secs = _timed(lambda: ActivationClusteringDetector(random_state=random_state)
                         .fit(rep, y, reference_scores=reference))
        acr = ac.result_

        def ac_reason(i: int) -> str:
            k = int(y[i])
            return (f"activation clustering: in the suspicious cluster of class {classes[k]!r} "
                    f"({100 * acr.relative_size[k]:.0f}% of the class, silhouette "
                    f"{acr.silhouette[k]:.2f})")

        per_class = {classes[k]: {"relative_size": _finite(acr.relative_size[k]),
                                  "silhouette": _finite(acr.silhouette[k]),
                                  "significant": bool(ac.significant_[k])}
                     for k in range(len(classes)) if not np.isnan(acr.silhouette[k])}
        out["activation_clustering"] = DetectorOutcome(
            "activation_clustering", ac.scores_, ac.flags_, ac.threshold_,
            "activation_clustering" in VOTING, secs,
            {"per_class": per_class}, ac_reason)
    if "feature_collisions" in names:
        from poisonlab.detect import FeatureCollisionDetector

        fc, secs = _timed(lambda: FeatureCollisionDetector().fit(np.asarray(rep, dtype=np.float64), y, dataset.X))
        out["feature_collisions"] = DetectorOutcome(
            "feature_collisions", fc.scores_, fc.flags_, fc.threshold_, True, secs,
            {"note": "nearest row of the same class in the model's representation, against the same "
                     "pair's distance in pixels (Shafahi et al. 2018's poisons share the target's features)"},
            lambda i: (f"feature collision: its nearest row of class {classes[y[i]]!r} in the model's "
                       f"features is {fc.scores_[i]:.1f}x closer there than their pixels are"))
    if "trigger_keywords" in names:
        tk, secs = _timed(lambda: TriggerKeywordDetector(random_state=random_state)
                         .fit(dataset.X, y, model.predict_proba, n_classes=dataset.n_classes,
                              reference_scores=reference, held_out_proba=held_out))

        def tk_reason(i: int) -> str:
            t = tk.triggers_[int(tk.row_trigger_[i])] if tk.row_trigger_[i] >= 0 else None
            name = t.trigger if t is not None else "?"
            if tk.row_flipped_[i]:
                return (f"holds suspected trigger {name!r}; removing it moves the model off its "
                        f"label {classes[y[i]]!r} (probability drop {tk.scores_[i] - 1:.2f})")
            return (f"holds suspected trigger {name!r} and carries its target label "
                    f"{classes[y[i]]!r}")

        triggers = [t.to_dict(classes) for t in tk.triggers_]
        for t, obj in zip(tk.triggers_, triggers, strict=True):
            mine = tk.row_trigger_ == tk.triggers_.index(t)
            obj["n_rows_flagged"] = int(np.sum(tk.flags_ & mine))
            obj["n_rows_flipped"] = int(np.sum(tk.row_flipped_ & mine))
        out["trigger_keywords"] = DetectorOutcome(
            "trigger_keywords", tk.scores_, tk.flags_, tk.threshold_, True, secs,
            {"suspected_triggers": triggers,
             "top_candidates": [c.to_dict(classes) for c in tk.candidates_[:10]]}, tk_reason)
    if "value_triggers" in names:
        from poisonlab.detect.value_triggers import ValueTriggerDetector

        vt, secs = _timed(lambda: ValueTriggerDetector(random_state=random_state).fit(
            np.asarray(dataset.X, dtype=np.float64), y, model.predict_proba,
            n_classes=dataset.n_classes, reference_scores=reference, held_out_proba=held_out,
            feature_names=dataset.feature_names))

        def vt_reason(i: int) -> str:
            t = vt.triggers_[int(vt.row_trigger_[i])]
            values = ", ".join([t.trigger, *t.companions])
            return (f"holds the suspected planted value(s) {values} and the label "
                    f"{classes[y[i]]!r}; with them replaced by the column medians, a model that "
                    f"never saw the row gives its label p drop {vt.scores_[i] - 1:.2f}")

        found = [{**t.to_dict(classes), "removed_with": list(t.companions)} for t in vt.triggers_]
        out["value_triggers"] = DetectorOutcome(
            "value_triggers", vt.scores_, vt.flags_, vt.threshold_, True, secs,
            {"suspected_triggers": found,
             "top_candidates": [c.to_dict(classes) for c in vt.candidates_[:10]]}, vt_reason)
    return out


def _robust_spectral_outcome(dataset: Dataset, rep: np.ndarray,
                             reference: np.ndarray) -> DetectorOutcome:
    """The robust spectral detector on the representation and, for images, on the pixels.

    Each view is fitted alone (:class:`~poisonlab.detect.RobustSpectralDetector`, defaults; the
    pixel view unreduced, see :func:`~poisonlab.detect.representations.pixel_view`), and a row's
    score is the larger of its two scores: a row is flagged when either view flags it, and so is
    a removal flag. A patch the network learned only in part (digits BadNets at 5-10% on poisonlab's
    CNN, attack success 0.69) leaves its rows mixed with clean ones in the penultimate layer
    (separation 2.95-4.34, not significant) but 15.6-46 within-side deviations apart in pixels.
    """
    from poisonlab.detect import RobustSpectralDetector
    from poisonlab.detect.representations import pixel_view

    y, classes = dataset.y, dataset.classes
    t = time.perf_counter()
    views = [("representation", RobustSpectralDetector().fit(rep, y, reference_scores=reference))]
    if dataset.kind == "image":
        V = pixel_view(dataset.X)
        # The leave-class-out covariance needs rows: at most half as many dimensions as rows
        # outside the largest class, else the top principal directions (the detector's n_dims).
        n_other = len(y) - int(np.bincount(y).max())
        dims = min(V.shape[1], max(32, n_other // 2))
        views.append(("pixels", RobustSpectralDetector(n_dims=dims).fit(V, y, reference_scores=reference)))
    secs = time.perf_counter() - t
    all_scores = np.vstack([d.scores_ for _, d in views])
    best = np.argmax(all_scores, axis=0)
    scores = all_scores[best, np.arange(len(y))]
    flags = np.logical_or.reduce([d.flags_ for _, d in views])
    removal = np.logical_or.reduce([d.removal_flags_ for _, d in views])

    def rs_reason(i: int) -> str:
        name, rs = views[int(best[i])]
        k = int(y[i])
        where = "" if len(views) == 1 else f" ({'pixels' if name == 'pixels' else 'model representation'})"
        return (f"robust spectral{where}: class {classes[k]!r} splits along a direction carrying "
                f"{rs.eigen_ratio_[k]:.1f}x the variance other classes have along theirs; a "
                f"two-component fit along it puts this row in the suspicious component with "
                f"posterior {rs.posterior_[i]:.3f} ({rs.result_.suspicious_size[k]} rows on that "
                f"side of the split)")

    per_class: dict[str, dict[str, object]] = {}
    for k in range(len(classes)):
        if np.isnan(views[0][1].result_.eigenvalue[k]):
            continue
        significant_in = [name for name, d in views if d.significant_[k]]
        name, rs = next(((n, d) for n, d in views if n in significant_in), views[0])
        res = rs.result_
        per_class[classes[k]] = {
            "eigenvalue": _finite(res.eigenvalue[k]),
            "eigenvalue_ratio": _finite(rs.eigen_ratio_[k]),
            "reference_gap": _finite(res.side_reference[k, 0] - res.side_reference[k, 1]),
            "separation": _finite(res.separation[k]),
            "suspicious_side_rows": int(res.suspicious_size[k]),
            "significant": bool(significant_in),
            "view": name,
            "significant_in": significant_in,
            "flags_most_of_the_class": any(k in d.oversized_ for _, d in views)}
    return DetectorOutcome("robust_spectral", scores, flags, 0.0, True, secs,
                           {"views": [name for name, _ in views], "per_class": per_class,
                            "n_removal_flags": int(removal.sum()), "_removal_flags": removal},
                           rs_reason)


def _agreement_outcome(outcomes: dict[str, DetectorOutcome], dataset: Dataset) -> DetectorOutcome:
    """The rows of a class that spectral signature and activation clustering both flag, voting
    where the two detectors single out nearly the same set.

    Neither votes alone: on clean data spectral signature flags the tail of every class and
    activation clustering splits classes written two ways. Where they agree on one set of rows of
    a class (intersection over union at least :data:`AGREEMENT_JACCARD`, at least
    :data:`AGREEMENT_MIN_ROWS` rows), two methods that read the representation differently (a top
    singular direction; a 2-means split of a 10-dimensional projection) found the same cluster.
    Measured with ``benchmarks/feature_collision.py``'s setting (20 Poison Frogs poisons a target,
    the audit's own CNN, MNIST-5k, 5 targets, 2026-12-07): the two flag 20-21 rows each, the 20
    poisons among them (overlap 0.91-1.0), where robust spectral is vetoed (the poisons' reference
    gap is -0.03: they are each other's neighbors) and the audit found none.

    Images and tables only. Read off ``benchmarks/generalization.py --dump`` (2026-12-07): on its
    86 digits and 30 digits-as-a-table cells (seen while the bounds were set) and its 14 MNIST, 45
    wine and 78 breast-cancer cells (not seen), 253 in all, 29 of them clean, the rule adds no flag
    to a clean cell and one row to each of three poisoned ones (one of the three planted). On text the
    representation (a linear model's per-word contributions) puts mail of one kind in a block both
    detectors single out: 97-166 clean rows of 2,100 voted in 6 of the 10 clean SpamAssassin cells
    (logistic regression, the SVM, SGD), so text is left out.
    """
    y, classes = dataset.y, dataset.classes
    t = time.perf_counter()
    ss, ac = outcomes["spectral_signature"].flags, outcomes["activation_clustering"].flags
    scores = np.zeros(len(y))
    overlap: dict[str, float] = {}
    for k in np.unique(y):
        in_k = y == k
        both, either = ss & ac & in_k, (ss | ac) & in_k
        if not either.any():
            continue
        jaccard = float(both.sum() / either.sum())
        overlap[classes[int(k)]] = round(jaccard, 3)
        if both.sum() >= AGREEMENT_MIN_ROWS:
            scores[both] = jaccard
    flags = scores >= AGREEMENT_JACCARD
    secs = time.perf_counter() - t

    def reason(i: int) -> str:
        k = int(y[i])
        n = int(np.sum(flags & (y == k)))
        return (f"spectral signature and activation clustering both single out this row and {n - 1} "
                f"others of class {classes[k]!r} (overlap {scores[i]:.2f} of the rows either flags)")

    return DetectorOutcome("representation_agreement", scores, flags, AGREEMENT_JACCARD, True, secs,
                           {"overlap_per_class": overlap, "min_overlap": AGREEMENT_JACCARD,
                            "min_rows": AGREEMENT_MIN_ROWS}, reason)


def _reasons(outcomes: dict[str, DetectorOutcome], flags: np.ndarray) -> list[str]:
    n = len(flags)
    reasons = [""] * n
    for i in np.flatnonzero(flags):
        parts = [o.reason(int(i)) for o in outcomes.values()
                 if o.votes and o.flags[i] and o.reason is not None]
        reasons[i] = "; ".join(parts)
    return reasons


def _finite(value: Any) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None


# ---------------------------------------------------------------------------------- ground truth
def evaluate_audit(result: AuditResult, poison_mask: np.ndarray) -> dict[str, object]:
    """Precision, recall, AUROC, AP and recall at 1.5x for the combined score and each detector."""
    from poisonlab.detect.metrics import detection_metrics

    out: dict[str, Any] = {"combined": _clean(detection_metrics(poison_mask, result.scores,
                                                                result.flags))}
    out["detectors"] = {name: _clean(detection_metrics(poison_mask, d.scores, d.flags))
                        for name, d in result.detectors.items()}
    result.evaluation = out
    result.arrays["poison_mask"] = np.asarray(poison_mask, dtype=bool)
    return out


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else
                round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


# ---------------------------------------------------------------------------------- files
def write_audit(result: AuditResult, out_dir: str | Path, *, html: bool = True,
                summary_name: str = "summary.json") -> dict[str, Path]:
    """Write ``flags.csv``, ``summary.json`` and (unless ``html=False``) ``report.html``.

    In ``flags.csv`` the id and reasons come from the data (formula-escaped for spreadsheets);
    row, score and flagged (``true``/``false``) are poisonlab's own values."""
    from poisonlab.files import write_csv_for_people, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"flags": out / "flags.csv", "summary": out / summary_name}
    write_csv_for_people(
        paths["flags"], ["row", "id", "score", "flagged", "reasons"],
        ([i, result.dataset.ids[i], f"{result.scores[i]:.6g}", bool(result.flags[i]), result.reasons[i]]
         for i in range(len(result.scores))),
        text_columns=("id", "reasons"))
    write_json(paths["summary"], result.summary())
    if html:
        from poisonlab.report.audit import write_audit_report

        paths["report"] = write_audit_report(result, out / "report.html")
    return paths
