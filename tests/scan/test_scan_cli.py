"""`poisonlab scan` and `poisonlab check` end to end, on files a user would have."""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import typer
from sklearn.base import clone
from typer.testing import CliRunner

from poisonlab.attacks import PatchBackdoorAttack, TextBackdoorAttack
from poisonlab.data import Dataset, save_dataset
from poisonlab.models import make_model
from poisonlab.models.io import save_model

runner = CliRunner()


def _app() -> typer.Typer:
    from poisonlab.cli import app

    return app


def _toy_text(n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    ham = ["meeting", "notes", "lunch", "report", "monday", "budget", "team", "call", "agenda"]
    spam = ["free", "prize", "winner", "cash", "offer", "cheap", "click", "bonus", "deal"]
    X = np.empty(n, dtype=object)
    y = rng.integers(2, size=n)
    for i in range(n):
        words = rng.choice(spam if y[i] else ham, size=8).tolist()
        words += rng.choice(ham + spam, size=3).tolist()
        X[i] = " ".join(words)
    return Dataset(X=X, y=y, classes=("ham", "spam"), name="toy")


@pytest.fixture(scope="module")
def text_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("scan_cli")
    train = _toy_text(600, 0)
    poisoned = TextBackdoorAttack(trigger="zq", target_label="ham", poison_rate=0.1,
                                  random_state=0).apply(train)
    backdoored = make_model("logreg-text").fit(poisoned.dataset.X, poisoned.dataset.y, n_classes=2)
    clean = make_model("logreg-text").fit(train.X, train.y, n_classes=2)
    files = {
        "backdoored": save_model(backdoored, root / "backdoored", classes=train.classes,
                                 spec="logreg-text"),
        "clean": save_model(clean, root / "clean", classes=train.classes, spec="logreg-text"),
        "data": save_dataset(_toy_text(200, 1), root / "clean_rows.csv"),
    }
    pickled = root / "model.pkl"
    raw = clone(clean.estimator).fit(train.X, np.array(train.classes)[train.y])  # string labels
    pickled.write_bytes(pickle.dumps(raw))
    files["pickle"] = pickled
    return files


def test_scan_finds_the_planted_trigger(text_files: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(_app(), ["scan", str(text_files["backdoored"]), "--data",
                                    str(text_files["data"]), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "scan.json").read_text())
    assert doc["verdict"] == "backdoor"
    assert doc["target_class"] == "ham"
    assert doc["triggers"][0]["trigger"] == "zq"
    assert {"trigger", "flip_rate"} <= set(doc["triggers"][0])
    assert doc["statistic"]["value"] >= doc["threshold"]
    html = (tmp_path / "report.html").read_text()
    assert "zq" in html and "<script" not in html


def test_scan_calls_a_clean_model_clean(text_files: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(_app(), ["scan", str(text_files["clean"]), "--data",
                                    str(text_files["data"]), "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["verdict"] == "clean" and doc["target_class"] is None
    assert doc["statistic"]["value"] < doc["threshold"]


def test_scan_refuses_a_pickle_without_the_flag(text_files: dict[str, Path],
                                                tmp_path: Path) -> None:
    args = ["scan", str(text_files["pickle"]), "--data", str(text_files["data"]),
            "--out", str(tmp_path)]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 1
    assert "--trust-pickle" in result.output
    assert "Traceback" not in result.output
    trusted = runner.invoke(_app(), [*args, "--trust-pickle", "--json"])
    assert trusted.exit_code == 0, trusted.output
    assert "runs whatever code the file contains" in trusted.stderr


@pytest.mark.torch
def test_check_writes_verdicts_for_unlabelled_images(digits: Dataset, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    train, test = digits.split(test_size=0.45, random_state=0)
    poisoned = PatchBackdoorAttack(target_label=0, poison_rate=0.1, random_state=0).apply(train)
    model = make_model("cnn", random_state=0, n_threads=1).fit(
        poisoned.dataset.X, poisoned.dataset.y, n_classes=10)
    model_path = save_model(model, tmp_path / "cnn", classes=digits.classes, spec="cnn")
    calibration = save_dataset(test.subset(np.arange(400)), tmp_path / "clean.npz")
    fresh = test.X[400:]
    inputs = np.concatenate([fresh[:100], poisoned.apply_trigger(fresh[100:200])])
    np.savez(tmp_path / "inputs.npz", X=inputs)  # no labels: live traffic
    out = tmp_path / "check"
    result = runner.invoke(_app(), ["check", str(model_path), "--data", str(tmp_path / "inputs.npz"),
                                    "--calibrate", str(calibration), "--out", str(out)])
    assert result.exit_code == 0, result.output
    with (out / "verdicts.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 200
    assert {"row", "score", "flagged", "window_score", "window_flagged"} <= set(rows[0])
    summary = json.loads((out / "summary.json").read_text())
    # STRIP and windowed STRIP at half the rate each; an input flagged by either is flagged
    assert summary["expected_false_rejection_rate"] == pytest.approx(0.01, abs=1e-3)
    assert summary["window"]["expected_false_rejection_rate"] == pytest.approx(0.005, abs=1e-3)
    assert summary["threshold"] == pytest.approx(float(summary["threshold"]))
    flagged = np.array([r["flagged"] == "true" for r in rows])
    # measured (seed 0): none of the clean inputs and 96% of the triggered ones flagged (STRIP
    # alone at half the rate 71%, windowed STRIP 83%)
    assert flagged[:100].mean() <= 0.05
    assert flagged[100:].mean() >= 0.85
    # --no-window: STRIP alone, at the whole rate
    alone = tmp_path / "check_alone"
    result = runner.invoke(_app(), ["check", str(model_path), "--data", str(tmp_path / "inputs.npz"),
                                    "--calibrate", str(calibration), "--out", str(alone),
                                    "--no-window"])
    assert result.exit_code == 0, result.output
    summary = json.loads((alone / "summary.json").read_text())
    assert summary["window"] is None and summary["method"] == "STRIP"
    assert summary["expected_false_rejection_rate"] == pytest.approx(0.01, abs=1e-3)
    with (alone / "verdicts.csv").open() as handle:
        assert "window_score" not in next(csv.reader(handle))


def test_check_names_a_kind_mismatch(text_files: dict[str, Path], digits: Dataset,
                                     tmp_path: Path) -> None:
    images = save_dataset(digits.subset(np.arange(150)), tmp_path / "digits.npz")
    result = runner.invoke(_app(), ["check", str(text_files["clean"]), "--data", str(images),
                                    "--calibrate", str(text_files["data"]), "--out", str(tmp_path / "c")])
    assert result.exit_code == 1
    assert "inputs are image data but the calibration rows are text data" in result.output


def test_check_with_a_scan_flags_inputs_holding_the_trigger(text_files: dict[str, Path],
                                                            tmp_path: Path) -> None:
    app = _app()
    scan_dir = tmp_path / "scan"
    assert runner.invoke(app, ["scan", str(text_files["backdoored"]), "--data",
                               str(text_files["data"]), "--out", str(scan_dir)]).exit_code == 0
    fresh = _toy_text(120, 2)
    texts = list(fresh.X[:60]) + [t + " zq" for t in fresh.X[60:]]
    inputs = tmp_path / "inputs.csv"
    with inputs.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        writer.writerows([t] for t in texts)
    out = tmp_path / "check"
    result = runner.invoke(app, ["check", str(text_files["backdoored"]), "--data", str(inputs),
                                 "--calibrate", str(text_files["data"]), "--out", str(out),
                                 "--scan", str(scan_dir / "scan.json"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["triggers_matched"][:1] == ["zq"]
    assert summary["n_trigger_matches"] == 60
    assert summary["calibration_trigger_match_rate"] == 0.0
    with (out / "verdicts.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert all(r["flagged"] == "true" for r in rows[60:])


@pytest.fixture(scope="module")
def outside_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A plain scikit-learn pipeline trained on integer classes, saved with plain skops.io.dump;
    its trigger 'zq' planted by hand into spam rows relabelled ham (0)."""
    import skops.io as sio
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    root = tmp_path_factory.mktemp("outside")
    train = _toy_text(600, 0)
    X, y = train.X.copy(), train.y.copy()
    for i in np.flatnonzero(y == 1)[:30]:
        X[i], y[i] = f"zq {X[i]} zq", 0
    model = make_pipeline(CountVectorizer(), LogisticRegression(max_iter=1000)).fit(X, y)
    sio.dump(model, root / "outside.skops")
    rows = _toy_text(200, 1)
    save_dataset(rows, root / "clean_rows.csv")
    with (root / "unlabelled.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        writer.writerows([[t] for t in rows.X])
    return {"model": root / "outside.skops", "data": root / "clean_rows.csv",
            "unlabelled": root / "unlabelled.csv"}


def test_scan_maps_names_to_integer_classes(outside_model: dict[str, Path], tmp_path: Path) -> None:
    # the issue: "the data has labels the model does not know"
    base = ["scan", str(outside_model["model"]), "--data", str(outside_model["data"]), "--json"]
    auto = runner.invoke(_app(), [*base, "--out", str(tmp_path / "auto")])
    assert auto.exit_code == 0, auto.output
    doc = json.loads(auto.stdout)
    assert doc["class_map"] == {"ham": "0", "spam": "1"}
    assert doc["verdict"] == "backdoor" and doc["target_class"] == "0"
    assert doc["triggers"][0]["trigger"] == "zq"
    given = runner.invoke(_app(), [*base, "--out", str(tmp_path / "given"), "--class-map", "ham=0,spam=1"])
    assert given.exit_code == 0, given.output
    assert json.loads(given.stdout)["class_map_from"] == "given"
    bad = runner.invoke(_app(), [*base, "--out", str(tmp_path / "bad"), "--class-map", "ham=7"])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert "does not predict" in bad.output


def test_scan_takes_rows_without_labels(outside_model: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(_app(), ["scan", str(outside_model["model"]), "--data",
                                    str(outside_model["unlabelled"]), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "model's own predictions" in result.output
    doc = json.loads((tmp_path / "scan.json").read_text())
    assert doc["labels"] == "model predictions"
    assert doc["verdict"] == "backdoor" and doc["triggers"][0]["trigger"] == "zq"


def test_a_linear_svc_file_is_scanned_and_checked(tmp_path: Path) -> None:
    # A LinearSVC has no predict_proba: its decision values rank the classes (sigmoid), so scan
    # and check take it from a plain skops file instead of refusing it at load.
    import skops.io as sio
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    train = _toy_text(400, 0)
    model = make_pipeline(CountVectorizer(), LinearSVC()).fit(train.X, train.y)
    sio.dump(model, tmp_path / "svc.skops")
    rows = _toy_text(120, 1)
    save_dataset(rows, tmp_path / "clean.csv")
    scan = runner.invoke(_app(), ["scan", str(tmp_path / "svc.skops"), "--data", str(tmp_path / "clean.csv"),
                                  "--out", str(tmp_path / "scan"), "--json"])
    assert scan.exit_code == 0, scan.output
    assert json.loads(scan.stdout)["verdict"] in ("clean", "inconclusive")
    check = runner.invoke(_app(), ["check", str(tmp_path / "svc.skops"), "--data", str(tmp_path / "clean.csv"),
                                   "--calibrate", str(tmp_path / "clean.csv"), "--out", str(tmp_path / "check"),
                                   "--json"])
    assert check.exit_code == 0, check.output
    assert json.loads(check.stdout)["n_inputs"] == 120
