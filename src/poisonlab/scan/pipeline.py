"""``scan_model``: one call from a loaded model and clean labelled data to a verdict.

Text models get the black-box trigger search (:mod:`poisonlab.scan.text`); PyTorch image models
get Neural Cleanse (:mod:`poisonlab.scan.images`) and the maximum-margin test of MM-BD
(:mod:`poisonlab.scan.margin`), either of which can call the model backdoored. The result is a
:class:`ScanReport`, which the command line writes as ``scan.json`` and renders as
``report.html``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from poisonlab.data import Dataset
from poisonlab.exceptions import DataError, ParameterError
from poisonlab.scan.text import text_scorer

if TYPE_CHECKING:
    from poisonlab.models.protocols import MarginClassifier, ProbabilisticClassifier
    from poisonlab.scan.images import ReversedTrigger

TEXT_STATISTIC = ("anomaly index of flip rates: (best flip rate - median of ordinary words) / "
                  "max(1.4826 × MAD, binomial noise)")
ABSENCE_STATISTIC = ("absence: the chance that words pulling this hard towards a class are missing "
                     "from every clean row (Poisson in the log-count pull for naive Bayes, a "
                     "negative binomial fitted to the class's strongest words for other heads); "
                     "called backdoored at or below alpha when the words also flip at least "
                     "min_flip_rate of clean rows")
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
    triggers: list[dict[str, object]]
    statistic_name: str
    per_class: dict[str, float]
    threshold: float
    n_rows: int
    seconds: float
    classes: tuple[str, ...]
    details: dict[str, object] = field(default_factory=dict)
    images: dict[str, list[ReversedTrigger] | np.ndarray] = field(default_factory=dict)

    @property
    def statistic(self) -> float:
        """The largest per-class value: what the verdict compares with ``threshold``."""
        finite = [v for v in self.per_class.values() if np.isfinite(v)]
        if any(not np.isfinite(v) for v in self.per_class.values()):
            return float("inf")
        return float(max(finite)) if finite else 0.0

    def to_json(self) -> dict[str, object]:
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
            f"{model_classes}); map them with --class-map (class_map=) such as "
            f"'{','.join(f'{d}={m}' for d, m in zip(data_classes, model_classes, strict=False))}'."
        )
    lookup = np.array([model_classes.index(c) for c in data_classes], dtype=np.int64)
    return lookup[np.asarray(y, dtype=np.int64)]


def _unwrap(model: Any) -> Any:
    from poisonlab.models.io import unwrap_estimator

    return unwrap_estimator(model)


def _model_class_names(model: Any, classes: Sequence[str]) -> tuple[str, ...]:
    """The names of the model's output columns. A model whose ``classes_`` are names is the
    authority on their order: given names that are the same set in another order are put in
    the model's order (mapping by the given order would swap the classes)."""
    inner = _unwrap(model)
    own = getattr(inner, "classes_", None)
    given = tuple(str(c) for c in classes)
    if own is None:
        if not given:
            raise ParameterError("The model has no classes_; pass the class names it predicts.")
        return given
    own_names = tuple(str(c) for c in np.asarray(own).tolist())
    if not given or given == own_names:
        return own_names
    is_index = np.issubdtype(np.asarray(own).dtype, np.integer) and \
        np.array_equal(np.asarray(own), np.arange(len(own_names)))
    if is_index and len(given) == len(own_names):
        return given  # names for the columns 0..K-1
    if set(given) == set(own_names):
        return own_names
    raise DataError(
        f"The class names given {list(given)} are not the model's classes_ {list(own_names)}."
    )


def parse_class_map(text: str | dict[str, str] | None) -> dict[str, str] | None:
    """``'ham=0,spam=1'`` (or a dict) as ``{data name: model class}``."""
    if text is None or isinstance(text, dict):
        return None if text is None else {str(k): str(v) for k, v in text.items()}
    out: dict[str, str] = {}
    for part in str(text).split(","):
        if not part.strip():
            continue
        name, sep, model_class = part.partition("=")
        if not sep or not name.strip() or not model_class.strip():
            raise ParameterError(
                f"--class-map takes data=model pairs separated by commas, such as 'ham=0,spam=1'; "
                f"got {text!r}."
            )
        if name.strip() in out:
            raise ParameterError(f"--class-map names {name.strip()!r} twice: {text!r}.")
        out[name.strip()] = model_class.strip()
    if not out:
        raise ParameterError(f"--class-map is empty: {text!r}.")
    return out


AGREEMENT_MIN = 0.6     # the best assignment's agreement with the model's own predictions ...
AGREEMENT_MARGIN = 0.3  # ... and how far above the next best it must be to be taken unasked


def map_data_classes(data_classes: Sequence[str], y: np.ndarray, model_names: Sequence[str],
                     predictions: np.ndarray, class_map: dict[str, str] | None,
                     where: str = "") -> tuple[np.ndarray, dict[str, str], str]:
    """Labels ``y`` (indices into ``data_classes``) as indices of the model's classes.

    Returns ``(labels, mapping, how)``. In order: the ``class_map`` given (data name -> model
    class name or column index); the same names; or, when the model's classes are the integers
    0..K-1 and the data names differ, the one assignment of names to columns that the model's own
    predictions on the clean rows agree with, taken only when its agreement is at least
    ``AGREEMENT_MIN`` and ``AGREEMENT_MARGIN`` above every other assignment's. Anything else is
    refused with both sides named.
    """
    data_classes = [str(c) for c in data_classes]
    model_names = [str(c) for c in model_names]
    present = sorted(set(np.asarray(y).tolist()))
    used = [data_classes[k] for k in present]
    sides = f"the data's classes {used}, the model's {model_names}"
    if class_map is not None:
        lookup = np.full(len(data_classes), -1, dtype=np.int64)
        for name, target in class_map.items():
            if name not in data_classes:
                raise DataError(f"--class-map names {name!r}, which the data does not have ({sides}).")
            if target in model_names:
                lookup[data_classes.index(name)] = model_names.index(target)
            elif target.isdigit() and int(target) < len(model_names):
                lookup[data_classes.index(name)] = int(target)
            else:
                raise DataError(f"--class-map maps {name!r} to {target!r}, which the model {where} "
                                f"does not predict ({sides}).")
        unmapped = [data_classes[k] for k in present if lookup[k] < 0]
        if unmapped:
            raise DataError(f"--class-map leaves {unmapped} unmapped ({sides}).")
        return lookup[np.asarray(y)], {n: model_names[lookup[data_classes.index(n)]] for n in used}, \
            "given"
    if set(used) <= set(model_names):
        lookup = np.array([model_names.index(c) if c in model_names else -1 for c in data_classes])
        return lookup[np.asarray(y)], {n: n for n in used}, "same names"
    integers = all(n.lstrip("-").isdigit() for n in model_names) and \
        sorted(int(n) for n in model_names) == list(range(len(model_names)))
    if not integers or len(used) > len(model_names) or len(model_names) > 8:
        raise DataError(f"Cannot tell which model class each data class is ({sides}); name them "
                        f"with --class-map, such as '{used[0]}={model_names[0]}'.")
    y = np.asarray(y)
    scored = []
    for columns in itertools.permutations(range(len(model_names)), len(used)):
        lookup = np.full(len(data_classes), -1, dtype=np.int64)
        lookup[present] = columns
        scored.append((float(np.mean(lookup[y] == predictions)), lookup))
    scored.sort(key=lambda t: -t[0])
    best, lookup = scored[0]
    second = scored[1][0] if len(scored) > 1 else 0.0
    if best < AGREEMENT_MIN or best - second < AGREEMENT_MARGIN:
        raise DataError(
            f"Cannot tell which model class each data class is ({sides}): the model's predictions "
            f"agree with the best assignment on {best:.0%} of the clean rows and with the next on "
            f"{second:.0%}; name them with --class-map, such as '{used[0]}={model_names[0]}'."
        )
    mapping = {n: model_names[lookup[data_classes.index(n)]] for n in used}
    return lookup[y], mapping, f"model predictions agree on {best:.0%} of rows (next best {second:.0%})"


# The three option dicts stay Any-valued: they are keyword arguments of the scanners, each of its own type.
def scan_model(model: ProbabilisticClassifier | MarginClassifier, classes: Sequence[str], data: Dataset, *,
               max_rows: int | None = None,
               random_state: int | None = 0, progress: Callable[[str], None] | None = None,
               text_options: dict[str, Any] | None = None,
               image_options: dict[str, Any] | None = None,
               margin_options: dict[str, Any] | None = None, where: str = "",
               class_map: str | dict[str, str] | None = None, labelled: bool = True) -> ScanReport:
    """Scan ``model`` (predicting ``classes``) with the clean rows of ``data``.

    ``max_rows`` caps the clean rows used (default 200 for text, 500 for images).
    ``text_options``, ``image_options`` and ``margin_options`` go to
    :class:`~poisonlab.scan.text.TextTriggerScanner`,
    :class:`~poisonlab.scan.images.NeuralCleanseScanner` and
    :class:`~poisonlab.scan.margin.MaxMarginScanner`.

    Text models are taken as they come: any scikit-learn pipeline with ``predict_proba`` or
    ``decision_function`` (:func:`text_scorer`); ``classes`` may be empty (the model's own
    ``classes_`` name its columns); the data's class names are mapped to the model's by
    ``class_map`` (``'ham=0,spam=1'``), by name, or from the model's own predictions where only
    one assignment fits (:func:`map_data_classes`); with ``labelled=False`` the model's own
    predictions are the labels.
    """
    started = time.perf_counter()
    rng = np.random.default_rng(random_state)
    if data.kind == "text":
        return _scan_text(model, classes, data, max_rows=max_rows, rng=rng, progress=progress,
                          options=text_options, where=where, class_map=parse_class_map(class_map),
                          labelled=labelled, started=started)
    if class_map is not None or not labelled:
        raise ParameterError("--class-map and unlabelled rows are taken for text models; image scans "
                             "need labels named as the model's classes.")
    classes = tuple(str(c) for c in classes) or tuple(data.classes)
    n_model = int(getattr(model, "n_classes_", len(classes)) or len(classes))
    if len(classes) != n_model:
        classes = tuple(str(k) for k in range(n_model))
    y = labels_in_model_space(data.classes, classes, data.y, where)
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
        triggers: list[dict[str, object]]
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


def _scan_text(model: Any, classes: Sequence[str], data: Dataset, *, max_rows: int | None,
               rng: np.random.Generator, progress: Callable[[str], None] | None,
               options: dict[str, Any] | None, where: str, class_map: dict[str, str] | None,
               labelled: bool, started: float) -> ScanReport:
    from poisonlab.scan.text import TextTriggerScanner, candidate_tokens, vectorizers, word_pieces

    inner = _unwrap(model)
    score, scores_from = text_scorer(
        inner if hasattr(inner, "predict_proba") or hasattr(inner, "decision_function") else model)
    names = _model_class_names(model, classes)
    cap = 200 if max_rows is None else max_rows
    rows = np.arange(len(data))
    if len(rows) > cap:
        rows = np.sort(rng.choice(len(rows), cap, replace=False))
    X = data.X[rows]
    base = score(X)
    if base.ndim != 2 or base.shape[1] != len(names):
        raise DataError(f"The model {where} gives {base.shape[1] if base.ndim == 2 else 1} scores per "
                        f"row but names {len(names)} classes {list(names)}.")
    predictions = base.argmax(axis=1)
    if labelled:
        y, mapping, mapped_by = map_data_classes(data.classes, data.y[rows], names, predictions,
                                                 class_map, where)
    else:
        y, mapping, mapped_by = predictions, None, None
    inner = _unwrap(model)
    vocab, candidates_from, made_up = candidate_tokens(inner, X)
    scanner = TextTriggerScanner(random_state=rng, **{"max_rows": cap, **(options or {})})
    scanner.fit(score, X, y, vocabulary=vocab, progress=progress, class_names=names, head=inner,
                pieces=word_pieces(inner))
    triggers = [{**t.to_dict(names), "target_class": names[t.target_label]} for t in scanner.triggers_]
    stand_ins = set(made_up)
    for t in triggers:
        t.pop("target_label", None)
        t["made_up"] = any(w in stand_ins for w in str(t["trigger"]).split())
    reasons = list(scanner.reasons_)
    if scanner.verdict_ == "backdoor" and triggers and triggers[0]["made_up"]:
        reasons.append(f"the first trigger, {triggers[0]['trigger']!r}, holds a made-up token: the "
                       "model hashes its words (HashingVectorizer) and keeps none, and the token "
                       "lands on the hash bucket (and sign) where the planted word lies too")
        vec = next((v for v in vectorizers(inner) if type(v).__name__ == "HashingVectorizer"), None)
        if vec is not None and getattr(vec, "alternate_sign", True):
            reasons.append("the vectorizer hashes with alternating signs: a made-up token of the "
                           "other sign pushes the other way, so the planted word may send rows to "
                           "another class than the one named")
    details: dict[str, Any] = {
        "n_candidates_screened": scanner.n_candidates_screened_,
        "n_queries": scanner.n_queries_,
        "candidates_from": candidates_from,
        "min_flip_rate": scanner.min_flip_rate,
        "absence": {"name": ABSENCE_STATISTIC, "alpha": scanner.absence_alpha,
                    "min_class_rows": scanner.min_class_rows, "fit": scanner.absence_fit_,
                    "per_class": {c: float(f"{v:.3g}") for c, v in
                                  zip(names, scanner.absence_p_, strict=True)}},
        "labels": "given" if labelled else "model predictions",
        "scores_from": scores_from,
        "reasons": reasons,
    }
    if mapping is not None:
        details["class_map"] = mapping
        details["class_map_from"] = mapped_by
    return ScanReport(
        kind="text", method="text trigger search", verdict=scanner.verdict_,
        target_class=None if scanner.target_label_ is None else names[scanner.target_label_],
        triggers=triggers, statistic_name=TEXT_STATISTIC,
        per_class={c: float(v) for c, v in zip(names, scanner.anomaly_index_, strict=True)},
        threshold=scanner.threshold_, n_rows=len(rows),
        seconds=time.perf_counter() - started, classes=names, details=details,
    )


def read_unlabelled_texts(path: str | Path, text_col: str | None = None) -> Dataset:
    """A CSV, TSV, JSONL or Parquet file of texts with no label column, as a dataset whose labels
    are placeholders (scan it with ``labelled=False``: the model's predictions become labels)."""
    from poisonlab.data import readers

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        table = readers._read_delimited(path, "\t" if suffix == ".tsv" else ",")
    elif suffix in (".jsonl", ".ndjson"):
        table = readers._read_jsonl(path)
    elif suffix == ".parquet":
        table = readers._read_parquet(path)
    else:
        raise DataError(f"{path}: unknown table format {suffix!r}; use .csv, .tsv, .jsonl or .parquet.")
    names = list(table)
    n = len(table[names[0]]) if names else 0
    placeholder = "\0unlabelled"
    table = {**table, placeholder: ["unlabelled"] * n}
    ds = readers.table_to_dataset(table, readers.Columns(label=placeholder, text=text_col),
                                  where=str(path), name=path.stem)
    if ds.kind != "text":
        raise DataError(f"{path}: no text column found (looked for {list(readers.TEXT_COLUMNS)}); "
                        "name it with --text-col.")
    return ds
