"""``poisonlab.labelers``: whom to trust among the people and sources who labelled the data.

The statistics live in :mod:`poisonlab.provenance.labelers` (arrays in, no model); this module
reads the data and the annotations, trains the model out of fold for the probabilities CROWDLAB
and the reference read, runs the audit where the data has one label per row and a ``source`` or
``labeler`` column, and writes the result set (``annotators.csv``, ``consensus.csv``,
``review.csv``, ``summary.json``, ``report.html``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from poisonlab.api.inputs import DataLike, as_dataset
from poisonlab.data import Columns, Dataset
from poisonlab.exceptions import DataError, ParameterError, check_param, is_int
from poisonlab.provenance.annotations import (
    MISSING,
    AnnotationColumns,
    Annotations,
    annotations_from_labelers,
    read_annotations,
)
from poisonlab.provenance.labelers import ReliabilityReport, group_findings, labeler_reliability

if TYPE_CHECKING:
    import pandas as pd

    from poisonlab.data.types import LabelsLike, TableLike
    from poisonlab.models.protocols import ModelLike

Progress = Callable[[str, int, int], None]

SNIPPET = 240


@dataclass
class LabelersResult:
    """What :func:`labelers` found.

    Attributes
    ----------
    dataset : Dataset
        The rows the labels are about.
    reliability : ReliabilityReport or None
        Consensus labels, confusion matrices and the flip test (None where the data has a
        ``source`` column but no annotations or labelers).
    groups : dict or None
        The audit's flagged rows per source and labeler
        (:func:`~poisonlab.provenance.contributions_by_group`, with Holm-adjusted ``p_adjusted``),
        for data with one label per row and a ``source`` or ``labeler`` column; None otherwise.
    findings : list of str
        One line per suspect annotator and per source or labeler whose flag rate stands out.
    model_spec : str or None
        The model whose out-of-fold probabilities were used (None when ``pred_probs`` was given).
    pred_probs : ndarray or None
        Those probabilities (N×K; rows without labels hold NaN).
    seconds : dict
        Time per step.
    """

    dataset: Dataset
    reliability: ReliabilityReport | None
    groups: dict[str, Any] | None
    findings: list[str]
    model_spec: str | None
    pred_probs: np.ndarray | None = field(repr=False, default=None)
    oof_accuracy: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    alpha: float = 0.01

    @property
    def annotators(self) -> list[dict[str, Any]]:
        """The rows of ``annotators.csv``, most suspicious first (empty without annotators)."""
        return [] if self.reliability is None else self.reliability.annotator_table()

    @property
    def suspects(self) -> list[dict[str, Any]]:
        """The annotators whose verdict is ``suspect``."""
        return [a for a in self.annotators if a["verdict"] == "suspect"]

    def review_rows(self) -> list[dict[str, Any]]:
        """The rows to re-review: for each suspect annotator, each row it labelled ``given`` while
        the leave-one-out reference says ``true`` (``row``, ``id``, ``annotator``, ``given``,
        ``reference``, ``consensus``, ``cell``)."""
        rel = self.reliability
        if rel is None:
            return []
        ann = rel.annotations
        consensus = rel.consensus
        index = {name: m for m, name in enumerate(ann.annotators)}
        out = []
        for a in self.suspects:
            m = index[a["annotator"]]
            for i in rel.suspect_rows(m):
                out.append({"row": int(i), "id": str(ann.ids[i]), "annotator": a["annotator"],
                            "given": ann.classes[ann.labels[i, m]],
                            "reference": ann.classes[rel.reference[i, m]],
                            "consensus": ann.classes[consensus[i]] if consensus[i] != MISSING else "",
                            "cell": a["suspect_cell"]})
        return out

    def summary(self) -> dict[str, Any]:
        """The JSON document written to ``summary.json``."""
        ds = self.dataset
        out: dict[str, Any] = {"dataset": ds.name, "kind": ds.kind, "n_rows": len(ds),
                               "model": self.model_spec,
                               "out_of_fold_accuracy": None if self.oof_accuracy is None
                               else round(self.oof_accuracy, 4),
                               "alpha": self.alpha, "findings": list(self.findings)}
        if self.reliability is not None:
            out["annotations"] = self.reliability.summary()
        if self.groups is not None:
            out["groups"] = self.groups
        out["seconds"] = {k: round(v, 2) for k, v in self.seconds.items()}
        return out

    def save(self, out_dir: str | Path, *, html: bool = True) -> dict[str, Path]:
        """Write the result set into ``out_dir``, whole or not at all, as ``poisonlab labelers`` does."""
        from poisonlab.files import saved_as_result_set

        return saved_as_result_set(out_dir, "labelers", lambda tmp: write_labelers(self, tmp, html=html))

    def to_frame(self) -> pd.DataFrame:
        """The annotator table (``annotators.csv``) as a pandas DataFrame."""
        from poisonlab.report.notebook import frame

        rows = self.annotators
        keys = list(rows[0]) if rows else list(ANNOTATOR_COLUMNS)
        return frame({k: [r[k] for r in rows] for k in keys})

    def _repr_html_(self) -> str:
        from poisonlab.report.notebook import html_table

        facts: list[tuple[str, object]] = [("findings", "; ".join(self.findings) or "nothing stands out")]
        if self.reliability is not None:
            facts.append(("consensus", self.reliability.consensus_method))
        rows = [[r[k] for k in ANNOTATOR_COLUMNS] for r in self.annotators[:20]]
        return html_table(f"poisonlab labelers on {self.dataset.name}", facts, list(ANNOTATOR_COLUMNS), rows)


ANNOTATOR_COLUMNS = ("annotator", "n_labels", "quality", "verdict", "suspect_cell", "p_value",
                     "tested_cell", "cell_rate", "others_rate", "own_rate", "agreement", "n_suspect_rows")
"""The columns of ``annotators.csv``, in order."""


def labelers(
    X: DataLike,
    annotations: str | Path | TableLike | Annotations | None = None,
    y: LabelsLike | None = None,
    *,
    model: ModelLike | None = None,
    pred_probs: np.ndarray | None = None,
    flags: np.ndarray | None = None,
    classes: Sequence[str] | None = None,
    columns: Columns | None = None,
    annotation_columns: AnnotationColumns | None = None,
    alpha: float = 0.01,
    correction: str = "holm",
    min_ratio: float = 2.0,
    n_folds: int = 5,
    random_state: int = 0,
    progress: Progress | None = None,
) -> LabelersResult:
    """Which annotator, labeler or source to distrust, why, and which rows to re-review.

    Parameters
    ----------
    X : Dataset, path, corpus name, DataFrame, array-like or list of str
        The rows (see :func:`poisonlab.api.as_dataset`). With ``annotations`` it needs no labels;
        without, its labels and its ``labeler`` (and/or ``source``) column are what is judged.
    annotations : path, DataFrame, mapping of columns or Annotations, optional
        Several labels per row, long (``row``, ``annotator``, ``label``) or wide (one column per
        annotator, blanks allowed); see :mod:`poisonlab.provenance.annotations`.
    y : array-like, optional
        Labels for ``X`` given as arrays (single-label mode).
    model : None, str, scikit-learn estimator or Pipeline, torch.nn.Module
        The model trained out of fold on the majority-vote labels (default per kind of data, as
        for the audit). Its probabilities feed CROWDLAB and the reference.
    pred_probs : ndarray, N×K, optional
        Out-of-fold probabilities to use instead of training ``model``.
    flags : ndarray of bool, optional
        An audit's flags for the rows (single-label mode), instead of running the audit here.
    classes : sequence of str, optional
        Classes a label may name (default: the data's, or those the annotations use).
    columns, annotation_columns : Columns, AnnotationColumns, optional
        Column roles of the data and of the annotation table.
    alpha, correction, min_ratio
        The flip test's level, multiple-testing correction (``holm`` or ``bh``) and effect size
        (see :func:`poisonlab.provenance.labelers.flip_test`); ``alpha`` also marks a source or
        labeler whose adjusted flag-rate p-value is below it.
    n_folds : int
        Folds for the out-of-fold probabilities.
    random_state : int
        Seed for the folds and the model.
    progress : callable, optional
        ``progress(step, done, total)`` as each step starts.

    Returns
    -------
    LabelersResult
        ``annotators`` (one dict per annotator: quality, verdict, suspect cell, p-value),
        ``review_rows()``, ``findings``, ``groups``; ``.save(dir)`` writes ``annotators.csv``,
        ``consensus.csv``, ``review.csv``, ``summary.json`` and ``report.html``.

    References
    ----------
    .. [1] Dawid and Skene, "Maximum Likelihood Estimation of Observer Error-Rates Using the EM
       Algorithm", Applied Statistics 28(1), 1979. https://doi.org/10.2307/2346806
    .. [2] Goh, Tkachenko and Mueller, "CROWDLAB: Supervised learning to infer consensus labels and
       quality scores for data with multiple annotators", NeurIPS 2022 Human in the Loop Learning
       Workshop. https://arxiv.org/abs/2210.06812
    .. [3] Holm, "A Simple Sequentially Rejective Multiple Test Procedure", Scandinavian Journal of
       Statistics 6(2), 1979. https://www.jstor.org/stable/4615733
    """
    check_param("n_folds", "labelers", is_int(n_folds, 2), "an int >= 2", n_folds)
    check_param("alpha", "labelers", isinstance(alpha, (int, float)) and 0 < alpha < 1, "a float in (0, 1)",
                alpha)
    timings: dict[str, float] = {}
    steps = ["reading the annotations", "out-of-fold probabilities", "consensus and flip test"]

    def tick(i: int, label: str | None = None) -> None:
        if progress is not None:
            progress(label or steps[i], i, len(steps))

    start = time.perf_counter()
    tick(0)
    dataset = as_dataset(X, y, classes=None if annotations is not None else classes, columns=columns,
                         labels=annotations is None)
    if annotations is None:
        ann = annotations_from_labelers(dataset) if dataset.labeler is not None else None
        if ann is None and dataset.source is None:
            raise DataError(f"{dataset.name}: nothing to judge: give annotations (several labels per row), or "
                            "data with a labeler or source column (--labeler-col, --source-col).")
    elif isinstance(annotations, Annotations):
        ann = annotations
        if ann.n_rows != len(dataset) or not np.array_equal(np.asarray(ann.ids, dtype=str),
                                                            np.asarray(dataset.ids, dtype=str)):
            raise DataError(f"{ann.where}: the annotations are about {ann.n_rows} rows whose ids differ from "
                            f"the {len(dataset)} rows of {dataset.name}.")
    else:
        ann = read_annotations(annotations, dataset, columns=annotation_columns, classes=classes)
    timings["reading"] = time.perf_counter() - start

    probs, spec_name, oof_acc, groups = None, None, None, None
    single = ann is None or ann.layout == "labeler"
    if pred_probs is not None:
        probs = np.asarray(pred_probs, dtype=np.float64)
        k = ann.n_classes if ann is not None else dataset.n_classes
        if probs.shape != (len(dataset), k):
            raise ParameterError(f"The 'pred_probs' parameter of labelers must have shape ({len(dataset)}, {k}) "
                                 f"(rows × classes). Got shape {probs.shape} instead.")
    t = time.perf_counter()
    if single and flags is None:
        tick(1, "auditing the rows (out-of-fold probabilities and detectors)")
        from poisonlab.audit import audit

        audited = audit(dataset, model=model, n_folds=n_folds, random_state=random_state)
        flags = audited.flags
        spec_name = audited.model_spec
        oof_acc = audited.oof_accuracy
        if probs is None:
            probs = np.asarray(audited.arrays["pred_probs"])
    if probs is None and ann is not None:
        tick(1)
        probs, spec_name, oof_acc = _oof_on_consensus(dataset, ann, model, n_folds, random_state)
    timings["model"] = time.perf_counter() - t
    if flags is not None:
        from poisonlab.provenance import contributions_by_group

        groups = contributions_by_group(dataset, np.asarray(flags))
    t = time.perf_counter()
    tick(2)
    reliability = None
    if ann is not None:
        reliability = labeler_reliability(ann, probs, alpha=alpha, correction=correction, min_ratio=min_ratio)
    timings["reliability"] = time.perf_counter() - t
    findings = []
    if reliability is not None:
        findings += [reliability.verdict_line(r) for r in reliability.annotator_table() if r["verdict"] == "suspect"]
    findings += group_findings(groups, alpha=alpha)
    timings["total"] = time.perf_counter() - start
    return LabelersResult(dataset=dataset, reliability=reliability, groups=groups, findings=findings,
                          model_spec=spec_name, pred_probs=probs, oof_accuracy=oof_acc, seconds=timings,
                          alpha=float(alpha))


def _oof_on_consensus(dataset: Dataset, ann: Annotations, model: ModelLike | None, n_folds: int,
                      random_state: int) -> tuple[np.ndarray, str, float]:
    """Out-of-fold probabilities of ``model`` trained on the majority-vote labels of the labelled rows."""
    from sklearn.base import clone

    from poisonlab.audit import default_model, out_of_fold_proba
    from poisonlab.models import describe_model, resolve_model
    from poisonlab.provenance.labelers import majority_vote

    vote, _ = majority_vote(ann.labels, ann.n_classes)
    has = vote != MISSING
    K = ann.n_classes
    if np.count_nonzero(np.bincount(vote[has], minlength=K)) < 2:
        raise DataError(f"{ann.where}: every labelled row's majority label is the same class; judging "
                        "annotators needs at least two classes.")
    if has.sum() < 10:
        raise DataError(f"{ann.where}: only {int(has.sum())} rows have labels; training the model out of fold "
                        "needs at least 10 (or pass pred_probs).")
    train = replace(dataset.subset(np.flatnonzero(has)), y=vote[has], classes=ann.classes)
    spec = resolve_model(model, dataset.kind, random_state=random_state)
    fitted = clone(spec).fit(train.X, train.y, n_classes=K)
    oof = out_of_fold_proba(lambda: clone(spec), fitted, train.X, train.y, K, n_folds=n_folds,
                            random_state=random_state)
    probs = np.full((len(dataset), K), np.nan)
    probs[has] = oof
    name = describe_model(default_model(dataset.kind) if model is None else model)
    return probs, name, float(np.mean(np.argmax(oof, axis=1) == train.y))


# ---------------------------------------------------------------------------------- files
def write_labelers(result: LabelersResult, out_dir: str | Path, *, html: bool = True) -> dict[str, Path]:
    """Write ``annotators.csv``, ``consensus.csv``, ``review.csv``, ``summary.json`` and (unless
    ``html=False``) ``report.html`` into ``out_dir``.

    Names, ids and labels come from the data and are formula-escaped for spreadsheets; counts,
    qualities and p-values are poisonlab's own numbers.
    """
    from poisonlab.files import write_csv_for_people, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    rel = result.reliability
    ds = result.dataset
    if rel is not None:
        paths["annotators"] = write_csv_for_people(
            out / "annotators.csv", ANNOTATOR_COLUMNS,
            ([_cell(r[k]) for k in ANNOTATOR_COLUMNS] for r in rel.annotator_table()),
            text_columns=("annotator", "suspect_cell", "tested_cell"))
        ann = rel.annotations
        classes = ann.classes
        cons, quality = rel.consensus, rel.consensus_quality
        cl = rel.crowdlab
        dsk = rel.dawid_skene
        n_labels = ann.labels_per_row

        def name(k: int) -> str:
            return classes[k] if k != MISSING else ""

        header = ["row", "id", "consensus", "quality", "n_labels", "crowdlab", "crowdlab_quality",
                  "dawid_skene", "dawid_skene_posterior", "majority_vote", "majority_agreement"]
        paths["consensus"] = write_csv_for_people(
            out / "consensus.csv", header,
            ([i, ann.ids[i], name(cons[i]), _cell(quality[i]), int(n_labels[i]),
              name(cl.labels[i]) if cl is not None else "", _cell(cl.quality[i]) if cl is not None else "",
              name(dsk.labels[i]) if dsk is not None else "",
              _cell(dsk.posterior[i].max()) if dsk is not None and n_labels[i] else "",
              name(rel.majority[i]), _cell(rel.majority_agreement[i])] for i in range(ann.n_rows)),
            text_columns=("id", "consensus", "crowdlab", "dawid_skene", "majority_vote"))
        review = result.review_rows()
        paths["review"] = write_csv_for_people(
            out / "review.csv", ["row", "id", "annotator", "given", "reference", "consensus", "cell"],
            ([r[k] for k in ("row", "id", "annotator", "given", "reference", "consensus", "cell")]
             for r in review),
            text_columns=("id", "annotator", "given", "reference", "consensus", "cell"))
    if result.groups is not None:
        rows = []
        for key in ("by_source", "by_labeler"):
            for g, d in (result.groups.get(key) or {}).items():
                rows.append([key.removeprefix("by_"), g, d["n_rows"], d["n_flagged"], _cell(d["flagged_rate"]),
                             _cell(d["lift"]) if d["lift"] is not None else "", d["p_value"], d["p_adjusted"]])
        paths["groups"] = write_csv_for_people(
            out / "groups.csv", ["column", "group", "n_rows", "n_flagged", "flagged_rate", "lift", "p_value",
                                 "p_adjusted"], rows, text_columns=("group",))
    summary = result.summary()
    paths["summary"] = out / "summary.json"
    write_json(paths["summary"], summary)
    if html:
        from poisonlab.report.labelers import write_labelers_report

        snippets = {}
        for r in result.review_rows()[:200]:
            snippets[r["row"]] = _snippet(ds, r["row"])
        paths["report"] = write_labelers_report(summary, out / "report.html", review=result.review_rows()[:200],
                                                snippets=snippets)
    return paths


def _snippet(ds: Dataset, i: int) -> str:
    if ds.kind == "text":
        text = " ".join(str(ds.X[i]).split())
        return text[:SNIPPET] + ("…" if len(text) > SNIPPET else "")
    if ds.kind == "tabular":
        return ", ".join(f"{v:.3g}" for v in np.ravel(ds.X[i])[:12])
    return ""


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float | np.floating):
        return "" if not np.isfinite(v) else f"{float(v):.6g}"
    return v
