"""The labelers report: whom to trust, why, and which rows to re-review.

It reads the ``summary.json`` document of :class:`poisonlab.api.labelers.LabelersResult` (a layer
above this one) as plain data. Annotator names, ids, labels and row text come from the data: the
template autoescapes all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from poisonlab.report import render, write_html

MAX_MATRICES = 12
"""Confusion matrices shown in full: every suspect annotator, then the lowest-quality others."""


def write_labelers_report(summary: Mapping[str, Any], path: str | Path, *,
                          review: Sequence[Mapping[str, Any]] = (),
                          snippets: Mapping[int, str] | None = None) -> Path:
    """Render ``report.html`` from a labelers ``summary`` document, the rows to re-review and
    their content snippets (by row position)."""
    ann = summary.get("annotations")
    matrices: list[dict[str, Any]] = []
    if ann:
        ranked = sorted(ann["annotators"], key=lambda a: (a["verdict"] != "suspect",
                                                           a["quality"] if a["quality"] is not None else 1.0))
        for a in ranked[:MAX_MATRICES]:
            matrices.append(_matrix(a))
    groups = []
    g = summary.get("groups")
    if g:
        for key in ("by_source", "by_labeler"):
            table = g.get(key)
            if not table:
                continue
            rows = []
            for name, d in table.items():
                rows.append({"name": name, **d,
                             "share_rows": d["n_rows"] / g["n_rows"] if g["n_rows"] else None,
                             "share_flagged": d["n_flagged"] / g["n_flagged"] if g["n_flagged"] else None,
                             "stands_out": d.get("p_adjusted", 1.0) < summary.get("alpha", 0.01)})
            groups.append({"column": key.removeprefix("by_"), "rows": rows})
    html = render("labelers.html", s=summary, ann=ann, matrices=matrices, groups=groups,
                  review=[{**r, "snippet": (snippets or {}).get(int(r["row"]), "")} for r in review])
    return write_html(Path(path), html)


def _matrix(annotator: Mapping[str, Any]) -> dict[str, Any]:
    conf = annotator["confusion"]
    classes = conf["classes"]
    suspect = annotator["suspect_cell"]
    cells = []
    for k, true in enumerate(classes):
        row = []
        for g, given in enumerate(classes):
            row.append({"count": conf["counts"][k][g], "rate": conf["rates"][k][g], "low": conf["low"][k][g],
                        "high": conf["high"][k][g], "diagonal": k == g,
                        "suspect": bool(suspect) and suspect == f"{true}->{given}"})
        cells.append({"true": true, "cells": row})
    return {"annotator": annotator["annotator"], "verdict": annotator["verdict"], "classes": classes,
            "rows": cells, "n_labels": annotator["n_labels"]}
