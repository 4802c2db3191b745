"""`poisonlab gate` and `poisonlab.gate`: real models trained here on SpamAssassin, digits and the
breast-cancer table, a clean retrain that passes, a backdoored and a degraded candidate that
fail, and the exit codes 0 (pass), 1 (fail) and 2 (any error)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from poisonlab.api.gate import GateResult, gate
from poisonlab.attacks import LabelFlipAttack, PatchBackdoorAttack, TextBackdoorAttack
from poisonlab.data import Dataset, save_dataset
from poisonlab.exceptions import DataError, ModelError, ParameterError
from poisonlab.models import make_model
from poisonlab.models.io import save_model

runner = CliRunner()


def _app() -> typer.Typer:
    from poisonlab.cli import app

    return app


def _subset(ds: Dataset, seed: int, share: float = 0.9) -> Dataset:
    rng = np.random.default_rng(seed)
    return ds.subset(np.sort(rng.choice(len(ds), int(share * len(ds)), replace=False)))


@pytest.fixture(scope="module")
def spam_models(spam_split: tuple[Dataset, Dataset]) -> dict[str, object]:
    """A clean logreg-text reference, a clean retrain on another 90% subset, a 'zqxj' backdoor
    (3% of rows, relabelled ham) and a degraded model (30% of labels flipped)."""
    train, _ = spam_split
    fit = lambda ds, seed: make_model("logreg-text", random_state=seed).fit(ds.X, ds.y, n_classes=2)  # noqa: E731
    backdoor = TextBackdoorAttack(trigger="zqxj", target_label="ham", poison_rate=0.03, random_state=0)
    return {"reference": fit(train, 0), "clean": fit(_subset(train, 1), 1),
            "backdoor": fit(backdoor.apply(train).dataset, 0),
            "degraded": fit(LabelFlipAttack(poison_rate=0.3, random_state=0).apply(train).dataset, 0)}


@pytest.fixture(scope="module")
def spam_files(spam_models: dict[str, object], spam_split: tuple[Dataset, Dataset],
               tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gate")
    train, holdout = spam_split
    files = {name: save_model(m, root / name, classes=train.classes, spec="logreg-text")
             for name, m in spam_models.items() if name != "degraded"}
    texts = [str(t).replace("\0", " ") for t in holdout.X]  # one email holds a NUL byte: no CSV takes it
    files["holdout"] = save_dataset(Dataset(X=np.array(texts, dtype=object), y=holdout.y,
                                            classes=holdout.classes, name="holdout"), root / "holdout.csv")
    hostile = Dataset(X=np.array([f"<script>alert(1)</script> {t}" for t in texts], dtype=object),
                      y=holdout.y, classes=holdout.classes, name="hostile")
    files["hostile"] = save_dataset(hostile, root / "hostile.csv")
    return files


# ---------------------------------------------------------------------------------- Python
def test_a_clean_retrain_passes(spam_models: dict[str, object], spam_split: tuple[Dataset, Dataset]) -> None:
    _, holdout = spam_split
    result = gate(spam_models["clean"], spam_models["reference"], holdout.X, holdout.y,
                  classes=holdout.classes)
    assert isinstance(result, GateResult)
    assert result.verdict == "pass" and result.failed == [], result.checks
    assert [c.name for c in result.checks] == ["accuracy", "scan", "probes", "shift"]
    acc = result.check("accuracy").evidence
    # measured 2026-12-03: difference -0.06 points, interval [-0.17, 0.00]
    assert acc["interval"][0] > -0.01
    assert result.check("scan").evidence["verdict"] == "clean"
    assert result.check("shift").evidence["psi"] < 0.001  # measured 0.00001, 2026-12-03
    frame = result.to_frame()
    assert len(frame) == len(holdout) and set(frame["label"]) == {"ham", "spam"}


def test_a_backdoored_candidate_fails_on_its_trigger(spam_models: dict[str, object],
                                                     spam_split: tuple[Dataset, Dataset]) -> None:
    _, holdout = spam_split
    result = gate(spam_models["backdoor"], spam_models["reference"], holdout.X, holdout.y,
                  classes=holdout.classes)
    assert result.verdict == "fail"
    assert "scan" in result.failed and "probes" in result.failed
    scan = result.check("scan").evidence
    assert scan["target_class"] == "ham" and scan["triggers"][0]["trigger"] == "zqxj"
    probe = next(p for p in result.check("probes").evidence["probes"] if p.get("trigger") == "zqxj")
    # measured 2026-12-03: the candidate sends 97.4% of triggered spam to ham, the reference 3.6%
    assert probe["failed"] and probe["excess"] > 0.8
    assert probe["reference_rate"] < 0.1


def test_a_degraded_candidate_fails_on_accuracy(spam_models: dict[str, object],
                                                spam_split: tuple[Dataset, Dataset]) -> None:
    _, holdout = spam_split
    result = gate(spam_models["degraded"], spam_models["reference"], holdout.X, holdout.y,
                  classes=holdout.classes, run_scan=False)
    assert "accuracy" in result.failed
    # measured 2026-12-03: 30% flipped labels cost logreg-text 15.5 points (interval down to -17.2)
    assert result.check("accuracy").evidence["difference"] < -0.05
    assert result.check("scan").status == "skipped"


def test_a_tabular_candidate_is_gated_without_a_scan() -> None:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(X))
    train, holdout = order[:369], order[369:]
    model = lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))  # noqa: E731
    reference = model().fit(X[train], y[train])
    candidate = model().fit(X[train[:330]], y[train[:330]])
    flipped = y[train].copy()
    flipped[y[train] == 1] = np.where(rng.random(int((y[train] == 1).sum())) < 0.6, 0, 1)
    degraded = model().fit(X[train], flipped)  # most benign rows called malignant in training
    passed = gate(candidate, reference, X[holdout], y[holdout])
    assert passed.verdict == "pass", passed.checks
    assert passed.check("scan").status == "skipped" and passed.warnings
    failed = gate(degraded, reference, X[holdout], y[holdout])
    assert {"accuracy", "probes", "shift"} <= set(failed.failed)


def test_bad_parameters_and_inputs_are_refused(spam_models: dict[str, object],
                                               spam_split: tuple[Dataset, Dataset]) -> None:
    _, holdout = spam_split
    ref, cand = spam_models["reference"], spam_models["clean"]
    with pytest.raises(ParameterError, match="'max_drop' parameter of gate"):
        gate(cand, ref, holdout.X, holdout.y, max_drop=1.5)
    with pytest.raises(ParameterError, match="'probe_alpha'"):
        gate(cand, ref, holdout.X, holdout.y, probe_alpha=0.0)
    with pytest.raises(ParameterError, match="untrained built-in spec"):
        gate("logreg-text", ref, holdout.X, holdout.y)
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(ModelError, match="not fitted"):
        gate(LogisticRegression(), ref, holdout.X, holdout.y)
    with pytest.raises(DataError):
        gate(cand, ref, holdout.X[:50], holdout.y[:40])
    images = np.zeros((10, 8, 8, 1), dtype=np.float32)
    with pytest.raises(ModelError, match="cannot classify the holdout rows"):
        gate(cand, ref, images, np.arange(10) % 2)


# ---------------------------------------------------------------------------------- command line
def test_exit_0_on_a_clean_retrain_with_the_files_written(spam_files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "gate"
    result = runner.invoke(_app(), ["gate", str(spam_files["clean"]), "--reference", str(spam_files["reference"]),
                                    "--holdout", str(spam_files["holdout"]), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["verdict"] == "pass" and doc["exit_code"] == 0
    assert json.loads((out / "gate.json").read_text()) == doc
    html = (out / "report.html").read_text()
    assert "passes every check" in html and "https://" not in html and "<link" not in html


def test_exit_1_on_a_backdoor_and_the_evidence_is_kept(spam_files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "gate"
    result = runner.invoke(_app(), ["gate", str(spam_files["backdoor"]), "--reference",
                                    str(spam_files["reference"]), "--holdout", str(spam_files["hostile"]),
                                    "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "fail" in result.stdout and "Traceback" not in result.output
    doc = json.loads((out / "gate.json").read_text())  # written although the gate failed
    assert doc["verdict"] == "fail" and "scan" in doc["failed"] and doc["exit_code"] == 1
    html = (out / "report.html").read_text()
    assert "zqxj" in html
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html  # disagreement rows, escaped


def test_a_pipeline_saved_by_a_user_is_gated(spam_files: dict[str, Path], spam_split: tuple[Dataset, Dataset],
                                             tmp_path: Path) -> None:
    # integer classes 0/1 and no poisonlab metadata: the holdout's ham/spam are mapped to them
    import skops.io as sio

    from poisonlab.models.sklearn import builtin_estimator

    train, _ = spam_split
    part = _subset(train, 2)
    pipeline = builtin_estimator("logreg-text", 0).fit(part.X, part.y)
    sio.dump(pipeline, tmp_path / "user.skops")
    result = runner.invoke(_app(), ["gate", str(tmp_path / "user.skops"), "--reference",
                                    str(spam_files["reference"]), "--holdout", str(spam_files["holdout"]),
                                    "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["checks"]["accuracy"]["status"] == "pass"


@pytest.mark.parametrize("case", ["max-drop", "missing", "pickle", "classes", "out-is-a-file", "spec"])
def test_every_error_exits_2(case: str, spam_files: dict[str, Path], spam_split: tuple[Dataset, Dataset],
                             tmp_path: Path) -> None:
    cand, ref, hold = str(spam_files["clean"]), str(spam_files["reference"]), str(spam_files["holdout"])
    extra: list[str] = []
    if case == "max-drop":
        extra = ["--max-drop", "1.5"]
    elif case == "missing":
        cand = str(tmp_path / "missing.skops")
    elif case == "pickle":
        (tmp_path / "model.pkl").write_bytes(b"\x80\x04N.")
        cand = str(tmp_path / "model.pkl")
    elif case == "classes":
        _, holdout = spam_split
        other = Dataset(X=holdout.X[:100], y=np.arange(100) % 3, classes=("a", "b", "c"), name="other")
        hold = str(save_dataset(other, tmp_path / "other.csv"))
    elif case == "out-is-a-file":
        (tmp_path / "taken").write_text("mine")
        extra = ["--out", str(tmp_path / "taken")]
    elif case == "spec":
        ref = "logreg-text"
    result = runner.invoke(_app(), ["gate", cand, "--reference", ref, "--holdout", hold, *extra])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "Traceback" not in result.output
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1
    if case == "max-drop":
        assert "--max-drop" in result.output
    if case == "out-is-a-file":
        assert (tmp_path / "taken").read_text() == "mine"


def test_other_commands_still_exit_1_on_a_bad_file(spam_files: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(_app(), ["scan", str(tmp_path / "missing.skops"), "--data",
                                    str(spam_files["holdout"]), "--out", str(tmp_path / "scan")])
    assert result.exit_code == 1, result.output


# ---------------------------------------------------------------------------------- images
@pytest.mark.torch
@pytest.mark.slow
def test_a_patch_backdoored_cnn_fails_and_a_clean_retrain_passes(digits: Dataset, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    train, holdout = digits.split(test_size=0.4, random_state=0)
    fit = lambda ds, seed: make_model("cnn", random_state=seed, n_threads=1).fit(  # noqa: E731
        ds.X, ds.y, n_classes=10)
    reference = fit(train, 0)
    clean = fit(_subset(train, 1), 1)
    backdoored = fit(PatchBackdoorAttack(target_label=0, poison_rate=0.1, random_state=0).apply(train).dataset, 0)
    # 719 holdout rows: two clean CNNs' paired interval is about 1.2 points wide each side
    # (lower bound -1.39 for this pair, benchmarks/gate_study.py, 2026-12-03), hence max_drop 0.02
    passed = gate(clean, reference, holdout, max_drop=0.02)
    assert passed.verdict == "pass", passed.checks
    paths = {name: save_model(m, tmp_path / name, classes=digits.classes, spec="cnn")
             for name, m in (("reference", reference), ("backdoored", backdoored))}
    save_dataset(holdout, tmp_path / "holdout.npz")
    out = tmp_path / "gate"
    result = runner.invoke(_app(), ["gate", str(paths["backdoored"]), "--reference", str(paths["reference"]),
                                    "--holdout", str(tmp_path / "holdout.npz"), "--max-drop", "0.02",
                                    "--out", str(out), "--json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert "scan" in doc["failed"] and doc["checks"]["scan"]["target_class"] == "0"
    trigger = max((p for p in doc["checks"]["probes"]["probes"] if p["kind"] == "trigger"),
                  key=lambda p: p["excess"])
    # measured 2026-12-03: the reversed trigger of class 0 sends 97.5% to 0, the reference 5.9%
    assert trigger["class"] == "0" and trigger["excess"] > 0.8 and trigger["failed"]
    assert 'src="data:image/png;base64,' in (out / "report.html").read_text()


def test_a_holdout_too_small_to_show_non_inferiority_says_how_many_rows_would() -> None:
    from poisonlab.api.gate import _accuracy_check

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 700)
    ref = np.where(rng.uniform(size=700) < 0.95, y, 1 - y)
    cand = ref.copy()
    # 30 rows change, 15 each way: the same accuracy, an interval about 1.1 points wide each side
    swap = np.concatenate([rng.choice(np.flatnonzero(ref == y), 15, replace=False),
                           rng.choice(np.flatnonzero(ref != y), 15, replace=False)])
    cand[swap] = 1 - cand[swap]
    params = {"n_boot": 2000, "level": 0.95, "max_drop": 0.01}
    check = _accuracy_check(y, ref, cand, params, seed=0)
    diff, (low, _high) = check.evidence["difference"], check.evidence["interval"]
    assert check.status == "fail" and diff > -0.01 > low
    assert "cannot show non-inferiority" in check.summary
    assert check.evidence["rows_needed"] > 700
