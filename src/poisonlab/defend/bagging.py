"""Bagging with disagreement flags: models on different subsets, and the rows and inputs they dispute.

``n_estimators`` base models are trained on random subsets of the training rows (``max_samples`` of
them, without replacement unless ``bootstrap``). The ensemble predicts with the mean of the members'
probabilities. Two scores come out of the members' disagreement (higher = more suspicious, in
[0, 1]):

- for each *training row*, the share of the members that did not train on it (out-of-bag) whose
  prediction contradicts its label (:func:`out_of_bag_disagreement`); rows above ``threshold`` are
  ``train_flags_``: mislabeled or planted rows that the rest of the data does not support;
- for each *input*, the share of members that do not vote for the plurality class
  (:func:`vote_disagreement`); inputs above ``input_threshold`` are flagged by :meth:`flag_inputs`.

What this can and cannot catch is measured in ``benchmarks/defense_tradeoffs.py``: a backdoor planted
in more rows than a subset needs to learn it is learned by every member, so the members agree on
both the poisoned rows and the triggered inputs; disagreement exposes rows whose label the other
rows contradict (label flips) and inputs near a boundary the members draw differently.
"""

from __future__ import annotations

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
    run_request,
)
from poisonlab.defend.partition import (
    ensure_fitted,
    fit_member,
    load_ensemble,
    member_seeds,
    member_spec_name,
    resolve_member_model,
    run_parallel,
    save_members,
)
from poisonlab.exceptions import ParameterError, check_param

OPTIONS = ("n_estimators", "max_samples", "bootstrap", "threshold", "input_threshold", "n_jobs",
           "scheduler", "model_params")


def vote_disagreement(member_predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """Per input, the share of voting members that do not vote for the plurality class (0 when
    they all agree). ``member_predictions`` is (M, N), -1 where a member abstains."""
    from poisonlab.defend.partition import vote_counts

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


class BaggingEnsemble(ClassifierMixin, BaseEstimator):
    """Base models on random subsets; mean-probability predictions; disagreement flags.

    ``model``: a spec name or an unfitted model (as for
    :class:`~poisonlab.defend.partition.PartitionEnsemble`). ``threshold``: flag a training row when
    more than this share of its out-of-bag members contradict its label. ``input_threshold``: flag an
    input when more than this share of members vote against the plurality.

    After ``fit``: ``members_``, ``in_bag_`` (M, N booleans: which rows each member saw),
    ``train_scores_``, ``train_flags_``, ``input_threshold_``, ``fit_seconds_``.
    """

    def __init__(self, *, n_estimators: int = 10, max_samples: float = 0.5, bootstrap: bool = False,
                 model: Any = None, threshold: float = 0.5, input_threshold: float | None = None,
                 n_jobs: int | None = None, scheduler: Any = None,
                 random_state: int | np.random.Generator | None = None,
                 model_params: dict[str, Any] | None = None) -> None:
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
        self.members_ = run_parallel(tasks, n_jobs=self.n_jobs, scheduler=self.scheduler,
                                     progress=progress, step=f"training {m} bagged models")
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
        rows = []
        for member in self.members_:
            rows.append(np.full(len(X), -1, dtype=np.int64) if member is None
                        else np.asarray(member.predict(X), dtype=np.int64))
        return np.vstack(rows)

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
        return np.argmax(self.predict_proba(X), axis=1)

    def save(self, path: str | Path, *, classes: tuple[str, ...]) -> Path:
        """Write the folder ``path``: one file per member and ``ensemble.json``."""
        ensure_fitted(self)
        return save_members(self, Path(path), classes=classes, method="bagging", extra={
            "n_estimators": int(self.n_estimators), "max_samples": float(self.max_samples),
            "bootstrap": bool(self.bootstrap), "threshold": float(self.threshold),
            "input_threshold": self.input_threshold_, "aggregation": "mean of member probabilities",
        })


def _detection(flags: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    tp = int(np.sum(flags & mask))
    return {"n_flagged": int(flags.sum()), "n_poison": int(mask.sum()), "true_positives": tp,
            "precision": round(float(tp / flags.sum()), 4) if flags.any() else None,
            "recall": round(float(tp / mask.sum()), 4) if mask.any() else None}


def defend_bagging(train: Dataset, *, model: Any = None, test: Dataset | None = None,
                   ground_truth: Any | None = None, random_state: int = 0,
                   progress: Progress | None = None, **options: Any) -> DefenseResult:
    """Train a bagged ensemble with disagreement flags on ``train``; measure it on ``test``.

    Options: ``n_estimators`` (10), ``max_samples`` (0.5), ``bootstrap`` (False), ``threshold``
    (0.5), ``input_threshold`` (same as threshold), ``n_jobs``, ``scheduler`` (Dask),
    ``model_params``.

    The summary has the flagged training rows (and, with ground truth, how many were planted), the
    clean accuracy, the attack success rate, and the share of clean and of triggered test inputs
    flagged. ``result.flags`` are the flagged training rows.
    """
    from poisonlab.defend.compare import check_options

    check_options("bagging", options, OPTIONS)
    ensemble = BaggingEnsemble(
        n_estimators=options.get("n_estimators", 10), max_samples=options.get("max_samples", 0.5),
        bootstrap=options.get("bootstrap", False), model=model,
        threshold=options.get("threshold", 0.5), input_threshold=options.get("input_threshold"),
        n_jobs=options.get("n_jobs"), scheduler=options.get("scheduler"),
        random_state=random_state, model_params=options.get("model_params"))
    ensemble.fit(train.X, train.y, n_classes=train.n_classes, progress=progress)
    flags = ensemble.train_flags_
    summary: dict[str, Any] = {
        "method": "bagging", "dataset": train.name, "model": ensemble.spec_, "n_rows": len(train),
        "n_estimators": int(ensemble.n_estimators), "max_samples": float(ensemble.max_samples),
        "bootstrap": bool(ensemble.bootstrap), "threshold": float(ensemble.threshold),
        "input_threshold": ensemble.input_threshold_, "n_flagged_rows": int(flags.sum()),
        "flagged_by_class": {c: int(flags[train.y == k].sum()) for k, c in enumerate(train.classes)},
        "fit_seconds": round(ensemble.fit_seconds_, 2),
    }
    if ground_truth is not None:
        summary["training_flags"] = _detection(flags, np.asarray(ground_truth.poison_mask, dtype=bool))
    if test is not None:
        if progress is not None:
            progress("measuring on the test rows", 0, 1)
        P = ensemble.member_predictions(test.X)
        pred = ensemble.predict(test.X)
        summary["clean_accuracy"] = round(float(np.mean(pred == test.y)), 4)
        summary["flagged_clean_inputs"] = round(float(np.mean(
            vote_disagreement(P, ensemble.n_classes_) > ensemble.input_threshold_)), 4)
        triggered = attack_rows(test, ground_truth)
        if triggered is not None:
            X_t, target = triggered
            rows = test.y != target
            pred_t = ensemble.predict(X_t)
            summary.update(attack_scores(pred_t, pred[rows], test.y[rows], target))
            flagged = ensemble.flag_inputs(X_t)
            summary["flagged_triggered_inputs"] = round(float(np.mean(flagged)), 4)
            hit = pred_t == target
            summary["attack_success_unflagged"] = round(float(np.mean(hit & ~flagged)), 4)
        summary["measured_on"] = f"{len(test)} test rows"
    return DefenseResult("bagging", ensemble, summary, flags=flags)


def run(request: Any) -> dict[str, Any]:
    """``poisonlab defend --method bagging``: train, measure, save the ensemble and summary.

    Also writes ``flags.csv`` (row, id, score, flagged) for the training rows.
    """
    return run_request(request, defend_bagging, OPTIONS, write_extra=write_flags)


def write_flags(result: DefenseResult, train: Dataset, out: Path) -> Path:
    """``out/flags.csv``: one line per training row: row, id, score, flagged (``true``/``false``);
    the id comes from the data and is formula-escaped for spreadsheets."""
    from poisonlab.files import write_csv_for_people

    ensemble = result.model
    rows = ([i, train.ids[i], f"{score:.4f}", bool(flag)]
            for i, (score, flag) in enumerate(zip(ensemble.train_scores_, ensemble.train_flags_, strict=True)))
    return write_csv_for_people(out / "flags.csv", ["row", "id", "score", "flagged"], rows,
                                text_columns=("id",))


__all__ = [
    "BaggingEnsemble",
    "defend_bagging",
    "load_ensemble",
    "out_of_bag_disagreement",
    "vote_disagreement",
]
