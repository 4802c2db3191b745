"""What every defense returns and how it is measured: the pieces the defenses share.

Each defense has one library function with the same signature::

    defend_<method>(train, *, model=None, test=None, ground_truth=None, random_state=0,
                    progress=None, **options) -> DefenseResult

(:func:`~poisonlab.defend.bagging.defend_bagging`, :func:`~poisonlab.defend.partition.defend_partition`,
:func:`~poisonlab.defend.dp.defend_dp`, :func:`~poisonlab.defend.sanitize.sanitize`). This module
is below all of them (and below :mod:`poisonlab.defend.compare`, which runs them side by side), so
that no defense imports the comparison that imports it.
"""


from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.exceptions import ParameterError
from poisonlab.models.members import Progress as Progress  # progress(step, done, total): one definition

if TYPE_CHECKING:
    from poisonlab.attacks import PoisonedDataset
    from poisonlab.defend import DefendRequest
    from poisonlab.models import Classifier, ModelAdapter

DEFENSES = ("sanitize", "bagging", "partition", "dp")
DEFAULT_RADII = (1, 5, 10, 20)


@dataclass
class DefenseResult:
    """A defended model, what was measured, and (for ``partition``) the certified-accuracy curve.

    ``model`` follows the model contract (``fit``/``predict_proba``/``predict``); ensembles also
    have ``save(folder, classes=...)`` and are read back with
    :func:`poisonlab.defend.partition.load_ensemble`. ``summary`` is JSON-able. ``certified`` lists
    ``{"radius", "accuracy"}`` in increasing radius; ``flags`` marks suspicious training rows where
    the method flags any (``bagging``).
    """

    method: str
    model: Classifier
    # Any: the summary is read back key by key (compare_defenses, summary_lines), nested values included
    summary: dict[str, Any]
    certified: list[dict[str, float]] | None = None
    flags: np.ndarray | None = None
    extra: dict[str, object] = field(default_factory=dict)


def attack_rows(test: Dataset, ground_truth: PoisonedDataset | None) -> tuple[np.ndarray, int] | None:
    """Triggered copies of the test rows outside the target class, and the target, for a backdoor."""
    if ground_truth is None or getattr(ground_truth, "trigger", None) is None \
            or ground_truth.target_label is None:
        return None
    target = int(ground_truth.target_label)
    rows = test.y != target
    if not rows.any():
        return None
    return ground_truth.apply_trigger(test.X[rows]), target


def attack_scores(pred_triggered: np.ndarray, pred_clean: np.ndarray, y: np.ndarray,
                  target: int) -> dict[str, float]:
    """Attack success and trigger flips from predictions on the same non-target test rows.

    ``attack_success``: the share of triggered rows put in the target class. ``trigger_flips``:
    the same share among the rows the model classifies correctly without the trigger, which is what
    the trigger itself does: a row already misclassified into the target class without it (4.6% of
    SpamAssassin's test spam reads as ham to a clean model) counts as a success but not as a flip.

    >>> attack_scores(np.array([1, 1, 0, 1]), np.array([0, 1, 0, 0]), np.array([0, 0, 0, 2]), 1)
    {'attack_success': 0.75, 'trigger_flips': 0.5}
    """
    hit = np.asarray(pred_triggered) == target
    right = np.asarray(pred_clean) == np.asarray(y)
    out = {"attack_success": round(float(np.mean(hit)), 4)}
    if right.any():
        out["trigger_flips"] = round(float(np.mean(hit[right])), 4)
    return out


def attack_outcome(predict: Callable[[np.ndarray], np.ndarray], test: Dataset,
                   ground_truth: PoisonedDataset | None,
                   pred_clean: np.ndarray | None = None) -> dict[str, float]:
    """:func:`attack_scores` of ``predict`` on ``test`` for a backdoor; ``{}`` when there is none.

    ``pred_clean``: the predictions on all of ``test.X`` when the caller already has them.
    """
    triggered = attack_rows(test, ground_truth)
    if triggered is None:
        return {}
    X_t, target = triggered
    rows = test.y != target
    clean = predict(test.X[rows]) if pred_clean is None else np.asarray(pred_clean)[rows]
    return attack_scores(predict(X_t), clean, test.y[rows], target)


def measure_model(model: Classifier, test: Dataset,
                  ground_truth: PoisonedDataset | None = None) -> dict[str, float]:
    """Clean accuracy on ``test`` and, for a backdoor, :func:`attack_scores` on its triggered rows."""
    pred = model.predict(test.X)
    out = {"clean_accuracy": round(float(np.mean(pred == test.y)), 4)}
    out.update(attack_outcome(model.predict, test, ground_truth, pred_clean=pred))
    return out


def check_options(method: str, options: Mapping[str, object], allowed: Sequence[str]) -> None:
    """An unknown option is an error naming the ones the method takes, never silently ignored."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ParameterError(
            f"The {method} defense does not take the option(s) {unknown}; it takes {sorted(allowed)}."
        )


def save_defense(result: DefenseResult, out: str | Path, *, classes: tuple[str, ...]) -> dict[str, object]:
    """Write ``out/model...`` (a model file, or the folder ``out/model/`` for an ensemble) and
    ``out/summary.json``; return the summary with ``model_path`` added."""
    from poisonlab.files import final_path, write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(result.model, "save"):
        path = result.model.save(out / "model", classes=classes)
    else:
        from poisonlab.models.io import save_model

        path = save_model(result.model, out / "model", classes=classes,
                          spec=result.summary.get("model"))
    summary = {**result.summary, "model_path": str(final_path(path))}
    if result.certified is not None:
        summary["certified"] = result.certified
    write_json(out / "summary.json", summary)
    return summary


def timed_fit(model: ModelAdapter, train: Dataset) -> float:
    """Fit ``model`` on ``train`` and return the seconds it took."""
    t = time.perf_counter()
    model.fit(train.X, train.y, n_classes=train.n_classes)
    return time.perf_counter() - t


def hold_out_clean_rows(train: Dataset, ground_truth: PoisonedDataset, *, share: float = 0.25,
                        random_state: int = 0) -> tuple[Dataset, PoisonedDataset, Dataset]:
    """Hold out a stratified ``share`` of the rows the attack did not touch, for measurement.

    Returns the training part, its ground truth, and the clean test part (with the original
    labels). ``poisonlab defend`` makes this split for every method when no ``--test`` is given.
    """
    from poisonlab.attacks import PoisonedDataset

    rng = np.random.default_rng(random_state)
    clean = np.flatnonzero(~ground_truth.poison_mask)
    test_rows: list[int] = []
    for k in range(train.n_classes):
        rows = clean[ground_truth.original_y[clean] == k]
        n = round(share * len(rows))
        if n:
            test_rows.extend(rng.choice(rows, size=n, replace=False).tolist())
    test_idx = np.sort(np.array(test_rows, dtype=np.int64))
    train_idx = np.setdiff1d(np.arange(len(train)), test_idx)
    part = train.subset(train_idx)
    truth = PoisonedDataset(part, ground_truth.poison_mask[train_idx],
                            ground_truth.original_y[train_idx], ground_truth.record,
                            ground_truth.trigger, ground_truth.target_label)
    test = train.subset(test_idx).with_data(y=ground_truth.original_y[test_idx])
    return part, truth, test


# Keys the command line puts in DefendRequest.options for every method (sanitize's report switch).
CLI_SHARED_OPTIONS = ("html",)


def run_request(request: DefendRequest, defend: Callable[..., DefenseResult], allowed: Sequence[str], *,
                write_extra: Callable[[DefenseResult, Dataset, Path], object] | None = None) -> dict[str, object]:
    """Call ``defend`` for a :class:`poisonlab.defend.DefendRequest`, save its model and summary.

    With ground truth and no ``test``, a stratified quarter of the clean rows is held out for
    measurement and never trained on. Options shared by every method on the command line are
    skipped, and so are options set to None (not given); any other unknown option is an error.
    ``write_extra(result, train, out)`` writes a method's own files (the training rows it was
    given, after any hold-out).
    """
    from poisonlab.models import default_spec
    from poisonlab.models.io import check_can_save

    train, truth, test = request.dataset, request.ground_truth, request.test
    held_out = False
    if truth is not None and test is None:
        train, truth, test = hold_out_clean_rows(train, truth, random_state=request.random_state)
        held_out = True
    options = {k: v for k, v in request.options.items()
               if k not in CLI_SHARED_OPTIONS and v is not None}
    check_options(defend.__name__.replace("defend_", ""), options, allowed)
    # what saving will need, checked before training rather than after: ensembles default to
    # scikit-learn members (partition.resolve_member_model), the other defenses to the data kind's spec
    if request.model is not None:
        check_can_save(request.model)
    elif defend.__name__ in ("defend_partition", "defend_bagging"):
        from poisonlab.models.members import resolve_member_model

        check_can_save(resolve_member_model(None, train.X))
    else:
        check_can_save(default_spec(train.kind))
    result = defend(train, model=request.model, test=test, ground_truth=truth,
                    random_state=request.random_state, progress=request.progress, **options)
    if held_out:
        result.summary["measured_on"] = (
            f"{len(cast(Dataset, test))} clean rows held out of the data (a stratified 25% of the rows "
            "the attack did not touch); not trained on")
    elif test is None:
        result.summary["measured_on"] = "nothing: no --test data and no ground truth to hold out from"
    summary = save_defense(result, request.out, classes=request.dataset.classes)
    if write_extra is not None:
        write_extra(result, train, Path(request.out))
    return summary
