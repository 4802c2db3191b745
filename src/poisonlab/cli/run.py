"""``poisonlab run EXPERIMENT.toml``: run a grid of experiments, resumable, locally or on Dask."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from poisonlab.cli.app import app
from poisonlab.cli.common import JSON_OPTION, console, emit_json, handle_errors, out_console


@app.command(name="run")
@handle_errors
def run_command(
    experiment: Path = typer.Argument(..., help="The experiment file (EXPERIMENT.toml)."),
    out: Path | None = typer.Option(None, "--out",
                                    help="Folder for results.parquet, report.html and the store of "
                                    "finished cells (default: poisonlab-<file name without .toml>)."),
    workers: int | None = typer.Option(None, "--workers",
                                       help="Local Dask worker processes, one thread each (default: one "
                                       "per CPU core; 0 runs the cells in this process, without Dask)."),
    scheduler: str | None = typer.Option(None, "--scheduler",
                                         help="Address of a running Dask scheduler (tcp://HOST:PORT)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run the cells that failed before again."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Run every cell of an experiment grid not yet finished in --out; write results.parquet and report.html."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from poisonlab.exceptions import ParameterError
    from poisonlab.experiments import load_config, run_experiment

    if workers is not None and scheduler is not None:
        raise ParameterError("--workers and --scheduler exclude each other: a local cluster, or a running one.")
    if workers is not None and workers < 0:
        raise ParameterError(f"--workers must be an int >= 0. Got {workers} instead.")
    config = load_config(experiment)
    target = out if out is not None else Path(f"poisonlab-{experiment.stem}")
    n_workers = ((os.cpu_count() or 1) if workers is None else workers) if scheduler is None else 0
    with Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                  transient=True, disable=json_out or not console.is_terminal) as progress:
        task = progress.add_task("checking the experiment", total=None)

        def update(step: str, done: int, total: int) -> None:
            progress.update(task, description=step, completed=done, total=total)

        results = run_experiment(config, out=target, workers=n_workers, scheduler=scheduler,
                                 retry_failed=retry_failed, progress=update)
    summary = results.summary()
    if json_out:
        emit_json(summary)
        return
    _render(summary, results)


def _render(summary: dict[str, Any], results: Any) -> None:  # Any: an ExperimentResults
    c = out_console
    c.print(f"[bold]{escape(str(summary['experiment']))}[/]: {summary['cells']} cells, "
            f"{summary['computed']} computed, {summary['reused']} reused from the store, "
            f"{summary['failed']} failed ({escape(str(summary['engine']))}, {summary['seconds']} s).")
    if results.n_failed:
        errors = results.failed()["error"].value_counts()
        for error, n in list(errors.items())[:3]:
            c.print(f"  [red]{n} x[/] {escape(str(error))}", highlight=False)
        c.print("  Rerun with --retry-failed to run them again.")
    files = summary["files"]
    c.print("Wrote " + ", ".join(str(v) for v in files.values()), markup=False)
