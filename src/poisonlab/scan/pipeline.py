"""``scan_model``: one call from a loaded model and clean labelled data to a verdict.

Text models get the black-box trigger search (:mod:`poisonlab.scan.text`); PyTorch image models
get Neural Cleanse (:mod:`poisonlab.scan.images`) and the maximum-margin test of MM-BD
(:mod:`poisonlab.scan.margin`), either of which can call the model backdoored. The result is a
:class:`ScanReport`, which the command line writes as ``scan.json`` and renders as
``report.html``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from poisonlab.data import Dataset
from poisonlab.exceptions import DataError, ParameterError

TEXT_STATISTIC = ("anomaly index of flip rates: (best flip rate - median of ordinary words) / "
                  "max(1.4826 × MAD, binomial noise)")
ABSENCE_STATISTIC = ("absence: the chance that words pulling this hard towards a class are missing "
                     "from every clean row of it (Poisson, expected rows fitted to the class's "
                     "strongest words); called backdoored at or below alpha when the words also "
                     "flip at least min_flip_rate of clean rows")
IMAGE_STATISTIC = ("anomaly index of reverse-engineered mask sizes: (median - log L1) / "
                   "max(1.4826 × MAD of log L1, min_scale), Neural Cleanse")
MARGIN_STATISTIC = ("maximum margin: for each class, the widest logit margin any input in the clean "
                    "images' range reaches, and the chance of a margin that wide under a gamma "
                    "distribution fitted to the other classes' (order-statistic p-value, MM-BD); "
                    "called backdoored below alpha")


@dataclass
class ScanReport:
    """What a scan found. ``triggers`` are ranked, most suspicious first."""

    kind: str
    method: str
    verdict: str
    target_class: str | None
    triggers: list[dict[str, Any]]
    statistic_name: str
    per_class: dict[str, float]
    threshold: float
    n_rows: int
    seconds: float
    classes: tuple[str, ...]
    details: dict[str, Any] = field(default_factory=dict)
    images: dict[str, Any] = field(default_factory=dict)

    @property
    def statistic(self) -> float:
        """The largest per-class value: what the verdict compares with ``threshold``."""
        finite = [v for v in self.per_class.values() if np.isfinite(v)]
        if any(not np.isfinite(v) for v in self.per_class.values()):
            return float("inf")
        return float(max(finite)) if finite else 0.0

    def to_json(self) -> dict[str, Any]:
        """The ``scan.json`` document."""
        return {
            "verdict": self.verdict,
            "target_class": self.target_class,
            "triggers": self.triggers,
            "statistic": {
                "name": self.statistic_name,
                "value": _finite(self.statistic),
                "per_class": {k: _finite(v) for k, v in self.per_class.items()},
            },
            "threshold": self.threshold,
            "kind": self.kind,
            "method": self.method,
            "classes": list(self.classes),
            "n_rows": self.n_rows,
            "seconds": round(self.seconds, 2),
            **self.details,
        }


def _finite(v: float) -> float | str:
    return round(float(v), 3) if np.isfinite(v) else "inf"


def labels_in_model_space(data_classes: Sequence[str], model_classes: Sequence[str],
                          y: np.ndarray, where: str) -> np.ndarray:
    """Map labels from the data's class order to the model's, by class name."""
    model_classes = list(model_classes)
    missing = [c for c in data_classes if c not in model_classes]
    if missing:
        raise DataError(
            f"The data has labels {missing} that the model {where} does not know (it predicts "
            f"{model_classes})."
        )
    lookup = np.array([model_classes.index(c) for c in data_classes], dtype=np.int64)
    return lookup[np.asarray(y, dtype=np.int64)]


def scan_model(model: Any, classes: Sequence[str], data: Dataset, *, max_rows: int | None = None,
               random_state: int | None = 0, progress: Callable[[str], None] | None = None,
               text_options: dict[str, Any] | None = None,
               image_options: dict[str, Any] | None = None,
               margin_options: dict[str, Any] | None = None, where: str = "") -> ScanReport:
    """Scan ``model`` (predicting ``classes``) with the clean labelled rows of ``data``.

    ``max_rows`` caps the clean rows used (default 200 for text, 500 for images).
    ``text_options``, ``image_options`` and ``margin_options`` go to
    :class:`~poisonlab.scan.text.TextTriggerScanner`,
    :class:`~poisonlab.scan.images.NeuralCleanseScanner` and
    :class:`~poisonlab.scan.margin.MaxMarginScanner`.
    """
    started = time.perf_counter()
    classes = tuple(str(c) for c in classes) or tuple(data.classes)
    n_model = int(getattr(model, "n_classes_", len(classes)) or len(classes))
    if len(classes) != n_model:
        classes = tuple(str(k) for k in range(n_model))
    y = labels_in_model_space(data.classes, classes, data.y, where)
    rng = np.random.default_rng(random_state)
    if data.kind == "text":
        from poisonlab.scan.text import TextTriggerScanner, model_vocabulary

        cap = 200 if max_rows is None else max_rows
        options = {"max_rows": cap, **(text_options or {})}
        scanner = TextTriggerScanner(random_state=rng, **options)
        vocab = model_vocabulary(model)
        scanner.fit(model.predict_proba, data.X, y, vocabulary=vocab, progress=progress)
        triggers = [{**t.to_dict(classes), "target_class": classes[t.target_label]}
                    for t in scanner.triggers_]
        for t in triggers:
            t.pop("target_label", None)
        return ScanReport(
            kind="text", method="text trigger search", verdict=scanner.verdict_,
            target_class=None if scanner.target_label_ is None else classes[scanner.target_label_],
            triggers=triggers, statistic_name=TEXT_STATISTIC,
            per_class={c: float(v) for c, v in zip(classes, scanner.anomaly_index_, strict=True)},
            threshold=scanner.threshold_, n_rows=min(len(data), cap),
            seconds=time.perf_counter() - started, classes=classes,
            details={"n_candidates_screened": scanner.n_candidates_screened_,
                     "n_queries": scanner.n_queries_,
                     "candidates_from": "model vocabulary" if vocab else
                     "clean rows and two-letter tokens",
                     "min_flip_rate": scanner.min_flip_rate,
                     "absence": {"name": ABSENCE_STATISTIC, "alpha": scanner.absence_alpha,
                                 "per_class": {c: float(f"{v:.3g}") for c, v in
                                               zip(classes, scanner.absence_p_, strict=True)}}},
        )
    if data.kind == "image":
        from poisonlab.scan.images import NeuralCleanseScanner
        from poisonlab.scan.margin import MaxMarginScanner

        cap = 500 if max_rows is None else max_rows
        idx = np.arange(len(data))
        if len(idx) > cap:
            idx = np.sort(rng.choice(len(idx), cap, replace=False))
        nc = NeuralCleanseScanner(random_state=rng, **(image_options or {}))
        nc.fit(model, data.X[idx], y[idx], progress=progress)
        mm = MaxMarginScanner(random_state=rng, **(margin_options or {}))
        mm.fit(model, data.X[idx], progress=progress)
        # Either test can call the model backdoored; Neural Cleanse names the class when both do.
        if nc.verdict_ == "backdoor":
            verdict, target = "backdoor", nc.target_label_
        elif mm.verdict_ == "backdoor":
            verdict, target = "backdoor", mm.target_label_
        else:
            verdict, target = "clean", None
        ranked = sorted(nc.triggers_, key=lambda t: t.target_label != target)  # stable: by size
        triggers = [{"trigger": t.describe(), "flip_rate": round(t.success_rate, 4),
                     "target_class": classes[t.target_label], "mask_l1": round(t.l1, 2),
                     "anomaly_index": _finite(t.anomaly_index),
                     "max_margin": round(float(mm.margins_[t.target_label]), 3),
                     "max_margin_p": float(f"{mm.p_values_[t.target_label]:.3g}"),
                     "bounding_box": list(t.bounding_box()), "found": t.found}
                    for t in ranked]
        return ScanReport(
            kind="image", method="Neural Cleanse and maximum margin (MM-BD)", verdict=verdict,
            target_class=None if target is None else classes[target],
            triggers=triggers, statistic_name=IMAGE_STATISTIC,
            per_class={c: float(v) for c, v in zip(classes, nc.anomaly_index_, strict=True)},
            threshold=nc.threshold_, n_rows=len(idx), seconds=time.perf_counter() - started,
            classes=classes,
            details={"mask_l1": {c: round(float(v), 2) for c, v in zip(classes, nc.l1_, strict=True)},
                     "success_rate": nc.success_rate, "min_scale": nc.min_scale,
                     "max_margin": {
                         "name": MARGIN_STATISTIC, "alpha": mm.alpha_,
                         "per_class": {c: float(f"{v:.3g}") for c, v in
                                       zip(classes, mm.p_values_, strict=True)},
                         "margins": {c: round(float(v), 3) for c, v in
                                     zip(classes, mm.margins_, strict=True)}}},
            images={"triggers": nc.triggers_, "margin_inputs": mm.inputs_},
        )
    raise ParameterError(
        f"scan covers text models (trigger search) and PyTorch image models (Neural Cleanse); "
        f"{data.name} is {data.kind} data. Check live tabular inputs with `poisonlab check`."
    )
