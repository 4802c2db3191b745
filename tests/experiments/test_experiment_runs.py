"""Cells are pure and resumable: the same row every time, nothing recomputed on a rerun, a
failed cell recorded (and retried on request), an interrupted run losing only its cells in flight."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from poisonlab.exceptions import DataError, MissingExtraError
from poisonlab.experiments import parse_config, run_experiment
from poisonlab.experiments.cells import load_split, run_cell
from poisonlab.experiments.store import ResultStore

VOLATILE = ("seconds", "worker", "defense_seconds", "traceback")

GRID = {
    "name": "small",
    "datasets": ["breast_cancer"],
    "models": ["logreg"],
    "budgets": [0, 10, 40],
    "seeds": [0, 1],
    "detectors": ["confident_learning"],
    "defenses": ["sanitize"],
    "measures": ["clean_accuracy", "attack_success", "detection", "defense"],
    "attacks": [{"name": "feature-backdoor", "target_label": "malignant"}],
}


def stable(frame):  # type: ignore[no-untyped-def]
    return frame.drop(columns=list(VOLATILE)).sort_values("key").reset_index(drop=True)


def test_a_cell_is_a_pure_function_of_its_config() -> None:
    cell = next(c for c in parse_config(GRID).cells() if c["kind"] == "detect" and c["budget"]["n_poison"] == 40)
    first, second = run_cell(cell), run_cell(dict(cell))
    for k in VOLATILE:
        first.pop(k, None), second.pop(k, None)
    assert first == second
    assert first["status"] == "ok" and first["n_poison"] == 40
    # confident learning on a 40-row feature backdoor among 398 rows (the planted rows keep plausible
    # features, so label evidence is weak): AUROC 0.599 measured 2026-12-03 (seed 0)
    assert 0.55 < first["auroc"] < 0.65
    assert len(first["roc_tpr"]) == len(first["pr_precision"]) == 51


def test_a_data_set_is_loaded_once_per_process() -> None:
    spec = {"name": "wine", "test_size": 0.3, "split_seed": 0, "data_dir": None}
    a, b = load_split(spec), load_split(dict(spec))
    assert a[0] is b[0]
    assert len(a[0]) + len(a[1]) == 178


def test_rerun_recomputes_nothing_and_gives_the_same_table(tmp_path: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    first = run_experiment(GRID, out=tmp_path / "out", progress=lambda s, d, t: seen.append((s, d, t)))
    assert first.n_cells == first.n_computed == 2 * 3 * 3 and first.n_failed == 0
    assert ("cells", first.n_cells, first.n_cells) in seen
    assert (tmp_path / "out" / "results.parquet").is_file()
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "Attack success against poison budget" in html and "Defense trade-offs" in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3", "")
    second = run_experiment(GRID, out=tmp_path / "out")
    assert second.n_computed == 0 and second.n_reused == first.n_cells
    assert stable(second.frame).equals(stable(first.frame))
    train = first.frame[first.frame["kind"] == "train"]
    # a 40-row feature backdoor on logistic regression: attack success 0.94 on both seeds
    # (measured 2026-12-03), against 0.09 for the clean model (the base rate)
    assert train[train["budget"] == 40]["attack_success"].min() > 0.8
    assert train[train["budget"] == 0]["attack_success"].max() < 0.2


def test_an_interrupted_run_keeps_its_finished_cells(tmp_path: Path) -> None:
    def stop(step: str, done: int, total: int) -> None:
        if step == "cells" and done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(GRID, out=tmp_path / "out", progress=stop)
    assert len(ResultStore(tmp_path / "out").status()) == 4
    assert not (tmp_path / "out" / ".lock").exists()
    resumed = run_experiment(GRID, out=tmp_path / "out")
    assert resumed.n_reused == 4 and resumed.n_computed == resumed.n_cells - 4


def test_a_grid_whose_cells_all_fail_still_writes_a_report(tmp_path: Path) -> None:
    grid = {**GRID, "measures": ["defense"], "defenses": ["dp"], "defense_options": {"dp": {"epsilon": -1.0}}}
    result = run_experiment(grid, out=tmp_path / "out")
    assert result.n_failed == result.n_cells == 6
    assert set(result.failed()["error"].str.split(":").str[0]) == {"ParameterError"}
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "6 of 6 cells failed" in html and "must be a float &gt; 0" in html
    # failed cells are kept, not rerun, until asked; then they run again (and fail again here)
    again = run_experiment(grid, out=tmp_path / "out")
    assert again.n_computed == 0 and again.n_failed == 6
    retried = run_experiment(grid, out=tmp_path / "out", retry_failed=True)
    assert retried.n_computed == 6


def test_a_failed_cell_is_replaced_when_its_retry_succeeds(tmp_path: Path) -> None:
    cfg = parse_config(GRID)
    store = ResultStore(tmp_path / "out")
    cell = cfg.cells()[0]
    store.write({"key": cell["key"], "kind": "train", "status": "failed", "error": "KilledWorker: lost"})
    assert store.status() == {cell["key"]: "failed"}
    store.write(run_cell(cell))
    assert store.status() == {cell["key"]: "ok"}
    assert sorted(p.name for p in store.cells_dir.iterdir()) == [f"{cell['key']}.parquet"]


def test_the_output_folder_must_be_the_experiments_own(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(DataError, match="files that poisonlab did not write"):
        run_experiment(GRID, out=other)
    assert (other / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_min_budget_search(tmp_path: Path) -> None:
    grid = {**GRID, "measures": ["min_budget"], "seeds": [0], "min_budget": {"target_asr": 0.9}}
    frame = run_experiment(grid, out=tmp_path / "out", report=False).frame
    row = frame.iloc[0]
    assert row["status"] == "ok" and bool(row["reached"])
    points = {p["n_poison"]: p["asr_mean"] for p in json.loads(row["budget_points"])}
    # the search's answer reaches the target and the count below it does not
    assert points[int(row["min_budget"])] >= 0.9
    assert points[int(row["min_budget"]) - 1] < 0.9 if int(row["min_budget"]) - 1 in points else True
    assert np.isfinite(row["clean_accuracy"])


def test_a_cluster_without_dask_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(MissingExtraError, match=r"poisonlab\[dask\].*workers=0"):
        run_experiment(GRID, out=tmp_path / "out", workers=2)
    assert not (tmp_path / "out").exists()


def test_warnings_go_to_the_row_and_old_rows_still_read(tmp_path: Path) -> None:
    import pyarrow as pa

    from poisonlab.experiments.store import _conform, schema

    grid = {"name": "warnings", "datasets": ["wine"], "models": ["mlp"], "budgets": [10], "seeds": [0],
            "measures": ["clean_accuracy", "attack_success"], "attacks": [{"name": "label-flip"}]}
    cell = next(c for c in parse_config(grid).cells() if c["kind"] == "train")
    row = run_cell(cell)
    # wine's MLP (max_iter 300) does not converge: measured 2026-12-03, one warning per fit
    assert row["status"] == "ok" and "ConvergenceWarning" in (row["warnings"] or "")
    old = pa.table({"key": ["k"], "status": ["ok"], "seconds": [1.0]})   # a row without 'warnings'
    table = _conform(old)
    assert table.schema == schema() and table.column("warnings").null_count == 1
