"""The audit report: ranked rows with reasons, triggers highlighted, score distributions per class.

Rows are attacker-controlled text: the template autoescapes everything, and highlighted triggers
are passed as (text, is_trigger) segments rather than as HTML.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from poisonlab.report import figure_to_data_uri, new_figure, render, write_html
from poisonlab.report._plots import image_data_uri

if TYPE_CHECKING:
    from poisonlab.data import Dataset

MAX_ROWS = 100
SNIPPET = 320


class AuditReportSource(Protocol):
    """What the audit report reads of an :class:`~poisonlab.audit.AuditResult` (``poisonlab.audit``
    is a layer above this one, so it is described here rather than imported)."""

    @property
    def dataset(self) -> Dataset:
        """The audited training set."""
        ...

    @property
    def scores(self) -> np.ndarray:
        """One combined score per row: higher means more suspicious."""
        ...

    @property
    def flags(self) -> np.ndarray:
        """One verdict per row: True where the row is flagged."""
        ...

    @property
    def reasons(self) -> Sequence[str]:
        """Why each row scored as it did, one line per row."""
        ...

    @property
    def detectors(self) -> Mapping[str, object]:
        """Each detector's outcome, by detector name."""
        ...

    @property
    def suspected_triggers(self) -> Sequence[Mapping[str, object]]:
        """The suspected triggers as dicts, strongest first."""
        ...

    @property
    def evaluation(self) -> Mapping[str, object] | None:
        """Detection metrics of the combined score and each detector against the planted rows, or None."""
        ...

    @property
    def arrays(self) -> Mapping[str, object]:
        """Per-row arrays kept beside the scores (removal flags, the planted-row mask), by name."""
        ...

    def ranked(self, limit: int | None = None) -> np.ndarray:
        """Row positions, most suspicious first (the first ``limit`` of them when given)."""
        ...

    def summary(self) -> Mapping[str, object]:
        """The ``summary.json`` document."""
        ...


def write_audit_report(result: AuditReportSource, path: str | Path) -> Path:
    """Render ``report.html`` for an :class:`~poisonlab.audit.AuditResult`."""
    html = render("audit.html", s=result.summary(), rows=_rows(result),
                  score_plot=_score_plot(result), spectral_plots=_spectral_plots(result),
                  detectors=_detector_table(result))
    return write_html(Path(path), html)


def _rows(result: Any) -> list[dict[str, Any]]:
    ds = result.dataset
    triggers = [t["trigger"] for t in result.suspected_triggers]
    patterns = [re.compile(r"(?<!\w)" + r"\s+".join(re.escape(w) for w in t.split()) + r"(?!\w)",
                           re.IGNORECASE) for t in triggers]
    truth = None
    if result.evaluation is not None and "poison_mask" in result.arrays:
        truth = result.arrays["poison_mask"]
    out = []
    for i in result.ranked(MAX_ROWS):
        row: dict[str, Any] = {
            "row": int(i), "id": str(ds.ids[i]), "label": ds.classes[ds.y[i]],
            "score": float(result.scores[i]), "flagged": bool(result.flags[i]),
            "reasons": result.reasons[i].split("; ") if result.reasons[i] else [],
            "planted": None if truth is None else bool(truth[i]),
        }
        if ds.kind == "text":
            row["segments"] = _snippet(str(ds.X[i]), patterns)
        elif ds.kind == "image":
            row["thumbnail"] = image_data_uri(ds.X[i], scale=2 if ds.X.shape[1] >= 20 else 4)
        else:
            row["values"] = ", ".join(f"{v:.3g}" for v in np.ravel(ds.X[i])[:12])
        out.append(row)
    return out


def _snippet(text: str, patterns: list[re.Pattern[str]]) -> list[tuple[str, bool]]:
    """A window of ``text`` around the first trigger, split into (text, is_trigger) segments."""
    text = " ".join(text.split())
    first = min((m.start() for p in patterns for m in [p.search(text)] if m), default=None)
    if first is None:
        window, prefix = text[:SNIPPET], ""
        suffix = "…" if len(text) > SNIPPET else ""
    else:
        start = max(0, first - SNIPPET // 2)
        window = text[start:start + SNIPPET]
        prefix = "…" if start > 0 else ""
        suffix = "…" if start + SNIPPET < len(text) else ""
    spans: list[tuple[int, int]] = []
    for p in patterns:
        spans.extend((m.start(), m.end()) for m in p.finditer(window))
    spans.sort()
    segments: list[tuple[str, bool]] = [(prefix, False)] if prefix else []
    pos = 0
    for a, b in spans:
        if a < pos:
            continue
        segments.append((window[pos:a], False))
        segments.append((window[a:b], True))
        pos = b
    segments.append((window[pos:] + suffix, False))
    return [s for s in segments if s[0]]


def _score_plot(result: Any) -> str:
    ds = result.dataset
    fig, ax = new_figure(7.0, 3.4)
    scores = result.scores
    lo, hi = float(np.min(scores)), float(np.max(scores))
    bins: Any = np.linspace(lo, hi if hi > lo else lo + 1, 40)  # an array; matplotlib's stubs want a Sequence
    for k, name in enumerate(ds.classes[:12]):
        rows = ds.y == k
        if rows.any():
            ax.hist(scores[rows], bins=bins, histtype="step", linewidth=1.4, label=str(name))
    ax.axvline(1.0, color="#b02a2a", linestyle="--", linewidth=1, label="flag cut (1)")
    ax.set_yscale("log")
    ax.set_xlabel("combined score (1 = a detector's cut)")
    ax.set_ylabel("rows")
    ax.legend(fontsize=7, ncol=2)
    return figure_to_data_uri(fig)


def _spectral_plots(result: Any) -> list[dict[str, Any]]:
    """For each class whose robust spectral split is significant: the projection histogram."""
    det = result.detectors.get("robust_spectral")
    if det is None:
        return []
    ds = result.dataset
    plots = []
    for name, info in det.details.get("per_class", {}).items():
        if not info.get("significant"):
            continue
        k = ds.classes.index(name)
        rows = ds.y == k
        fig, ax = new_figure(6.0, 2.6)
        s = det.scores[rows]
        f = det.flags[rows]
        bins: Any = np.linspace(float(s.min()), float(s.max()) + 1e-9, 40)  # as in _score_plot
        ax.hist(s[~f], bins=bins, color="#4a7bb7", alpha=0.8, label="kept")
        ax.hist(s[f], bins=bins, color="#b02a2a", alpha=0.8, label="flagged")
        ax.set_xlabel(f"robust spectral score within class {name!r}")
        ax.set_ylabel("rows")
        ax.legend(fontsize=8)
        plots.append({"cls": name, "info": info, "plot": figure_to_data_uri(fig)})
    return plots


def _detector_table(result: Any) -> list[dict[str, Any]]:
    ev = (result.evaluation or {}).get("detectors", {})
    out = []
    for name, d in result.detectors.items():
        s = d.summary()
        out.append({"name": name, "title": s["title"], "votes": d.votes,
                    "n_flagged": s["n_flagged"], "seconds": s["seconds"], "eval": ev.get(name)})
    return out
