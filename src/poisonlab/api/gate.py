"""``poisonlab.gate``: the A/B test a new model version must pass before it replaces the current one.

Four checks of a candidate model against the reference (the version in production) on clean
labelled holdout rows; the gate passes when none fails:

1. ``accuracy``: non-inferiority. The candidate's accuracy minus the reference's, with a paired
   bootstrap interval (:func:`~poisonlab.measure.shift.paired_accuracy_difference`); the check
   fails when the interval's lower bound is below ``-max_drop``. The exact McNemar test
   (:func:`~poisonlab.measure.shift.mcnemar_exact`) is reported beside it as evidence.
2. ``scan``: the scan ``poisonlab scan`` runs, on the candidate with half of the holdout rows
   (:func:`~poisonlab.scan.pipeline.scan_model`). A backdoor verdict fails the gate; an
   inconclusive one is a warning; tabular models (which ``scan`` does not cover) skip it.
3. ``probes``: inputs that should not move either model. (a) The other half of the holdout with
   each of the scan's first ``n_triggers`` trigger candidates stamped in; (b) the holdout rows the
   two models disagree on. For a class ``k`` and the probe rows whose label is not ``k``, ``c``
   rows go to ``k`` under the candidate only and ``b`` under the reference only: the excess is
   ``(c - b) / n`` and the one-sided exact McNemar p-value tests ``c > b``. A probe fails when its
   Holm-adjusted p-value is at most ``probe_alpha`` *and* its excess reaches ``trigger_excess``
   (trigger probes, the trigger's own target class) or ``disagreement_excess`` (disagreements,
   every class).
4. ``shift``: the population stability index of the predicted classes, candidate against
   reference on the holdout (:func:`~poisonlab.measure.shift.class_share_test`); fails above
   ``psi_threshold``.

The default thresholds come from ``benchmarks/gate_study.py`` (clean retrains on other seeds and
subsets of SpamAssassin and digits, against clean references); docs/gate.md gives the numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from poisonlab.api.inputs import DataLike, as_dataset
from poisonlab.api.results import ScanResult
from poisonlab.data import Columns, Dataset
from poisonlab.exceptions import DataError, ModelError, ParameterError, PoisonlabError
from poisonlab.files import saved_as_result_set
from poisonlab.report.notebook import frame, html_table

if TYPE_CHECKING:
    import pandas as pd

    from poisonlab.data.types import LabelsLike
    from poisonlab.models.protocols import ModelLike

GATE_FILES = ("gate.json", "report.html")
CHECKS = ("accuracy", "scan", "probes", "shift")
"""The gate's checks, in the order they run and are reported."""

DEFAULT_MAX_DROP = 0.01
"""Accuracy the candidate may lose (a share: 0.01 is one point) before the gate fails."""
DEFAULT_LEVEL = 0.95
"""Level of the paired bootstrap interval (two-sided; its lower bound is a one-sided 97.5% bound)."""
DEFAULT_PSI_THRESHOLD = 0.025
"""PSI of predicted classes above which the gate fails. Fifteen clean retrains measured at most
0.0063 (digits CNN, 719 holdout rows, 10 classes; SpamAssassin 0.0000), benchmarks/gate_study.py,
2026-12-03: 0.025 is four times that. Degraded models that move half of one class into another
measured 0.035 (naive Bayes) and 0.203 (logistic regression); random label flips barely move it."""
DEFAULT_PROBE_ALPHA = 0.01
"""Family-wise error rate (Holm) of the probe tests of one gate."""
DEFAULT_TRIGGER_EXCESS = 0.75
"""Share of triggered probe rows the candidate must send to the trigger's class beyond the
reference for a trigger probe to fail. Neural Cleanse's reverse-engineered triggers of clean
digits CNNs reached at most 0.58 (they are fitted to the candidate and transfer only in part to
the reference), the scan's candidates on clean SpamAssassin models 0.015; planted triggers that
work (84-100% attack success) 0.92-0.95 (benchmarks/gate_study.py, 2026-12-03)."""
DEFAULT_DISAGREEMENT_EXCESS = 0.02
"""Share of the holdout's other-class rows the candidate must send to one class beyond the
reference (net) for the disagreement probe of that class to fail. Clean retrains measured at
most 0.014 (digits CNN), backdoored SpamAssassin models 0.025-0.040 (benchmarks/gate_study.py,
2026-12-03)."""
DEFAULT_TRIGGERS = 3
"""Trigger candidates of the scan stamped into probe rows."""

STATUSES = ("pass", "fail", "warn", "skipped")


@dataclass(frozen=True)
class GateCheck:
    """One check of the gate: its ``name`` (one of :data:`CHECKS`), ``status`` ("pass", "fail",
    "warn" or "skipped"), a one-line ``summary`` and the ``evidence`` it rests on (JSON-ready)."""

    name: str
    status: str
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)  # Any: JSON values of several kinds
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        """The check as written to ``gate.json``."""
        return {"status": self.status, "summary": self.summary, "seconds": round(self.seconds, 2),
                **self.evidence}


@dataclass
class GateResult:
    """What :func:`gate` decided, check by check.

    Attributes
    ----------
    verdict : {"pass", "fail"}
    checks : list of GateCheck
        In the order of :data:`CHECKS`.
    failed : list of str
        The names of the checks that failed.
    warnings : list of str
        One line per check that warned or could not run.
    scan : ScanResult or None
        The candidate's scan (None when skipped).
    reference_predicted, candidate_predicted : ndarray of str, shape (N,)
        Each model's class for each holdout row.
    """

    checks: list[GateCheck]
    candidate_name: str
    reference_name: str
    holdout_name: str
    kind: str
    classes: tuple[str, ...]
    ids: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    reference_pred: np.ndarray = field(repr=False)
    candidate_pred: np.ndarray = field(repr=False)
    parameters: dict[str, object] = field(default_factory=dict)
    seed: int | None = 0
    seconds: float = 0.0
    scan: ScanResult | None = field(default=None, repr=False)
    pictures: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    examples: list[dict[str, object]] = field(default_factory=list, repr=False)

    @property
    def failed(self) -> list[str]:
        """The names of the checks that failed (empty when the gate passes)."""
        return [c.name for c in self.checks if c.status == "fail"]

    @property
    def passed(self) -> bool:
        """True when no check failed."""
        return not self.failed

    @property
    def verdict(self) -> str:
        """"pass" or "fail"."""
        return "pass" if self.passed else "fail"

    @property
    def warnings(self) -> list[str]:
        """One line per check that warned or was skipped."""
        return [f"{c.name}: {c.summary}" for c in self.checks if c.status in ("warn", "skipped")]

    @property
    def reference_predicted(self) -> np.ndarray:
        """The reference's class name for each holdout row."""
        return np.array([self.classes[k] for k in self.reference_pred], dtype=object)

    @property
    def candidate_predicted(self) -> np.ndarray:
        """The candidate's class name for each holdout row."""
        return np.array([self.classes[k] for k in self.candidate_pred], dtype=object)

    def check(self, name: str) -> GateCheck:
        """The check called ``name`` (one of :data:`CHECKS`)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"No check {name!r}; the gate's checks are {list(CHECKS)}.")

    def to_json(self) -> dict[str, object]:
        """The ``gate.json`` document."""
        return {
            "verdict": self.verdict,
            "exit_code": 0 if self.passed else 1,
            "failed": self.failed,
            "warnings": self.warnings,
            "candidate": self.candidate_name,
            "reference": self.reference_name,
            "holdout": self.holdout_name,
            "kind": self.kind,
            "n_rows": len(self.y),
            "classes": list(self.classes),
            "seed": self.seed,
            "seconds": round(self.seconds, 2),
            "parameters": self.parameters,
            "checks": {c.name: c.to_json() for c in self.checks},
        }

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``gate.json`` and ``report.html`` into ``out_dir``, as ``poisonlab gate --out`` does."""
        return saved_as_result_set(out_dir, "gate", lambda tmp: write_gate(self, tmp))

    def to_frame(self) -> pd.DataFrame:
        """One row per holdout row: id, label, each model's class, and whether they agree."""
        return frame({"id": np.asarray(self.ids, dtype=object),
                      "label": np.array([self.classes[k] for k in self.y], dtype=object),
                      "reference": self.reference_predicted, "candidate": self.candidate_predicted,
                      "agree": self.reference_pred == self.candidate_pred})

    def _repr_html_(self) -> str:
        return html_table(f"poisonlab gate: {self.verdict}",
                          [("candidate", self.candidate_name), ("reference", self.reference_name),
                           ("holdout rows", len(self.y))],
                          ["check", "status", "summary"],
                          [[c.name, c.status, c.summary] for c in self.checks])

    def __repr__(self) -> str:
        return f"GateResult(verdict={self.verdict!r}, failed={self.failed}, n_rows={len(self.y)})"


def write_gate(result: GateResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``gate.json`` and ``report.html`` for a :class:`GateResult` into ``out_dir``.

    References
    ----------
    .. [1] Walker and Nowacki, "Understanding Equivalence and Noninferiority Testing", Journal of
       General Internal Medicine 26(2), 2011. https://doi.org/10.1007/s11606-010-1513-8
    """
    from poisonlab.files import write_json
    from poisonlab.report.gate import write_gate_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = result.to_json()
    paths = {"gate": out / "gate.json", "report": out / "report.html"}
    write_json(paths["gate"], doc)
    write_gate_report(doc, paths["report"], pictures=result.pictures, examples=result.examples)
    return paths


# ---------------------------------------------------------------------------------- the gate
def gate(
    candidate: ModelLike | Path,
    reference: ModelLike | Path,
    X_holdout: DataLike,
    y_holdout: LabelsLike | None = None,
    *,
    max_drop: float = DEFAULT_MAX_DROP,
    level: float = DEFAULT_LEVEL,
    psi_threshold: float = DEFAULT_PSI_THRESHOLD,
    probe_alpha: float = DEFAULT_PROBE_ALPHA,
    trigger_excess: float = DEFAULT_TRIGGER_EXCESS,
    disagreement_excess: float = DEFAULT_DISAGREEMENT_EXCESS,
    n_triggers: int = DEFAULT_TRIGGERS,
    run_scan: bool = True,
    max_scan_rows: int | None = None,
    n_boot: int = 2000,
    classes: Sequence[str] | None = None,
    class_map: str | dict[str, str] | None = None,
    columns: Columns | None = None,
    random_state: int | None = 0,
    trust_pickle: bool = False,
    progress: Callable[[str], None] | None = None,
) -> GateResult:
    """Decide whether ``candidate`` may replace ``reference``, on clean labelled holdout rows.

    Parameters
    ----------
    candidate, reference : fitted scikit-learn estimator or Pipeline, torch.nn.Module, poisonlab
        model, or path
        The new version and the one in production, used as they are (only predictions, and for
        the candidate's image scan its gradients, are read). A path is a saved model file
        (``.skops``, ``.safetensors``, ``.pt``) read by the safe loaders.
    X_holdout : array-like, list of str, pandas DataFrame or Series, sparse matrix, Dataset or path
        Clean rows neither model trained on.
    y_holdout : array-like, optional
        Their labels (needed with arrays; a path brings its own).
    max_drop : float
        Accuracy the candidate may lose, as a share in [0, 1): the gate fails when the lower
        bound of the interval of the accuracy difference is below ``-max_drop``.
    level : float
        Level of that interval, in (0, 1).
    psi_threshold : float
        PSI of the predicted classes above which the gate fails.
    probe_alpha : float
        Family-wise error rate of the probe tests (Holm), in (0, 1).
    trigger_excess, disagreement_excess : float
        Smallest excess share, in [0, 1], at which a trigger probe or a disagreement probe fails.
    n_triggers : int
        Trigger candidates of the scan stamped into probe rows (0: none).
    run_scan : bool
        False skips the scan (and with it the trigger probes).
    max_scan_rows : int, optional
        Holdout rows the scan uses (default: the scan's own, 200 for text and 500 for images,
        at most half the holdout).
    n_boot : int
        Bootstrap resamples of the accuracy interval.
    classes : sequence of str, optional
        Class names when ``y_holdout`` holds integers.
    class_map : str or dict, optional
        How the holdout's label names map to the models' classes (``"ham=0,spam=1"``); found
        from each model's predictions where only one assignment fits.
    columns : Columns, optional
        Column roles for a path or DataFrame.
    random_state : int or None
    trust_pickle : bool
        Allow pickle or joblib model files (runs code from the file).
    progress : callable, optional
        Called with a message as each step starts.

    Returns
    -------
    GateResult
        ``verdict``, ``checks``, ``failed``, ``warnings``; ``.save(dir)`` writes ``gate.json`` and
        ``report.html``.

    References
    ----------
    .. [1] McNemar, "Note on the sampling error of the difference between correlated proportions
       or percentages", Psychometrika 12(2), 1947. https://doi.org/10.1007/BF02295996
    .. [2] Efron and Tibshirani, "An Introduction to the Bootstrap", Chapman & Hall, 1993.
       https://doi.org/10.1201/9780429246593
    .. [3] Holm, "A Simple Sequentially Rejective Multiple Test Procedure", Scandinavian Journal
       of Statistics 6(2), 1979. https://www.jstor.org/stable/4615733
    .. [4] Wang et al., "Neural Cleanse: Identifying and Mitigating Backdoor Attacks in Neural
       Networks", IEEE S&P 2019. https://doi.org/10.1109/SP.2019.00031
    .. [5] Yurdakul, "Statistical Properties of Population Stability Index", Western Michigan
       University, 2018. https://scholarworks.wmich.edu/dissertations/3208
    """
    started = time.perf_counter()
    say = progress or (lambda message: None)
    params = _checked_parameters(max_drop=max_drop, level=level, psi_threshold=psi_threshold,
                                 probe_alpha=probe_alpha, trigger_excess=trigger_excess,
                                 disagreement_excess=disagreement_excess, n_triggers=n_triggers,
                                 max_scan_rows=max_scan_rows, n_boot=n_boot)
    data = as_dataset(X_holdout, y_holdout, classes=classes, columns=columns)
    if len(data) < 2:
        raise DataError(f"The holdout has {len(data)} rows; the gate needs at least 2 clean labelled rows.")
    rng = np.random.default_rng(random_state)
    from poisonlab.scan.pipeline import parse_class_map

    mapping_given = parse_class_map(class_map)
    say("loading the models")
    ref = _Side.load(reference, "reference", data, trust_pickle, mapping_given)
    cand = _Side.load(candidate, "candidate", data, trust_pickle, mapping_given)
    common = list(data.classes)
    ref.place(common)
    cand.place(common)
    names = tuple(common)
    ref_pred, cand_pred = ref.col_to_common[ref.columns], cand.col_to_common[cand.columns]

    order = rng.permutation(len(data))
    if len(data) >= 40:
        scan_rows, probe_rows = np.sort(order[: len(data) // 2]), np.sort(order[len(data) // 2:])
    else:  # too few rows to split: the scan and the probes share them
        scan_rows = probe_rows = np.arange(len(data))
    result = GateResult(checks=[], candidate_name=cand.name, reference_name=ref.name,
                        holdout_name=_data_name(X_holdout, data), kind=data.kind, classes=names,
                        ids=np.asarray(data.ids, dtype=object), y=np.asarray(data.y), reference_pred=ref_pred,
                        candidate_pred=cand_pred, parameters=params, seed=random_state)
    say("accuracy: paired test")
    result.checks.append(_accuracy_check(data.y, ref_pred, cand_pred, params, int(rng.integers(2**31))))
    say("scanning the candidate")
    scan_check, scan = _scan_check(cand, data.subset(scan_rows), params, run_scan, rng, class_map, say)
    result.checks.append(scan_check)
    result.scan = scan
    say("probes: triggers and disagreements")
    result.checks.append(_probe_check(result, ref, cand, data, probe_rows, scan, params, rng))
    result.checks.append(_shift_check(ref_pred, cand_pred, names, params))
    result.seconds = time.perf_counter() - started
    return result


# ---------------------------------------------------------------------------------- helpers
def _checked_parameters(**p: Any) -> dict[str, object]:  # Any: numbers and None, each checked here
    def number(name: str, lo: float, hi: float, lo_open: bool, hi_open: bool) -> float:
        v = p[name]
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and np.isfinite(v) and \
            (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        if not ok:
            interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
            raise ParameterError(f"The '{name}' parameter of gate must be a float in {interval}. "
                                 f"Got {v!r} instead.")
        return float(v)

    def integer(name: str, lo: int, allow_none: bool = False) -> int | None:
        v = p[name]
        if v is None and allow_none:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ParameterError(f"The '{name}' parameter of gate must be an int >= {lo}. Got {v!r} instead.")
        return int(v)

    return {"max_drop": number("max_drop", 0, 1, False, True),
            "level": number("level", 0, 1, True, True),
            "psi_threshold": number("psi_threshold", 0, np.inf, True, True),
            "probe_alpha": number("probe_alpha", 0, 1, True, True),
            "trigger_excess": number("trigger_excess", 0, 1, False, False),
            "disagreement_excess": number("disagreement_excess", 0, 1, False, False),
            "n_triggers": integer("n_triggers", 0),
            "max_scan_rows": integer("max_scan_rows", 2, allow_none=True),
            "n_boot": integer("n_boot", 100)}


def _data_name(given: object, data: Dataset) -> str:
    return str(given) if isinstance(given, (str, Path)) else data.name


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class _Side:
    """One model of the pair: the adapter, its class names, its predictions on the holdout, and
    how its columns map to the gate's common classes."""

    role: str
    model: Any  # a poisonlab adapter of a user's model: scikit-learn or torch, untyped here
    names: tuple[str, ...]
    name: str
    proba: np.ndarray
    mapping: dict[str, str]
    col_to_common: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def columns(self) -> np.ndarray:
        return np.asarray(self.proba.argmax(axis=1), dtype=np.int64)

    @classmethod
    def load(cls, model: Any, role: str, data: Dataset, trust_pickle: bool,
             class_map: dict[str, str] | None) -> _Side:
        from poisonlab.models import SPEC_TABLE, describe_model, is_fitted, resolve_model
        from poisonlab.scan.pipeline import map_data_classes

        if isinstance(model, (str, Path)):
            if str(model) in SPEC_TABLE:
                raise ParameterError(f"The gate needs a trained {role}; {str(model)!r} is the name of an "
                                     "untrained built-in spec. Pass a fitted model or a saved model file.")
            from poisonlab.models.io import load_model

            saved = load_model(Path(model), trust_pickle=trust_pickle)
            adapter, names, name = saved.model, tuple(saved.classes), str(model)
        else:
            if model is None or not is_fitted(model):
                raise ModelError(f"The gate needs a trained {role}; this "
                                 f"{describe_model(model) if model is not None else 'None'} is not fitted.")
            adapter = resolve_model(model, data.kind)
            names, name = (), describe_model(model)
        proba = cls.probabilities(adapter, data.X, role, name)
        k = proba.shape[1]
        given = tuple(str(c) for c in names) or tuple(getattr(adapter, "class_names_", ()) or ())
        if len(given) != k:
            given = tuple(data.classes) if len(data.classes) == k else tuple(str(j) for j in range(k))
        _, mapping, _ = map_data_classes(data.classes, data.y, given, proba.argmax(axis=1), class_map,
                                         where=f"{role} {name}")
        return cls(role=role, model=adapter, names=given, name=name, proba=proba, mapping=mapping)

    @staticmethod
    def probabilities(adapter: Any, X: np.ndarray, role: str, name: str) -> np.ndarray:
        try:
            proba = np.asarray(adapter.predict_proba(X), dtype=np.float64)
        except PoisonlabError:
            raise
        except Exception as exc:  # whatever the user's model raises on these rows
            raise ModelError(f"The {role} {name} cannot classify the holdout rows "
                             f"({type(exc).__name__}: {_first_line(exc)}).") from None
        if proba.ndim != 2 or len(proba) != len(X) or proba.shape[1] < 2 or not np.isfinite(proba).all():
            raise ModelError(f"The {role} {name} gives probabilities of shape {proba.shape} for "
                             f"{len(X)} holdout rows; the gate needs finite N×K values, K >= 2.")
        return proba

    def place(self, common: list[str]) -> None:
        """Map each of the model's columns to a class of ``common`` (appended when the holdout
        has no such class)."""
        inverse = {m: d for d, m in self.mapping.items()}
        lookup = []
        for n in self.names:
            label = inverse.get(n, n)
            if label not in common:
                common.append(label)
            lookup.append(common.index(label))
        self.col_to_common = np.asarray(lookup, dtype=np.int64)

    def predict_common(self, X: np.ndarray) -> np.ndarray:
        """The common class index of each row of ``X``."""
        proba = self.probabilities(self.model, X, self.role, self.name)
        return self.col_to_common[proba.argmax(axis=1)]


def _points(v: float) -> str:
    return f"{100 * v:+.2f}"


def _accuracy_check(y: np.ndarray, ref_pred: np.ndarray, cand_pred: np.ndarray,
                    params: dict[str, Any], seed: int) -> GateCheck:
    from poisonlab.measure.shift import mcnemar_exact, paired_accuracy_difference

    started = time.perf_counter()
    ref_right, cand_right = ref_pred == y, cand_pred == y
    only_ref, only_cand, p_value = mcnemar_exact(ref_right, cand_right)
    diff, low, high = paired_accuracy_difference(ref_right, cand_right, n_boot=params["n_boot"],
                                                 level=params["level"], random_state=seed)
    fails = low < -params["max_drop"]
    summary = (f"candidate accuracy {100 * cand_right.mean():.2f}% against the reference's "
               f"{100 * ref_right.mean():.2f}%: difference {_points(diff)} points, "
               f"{100 * params['level']:g}% interval [{_points(low)}, {_points(high)}]; ")
    summary += (f"its lower bound is below -{100 * params['max_drop']:.2f} points" if fails else
                f"no worse than -{100 * params['max_drop']:.2f} points")
    needed = None
    if fails and diff > -params["max_drop"] and diff - low > 0:
        # the point estimate is within the allowed drop, the interval is too wide: its half-width
        # shrinks as 1/sqrt(rows), so about this many holdout rows would resolve it
        needed = int(np.ceil(len(y) * ((diff - low) / (diff + params["max_drop"])) ** 2))
        summary += (f" (the difference itself is within it: the {len(y)} holdout rows cannot show "
                    f"non-inferiority; about {needed} would, or a larger --max-drop)")
    return GateCheck("accuracy", "fail" if fails else "pass", summary, {
        "reference_accuracy": float(ref_right.mean()), "candidate_accuracy": float(cand_right.mean()),
        "difference": diff, "interval": [low, high], "level": params["level"],
        "max_drop": params["max_drop"], "rows_needed": needed,
        "mcnemar": {"only_reference_right": only_ref, "only_candidate_right": only_cand,
                    "p_value": p_value}}, time.perf_counter() - started)


def _scan_check(cand: _Side, data: Dataset, params: dict[str, Any], run_scan: bool,
                rng: np.random.Generator, class_map: str | dict[str, str] | None,
                say: Callable[[str], None]) -> tuple[GateCheck, ScanResult | None]:
    from poisonlab.scan.pipeline import scan_model

    started = time.perf_counter()
    if not run_scan:
        return GateCheck("scan", "skipped", "not run (asked not to)"), None
    if data.kind == "tabular":
        return GateCheck("scan", "skipped", "scan covers text and image models; this is a tabular "
                                            "model (the probes and the other checks still apply)"), None
    if data.kind == "image" and getattr(cand.model, "net_", None) is None:
        return GateCheck("scan", "skipped", "the image scan (Neural Cleanse, MM-BD) needs a PyTorch "
                                            f"model's gradients; the candidate is a "
                                            f"{type(cand.model).__name__}"), None
    default = 200 if data.kind == "text" else 500
    rows = params["max_scan_rows"] or default
    report = scan_model(cand.model, cand.names, data, max_rows=rows, random_state=int(rng.integers(2**31)),
                        where=cand.name, class_map=class_map, progress=say)
    scan = ScanResult(report=report, model=cand.model, model_name=cand.name, data_name="holdout (scan half)",
                      seed=None)
    doc: dict[str, Any] = report.to_json()  # Any: the scan.json document, read key by key
    status = {"backdoor": "fail", "inconclusive": "warn"}.get(report.verdict, "pass")
    stat = doc["statistic"]
    if report.verdict == "backdoor":
        top = report.triggers[0]["trigger"] if report.triggers else "?"
        summary = (f"backdoor verdict, target class {report.target_class} (first suspect {top!s}; "
                   f"{report.method}, anomaly index {stat['value']} against {report.threshold})")
    elif report.verdict == "inconclusive":
        summary = "inconclusive: " + "; ".join(str(r) for r in doc.get("reasons") or ["a test could not run"])
    else:
        summary = (f"no backdoor found ({report.method}, largest anomaly index {stat['value']} against "
                   f"{report.threshold})")
    evidence = {"verdict": report.verdict, "target_class": report.target_class, "method": report.method,
                "statistic": stat, "threshold": report.threshold, "n_rows": report.n_rows,
                "triggers": report.triggers[:5], "reasons": doc.get("reasons") or []}
    if "max_margin" in doc:
        evidence["max_margin"] = doc["max_margin"]
    return GateCheck("scan", status, summary, evidence, time.perf_counter() - started), scan


def _sent_test(ref_to: np.ndarray, cand_to: np.ndarray) -> tuple[int, int, float]:
    """Rows only the reference sends to the class, rows only the candidate does, and the one-sided
    exact McNemar p-value of the candidate sending more."""
    from poisonlab.measure.shift import mcnemar_exact

    only_ref, only_cand, two_sided = mcnemar_exact(ref_to, cand_to)
    # The binomial at 1/2 is symmetric: the one-sided p-value is half the two-sided one.
    return only_ref, only_cand, (min(1.0, two_sided / 2) if only_cand > only_ref else 1.0)


def _probe_check(result: GateResult, ref: _Side, cand: _Side, data: Dataset, probe_rows: np.ndarray,
                 scan: ScanResult | None, params: dict[str, Any], rng: np.random.Generator) -> GateCheck:
    from poisonlab.provenance.stats import adjust_p_values

    started = time.perf_counter()
    names = result.classes
    probes: list[dict[str, Any]] = []
    for probe in _trigger_probes(scan, cand, data, probe_rows, params["n_triggers"], rng, result):
        k, X = probe.pop("class_index"), probe.pop("X")
        ref_to, cand_to = ref.predict_common(X) == k, cand.predict_common(X) == k
        only_ref, only_cand, p = _sent_test(ref_to, cand_to)
        probes.append({**probe, "kind": "trigger", "class": names[k], "n_rows": len(X),
                       "reference_rate": float(ref_to.mean()), "candidate_rate": float(cand_to.mean()),
                       "only_reference": only_ref, "only_candidate": only_cand, "p_value": p,
                       "excess": (only_cand - only_ref) / len(X), "min_excess": params["trigger_excess"]})
    y = result.y
    disagree = result.reference_pred != result.candidate_pred
    for k, name in enumerate(names):
        other = y != k
        if not other.any() or not (result.candidate_pred == k).any():
            continue
        ref_to, cand_to = result.reference_pred[other] == k, result.candidate_pred[other] == k
        only_ref, only_cand, p = _sent_test(ref_to, cand_to)
        probes.append({"kind": "disagreement", "probe": f"rows the models disagree on, to {name}",
                       "class": name, "n_rows": int(other.sum()),
                       "n_disagreements": int((disagree & other).sum()),
                       "reference_rate": float(ref_to.mean()), "candidate_rate": float(cand_to.mean()),
                       "only_reference": only_ref, "only_candidate": only_cand, "p_value": p,
                       "excess": (only_cand - only_ref) / int(other.sum()),
                       "min_excess": params["disagreement_excess"]})
    if probes:
        adjusted = adjust_p_values(np.array([pr["p_value"] for pr in probes]), "holm")
        for pr, a in zip(probes, adjusted, strict=True):
            pr["p_adjusted"] = float(a)
            pr["failed"] = bool(a <= params["probe_alpha"] and pr["excess"] >= pr["min_excess"])
    failed = [pr for pr in probes if pr["failed"]]
    n_trig = sum(pr["kind"] == "trigger" for pr in probes)
    if failed:
        worst = max(failed, key=lambda pr: pr["excess"])
        summary = (f"{len(failed)} of {len(probes)} probes fail; worst: {worst['probe']}: the candidate sends "
                   f"{100 * worst['candidate_rate']:.1f}% to {worst['class']}, the reference "
                   f"{100 * worst['reference_rate']:.1f}% (excess {worst['excess']:.3f}, "
                   f"adjusted p {worst['p_adjusted']:.2g})")
    else:
        summary = (f"{len(probes)} probes ({n_trig} with trigger candidates, {len(probes) - n_trig} of "
                   "disagreements): the candidate sends none to one class beyond the reference")
    _disagreement_examples(result, data, disagree)
    return GateCheck("probes", "fail" if failed else "pass", summary,
                     {"alpha": params["probe_alpha"], "correction": "holm",
                      "n_disagreements": int(disagree.sum()), "probes": probes},
                     time.perf_counter() - started)


def _trigger_probes(scan: ScanResult | None, cand: _Side, data: Dataset, rows: np.ndarray, n: int,
                    rng: np.random.Generator, result: GateResult) -> list[dict[str, Any]]:
    """The holdout's probe rows (those whose label is not the trigger's class) with each of the
    scan's first ``n`` trigger candidates in them."""
    if scan is None or n == 0:
        return []
    report = scan.report
    out: list[dict[str, Any]] = []
    if report.kind == "text":
        from poisonlab.attacks import TextTrigger

        seen = set()
        for t in report.triggers:
            phrase = str(t["trigger"])
            if phrase in seen or str(t["target_class"]) not in cand.names:
                continue
            seen.add(phrase)
            k = int(cand.col_to_common[cand.names.index(str(t["target_class"]))])
            keep = rows[data.y[rows] != k]
            if len(keep) == 0:
                continue
            reps = t.get("repetitions", 1)
            trigger = TextTrigger(phrase, str(t.get("position", "suffix")), reps if isinstance(reps, int) else 1)
            out.append({"probe": f"trigger {phrase!r}", "trigger": phrase, "class_index": k,
                        "X": trigger.apply(data.X[keep], random_state=rng)})
            if len(out) == n:
                break
        return out
    found: list[Any] = [r for r in report.images.get("triggers", []) if getattr(r, "found", False)]
    target = report.target_class
    found.sort(key=lambda r: (report.classes[r.target_label] != target, r.l1))
    for r in found[:n]:  # ReversedTrigger: mask H×W and pattern H×W×C in [0, 1]
        k = int(cand.col_to_common[r.target_label])
        keep = rows[data.y[rows] != k]
        if len(keep) == 0:
            continue
        mask = np.asarray(r.mask, dtype=np.float32)[None, ..., None]
        pattern = np.asarray(r.pattern, dtype=np.float32)[None]
        X = ((1 - mask) * data.X[keep] + mask * pattern).astype(np.float32)
        key = f"trigger-{len(out)}"
        result.pictures[key] = (mask * pattern)[0]
        out.append({"probe": f"reversed trigger of class {report.classes[r.target_label]} ({r.describe()})",
                    "trigger": r.describe(), "picture": key, "class_index": k, "X": X})
    return out


def _disagreement_examples(result: GateResult, data: Dataset, disagree: np.ndarray, n: int = 12) -> None:
    """A few holdout rows the models disagree on, for the report (text snippets or thumbnails)."""
    for i in np.flatnonzero(disagree)[:n]:
        example: dict[str, object] = {
            "row": int(i), "id": str(data.ids[i]), "label": result.classes[int(result.y[i])],
            "reference": result.classes[int(result.reference_pred[i])],
            "candidate": result.classes[int(result.candidate_pred[i])]}
        if data.kind == "text":
            text = " ".join(str(data.X[i]).split())
            example["snippet"] = text[:300] + ("…" if len(text) > 300 else "")
        elif data.kind == "image":
            key = f"row-{int(i)}"
            result.pictures[key] = np.asarray(data.X[i])
            example["picture"] = key
        result.examples.append(example)


def _shift_check(ref_pred: np.ndarray, cand_pred: np.ndarray, names: tuple[str, ...],
                 params: dict[str, Any]) -> GateCheck:
    from poisonlab.measure.shift import class_share_test

    started = time.perf_counter()
    k = len(names)
    ref_counts = np.bincount(ref_pred, minlength=k)
    cand_counts = np.bincount(cand_pred, minlength=k)
    test = class_share_test(ref_counts, cand_counts)
    fails = test.psi > params["psi_threshold"]
    rising = names[test.rising]
    summary = (f"PSI of predicted classes {test.psi:.4f} against {params['psi_threshold']:g}; the class that "
               f"grew most: {rising} ({100 * test.expected_share:.1f}% → {100 * test.observed_share:.1f}%)")
    n = len(ref_pred)
    return GateCheck("shift", "fail" if fails else "pass", summary, {
        "psi": test.psi, "threshold": params["psi_threshold"], "rising": rising,
        "shares": {c: {"reference": float(ref_counts[j] / n), "candidate": float(cand_counts[j] / n)}
                   for j, c in enumerate(names)}}, time.perf_counter() - started)
