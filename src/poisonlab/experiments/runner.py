"""Run a grid: serially, on a local Dask cluster, or on any Dask scheduler; resume where it stopped.

:func:`run_experiment` checks the experiment (every data set loaded once here, every model and
attack tried on it) before any cell runs, skips the cells already in the store, runs the rest and
stores each row the moment it arrives, then writes ``results.parquet`` and ``report.html``.

Engine: ``workers=0`` runs the cells in this process, one after another (no Dask needed).
``workers=N`` starts a ``distributed.LocalCluster`` of N processes with one thread each (BLAS
pinned to one thread by the nanny's environment, and by every cell itself); ``scheduler`` connects
to a running cluster instead (``tcp://host:8786``; its workers need poisonlab installed and the
data files at the same paths). Cells are submitted under their content keys; a worker that dies
takes only its cells in flight, which the scheduler runs again elsewhere.

References
----------
.. [1] Rocklin, "Dask: Parallel Computation with Blocked algorithms and Task Scheduling",
   SciPy 2015. https://doi.org/10.25080/Majora-7b98e3ed-013
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poisonlab.exceptions import MissingExtraError, ParameterError
from poisonlab.experiments.cells import build_attack, failed_row, load_split, run_cell
from poisonlab.experiments.config import ConfigError, ExperimentConfig, load_config, parse_config
from poisonlab.experiments.store import (
    ResultStore,
    check_out_dir,
    locked,
    mark_out_dir,
    sweep_partials,
    write_parquet,
)

if TYPE_CHECKING:
    import pandas as pd

Progress = Callable[[str, int, int], None]
"""``progress(step, done, total)``: called as cells finish (``done`` of ``total`` to run)."""

Cell = dict[str, Any]  # Any: a cell is JSON (poisonlab.experiments.config.ExperimentConfig.cells)


@dataclass
class ExperimentResults:
    """What :func:`run_experiment` did and found.

    Attributes
    ----------
    config : ExperimentConfig
        The experiment that ran.
    frame : pandas.DataFrame
        One row per cell of the grid (the content of ``results.parquet``).
    out : Path
        The output folder: ``results.parquet``, ``report.html`` and the store ``cells/``.
    n_cells, n_computed, n_reused, n_failed : int
        Cells in the grid; computed by this run; found finished in the store; failed (now).
    seconds : float
        Wall time of the run.
    paths : dict of str to Path
        ``results`` and ``report``.
    """

    config: ExperimentConfig
    frame: pd.DataFrame
    out: Path
    n_cells: int
    n_computed: int
    n_reused: int
    n_failed: int
    seconds: float
    engine: str = "serial"
    paths: dict[str, Path] = field(default_factory=dict)

    def failed(self) -> pd.DataFrame:
        """The rows of the cells that failed, with their errors."""
        return self.frame[self.frame["status"] == "failed"]

    def summary(self) -> dict[str, object]:
        """A JSON-ready summary: counts, engine, seconds and the files written."""
        return {"experiment": self.config.name, "cells": self.n_cells, "computed": self.n_computed,
                "reused": self.n_reused, "failed": self.n_failed, "engine": self.engine,
                "seconds": round(self.seconds, 2), "out": str(self.out),
                "files": {k: str(v) for k, v in self.paths.items()}}


# Any: a dict config holds TOML values of every type (checked by parse_config)
def run_experiment(
    config: ExperimentConfig | str | Path | Mapping[str, Any],
    *,
    out: str | Path | None = None,
    workers: int = 0,
    scheduler: str | None = None,
    retry_failed: bool = False,
    report: bool = True,
    progress: Progress | None = None,
) -> ExperimentResults:
    """Run every cell of an experiment not yet finished in ``out``; write the table and the report.

    Parameters
    ----------
    config : ExperimentConfig, path or dict
        The experiment: an ``EXPERIMENT.toml`` path, a dict with the same keys, or a checked config.
    out : str or Path, optional
        The output folder (default ``poisonlab-<name of the file>``); it keeps the store, so a
        rerun with the same folder skips the finished cells.
    workers : int
        0 runs the cells in this process; N >= 1 starts a local Dask cluster of N one-thread
        worker processes.
    scheduler : str, optional
        The address of a running Dask scheduler (``tcp://host:8786``), instead of ``workers``.
    retry_failed : bool
        Run the cells that failed before again (by default they are kept as failed).
    report : bool
        Write ``report.html`` (always on the command line).
    progress : callable, optional
        ``progress(step, done, total)`` as cells finish.

    Returns
    -------
    ExperimentResults

    Raises
    ------
    ConfigError
        A key or value of the experiment cannot run, named with its line, before anything runs.
    MissingExtraError
        A cluster was asked for without the ``dask`` extra installed.

    References
    ----------
    .. [1] Rocklin, "Dask: Parallel Computation with Blocked algorithms and Task Scheduling",
       SciPy 2015. https://doi.org/10.25080/Majora-7b98e3ed-013
    """
    started = time.perf_counter()
    cfg = _as_config(config)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ParameterError(f"The 'workers' parameter of run_experiment must be an int >= 0. Got {workers!r} instead.")
    if scheduler is not None and workers:
        raise ParameterError("run_experiment takes workers (a local cluster) or scheduler (a running one), "
                             "not both.")
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
        raise ParameterError(f"The 'scheduler' parameter of run_experiment must be an address such as "
                             f"tcp://127.0.0.1:8786. Got {scheduler!r} instead.")
    if workers or scheduler:
        _require_dask()
    target = Path(out) if out is not None else Path(f"poisonlab-{_slug(cfg.name)}")
    check_out_dir(target)
    check_grid(cfg)
    cells = cfg.cells()
    keys = [c["key"] for c in cells]
    store = ResultStore(target)
    mark_out_dir(target)
    engine = "serial" if not (workers or scheduler) else (scheduler or f"LocalCluster({workers} workers)")
    with locked(target):
        sweep_partials([target, store.cells_dir])
        status = store.status()
        todo = [c for c in cells if c["key"] not in status or (retry_failed and status[c["key"]] == "failed")]
        if progress is not None:
            progress("cells", 0, len(todo))
        done = 0
        for row in _execute(todo, workers, scheduler):
            store.write(row)
            done += 1
            if progress is not None:
                progress("cells", done, len(todo))
        table = store.rows(keys)
        paths = {"results": write_parquet(table, target / "results.parquet")}
        frame = table.to_pandas()
        if report:
            from poisonlab.experiments.report import write_report

            if progress is not None:
                progress("writing report.html", len(todo), len(todo))
            paths["report"] = write_report(frame, cfg, target / "report.html")
    n_failed = int((frame["status"] == "failed").sum()) if len(frame) else 0
    return ExperimentResults(config=cfg, frame=frame, out=target, n_cells=len(cells), n_computed=len(todo),
                             n_reused=len(cells) - len(todo), n_failed=n_failed,
                             seconds=time.perf_counter() - started, engine=engine, paths=paths)


def check_grid(cfg: ExperimentConfig) -> None:
    """Load every data set once and try every model and attack on it, before any cell runs: a
    model that does not train on the data's kind, an unknown class or a budget larger than the
    eligible rows is a :class:`ConfigError` naming the key and its line."""
    from poisonlab.audit import ONLY_FOR
    from poisonlab.exceptions import PoisonlabError
    from poisonlab.models import SPEC_TABLE

    for i, name in enumerate(cfg.datasets):
        try:
            train, _test = load_split({"name": name, "test_size": cfg.test_size, "split_seed": cfg.split_seed,
                                       "data_dir": cfg.data_dir})
        except PoisonlabError as exc:
            raise cfg.error(("datasets", i), str(exc).splitlines()[0]) from None
        for j, model in enumerate(cfg.models):
            if train.kind not in SPEC_TABLE[model].kinds:
                raise cfg.error(("models", j), f"{model!r} trains on {' or '.join(SPEC_TABLE[model].kinds)} "
                                f"data; the data set {name!r} is {train.kind}.")
        for j, det in enumerate(cfg.detectors if "detection" in cfg.measures else ()):
            if ONLY_FOR.get(det, train.kind) != train.kind:
                raise cfg.error(("detectors", j), f"{det!r} reads {ONLY_FOR[det]} data; the data set "
                                f"{name!r} is {train.kind}.")
        for attack in cfg.attacks:
            path = ("attacks", attack.index)
            for budget in cfg.budgets:
                cell = {"attack": attack.as_dict(), "seed": 0, "budget": _budget(budget)}
                try:
                    build_attack(cell, train).apply(train)
                except PoisonlabError as exc:
                    named = re.search(r"'(\w+)' parameter", str(exc))
                    where = ("budgets",) if "eligible" in str(exc) else (
                        (*path, named[1]) if named and named[1] in dict(attack.params) else path)
                    raise cfg.error(where, f"{attack.label} on {name!r}: {str(exc).splitlines()[0]}") from None
                except (TypeError, ValueError) as exc:
                    raise cfg.error(path, f"{attack.label} on {name!r}: {exc}") from None


def _budget(budget: int | float) -> dict[str, int | float]:
    from poisonlab.experiments.config import budget_dict

    return budget_dict(budget)


def _execute(cells: list[Cell], workers: int, scheduler: str | None) -> Iterator[dict[str, Any]]:
    """The rows of ``cells`` as they finish: in this process, or on a Dask cluster."""
    if not cells:
        return
    if not (workers or scheduler):
        for cell in cells:
            yield run_cell(cell)
        return
    yield from _on_dask(cells, workers, scheduler)


def _on_dask(cells: list[Cell], workers: int, scheduler: str | None) -> Iterator[dict[str, Any]]:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="30s")  # type: ignore[no-untyped-call]
        except OSError as exc:
            raise ParameterError(f"No Dask scheduler answered at {scheduler} ({exc}).") from None
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,  # type: ignore[no-untyped-call]
                               dashboard_address=None)
        client = Client(cluster)  # type: ignore[no-untyped-call]
    try:
        client.wait_for_workers(1, timeout=60)
        futures = {}
        for cell in cells:
            future = client.submit(run_cell, cell, key=f"poisonlab-cell-{cell['key']}", pure=False)
            futures[future.key] = (future, cell)
        for future in as_completed([f for f, _ in futures.values()]):  # type: ignore[no-untyped-call]
            cell = futures[future.key][1]
            try:
                row = future.result()
            except Exception as exc:  # the task itself never raises: its worker died, the cluster lost it
                row = failed_row(cell, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            yield row
            future.release()
    finally:
        client.close()  # type: ignore[no-untyped-call]
        if cluster is not None:
            cluster.close()


def _require_dask() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise MissingExtraError("A Dask cluster (workers >= 1 or a scheduler) needs the 'distributed' package: "
                                "pip install 'poisonlab[dask]'; workers=0 runs the cells in this process "
                                "without it.") from None


def _as_config(config: ExperimentConfig | str | Path | Mapping[str, Any]) -> ExperimentConfig:
    if isinstance(config, ExperimentConfig):
        return config
    if isinstance(config, (str, Path)):
        return load_config(config)
    if isinstance(config, Mapping):
        return parse_config(config)
    raise ConfigError(f"run_experiment takes an ExperimentConfig, a TOML path or a dict; got a "
                      f"{type(config).__name__}.")


def _slug(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "experiment"
