"""The HTML report of ``poisonlab gate``: the verdict, which check failed and the evidence of each
(the accuracy interval, the scan's verdict, every probe, the class shares of both models), with
the rows the two models disagree on.

It reads the ``gate.json`` document of :class:`poisonlab.api.gate.GateResult` (a layer above this
one) as plain data. Text snippets, ids and class names come from the data: the template
autoescapes all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.report import render, write_html
from poisonlab.report._plots import image_data_uri

CHECK_TITLES = {"accuracy": "Accuracy (non-inferiority)", "scan": "Backdoor scan of the candidate",
                "probes": "Trigger and disagreement probes", "shift": "Prediction-distribution shift"}
"""The heading of each check in the report."""


def write_gate_report(doc: Mapping[str, Any], path: str | Path, *,
                      pictures: Mapping[str, np.ndarray] | None = None,
                      examples: Sequence[Mapping[str, Any]] = ()) -> Path:
    """Render ``report.html`` from a ``gate.json`` document, with the pictures it names (reversed
    triggers and disagreement rows of image models, H×W×C in [0, 1]) and the disagreement rows."""
    uris = {}
    for key, image in (pictures or {}).items():
        img = np.asarray(image, dtype=np.float64)
        uris[key] = image_data_uri(img, scale=max(2, 96 // max(1, img.shape[0])))
    checks = [{"name": name, "title": CHECK_TITLES.get(name, name), **check}
              for name, check in doc["checks"].items()]
    html = render("gate.html", g=doc, checks=checks, pictures=uris, examples=list(examples))
    return write_html(Path(path), html)
