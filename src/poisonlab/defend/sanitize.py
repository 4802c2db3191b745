"""Sanitize and retrain: audit the training set, drop the flagged rows, train on the rest.

:func:`sanitize` is the library function; :func:`run` is what ``poisonlab defend --method
sanitize`` calls: it also saves the retrained model (``DIR/model.skops`` or
``DIR/model.safetensors``), the audit's files (``flags.csv``, ``audit.json``, ``report.html``) and
the defense's ``summary.json``.

With ground truth (a folder written by ``poisonlab attack``) it reports how many planted rows were
removed and, on clean test rows, the clean accuracy and attack success rate of a model trained on
all rows (before) and on the kept rows (after). Test rows come from ``--test`` or, without it, a
stratified quarter of the clean rows is held out for measurement and never trained on.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np

from poisonlab.audit import AuditResult, audit, evaluate_audit, write_audit
from poisonlab.data.dataset import Dataset
from poisonlab.defend import DefendRequest
from poisonlab.defend.base import Progress, hold_out_clean_rows, measure_model
from poisonlab.exceptions import DataError

if TYPE_CHECKING:
    from poisonlab.attacks import PoisonedDataset
    from poisonlab.defend.base import DefenseResult
    from poisonlab.models import ModelAdapter, ModelLike


@dataclass
class SanitizeResult:
    """The kept rows, the model trained on them, and what was measured."""

    keep: np.ndarray
    model: ModelAdapter
    audit: AuditResult
    metrics: dict[str, object] = field(default_factory=dict)


def sanitize(
    dataset: Dataset,
    *,
    model: ModelLike | None = None,
    audit_result: AuditResult | None = None,
    test: Dataset | None = None,
    ground_truth: PoisonedDataset | None = None,
    random_state: int = 0,
    progress: Progress | None = None,
    torch_params: Mapping[str, object] | None = None,
) -> SanitizeResult:
    """Audit ``dataset`` (unless ``audit_result`` is given), drop its removal set, retrain.

    The removal set (:attr:`~poisonlab.audit.AuditResult.removal_flags`) is the flagged rows and
    the wider cut of the robust spectral detector.

    ``test``: clean rows to measure clean accuracy on, and with ``ground_truth`` (the
    :class:`~poisonlab.attacks.PoisonedDataset` of ``dataset``) attack success: the share of
    triggered test rows outside the target class that the model puts in it.
    """
    from sklearn.base import clone

    result = audit_result if audit_result is not None else audit(
        dataset, model=model, random_state=random_state, progress=progress,
        torch_params=torch_params)
    removed = result.removal_flags
    keep = ~removed
    if keep.sum() == 0:
        raise DataError(f"{dataset.name}: the audit flagged every row; nothing is left to train on.")
    t = time.perf_counter()
    if progress is not None:
        progress("retraining on the kept rows", 0, 1)
    kept = dataset.subset(np.flatnonzero(keep))
    # The audit's model, unfitted: the same spec, estimator or module with the same settings.
    retrained = clone(result.model).fit(kept.X, kept.y, n_classes=dataset.n_classes)
    metrics: dict[str, object] = {
        "n_rows": len(dataset), "n_removed": int(removed.sum()), "n_flagged": int(result.flags.sum()),
        "n_kept": int(keep.sum()),
        "retrain_seconds": round(time.perf_counter() - t, 2),
    }
    if ground_truth is not None:
        mask = ground_truth.poison_mask
        metrics["poison_removed"] = int(np.sum(mask & removed))
        metrics["poison_left"] = int(np.sum(mask & keep))
        metrics["detection"] = evaluate_audit(result, mask)["combined"]
    if test is not None:
        metrics["before"] = measure_model(cast("ModelAdapter", result.model), test, ground_truth)
        metrics["after"] = measure_model(retrained, test, ground_truth)
    return SanitizeResult(keep, retrained, result, metrics)


def defend_sanitize(train: Dataset, *, model: ModelLike | None = None, test: Dataset | None = None,
                    ground_truth: PoisonedDataset | None = None, random_state: int = 0,
                    progress: Progress | None = None, **options: object) -> DefenseResult:
    """:func:`sanitize` with the signature every defense shares, returning a ``DefenseResult``.

    For :func:`poisonlab.defend.compare.compare_defenses`; ``options`` may hold ``torch_params``.
    """
    from poisonlab.defend.base import DefenseResult, check_options

    check_options("sanitize", options, ("torch_params",))
    res = sanitize(train, model=model, test=test, ground_truth=ground_truth,
                   random_state=random_state, progress=progress,
                   torch_params=cast("Mapping[str, object] | None", options.get("torch_params")))
    summary = {"method": "sanitize", "model": res.audit.model_spec, **res.metrics}
    return DefenseResult("sanitize", res.model, summary, flags=~res.keep,
                         extra={"audit": res.audit})


def run(request: DefendRequest) -> dict[str, object]:
    """``poisonlab defend --method sanitize``: sanitize, retrain, save the model and a summary."""
    from poisonlab.files import final_path, write_json
    from poisonlab.models import default_spec
    from poisonlab.models.io import check_can_save, save_model

    dataset, gt, test = request.dataset, request.ground_truth, request.test
    heldout = False
    if gt is not None and test is None:
        dataset, gt, test = hold_out_clean_rows(dataset, gt, random_state=request.random_state)
        heldout = True
    check_can_save(request.model or default_spec(dataset.kind))  # before training, not after
    res = sanitize(dataset, model=request.model, test=test, ground_truth=gt,
                   random_state=request.random_state, progress=request.progress,
                   torch_params=cast("Mapping[str, object] | None", request.options.get("torch_params")))
    out = request.out
    out.mkdir(parents=True, exist_ok=True)
    model_path = save_model(res.model, out / "model", classes=dataset.classes,
                            spec=res.audit.model_spec)
    write_audit(res.audit, out, html=cast(bool, request.options.get("html", True)),
                summary_name="audit.json")
    summary: dict[str, object] = {
        "method": "sanitize",
        "dataset": dataset.name,
        "model": res.audit.model_spec,
        "model_path": str(final_path(model_path)),
        **res.metrics,
        "flagged_by_class": {c: int(res.audit.flags[dataset.y == k].sum())
                             for k, c in enumerate(dataset.classes)},
        "suspected_triggers": res.audit.suspected_triggers,
    }
    if heldout and test is not None:
        summary["measured_on"] = (f"{len(test)} clean rows held out of the data (a stratified 25% "
                                  "of the rows the attack did not touch); not trained on")
    elif test is not None:
        summary["measured_on"] = f"{len(test)} rows of the --test data"
    write_json(out / "summary.json", summary)
    return summary
