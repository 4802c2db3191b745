"""``poisonlab labelers`` end to end: real data (breast cancer) with simulated annotators."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from labelers_helpers import simulate
from sklearn.datasets import load_breast_cancer
from typer.testing import CliRunner

from poisonlab.cli import app

runner = CliRunner()
CLASSES = ("malignant", "benign")


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("labelers")
    b = load_breast_cancer()
    data = pd.DataFrame(b.data[:, :10], columns=[f"f{j}" for j in range(10)])
    data.insert(0, "id", [f"r{i}" for i in range(len(b.target))])
    data.to_csv(tmp / "rows.csv", index=False)
    ann, _ = simulate(b.target, 2, 0, classes=CLASSES)
    rows, cols = np.nonzero(ann.labels >= 0)
    long = pd.DataFrame({"row": [f"r{i}" for i in rows], "annotator": [ann.annotators[c] for c in cols],
                         "label": [CLASSES[ann.labels[i, c]] for i, c in zip(rows, cols, strict=True)]})
    long.to_csv(tmp / "long.csv", index=False)
    wide = pd.DataFrame({name: [CLASSES[v] if v >= 0 else "" for v in ann.labels[:, m]]
                         for m, name in enumerate(ann.annotators)})
    wide.insert(0, "id", [f"r{i}" for i in range(len(b.target))])
    wide.to_csv(tmp / "wide.csv", index=False)
    single = data.drop(columns="id").copy()
    rng = np.random.default_rng(0)
    who = rng.choice(["ann", "bob", "cat", "dan"], len(b.target))
    y = b.target.copy()
    y[(who == "dan") & (y == 1) & (rng.random(len(y)) < 0.5)] = 0
    single["label"] = np.array(CLASSES)[y]
    single["labeler"] = who
    single.to_csv(tmp / "single.csv", index=False)
    return {"rows": tmp / "rows.csv", "long": tmp / "long.csv", "wide": tmp / "wide.csv",
            "single": tmp / "single.csv", "tmp": tmp}


def test_long_annotations_name_the_flipper(files: dict[str, Path]) -> None:
    out = files["tmp"] / "out-long"
    code, stdout, err = invoke("labelers", str(files["rows"]), "--annotations", str(files["long"]),
                               "--out", str(out))
    assert code == 0, err
    assert "distrust annotator flipper: labels benign as malignant" in " ".join(stdout.split())
    with (out / "annotators.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0])[:6] == ["annotator", "n_labels", "quality", "verdict", "suspect_cell", "p_value"]
    assert table[0]["annotator"] == "flipper" and table[0]["verdict"] == "suspect"
    assert table[0]["suspect_cell"] == "benign->malignant" and float(table[0]["p_value"]) < 1e-6
    assert [r["verdict"] for r in table[1:]] == ["ok"] * 5
    for name in ("consensus.csv", "review.csv", "summary.json", "report.html"):
        assert (out / name).exists()


def test_wide_annotations_json_and_same_verdict(files: dict[str, Path]) -> None:
    code, stdout, err = invoke("labelers", str(files["rows"]), "--annotations", str(files["wide"]),
                               "--out", str(files["tmp"] / "out-wide"), "--json", "--no-html")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["annotations"]["layout"] == "wide"
    assert [a["annotator"] for a in summary["annotations"]["annotators"] if a["verdict"] == "suspect"] == ["flipper"]
    assert not (files["tmp"] / "out-wide" / "report.html").exists()


def test_single_labelled_data_runs_the_audit(files: dict[str, Path]) -> None:
    out = files["tmp"] / "out-single"
    code, stdout, err = invoke("labelers", str(files["single"]), "--out", str(out), "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["annotations"]["layout"] == "labeler"
    assert next(iter(summary["groups"]["by_labeler"])) == "dan"
    assert any(f.startswith("labeler dan") for f in summary["findings"])
    assert (out / "groups.csv").exists()


@pytest.mark.parametrize(("extra", "code", "needle"), [
    (["--correction", "sidak"], 2, "--correction must be one of ['holm', 'bh']"),
    (["--alpha", "1.5"], 2, "--alpha must be a float in (0, 1)"),
    (["--annotator-col", "who"], 1, "no column 'who' for the annotator (--annotator-col)"),
])
def test_bad_options(files: dict[str, Path], extra: list[str], code: int, needle: str) -> None:
    got, _, err = invoke("labelers", str(files["rows"]), "--annotations", str(files["long"]),
                         "--out", str(files["tmp"] / "bad"), *extra)
    assert got == code, err
    assert needle in " ".join(err.split()) and len(err.strip().splitlines()) <= 2


def test_bad_annotation_files(files: dict[str, Path]) -> None:
    tmp = files["tmp"]
    (tmp / "unknown_class.csv").write_text("row,annotator,label\n0,a,benign\n1,a,maybe\n")
    (tmp / "unknown_rows.csv").write_text("row,annotator,label\n0,a,benign\n1,a,benign\n")
    # single.csv has labels, so its classes are the ones a label may name; rows.csv's ids are r0, r1, ...
    for data, name, needle in (
            ("single", "unknown_class.csv", "record 2 has the label 'maybe', which is not a class of the data"),
            ("rows", "unknown_rows.csv", "2 of 2 labels name row ids that are not ids of rows")):
        code, _, err = invoke("labelers", str(files[data]), "--annotations", str(tmp / name),
                              "--out", str(tmp / "bad"))
        assert code == 1 and needle in " ".join(err.split()), err
    # the data has labels of its own but no labeler or source column, and no annotations: nothing to judge
    pd.read_csv(files["single"]).drop(columns="labeler").to_csv(tmp / "plain.csv", index=False)
    code, _, err = invoke("labelers", str(tmp / "plain.csv"), "--out", str(tmp / "bad"))
    assert code == 1 and "nothing to judge" in err
    assert not (tmp / "bad").exists()
