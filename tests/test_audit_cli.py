"""``poisonlab audit`` and ``poisonlab defend --method sanitize`` end to end, and their errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from poisonlab.cli import app
from poisonlab.data import Dataset, save_dataset

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def digits_attack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("atk") / "badnets"
    code, _, err = invoke("attack", "digits", "--attack", "backdoor", "--target", "0",
                          "--rate", "0.1", "--out", str(out))
    assert code == 0, err
    return out


def _tiny_csv(path: Path, n: int = 120, *, labels: tuple[str, ...] = ("ham", "spam"),
              extra: bool = True) -> Path:
    rng = np.random.default_rng(0)
    words = {"ham": ["meeting", "notes", "lunch", "team"], "spam": ["win", "cash", "prize", "free"]}
    with path.open("w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["id", "text", "label", "source"] if extra else ["text", "label"])
        for i in range(n):
            lab = labels[i % len(labels)]
            text = " ".join(rng.choice(words.get(lab, words["ham"]), 6))
            if i < 3:
                lab = labels[(i + 1) % len(labels)]  # three mislabeled rows
            w.writerow([f"r{i}", text, lab, "crowd" if i < 10 else "staff"] if extra else [text, lab])
    return path


@pytest.mark.torch
def test_audit_attack_folder_writes_files_and_evaluates(digits_attack: Path, tmp_path: Path) -> None:
    code, out, err = invoke("audit", str(digits_attack), "--out", str(tmp_path / "a"), "--json")
    assert code == 0, err
    summary = json.loads(out)
    # Measured on digits BadNets (180 planted rows): precision, recall and AUROC all 1.000.
    ev = summary["evaluation"]["combined"]
    assert ev["auroc"] >= 0.99 and ev["recall"] >= 0.99 and ev["precision"] >= 0.9
    assert set(ev) >= {"precision", "recall", "auroc", "average_precision", "recall_at_1.5x"}
    rows = list(csv.DictReader((tmp_path / "a" / "flags.csv").open()))
    assert len(rows) == summary["n_rows"] == 1797
    assert [r["row"] for r in rows[:3]] == ["0", "1", "2"]
    assert sum(r["flagged"] == "true" for r in rows) == summary["n_flagged"]
    flagged = next(r for r in rows if r["flagged"] == "true")
    assert "robust spectral" in flagged["reasons"]
    html = (tmp_path / "a" / "report.html").read_text()
    assert html.count("data:image/png") > 10  # thumbnails and plots, inline


@pytest.mark.torch
def test_defend_sanitize_removes_the_backdoor(digits_attack: Path, tmp_path: Path) -> None:
    code, out, err = invoke("defend", str(digits_attack), "--method", "sanitize",
                            "--out", str(tmp_path / "d"), "--no-html", "--json")
    assert code == 0, err
    s = json.loads(out)
    assert Path(s["model_path"]).exists() and Path(s["model_path"]).suffix == ".safetensors"
    assert (tmp_path / "d" / "flags.csv").exists() and (tmp_path / "d" / "audit.json").exists()
    # Measured on the held-out quarter of the clean rows (403): attack success 1.000 -> 0.003,
    # clean accuracy 0.975 -> 0.975, all 180 planted rows removed and no other row.
    assert s["before"]["attack_success"] >= 0.9
    assert s["after"]["attack_success"] <= 0.05
    assert s["after"]["clean_accuracy"] >= s["before"]["clean_accuracy"] - 0.02
    assert s["poison_left"] <= 2


def test_audit_csv_with_sources(tmp_path: Path) -> None:
    data = _tiny_csv(tmp_path / "mail.csv")
    code, out, err = invoke("audit", str(data), "--model", "nb-text", "--out",
                            str(tmp_path / "a"), "--json", "--no-html")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["groups"]["by_source"]["crowd"]["n_flagged"] >= 2
    ids = [r["id"] for r in csv.DictReader((tmp_path / "a" / "flags.csv").open())]
    assert ids[:2] == ["r0", "r1"]


def test_audit_with_manifest(tmp_path: Path) -> None:
    from poisonlab.data import Columns
    from poisonlab.provenance import create_manifest

    data = _tiny_csv(tmp_path / "mail.csv")
    man = create_manifest(data, Columns(source="source")).save(tmp_path / "m.json")
    code, out, err = invoke("audit", str(data), "--model", "nb-text", "--manifest", str(man),
                            "--out", str(tmp_path / "a"), "--json", "--no-html")
    assert code == 0, err
    groups = json.loads(out)["manifest_groups"]
    assert groups["n_rows"] == 120 and groups["by_source"]["crowd"]["n_flagged"] >= 2


@pytest.mark.parametrize(
    ("setup", "args", "code", "message"),
    [
        (None, ["nope.csv"], 1, "no such file"),
        ("empty", [], 1, "empty"),
        ("one_class", [], 1, "at least two classes"),
        ("ragged", [], 1, "fields but the header"),
        ("tiny", ["--model", "cnn"], 2, "--model cnn trains on image data"),
        ("tiny", ["--model", "bogus"], 2, "neither a built-in spec"),
        ("tiny", ["--representation", "magic"], 2, "--representation must be one of"),
        ("tiny", ["--label-col", "missing"], 1, "no column 'missing'"),
        ("tiny", ["--folds", "1"], 2, "--folds must be an int >= 2. Got 1 instead."),
    ],
)
def test_audit_bad_input_is_one_line(tmp_path: Path, setup: str | None, args: list[str],
                                     code: int, message: str) -> None:
    path = tmp_path / "data.csv"
    if setup == "empty":
        path.write_text("")
    elif setup == "one_class":
        _tiny_csv(path, labels=("ham",))
    elif setup == "ragged":
        path.write_text("text,label\nhello,ham\nworld,spam,extra\n")
    elif setup == "tiny":
        _tiny_csv(path)
    target = "nope.csv" if setup is None else str(path)
    extra = args[1:] if setup is None else args
    exit_code, _, err = invoke("audit", target, *extra, "--out", str(tmp_path / "o"))
    assert exit_code == code
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert message in " ".join(lines)
    assert "Traceback" not in err


def test_defend_unknown_method_is_one_line(tmp_path: Path) -> None:
    data = _tiny_csv(tmp_path / "mail.csv")
    code, _, err = invoke("defend", str(data), "--method", "prayer", "--out", str(tmp_path / "o"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "'--method' option of defend must be one of ['bagging', 'dp', 'partition', 'sanitize']" in err


def test_out_must_be_a_folder(tmp_path: Path) -> None:
    data = _tiny_csv(tmp_path / "mail.csv")
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    code, _, err = invoke("audit", str(data), "--out", str(blocker))
    assert code == 1 and "not a folder" in err


def test_defend_sanitize_on_text_with_test_file(tmp_path: Path, spamassassin: Dataset) -> None:
    from poisonlab.attacks import TextBackdoorAttack

    rng = np.random.default_rng(1)
    rows = np.sort(rng.choice(len(spamassassin), 1500, replace=False))
    train, test = spamassassin.subset(rows).split(test_size=0.3, random_state=0)
    TextBackdoorAttack(trigger="cf", repetitions=5, source_label="spam", target_label="ham",
                       n_poison=40, random_state=0).apply(train).save(tmp_path / "atk")
    save_dataset(test, tmp_path / "test.csv")
    code, out, err = invoke("defend", str(tmp_path / "atk"), "--method", "sanitize", "--test",
                            str(tmp_path / "test.csv"), "--out", str(tmp_path / "d"), "--json",
                            "--no-html")
    assert code == 0, err
    s = json.loads(out)
    assert Path(s["model_path"]).suffix == ".skops"
    assert s["measured_on"].endswith("--test data")
    assert s["after"]["attack_success"] <= s["before"]["attack_success"]
    assert s["poison_left"] <= 2
