"""``poisonlab run`` from the command line: --workers 0 runs in this process, a second run reuses
every cell, and a bad experiment file is one line naming the key and its line, exit code 1."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from poisonlab.cli import app

SMALL = """\
name = "cli"
datasets = ["breast_cancer"]
models = ["logreg"]
budgets = [0, 20]
seeds = [0]
measures = ["clean_accuracy", "attack_success"]

[[attacks]]
name = "feature-backdoor"
target_label = "malignant"
"""


def test_run_serial_then_resume(tmp_path: Path) -> None:
    config = tmp_path / "small.toml"
    config.write_text(SMALL)
    out = tmp_path / "out"
    first = CliRunner().invoke(app, ["run", str(config), "--workers", "0", "--out", str(out), "--json"])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output)
    assert summary["engine"] == "serial"
    assert summary["computed"] == summary["cells"] == 2 and summary["failed"] == 0
    assert (out / "results.parquet").is_file() and (out / "report.html").is_file()
    again = json.loads(CliRunner().invoke(app, ["run", str(config), "--workers", "0", "--out", str(out),
                                                "--json"]).output)
    assert again["computed"] == 0 and again["reused"] == 2


def test_a_bad_experiment_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(SMALL.replace('budgets = [0, 20]', 'budgets = [0, "many"]'))
    result = CliRunner().invoke(app, ["run", str(config), "--workers", "0", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "budgets" in result.output and "line 4" in result.output
    assert not (tmp_path / "o").exists()


def test_workers_and_scheduler_exclude_each_other(tmp_path: Path) -> None:
    config = tmp_path / "small.toml"
    config.write_text(SMALL)
    result = CliRunner().invoke(app, ["run", str(config), "--workers", "1", "--scheduler", "tcp://x:1"])
    assert result.exit_code == 2 and "exclude each other" in result.output  # usage: exit 2
