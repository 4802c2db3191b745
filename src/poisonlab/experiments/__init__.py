"""Experiment grids: ``poisonlab run EXPERIMENT.toml`` and :func:`run_experiment`.

A TOML file names the axes (data sets, models, attacks with their parameters, budgets, detectors,
defenses, seeds) and what to measure (:mod:`poisonlab.experiments.config`); each cell of the grid
is a pure function of its config, keyed by its content hash (:mod:`poisonlab.experiments.cells`)
in a results store under the output folder (:mod:`poisonlab.experiments.store`). The runner
(:mod:`poisonlab.experiments.runner`) runs the cells not yet stored, in this process or on Dask,
and writes ``results.parquet`` and ``report.html`` (:mod:`poisonlab.experiments.report`).

Dask is imported only when a cluster is asked for: ``workers=0`` needs only pyarrow.
"""

from __future__ import annotations

from poisonlab.experiments.config import ConfigError, ExperimentConfig, load_config, parse_config
from poisonlab.experiments.runner import ExperimentResults, run_experiment

__all__ = ["ConfigError", "ExperimentConfig", "ExperimentResults", "load_config", "parse_config",
           "run_experiment"]
