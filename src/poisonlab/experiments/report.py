"""``report.html`` of an experiment: one self-contained page from ``results.parquet``.

Sections: attack success against budget with 95% intervals per attack and model, clean accuracy
against budget, the minimum-budget table, detector ROC and precision-recall curves with a
comparison table, defense trade-offs, and the cells that failed with their errors. Plots are
matplotlib PNGs inlined as data URIs; no script, font or style is fetched from anywhere.

Intervals: over seeds, a Student-t 95% interval of the mean (two seeds or more); with one seed, the
Wilson score interval of the rate over the test rows it was measured on.

References
----------
.. [1] Wilson, "Probable Inference, the Law of Succession, and Statistical Inference", JASA 22,
   1927. https://doi.org/10.1080/01621459.1927.10502953
.. [2] Davis and Goadrich, "The Relationship Between Precision-Recall and ROC Curves", ICML 2006
   (interpolated precision). https://doi.org/10.1145/1143844.1143874
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from poisonlab.experiments.cells import CURVE_GRID
from poisonlab.report import figure_to_data_uri, new_figure, render, write_html

if TYPE_CHECKING:
    import pandas as pd

    from poisonlab.experiments.config import ExperimentConfig

#: Most lines or groups a figure shows; the tables below it hold everything.
MAX_FIGURES = 12


def mean_interval(values: Sequence[float], n_rows: float | None = None) -> tuple[float, float, float]:
    """Mean and 95% interval: Student-t over ``values`` (two or more), else Wilson over ``n_rows``.

    >>> tuple(round(v, 3) for v in mean_interval([0.5, 0.7, 0.6]))
    (0.6, 0.352, 0.848)
    """
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(arr.mean())
    if arr.size >= 2:
        from scipy import stats

        half = float(stats.t.ppf(0.975, arr.size - 1) * arr.std(ddof=1) / math.sqrt(arr.size))
        return mean, max(0.0, mean - half), min(1.0, mean + half)
    if n_rows is None or not n_rows or math.isnan(n_rows):
        return mean, mean, mean
    z, n = 1.959964, float(n_rows)
    centre = (mean + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(mean * (1 - mean) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return mean, max(0.0, centre - half), min(1.0, centre + half)


def write_report(frame: pd.DataFrame, config: ExperimentConfig, path: Path) -> Path:
    """Render ``report.html`` for the rows of ``frame`` (``results.parquet``) into ``path``."""
    ok = frame[frame["status"] == "ok"] if len(frame) else frame
    train = ok[ok["kind"] == "train"] if len(ok) else ok
    detect = ok[ok["kind"] == "detect"] if len(ok) else ok
    defend = ok[ok["kind"] == "defend"] if len(ok) else ok
    budget = ok[ok["kind"] == "min_budget"] if len(ok) else ok
    curves = budget_curves(train)
    sections: dict[str, Any] = {
        "curves": curves,
        "asr_plots": _curve_plots(curves, "attack_success", "attack success rate"),
        "acc_plots": _curve_plots(curves, "clean_accuracy", "clean test accuracy"),
        "min_budget": min_budget_table(budget, curves, config.target_asr),
        "detectors": detector_table(detect),
        "roc_plots": _detector_plots(detect),
        "defenses": defense_table(defend),
        "defense_plots": _defense_plots(defend),
    }
    failed = frame[frame["status"] == "failed"] if len(frame) else frame
    failures = [{k: _show(r.get(k)) for k in ("kind", "dataset", "model", "attack", "budget", "seed",
                                               "detector", "defense", "error")}
                for r in failed.to_dict("records")]
    errors: dict[str, int] = {}
    for f in failures:
        errors[f["error"]] = errors.get(f["error"], 0) + 1
    html = render("experiment.html", c=config, n_cells=len(frame), n_ok=len(ok), n_failed=len(failed),
                  failures=failures[:500], errors=sorted(errors.items(), key=lambda e: -e[1]),
                  grid=_grid(config), **sections)
    return write_html(path, html)


# ---------------------------------------------------------------------------------- tables
def budget_curves(train: pd.DataFrame) -> list[dict[str, Any]]:
    """Per data set, model, attack and budget: poisoned rows, and the mean and 95% interval over seeds
    of attack success and clean accuracy."""
    rows: list[dict[str, Any]] = []
    if not len(train):
        return rows
    for (ds, model, attack, budget), g in train.groupby(["dataset", "model", "attack", "budget"], sort=False):
        n_rows = g["n_attack_rows"].dropna()
        asr = mean_interval(list(g["attack_success"].dropna()), float(n_rows.mean()) if len(n_rows) else None)
        acc = mean_interval(list(g["clean_accuracy"].dropna()), float(g["n_test"].mean()))
        rows.append({"dataset": ds, "model": model, "attack": attack, "budget": float(budget),
                     "budget_kind": g["budget_kind"].iloc[0], "n_poison": float(g["n_poison"].mean()),
                     "seeds": len(g), "attack_success": asr, "clean_accuracy": acc})
    rows.sort(key=lambda r: (r["dataset"], r["model"], r["attack"], r["n_poison"]))
    return rows


def min_budget_table(budget: pd.DataFrame, curves: list[dict[str, Any]], target_asr: float) -> list[dict[str, Any]]:
    """The fewest poisoned rows that reach ``target_asr``: from the budget search per seed (median,
    range, seeds that reached it) and, from the grid, the smallest budget whose mean success did."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in curves:
        key = (r["dataset"], r["model"], r["attack"])
        entry = out.setdefault(key, {"dataset": key[0], "model": key[1], "attack": key[2], "grid": None,
                                     "search": None, "target_asr": target_asr})
        mean = r["attack_success"][0]
        if not math.isnan(mean) and mean >= target_asr and (entry["grid"] is None or r["n_poison"] < entry["grid"]):
            entry["grid"] = r["n_poison"]
    if len(budget):
        for (ds, model, attack), g in budget.groupby(["dataset", "model", "attack"], sort=False):
            entry = out.setdefault((ds, model, attack), {"dataset": ds, "model": model, "attack": attack,
                                                         "grid": None, "search": None, "target_asr": target_asr})
            found = [int(v) for v in g["min_budget"].dropna()]
            entry["target_asr"] = float(g["target_asr"].iloc[0])
            entry["search"] = {"median": float(np.median(found)) if found else None,
                               "min": min(found) if found else None, "max": max(found) if found else None,
                               "reached": len(found), "seeds": len(g), "max_poison": int(g["max_poison"].max())}
    return sorted(out.values(), key=lambda e: (e["dataset"], e["model"], e["attack"]))


def detector_table(detect: pd.DataFrame) -> list[dict[str, Any]]:
    """Per data set, model, attack and detector (budgets with poison, all seeds): mean AUROC, average
    precision, precision, recall and F1 of the flags, with the cells averaged."""
    rows: list[dict[str, Any]] = []
    if not len(detect):
        return rows
    poisoned = detect[detect["n_poison"] > 0]
    for (ds, model, attack, det), g in poisoned.groupby(["dataset", "model", "attack", "detector"], sort=False):
        rows.append({"dataset": ds, "model": model, "attack": attack, "detector": det, "cells": len(g),
                     **{m: _mean(g[m]) for m in ("auroc", "average_precision", "precision", "recall", "f1",
                                                 "recall_at_1_5x")}})
    rows.sort(key=lambda r: (r["dataset"], r["attack"], -(r["auroc"] if r["auroc"] is not None else -1)))
    return rows


def defense_table(defend: pd.DataFrame) -> list[dict[str, Any]]:
    """Per data set, model, attack, budget and defense: clean accuracy and attack success without and
    with the defense (means over seeds), and the rows it removed or flagged."""
    rows: list[dict[str, Any]] = []
    if not len(defend):
        return rows
    for (ds, model, attack, budget, defense), g in defend.groupby(
            ["dataset", "model", "attack", "budget", "defense"], sort=False):
        rows.append({"dataset": ds, "model": model, "attack": attack, "budget": float(budget),
                     "n_poison": float(g["n_poison"].mean()), "defense": defense, "seeds": len(g),
                     "baseline_clean_accuracy": _mean(g["baseline_clean_accuracy"]),
                     "clean_accuracy": _mean(g["clean_accuracy"]),
                     "baseline_attack_success": _mean(g["baseline_attack_success"]),
                     "attack_success": _mean(g["attack_success"]),
                     "precision": _mean(g["precision"]), "recall": _mean(g["recall"]),
                     "seconds": _mean(g["defense_seconds"])})
    rows.sort(key=lambda r: (r["dataset"], r["model"], r["attack"], r["n_poison"], r["defense"]))
    return rows


# ---------------------------------------------------------------------------------- plots
def _curve_plots(curves: list[dict[str, Any]], metric: str, ylabel: str) -> list[dict[str, str]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in curves:
        groups.setdefault((r["dataset"], r["model"]), []).append(r)
    plots = []
    for (ds, model), rows in list(groups.items())[:MAX_FIGURES]:
        lines: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            if not math.isnan(r[metric][0]):
                lines.setdefault(r["attack"], []).append(r)
        if not lines:
            continue
        fig, ax = new_figure()
        for attack, pts in lines.items():
            pts.sort(key=lambda r: r["n_poison"])
            xs = [p["n_poison"] for p in pts]
            ax.plot(xs, [p[metric][0] for p in pts], marker="o", label=attack)
            ax.fill_between(xs, [p[metric][1] for p in pts], [p[metric][2] for p in pts], alpha=0.15)
        if max((p["n_poison"] for p in rows), default=0) > 20 * max(1.0, min(p["n_poison"] for p in rows)):
            ax.set_xscale("symlog", linthresh=1.0)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("poisoned training rows")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{ds}, {model}: {ylabel} (mean, 95% interval)")
        ax.legend(fontsize=7)
        plots.append({"title": f"{ds}, {model}", "uri": figure_to_data_uri(fig)})
    return plots


def _detector_plots(detect: pd.DataFrame) -> list[dict[str, str]]:
    """ROC and precision-recall curves per data set and attack at its largest budget (vertical
    averages over seeds and models), one line per detector."""
    plots: list[dict[str, str]] = []
    if not len(detect):
        return plots
    with_curves = detect[detect["roc_tpr"].notna() & (detect["n_poison"] > 0)]
    for (ds, attack), g in list(with_curves.groupby(["dataset", "attack"], sort=False))[:MAX_FIGURES]:
        top = g[g["budget"] == g["budget"].max()]
        fig, (roc_ax, pr_ax) = _pair()
        for det, d in top.groupby("detector", sort=False):
            tpr = np.mean(np.vstack(list(d["roc_tpr"])), axis=0)
            prec = np.mean(np.vstack(list(d["pr_precision"])), axis=0)
            auroc = _mean(d["auroc"])
            roc_ax.plot(CURVE_GRID, tpr, label=f"{det} (AUROC {auroc:.2f})" if auroc is not None else str(det))
            pr_ax.plot(CURVE_GRID, prec, label=str(det))
        roc_ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        roc_ax.set_xlabel("false-positive rate")
        roc_ax.set_ylabel("true-positive rate")
        roc_ax.legend(fontsize=7)
        pr_ax.set_xlabel("recall")
        pr_ax.set_ylabel("precision")
        pr_ax.set_ylim(0, 1.02)
        n_poison = int(top["n_poison"].mean())
        fig.suptitle(f"{ds}, {attack}: detectors at {n_poison} poisoned rows")
        plots.append({"title": f"{ds}, {attack}", "uri": figure_to_data_uri(fig)})
    return plots


def _defense_plots(defend: pd.DataFrame) -> list[dict[str, str]]:
    """Per data set: attack success left against clean accuracy lost, one marker per defense and
    budget (means over seeds and models)."""
    plots: list[dict[str, str]] = []
    if not len(defend):
        return plots
    for ds, g in list(defend.groupby("dataset", sort=False))[:MAX_FIGURES]:
        fig, ax = new_figure()
        for defense, d in g.groupby("defense", sort=False):
            pts = d.groupby(["attack", "budget"], sort=False).agg(
                lost=("clean_accuracy", "mean"), base=("baseline_clean_accuracy", "mean"),
                asr=("attack_success", "mean"), base_asr=("baseline_attack_success", "mean"))
            x = (pts["base"] - pts["lost"]).to_numpy()
            y = pts["asr"].to_numpy(dtype=float)
            if np.all(np.isnan(y)):  # label flips: no success rate, plot the accuracy kept instead
                y = pts["lost"].to_numpy(dtype=float)
            ax.scatter(x, y, label=str(defense), alpha=0.8)
        ax.axvline(0, color="grey", linewidth=1)
        ax.set_xlabel("clean accuracy lost to the defense")
        ax.set_ylabel("attack success with the defense")
        ax.set_title(f"{ds}: defense trade-offs (one point per attack and budget)")
        ax.legend(fontsize=7)
        plots.append({"title": str(ds), "uri": figure_to_data_uri(fig)})
    return plots


def _pair() -> tuple[Any, tuple[Any, Any]]:  # Any: matplotlib's Figure and Axes (untyped here)
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.set_xlim(0, 1)
    return fig, (axes[0], axes[1])


def _grid(config: ExperimentConfig) -> list[tuple[str, str]]:
    return [("data sets", ", ".join(Path(d).name for d in config.datasets)), ("models", ", ".join(config.models)),
            ("attacks", "; ".join(a.label for a in config.attacks)),
            ("budgets", ", ".join(str(b) for b in config.budgets)), ("seeds", ", ".join(map(str, config.seeds))),
            ("detectors", ", ".join(config.detectors) or "-"), ("defenses", ", ".join(config.defenses) or "-"),
            ("measures", ", ".join(config.measures)),
            ("split", f"{1 - config.test_size:.0%} train / {config.test_size:.0%} test, seed {config.split_seed}")]


def _mean(values: Any) -> float | None:  # Any: a pandas Series
    arr = np.asarray(values.dropna(), dtype=float)
    return float(arr.mean()) if arr.size else None


def _show(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
