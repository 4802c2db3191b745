"""One cell of a grid: a pure function of its config, returning one row of ``results.parquet``.

A cell is a JSON-able dict (see :meth:`poisonlab.experiments.config.ExperimentConfig.cells`); its
``key`` is the SHA-256 of everything else in it, so the same cell in another grid, on another
machine or after a crash has the same key and its stored result is reused. Every kind starts the
same way: the data set (loaded once per process and split with ``split_seed``), the attack built
from its parameters with ``random_state=seed`` and applied to the training rows at the cell's
budget. Then:

``train``
    Train ``model`` (``random_state=seed``) on the poisoned rows; measure clean accuracy on the
    clean test rows and, for a backdoor, attack success (the share of triggered test rows outside
    the target class put in it) and trigger flips
    (:func:`poisonlab.defend.base.measure_model`); for a targeted label flip, the share of the
    source class's test rows put in the target class.
``detect``
    Audit the poisoned rows with one detector (or ``audit``: their combination,
    :func:`poisonlab.audit.audit`); score its scores and flags against the attack's
    ``poison_mask`` (:func:`poisonlab.measure.metrics.detection_metrics`), with the ROC curve on a
    fixed grid of false-positive rates and the precision-recall curve on a fixed grid of recalls.
``defend``
    Train the defense (:mod:`poisonlab.defend`) on the poisoned rows and measure it as ``train``
    measures the undefended model, which the row also holds (``baseline_*``).
``min_budget``
    The fewest poisoned rows that reach ``target_asr`` with this seed
    (:func:`poisonlab.measure.budget.minimum_budget`: doubling, then bisection).

Every cell runs with BLAS (and torch, where it is loaded) on one thread, so that its numbers do not
depend on the machine's core count; a cell's error is caught and returned as a ``failed`` row.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import time
import traceback
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from poisonlab.exceptions import ParameterError

if TYPE_CHECKING:
    from poisonlab.attacks import Attack, PoisonedDataset
    from poisonlab.data.dataset import Dataset

#: Points of the stored ROC (true-positive rate at these false-positive rates) and
#: precision-recall (interpolated precision at these recalls) curves.
CURVE_GRID = tuple(i / 50 for i in range(51))

# The data sets this process has loaded, by (name, test_size, split_seed, data_dir): each worker
# loads a data set once, whatever number of cells it runs on it.
_DATA: dict[tuple[Any, ...], tuple[Dataset, Dataset]] = {}


def cell_key(cell: dict[str, Any]) -> str:
    """The content hash of a cell (every field but ``key``): 24 hex digits of its SHA-256."""
    body = {k: v for k, v in cell.items() if k != "key"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def attack_class(name: str) -> type[Attack]:
    """The attack class of a grid's attack name (``backdoor`` is resolved per data kind first)."""
    from poisonlab import attacks

    table: dict[str, type[Attack]] = {
        "label-flip": attacks.LabelFlipAttack, "text-backdoor": attacks.TextBackdoorAttack,
        "patch-backdoor": attacks.PatchBackdoorAttack, "blend-backdoor": attacks.BlendBackdoorAttack,
        "feature-backdoor": attacks.FeatureBackdoorAttack, "badnets-text": attacks.BadNetsTextAttack,
        "addsent": attacks.AddSentAttack, "word-trigger": attacks.WordTriggerAttack,
        "clean-label-backdoor": attacks.CleanLabelBackdoorAttack}
    if name not in table:
        raise ParameterError(f"The attack name must be one of {sorted(table)}. Got {name!r} instead.")
    return table[name]


def load_split(spec: dict[str, Any]) -> tuple[Dataset, Dataset]:
    """The (train, test) split of a cell's data set, loaded once per process and kept."""
    key = (spec["name"], spec["test_size"], spec["split_seed"], spec.get("data_dir"))
    if key not in _DATA:
        data = load_named(spec["name"], spec.get("data_dir"))
        _DATA[key] = data.split(test_size=spec["test_size"], random_state=spec["split_seed"])
    return _DATA[key]


def load_named(name: str, data_dir: str | None = None) -> Dataset:
    """A grid's data set: a corpus or file through :func:`poisonlab.data.load_dataset`, or
    scikit-learn's ``breast_cancer`` and ``wine`` tables through
    :func:`poisonlab.data.dataset_from_arrays`."""
    from poisonlab.data import dataset_from_arrays, load_dataset

    if name in ("breast_cancer", "wine"):
        from sklearn import datasets

        bunch = datasets.load_breast_cancer() if name == "breast_cancer" else datasets.load_wine()
        return dataset_from_arrays(bunch.data, bunch.target, classes=[str(c) for c in bunch.target_names],
                                   name=name)
    return load_dataset(name, data_dir=data_dir)


def build_attack(cell: dict[str, Any], train: Dataset, budget: dict[str, int | float] | None = None) -> Attack:
    """The cell's attack for ``train``: its parameters, the budget and ``random_state=seed``.

    ``backdoor`` becomes the backdoor of the data's kind; a backdoor without ``target_label``
    targets the first class (as ``poisonlab attack`` does).
    """
    name = cell["attack"]["name"]
    if name == "backdoor":
        name = {"text": "text-backdoor", "image": "patch-backdoor", "tabular": "feature-backdoor"}[train.kind]
    params = dict(cell["attack"]["params"])
    if name != "label-flip":
        params.setdefault("target_label", train.classes[0])
    if name == "feature-backdoor" and isinstance(params.get("features"), dict):
        params["features"] = {(int(k) if str(k).lstrip("-").isdigit() else k): float(v)
                              for k, v in params["features"].items()}
    cls = attack_class(name)
    return cls(**params, **(budget if budget is not None else cell["budget"]), random_state=cell["seed"])


def make_cell_model(spec: str, seed: int) -> Any:
    """An unfitted built-in model (torch ones on one thread). Any: a ModelAdapter."""
    from poisonlab.models import TORCH_SPECS, make_model

    return make_model(spec, random_state=seed, **({"n_threads": 1} if spec in TORCH_SPECS else {}))


def measure_trained(model: Any, test: Dataset, poisoned: PoisonedDataset) -> dict[str, float]:
    """Clean accuracy, and attack success where the attack has one (Any: a fitted ModelAdapter)."""
    from poisonlab.defend.base import measure_model

    out: dict[str, float] = dict(measure_model(model, test, poisoned))
    record = poisoned.record.get("params", {})
    if poisoned.trigger is not None and poisoned.target_label is not None:
        out["n_attack_rows"] = int(np.sum(test.y != poisoned.target_label))
    elif isinstance(record, dict) and record.get("strategy") == "targeted":
        source = test.label_index(record["source_label"])
        target = test.label_index(record["target_label"])
        rows = test.y == source
        if rows.any():
            out["attack_success"] = round(float(np.mean(model.predict(test.X[rows]) == target)), 4)
            out["n_attack_rows"] = int(rows.sum())
    return out


def train_and_measure(cell: dict[str, Any], train: Dataset, test: Dataset,
                      budget: dict[str, int | float] | None = None) -> dict[str, Any]:
    """Poison ``train`` with the cell's attack, train its model, measure it on ``test``."""
    poisoned = build_attack(cell, train, budget).apply(train)
    model = make_cell_model(cell["model"], cell["seed"]).fit(
        poisoned.dataset.X, poisoned.dataset.y, n_classes=train.n_classes)
    return {"n_poison": poisoned.n_poison, **measure_trained(model, test, poisoned)}


def run_cell(cell: dict[str, Any]) -> dict[str, Any]:
    """Compute one cell and return its row; an error becomes a row with ``status="failed"``.

    Parameters
    ----------
    cell : dict
        A cell of :meth:`~poisonlab.experiments.config.ExperimentConfig.cells`.

    Returns
    -------
    dict
        The row of ``results.parquet``: the cell's axes, ``status`` (``ok`` or ``failed``),
        ``error``, what its kind measures, ``seconds`` and ``worker``.

    References
    ----------
    .. [1] Rocklin, "Dask: Parallel Computation with Blocked algorithms and Task Scheduling",
       SciPy 2015 (tasks as pure functions of their inputs, keyed by content).
       https://doi.org/10.25080/Majora-7b98e3ed-013
    """
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    row = describe(cell)
    try:
        # warnings (an MLP that did not converge in max_iter) belong to the cell's row, not to
        # the terminal of a grid that fits hundreds of models
        with threadpool_limits(limits=1), _torch_threads(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            row.update(_compute(cell))
        row["status"] = "ok"
        row["warnings"] = _summarize_warnings(caught)
    except Exception as exc:  # a failed cell is a result: the grid goes on
        row["status"] = "failed"
        first = str(exc).splitlines()[0] if str(exc).strip() else ""
        row["error"] = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        if "daemonic processes" in first:
            row["error"] += (" (this cell starts processes of its own: start the Dask workers with "
                             "DASK_DISTRIBUTED__WORKER__DAEMON=False, or with --no-nanny)")
        row["traceback"] = "".join(traceback.format_exception(exc)[-6:])[-4000:]
    row["seconds"] = round(time.perf_counter() - started, 4)
    row["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    return row


def failed_row(cell: dict[str, Any], error: str) -> dict[str, Any]:
    """The row of a cell that could not be run at all (its worker died, the cluster lost it)."""
    row = describe(cell)
    row.update(status="failed", error=error)
    return row


def describe(cell: dict[str, Any]) -> dict[str, Any]:
    """The columns that say which cell a row is: key, kind, data set, model, attack, budget, seed."""
    budget = cell.get("budget") or {}
    return {
        "key": cell["key"], "kind": cell["kind"], "dataset": cell["dataset"]["name"],
        "model": cell["model"], "attack": cell["attack_label"], "attack_name": cell["attack"]["name"],
        "attack_params": json.dumps(cell["attack"]["params"], sort_keys=True, default=str),
        "budget": float(next(iter(budget.values()))) if budget else None,
        "budget_kind": ("count" if "n_poison" in budget else "rate") if budget else None,
        "seed": int(cell["seed"]), "detector": cell.get("detector"), "defense": cell.get("defense"),
    }


class _torch_threads:
    """torch on one thread inside a cell, where torch is loaded (never imported here)."""

    def __enter__(self) -> None:
        import sys

        torch = sys.modules.get("torch")
        self.before = None
        if torch is not None:
            self.before = torch.get_num_threads()
            torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        import sys

        torch = sys.modules.get("torch")
        if torch is not None and self.before is not None:
            torch.set_num_threads(self.before)


def _compute(cell: dict[str, Any]) -> dict[str, Any]:
    train, test = load_split(cell["dataset"])
    base: dict[str, Any] = {"n_train": len(train), "n_test": len(test)}
    kind = cell["kind"]
    if kind == "train":
        return {**base, **train_and_measure(cell, train, test)}
    if kind == "detect":
        return {**base, **_detect(cell, train)}
    if kind == "defend":
        return {**base, **_defend(cell, train, test)}
    if kind == "min_budget":
        return {**base, **_min_budget(cell, train, test)}
    raise ParameterError(f"Unknown cell kind {kind!r}; expected train, detect, defend or min_budget.")


def _detect(cell: dict[str, Any], train: Dataset) -> dict[str, Any]:
    from poisonlab.audit import audit
    from poisonlab.measure.metrics import detection_metrics

    poisoned = build_attack(cell, train).apply(train)
    name = cell["detector"]
    result = audit(poisoned.dataset, model=cell["model"], detectors=None if name == "audit" else (name,),
                   random_state=cell["seed"])
    if name == "audit":
        scores, flags = result.scores, result.flags
    else:
        outcome = result.detectors[name]
        scores, flags = outcome.scores, outcome.flags
    mask = poisoned.poison_mask
    m = detection_metrics(mask, scores, flags)
    roc, pr = curves(mask, scores)
    return {"n_poison": poisoned.n_poison, "n_flagged": int(m.get("n_flagged", 0)),
            "precision": _num(m.get("precision")), "recall": _num(m.get("recall")),
            "f1": _num(m.get("f1")), "auroc": _num(m.get("auroc")),
            "average_precision": _num(m.get("average_precision")),
            "recall_at_1_5x": _num(m.get("recall_at_1.5x")), "roc_tpr": roc, "pr_precision": pr}


def curves(mask: np.ndarray, scores: np.ndarray) -> tuple[list[float] | None, list[float] | None]:
    """The ROC curve (TPR at :data:`CURVE_GRID` false-positive rates) and the precision-recall curve
    (the best precision at a recall of at least each :data:`CURVE_GRID` value); None without both
    poisoned and clean rows."""
    if not 0 < int(mask.sum()) < len(mask):
        return None, None
    from sklearn.metrics import precision_recall_curve, roc_curve

    fpr, tpr, _ = roc_curve(mask, scores)
    roc = np.interp(CURVE_GRID, fpr, tpr)
    precision, recall, _ = precision_recall_curve(mask, scores)
    pr = [float(np.max(precision[recall >= r])) for r in CURVE_GRID]
    return [round(float(v), 6) for v in roc], [round(v, 6) for v in pr]


def _defend(cell: dict[str, Any], train: Dataset, test: Dataset) -> dict[str, Any]:
    import importlib

    poisoned = build_attack(cell, train).apply(train)
    baseline = make_cell_model(cell["model"], cell["seed"]).fit(
        poisoned.dataset.X, poisoned.dataset.y, n_classes=train.n_classes)
    before = measure_trained(baseline, test, poisoned)
    name = cell["defense"]
    module = importlib.import_module(f"poisonlab.defend.{name}")
    defend = getattr(module, f"defend_{name}")
    options = dict(cell.get("defense_options") or {})
    if name in ("bagging", "partition") and cell["model"] in ("cnn", "torch-mlp"):
        options.setdefault("model_params", {"n_threads": 1})
    t = time.perf_counter()
    result = defend(poisoned.dataset, model=cell["model"], test=test, ground_truth=poisoned,
                    random_state=cell["seed"], **options)
    seconds = time.perf_counter() - t
    summary = result.summary.get("after", result.summary) if name == "sanitize" else result.summary
    after = measure_trained(result.model, test, poisoned) if "clean_accuracy" not in summary else summary
    removed = result.flags
    out: dict[str, Any] = {
        "n_poison": poisoned.n_poison,
        "clean_accuracy": _num(after.get("clean_accuracy")), "attack_success": _num(after.get("attack_success")),
        "trigger_flips": _num(after.get("trigger_flips")),
        "baseline_clean_accuracy": _num(before.get("clean_accuracy")),
        "baseline_attack_success": _num(before.get("attack_success")),
        "baseline_trigger_flips": _num(before.get("trigger_flips")),
        "n_attack_rows": before.get("n_attack_rows"), "defense_seconds": round(seconds, 4),
    }
    if removed is not None and len(removed) == len(poisoned.poison_mask):
        from poisonlab.measure.metrics import detection_metrics

        m = detection_metrics(poisoned.poison_mask, removed.astype(float), removed)
        out.update(n_flagged=int(m["n_flagged"]), precision=_num(m.get("precision")), recall=_num(m.get("recall")))
    return out


def _min_budget(cell: dict[str, Any], train: Dataset, test: Dataset) -> dict[str, Any]:
    from poisonlab.measure.budget import minimum_budget

    probe = build_attack(cell, train, {"n_poison": 0})
    target = getattr(probe, "target_label", None)
    if getattr(probe, "strategy", None) == "random" or (target is None and cell["attack"]["name"] == "label-flip"):
        raise ParameterError("min_budget needs an attack with a success rate: a backdoor or a targeted "
                             "label flip; a random label flip has none.")
    eligible = _eligible(probe, train)
    if cell["attack"]["name"] == "label-flip":
        eligible -= 1  # relabeling a whole class leaves one class to train on
    max_poison = min(cell["max_poison"] or eligible, eligible)
    if max_poison < 1:
        raise ParameterError(f"min_budget: no training row is eligible for {cell['attack_label']}.")

    def evaluate(n: int, seed: int) -> tuple[float, float]:
        scores = train_and_measure({**cell, "seed": seed}, train, test, {"n_poison": n})
        return float(scores.get("attack_success", math.nan)), float(scores["clean_accuracy"])

    result = minimum_budget(evaluate, max_poison=max_poison, target_asr=cell["target_asr"],
                            seeds=[cell["seed"]], start=min(cell["start"], max_poison))
    points = result.as_dict()["points"]
    found = result.n_poison
    return {"min_budget": found, "reached": result.reached, "max_poison": max_poison,
            "target_asr": cell["target_asr"], "n_evaluations": len(result.points),
            "budget_points": json.dumps(points, default=float),
            "attack_success": None if found is None else result.mean(found),
            "clean_accuracy": None if found is None else float(np.mean(result.accuracy[found]))}


def _eligible(attack: Attack, train: Dataset) -> int:
    """Rows the attack may poison: outside the target (or of the source class, or the target class
    for a clean-label backdoor)."""
    params = attack.get_params()
    if params.get("strategy") == "targeted" or params.get("source_label") is not None:
        return int(np.sum(train.y == train.label_index(params["source_label"])))
    target = train.label_index(params["target_label"])
    from poisonlab.attacks import CleanLabelBackdoorAttack

    if params.get("relabel") is False or isinstance(attack, CleanLabelBackdoorAttack):
        return int(np.sum(train.y == target))
    return int(np.sum(train.y != target))


def _summarize_warnings(caught: list[warnings.WarningMessage]) -> str | None:
    """``"12 x ConvergenceWarning: Stochastic Optimizer: ..."``, one line per distinct warning."""
    counts: dict[str, int] = {}
    for w in caught:
        text = f"{w.category.__name__}: {str(w.message).splitlines()[0] if str(w.message) else ''}"[:200]
        counts[text] = counts.get(text, 0) + 1
    return "; ".join(f"{n} x {t}" for t, n in counts.items()) or None


def _num(value: object) -> float | None:
    """A metric as a float, None for a missing or NaN one."""
    if value is None:
        return None
    f = float(value)  # type: ignore[arg-type]
    return None if math.isnan(f) else f
