"""`poisonlab attack ... --test TEST`: the triggered test set written beside the poisoned data, and
`poisonlab evaluate --target-label` on it as the attack success rate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from typer.testing import CliRunner

from poisonlab.attacks import PatchTrigger
from poisonlab.cli import app
from poisonlab.data import Dataset, dataset_from_arrays, load_dataset, save_dataset

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture()
def digits_split(tmp_path: Path, digits: Dataset) -> tuple[Path, Path]:
    train, test = digits.split(test_size=0.3, random_state=0)
    return save_dataset(train, tmp_path / "train.npz"), save_dataset(test, tmp_path / "test.npz")


@pytest.fixture()
def mail_split(tmp_path: Path, spamassassin: Dataset) -> tuple[Path, Path]:
    rows = np.sort(np.random.default_rng(0).choice(len(spamassassin), 900, replace=False))
    train, test = spamassassin.subset(rows).split(test_size=0.3, random_state=0)
    return save_dataset(train, tmp_path / "train.csv"), save_dataset(test, tmp_path / "test.csv")


def _attack_train_evaluate(tmp_path: Path, train: Path, test: Path, target: str, model: str,
                           *attack_args: str) -> tuple[dict, dict, dict]:  # type: ignore[type-arg]
    code, out, err = invoke("attack", str(train), *attack_args, "--target", target, "--test", str(test),
                            "--out", str(tmp_path / "atk"), "--json")
    assert code == 0, err
    summary = json.loads(out)
    code, out, err = invoke("train", str(tmp_path / "atk"), "--model", model,
                            "--out", str(tmp_path / "model"), "--json")
    assert code == 0, err
    model_path = json.loads(out)["model"]
    code, out, err = invoke("evaluate", model_path, "--data",
                            str(tmp_path / "atk" / summary["triggered_test"]["file"]),
                            "--target-label", target, "--json")
    assert code == 0, err
    triggered = json.loads(out)
    code, out, err = invoke("evaluate", model_path, "--data", str(test), "--json")
    assert code == 0, err
    return summary, triggered, json.loads(out)


def test_image_backdoor_writes_triggered_npz_and_evaluate_reads_the_success(
        tmp_path: Path, digits_split: tuple[Path, Path]) -> None:
    train, test = digits_split
    summary, triggered, clean = _attack_train_evaluate(
        tmp_path, train, test, "0", "logreg", "--attack", "patch-backdoor", "--n-poison", "80")
    assert summary["triggered_test"]["file"] == "triggered_test.npz"
    test_ds = load_dataset(str(test))
    written = load_dataset(str(tmp_path / "atk" / "triggered_test.npz"))
    keep = test_ds.y != test_ds.label_index("0")
    # Exactly the non-target test rows, true labels kept, the full patch stamped and nothing else.
    assert len(written) == keep.sum() == summary["triggered_test"]["n_rows"]
    assert list(written.ids) == list(test_ds.ids[keep])
    assert [written.classes[k] for k in written.y] == [test_ds.classes[k] for k in test_ds.y[keep]]
    assert np.array_equal(written.X, PatchTrigger().apply(test_ds.X[keep]))
    # Measured 2026-12-03: logreg on 80 dirty-label patched digits, success 0.992, accuracy 0.969.
    assert triggered["target_rate"] >= 0.9
    assert clean["accuracy"] >= 0.9


def test_text_clean_label_backdoor_with_test(tmp_path: Path, mail_split: tuple[Path, Path]) -> None:
    train, test = mail_split
    summary, triggered, clean = _attack_train_evaluate(
        tmp_path, train, test, "ham", "nb-text", "--attack", "text-backdoor", "--clean-label",
        "--trigger", "zqxj", "--repetitions", "20", "--n-poison", "60")
    assert summary["triggered_test"]["file"] == "triggered_test.csv"
    written = load_dataset(str(tmp_path / "atk" / "triggered_test.csv"))
    assert set(written.classes[k] for k in written.y) == {"spam"}
    assert all(str(t).endswith(" zqxj" * 20) for t in written.X)
    record = json.loads((tmp_path / "atk" / "poison.json").read_text())
    assert set(record["original_labels"]) == {"ham"}  # clean-label: ham rows, labels untouched
    # Measured 2026-12-03: naive Bayes on 60 ham rows carrying 'zqxj' x20, success 0.824 on the
    # triggered spam, clean accuracy 0.981.
    assert triggered["target_rate"] >= 0.7
    assert clean["accuracy"] >= 0.9


def test_tabular_clean_label_backdoor_with_test(tmp_path: Path) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    data = dataset_from_arrays(X, y)
    train, test = data.split(test_size=0.3, random_state=0)
    train_path, test_path = save_dataset(train, tmp_path / "train.csv"), save_dataset(test, tmp_path / "test.csv")
    _, triggered, clean = _attack_train_evaluate(
        tmp_path, train_path, test_path, "1", "logreg", "--attack", "feature-backdoor", "--clean-label",
        "--features", "29=1", "--n-poison", "40")
    written = load_dataset(str(tmp_path / "atk" / "triggered_test.csv"))
    assert np.all(written.X[:, 29] == 1) and set(written.classes[k] for k in written.y) == {"0"}
    assert len(written) == int((test.y == 0).sum()) == triggered["n_rows"]
    # No success floor: a clean-label feature trigger on rows the model already gets right is
    # weak. Measured 2026-12-03: success 0.141 (40 benign rows with x29=1), clean accuracy 0.965;
    # docs/clean_label.md has the numbers.
    assert clean["accuracy"] >= 0.9


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--attack", "label-flip"], 2, "--test applies to backdoor attacks"),
        (["--attack", "patch-backdoor", "--test", "MAIL"], 1, "the test data is text"),
        (["--attack", "patch-backdoor", "--test", "ONLY0"], 1, "every test row is of the target class"),
        (["--attack", "patch-backdoor", "--test", "missing.npz"], 1, "no such file"),
    ],
)
def test_bad_test_data_fails_in_one_line_and_writes_nothing(
        tmp_path: Path, digits_split: tuple[Path, Path], mail_split: tuple[Path, Path],
        extra: list[str], code: int, message: str) -> None:
    train, test = digits_split
    only0 = load_dataset(str(test))
    only0_path = save_dataset(only0.subset(np.flatnonzero(only0.y == 0)), tmp_path / "only0.npz")
    paths = {"MAIL": str(mail_split[1]), "ONLY0": str(only0_path)}
    args = [paths.get(a, a) for a in extra]
    if "--test" not in args:
        args += ["--test", str(test)]
    got, _, err = invoke("attack", str(train), *args, "--target", "0", "--out", str(tmp_path / "o"))
    assert got == code, err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.torch
def test_clean_label_backdoor_end_to_end_on_digits_cnn(
        tmp_path: Path, digits_split: tuple[Path, Path]) -> None:
    pytest.importorskip("torch")
    train, test = digits_split
    summary, triggered, clean = _attack_train_evaluate(
        tmp_path, train, test, "0", "cnn", "--attack", "clean-label-backdoor", "--n-poison", "100",
        "--epsilon", "0.3")
    assert summary["triggered_test"] == {"file": "triggered_test.npz", "n_rows": 486}
    record = json.loads((tmp_path / "atk" / "poison.json").read_text())
    assert set(record["original_labels"]) == {"0"} and record["attack"] == "CleanLabelBackdoorAttack"
    # Measured 2026-12-03 (seed 0 for the attack and the CNN): success 0.556, clean accuracy 0.963;
    # the naive clean-label patch at this budget reaches 0.027-0.047 (docs/clean_label.md).
    assert triggered["target_rate"] >= 0.4
    assert clean["accuracy"] >= 0.93
