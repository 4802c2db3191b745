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

:class:`BaggingEnsemble` and the two scores live in :mod:`poisonlab.models.ensemble` and
:mod:`poisonlab.models.members` (a trained ensemble is a model) and are re-exported here; this
module is the defense: the summary, ``flags.csv`` and ``poisonlab defend --method bagging``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.defend.base import (
    DefenseResult,
    Progress,
    attack_rows,
    attack_scores,
    run_request,
)

# The estimator and its disagreement scores live in the models layer (a trained ensemble is a
# model, read back by poisonlab.models.io.load_model); re-exported here under their old names.
from poisonlab.models.ensemble import BaggingEnsemble as BaggingEnsemble
from poisonlab.models.ensemble import load_ensemble as load_ensemble
from poisonlab.models.members import out_of_bag_disagreement as out_of_bag_disagreement
from poisonlab.models.members import vote_disagreement as vote_disagreement

if TYPE_CHECKING:
    from poisonlab.attacks import PoisonedDataset
    from poisonlab.defend import DefendRequest
    from poisonlab.models import ModelAdapter, ProbabilisticClassifier

OPTIONS = ("n_estimators", "max_samples", "bootstrap", "threshold", "input_threshold", "n_jobs",
           "scheduler", "model_params")


def _detection(flags: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    tp = int(np.sum(flags & mask))
    return {"n_flagged": int(flags.sum()), "n_poison": int(mask.sum()), "true_positives": tp,
            "precision": round(float(tp / flags.sum()), 4) if flags.any() else None,
            "recall": round(float(tp / mask.sum()), 4) if mask.any() else None}


def defend_bagging(train: Dataset, *, model: str | ModelAdapter | ProbabilisticClassifier | None = None,
                   test: Dataset | None = None, ground_truth: PoisonedDataset | None = None,
                   random_state: int = 0, progress: Progress | None = None,
                   **options: Any) -> DefenseResult:  # Any: read by name into BaggingEnsemble's parameters
    """Train a bagged ensemble with disagreement flags on ``train``; measure it on ``test``.

    Options: ``n_estimators`` (10), ``max_samples`` (0.5), ``bootstrap`` (False), ``threshold``
    (0.5), ``input_threshold`` (same as threshold), ``n_jobs``, ``scheduler`` (Dask),
    ``model_params``.

    The summary has the flagged training rows (and, with ground truth, how many were planted), the
    clean accuracy, the attack success rate, and the share of clean and of triggered test inputs
    flagged. ``result.flags`` are the flagged training rows.
    """
    from poisonlab.defend.base import check_options

    check_options("bagging", options, OPTIONS)
    ensemble = BaggingEnsemble(
        n_estimators=options.get("n_estimators", 10), max_samples=options.get("max_samples", 0.5),
        bootstrap=options.get("bootstrap", False), model=model,
        threshold=options.get("threshold", 0.5), input_threshold=options.get("input_threshold"),
        n_jobs=options.get("n_jobs"), scheduler=options.get("scheduler"),
        random_state=random_state, model_params=options.get("model_params"))
    ensemble.fit(train.X, train.y, n_classes=train.n_classes, progress=progress)
    flags = ensemble.train_flags_
    summary: dict[str, object] = {
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


def run(request: DefendRequest) -> dict[str, object]:
    """``poisonlab defend --method bagging``: train, measure, save the ensemble and summary.

    Also writes ``flags.csv`` (row, id, score, flagged) for the training rows.
    """
    return run_request(request, defend_bagging, OPTIONS, write_extra=write_flags)


def write_flags(result: DefenseResult, train: Dataset, out: Path) -> Path:
    """``out/flags.csv``: one line per training row: row, id, score, flagged (``true``/``false``);
    the id comes from the data and is formula-escaped for spreadsheets."""
    from poisonlab.files import write_csv_for_people

    ensemble = cast(BaggingEnsemble, result.model)
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
