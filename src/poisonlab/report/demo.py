"""The demo's HTML report: success against poisoned rows, accuracy against flip rate, triggers."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from poisonlab.report import figure_to_data_uri, new_figure, render, write_html

# ``results`` below is the demo's results.json document (poisonlab.demo.run_demo), read key by key
# into nested rows: Mapping[str, Any], as for any JSON read back (json.loads gives Any).


def asr_curve_plot(results: Mapping[str, Any]) -> str:
    """Attack success against the number of poisoned rows, one line per trigger (mean, min-max band over
    seeds, log scale), with the target success rate dashed; a PNG data URI.
    """
    fig, ax = new_figure()
    by_trigger: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in results["backdoor"]:
        by_trigger[row["trigger"]].append(row)
    for name, rows in by_trigger.items():
        rows.sort(key=lambda r: r["n_poison"])
        xs = [r["n_poison"] for r in rows]
        ax.plot(xs, [r["asr"] for r in rows], marker="o", label=name)
        ax.fill_between(xs, [r["asr_range"]["min"] for r in rows],
                        [r["asr_range"]["max"] for r in rows], alpha=0.15)
    target = results["min_budget"][0]["target_asr"] if results["min_budget"] else 0.9
    ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:.0%}")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("poisoned training rows")
    ax.set_ylabel("attack success rate")
    ax.set_title("Attack success against poison budget (mean, min-max over seeds)")
    ax.legend(fontsize=8)
    return figure_to_data_uri(fig)


def flip_plot(results: Mapping[str, Any]) -> str:
    """Clean test accuracy against the share of labels flipped, one line per strategy (mean, min-max
    band over seeds); a PNG data URI.
    """
    fig, ax = new_figure()
    by_strategy: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in results["label_flip"]:
        by_strategy[row["strategy"]].append(row)
    for name, rows in by_strategy.items():
        xs = [r["rate"] for r in rows]
        ax.plot(xs, [r["accuracy"] for r in rows], marker="o", label=f"{name} ({rows[0]['description']})")
        ax.fill_between(xs, [r["accuracy_range"]["min"] for r in rows],
                        [r["accuracy_range"]["max"] for r in rows], alpha=0.15)
    ax.set_xlabel("share of training labels flipped")
    ax.set_ylabel("clean test accuracy")
    ax.set_title("Accuracy against label-flip rate")
    ax.legend(fontsize=8)
    return figure_to_data_uri(fig)


def trigger_plot(results: Mapping[str, Any]) -> str:
    """Attack success of each trigger compared, as horizontal bars; a PNG data URI."""
    rows = results["triggers"]
    fig, ax = new_figure(6.4, 0.35 * len(rows) + 1.2)
    names = [r["trigger"] for r in rows][::-1]
    ax.barh(names, [r["asr"] for r in rows][::-1], color="#b5543c")
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"attack success rate at {rows[0]['n_poison'] if rows else 0} poisoned rows")
    ax.set_title("Which triggers work")
    ax.tick_params(axis="y", labelsize=8)
    return figure_to_data_uri(fig)


def write_demo_report(results: Mapping[str, Any], path: Path) -> Path:
    """Render the demo's ``report.html`` from its ``results.json`` document (``results``) into ``path``;
    returns ``path``.
    """
    html = render(
        "demo.html",
        r=results,
        asr_plot=asr_curve_plot(results),
        flip_plot=flip_plot(results),
        trigger_plot=trigger_plot(results),
    )
    return write_html(path, html)
