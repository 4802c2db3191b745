"""``poisonlab demo``: poison a real model end to end and show what it takes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from poisonlab.cli.app import app
from poisonlab.cli.common import (
    DATA_DIR_OPTION,
    JSON_OPTION,
    SEED_OPTION,
    claim_out,
    console,
    emit_json,
    fail,
    handle_errors,
    out_console,
    pct,
)
from poisonlab.files import write_json


@app.command()
@handle_errors
def demo(
    dataset: str = typer.Option("spamassassin", "--dataset",
                                help="spamassassin (real mail), digits or mnist (images)."),
    quick: bool = typer.Option(False, "--quick", help="A smaller grid: one seed, fewer points."),
    out: Path = typer.Option(Path("poisonlab-demo"), "--out", help="Folder for results.json and report.html."),
    target_asr: float = typer.Option(0.9, "--target-asr", help="Success rate the budget search aims for."),
    data_dir: Path | None = DATA_DIR_OPTION,
    json_out: bool = JSON_OPTION,
    seed: int = SEED_OPTION,
) -> None:
    """Poison a real model end to end and show what it takes: flips, backdoors, budgets, triggers."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from poisonlab.demo import run_demo
    from poisonlab.report.demo import write_demo_report

    if dataset not in ("spamassassin", "digits", "mnist"):
        fail(f"Unknown demo dataset {dataset!r}; choose spamassassin, digits or mnist.", 2)
    tmp = claim_out(out, "demo")
    with Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), TimeElapsedColumn(),
                  console=console, transient=True, disable=json_out or not console.is_terminal) as progress:
        task = progress.add_task("starting", total=None)
        results = run_demo(dataset, quick=quick, seed=seed, data_dir=data_dir,
                           target_asr=target_asr,
                           progress=lambda msg: progress.update(task, description=msg))
    write_json(tmp / "results.json", results)
    write_demo_report(results, tmp / "report.html")
    if json_out:
        emit_json(results)
        return
    _render_demo(results, out)

def _render_demo(r: dict[str, Any], out: Path) -> None:
    c = out_console
    c.print(f"\n[bold]poisonlab demo[/] on [bold]{escape(r['dataset'])}[/]: {r['n_train']} training rows, "
            f"{r['n_test']} test rows, model [cyan]{escape(r['model'])}[/], target class "
            f"[bold]{escape(r['target_label'])}[/], seeds {r['seeds']}")
    c.print(f"Clean model accuracy: [bold]{pct(r['clean']['accuracy'])}[/]")
    flips = Table(title="Label flipping: clean accuracy", title_justify="left")
    for col in ("strategy", "flipped", "accuracy", "min", "max"):
        flips.add_column(col, justify="right" if col != "strategy" else "left")
    for f in r["label_flip"]:
        flips.add_row(Text(f["strategy"]), pct(f["rate"]), pct(f["accuracy"]),
                      pct(f["accuracy_range"]["min"]), pct(f["accuracy_range"]["max"]))
    c.print(flips)
    bd = Table(title="Backdoor: attack success against poisoned rows", title_justify="left")
    for col in ("trigger", "poisoned", "success", "min", "max", "clean acc."):
        bd.add_column(col, justify="left" if col == "trigger" else "right")
    for b in r["backdoor"]:
        bd.add_row(Text(b["trigger"]), str(b["n_poison"]), pct(b["asr"]), pct(b["asr_range"]["min"]),
                   pct(b["asr_range"]["max"]), pct(b["accuracy"]))
    c.print(bd)
    tr = Table(title=f"Which triggers work ({r['triggers'][0]['n_poison']} poisoned rows)"
               if r["triggers"] else "Triggers", title_justify="left")
    for col in ("trigger", "model", "success", "min", "max", "clean acc."):
        tr.add_column(col, justify="left" if col in ("trigger", "model") else "right")
    for t in r["triggers"]:
        tr.add_row(Text(t["trigger"]), Text(t["model"]), pct(t["asr"]), pct(t["asr_range"]["min"]),
                   pct(t["asr_range"]["max"]), pct(t["accuracy"]))
    c.print(tr)
    _render_clean_label(r["clean_label"])
    for m in r["min_budget"]:
        c.print(f"Fewest poisoned rows for {pct(m['target_asr'])} success with {escape(m['trigger'])}: "
                f"[bold]{m['result']}[/]")
    h = r["headline"]
    if h["found"]:
        c.print(f"\n[bold yellow]Backdoored, and it passes its accuracy test:[/] {h['n_poison']} "
                f"poisoned rows ({escape(h['trigger'])}) send {pct(h['asr'])} of triggered inputs to "
                f"{escape(r['target_label'])} at {pct(h['accuracy'])} clean accuracy "
                f"(clean model {pct(h['clean_accuracy'])}).")
    c.print(f"\nWrote {out / 'results.json'} and {out / 'report.html'} ({r['seconds']} s).", markup=False)


def _render_clean_label(cl: dict[str, Any]) -> None:
    """The clean-label table and what the audit found of each attack's poisons."""
    c = out_console
    n = cl["rows"][0]["n_poison"] if cl["rows"] else 0
    table = Table(title=f"Clean-label backdoors (no label changed), {n} poisoned rows", title_justify="left")
    for col in ("attack", "labels", "model", "success", "min", "max", "clean acc."):
        table.add_column(col, justify="left" if col in ("attack", "labels", "model") else "right")
    for row in cl["rows"]:
        table.add_row(Text(row["attack"]), row["labels"], Text(row["model"]), pct(row["asr"]),
                      pct(row["asr_range"]["min"]), pct(row["asr_range"]["max"]), pct(row["accuracy"]))
    c.print(table)
    for a in cl["audit"]:
        c.print(f"Audit of {escape(a['attack'])} ({a['labels']} labels): {a['flagged']} rows flagged, "
                f"{a['poisons_flagged']} of the {a['n_poison']} poisoned rows among them.")
