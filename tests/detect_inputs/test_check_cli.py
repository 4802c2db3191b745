"""`poisonlab check` on a table: the leave-out test by default; a LinearSVC inside poisonlab's
model wrapper is scored through its decision values."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from typer.testing import CliRunner

from poisonlab.models.io import save_model
from poisonlab.models.sklearn import SklearnModel

runner = CliRunner()


def _write(path: Path, X: np.ndarray, y: np.ndarray | None) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"f{j}" for j in range(X.shape[1])] + (["label"] if y is not None else []))
        for i, row in enumerate(X):
            writer.writerow([f"{v:.6g}" for v in row] + ([int(y[i])] if y is not None else []))
    return path


def _poisoned_table() -> tuple[np.ndarray, ...]:
    bc = load_breast_cancer()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(bc.target))
    X, y = bc.data[idx], bc.target[idx]
    train, test, ytest = X[:285], X[285:], y[285:]
    ytrain = y[:285].copy()
    # a one-column trigger set by hand: the last column far above its range, relabelled 0
    value = train[:, -1].max() * 2
    chosen = rng.choice(np.flatnonzero(ytrain == 1), 28, replace=False)
    train = train.copy()
    train[chosen, -1] = value
    ytrain[chosen] = 0
    return train, ytrain, test, ytest, value


def test_a_linear_svc_in_the_model_wrapper_is_checked() -> None:
    from poisonlab.detect_inputs.check import check_inputs

    train, ytrain, test, ytest, value = _poisoned_table()
    model = SklearnModel(estimator=make_pipeline(StandardScaler(), LinearSVC())).fit(train, ytrain, n_classes=2)
    triggered = test[ytest == 1].copy()
    triggered[:, -1] = value
    report = check_inputs(model, triggered, test[:140], false_rejection_rate=0.05)
    assert report.method == "leave-out"
    # measured 2026-12-02 (seed 0): 97.2% of the triggered rows flagged (2.1% of fresh clean rows)
    assert report.flags.mean() >= 0.9


def test_check_tabular_rows_from_csv(tmp_path: Path) -> None:
    from poisonlab.cli import app

    train, ytrain, test, ytest, value = _poisoned_table()
    model = SklearnModel(estimator=make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))).fit(
        train, ytrain, n_classes=2)
    model_path = save_model(model, tmp_path / "svc", classes=("malignant", "benign"), spec=None)
    calibration = _write(tmp_path / "clean.csv", test[:140], ytest[:140])
    fresh = test[140:]
    triggered = fresh[ytest[140:] == 1].copy()
    triggered[:, -1] = value
    inputs = _write(tmp_path / "inputs.csv", np.concatenate([fresh, triggered]), None)
    out = tmp_path / "check"
    result = runner.invoke(app, ["check", str(model_path), "--data", str(inputs), "--calibrate",
                                 str(calibration), "--out", str(out),
                                 "--false-rejection-rate", "0.05", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["method"] == "leave-out"
    assert summary["kind"] == "tabular"
    with (out / "verdicts.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    flagged = np.array([r["flagged"] == "true" for r in rows])
    n = len(fresh)
    # measured 2026-12-02 (seed 0, through check_inputs): 3.5% of the fresh clean rows and 98.9%
    # of the triggered ones flagged at a 5% false-rejection rate
    assert flagged[:n].mean() <= 0.12
    assert flagged[n:].mean() >= 0.9
