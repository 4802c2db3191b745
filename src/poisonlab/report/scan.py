"""The HTML report of ``poisonlab scan``: verdict, statistic per class, ranked triggers, and for
images the reverse-engineered trigger of every class and the input each class wins by the widest
margin, drawn as pictures."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from poisonlab.report import render, write_html


class ScanReportSource(Protocol):
    """What the scan report reads of a :class:`~poisonlab.scan.pipeline.ScanReport`
    (``poisonlab.scan`` is a layer above this one, so it is described here rather than imported)."""

    @property
    def classes(self) -> Sequence[str]:
        """The model's class names, in its column order."""
        ...

    @property
    def per_class(self) -> dict[str, float]:
        """The anomaly index of each class (higher is more suspicious), by class name."""
        ...

    @property
    def threshold(self) -> float:
        """The anomaly index at or above which a class is called backdoored."""
        ...

    @property
    def images(self) -> Mapping[str, Any]:  # Any: the image scanner's trigger objects and arrays
        """For image scans: the reversed triggers (``"triggers"``) and each class's widest-margin input
        (``"margin_inputs"``); empty for text.
        """
        ...

    def to_json(self) -> Mapping[str, Any]:  # Any: the scan.json document, read key by key
        """The ``scan.json`` document."""
        ...


def _png_data_uri(image: np.ndarray, *, scale: int = 8) -> str:
    """An H×W or H×W×C array in [0, 1] as a nearest-neighbour enlarged PNG data URI."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    img = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    big = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
    buf = io.BytesIO()
    plt.imsave(buf, big, cmap="gray" if img.ndim == 2 else None, vmin=0.0, vmax=1.0, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _bar_chart_uri(values: dict[str, float], threshold: float, label: str) -> str:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    names = list(values)
    shown = [min(float(v), 10 * threshold) if np.isfinite(v) else 10 * threshold
             for v in values.values()]
    fig, ax = plt.subplots(figsize=(max(3.0, 0.5 * len(names) + 1.5), 2.6))
    colors = ["#b42318" if v >= threshold else "#667085" for v in shown]
    ax.bar(range(len(names)), shown, color=colors)
    ax.axhline(threshold, color="#b42318", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center")
    ax.set_ylabel(label)
    ax.grid(True, axis="y", alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def write_scan_report(report: ScanReportSource, path: Path, *, model: str, data: str) -> Path:
    """Render ``report`` (a :class:`~poisonlab.scan.pipeline.ScanReport`) to ``path``."""
    doc = report.to_json()
    chart = _bar_chart_uri(report.per_class, report.threshold, "anomaly index")
    pictures = []
    for t in report.images.get("triggers", []):
        stamp = t.mask[..., None] * t.pattern
        pictures.append({
            "target_class": report.classes[t.target_label],
            "l1": t.l1, "success_rate": t.success_rate, "anomaly_index": t.anomaly_index,
            "found": t.found, "box": t.bounding_box(),
            "mask": _png_data_uri(t.mask, scale=max(2, 112 // t.mask.shape[0])),
            "stamp": _png_data_uri(stamp, scale=max(2, 112 // t.mask.shape[0])),
        })
    margin = doc.get("max_margin")
    margin_chart = None
    margin_pictures = []
    if margin:
        # -log10 p per class, so the bar that crosses the dashed line is the one called.
        scores = {c: -np.log10(max(float(p), 1e-300)) for c, p in margin["per_class"].items()}
        margin_chart = _bar_chart_uri(scores, -np.log10(margin["alpha"]), "-log10 p, max margin")
        inputs = report.images.get("margin_inputs")
        if inputs is not None:
            lo, hi = float(np.min(inputs)), float(np.max(inputs))
            for k, c in enumerate(report.classes):
                img = (inputs[k] - lo) / (hi - lo) if hi > lo else inputs[k] * 0
                margin_pictures.append({
                    "target_class": c, "margin": margin["margins"][c],
                    "p": margin["per_class"][c],
                    "image": _png_data_uri(img, scale=max(2, 112 // img.shape[0]))})
    html = render("scan.html", r=doc, model=model, data=data, chart=chart, pictures=pictures,
                  absence=doc.get("absence"), margin=margin, margin_chart=margin_chart,
                  margin_pictures=margin_pictures,
                  top=doc["triggers"][:20])
    return write_html(path, html)
