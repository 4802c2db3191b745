from __future__ import annotations

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


@pytest.fixture()
def mail_csv(tmp_path: Path, spamassassin: Dataset) -> Path:
    rng = np.random.default_rng(0)
    rows = rng.choice(len(spamassassin), 600, replace=False)
    return save_dataset(spamassassin.subset(np.sort(rows)), tmp_path / "mail.csv")


def test_attack_train_evaluate_round_trip(tmp_path: Path, mail_csv: Path) -> None:
    code, out, err = invoke("attack", str(mail_csv), "--attack", "backdoor", "--target", "ham",
                            "--trigger", "zqxj", "--repetitions", "20", "--n-poison", "30",
                            "--out", str(tmp_path / "atk"), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["n_poison"] == 30 and summary["target_label"] == "ham"
    record = json.loads((tmp_path / "atk" / "poison.json").read_text())
    assert len(record["poisoned_rows"]) == 30 and set(record["original_labels"]) == {"spam"}

    code, out, err = invoke("train", str(tmp_path / "atk"), "--model", "nb-text",
                            "--out", str(tmp_path / "model"), "--json")
    assert code == 0, err
    model_path = json.loads(out)["model"]
    assert model_path.endswith(".skops")

    # Triggered spam: the backdoored model lets much of it through as ham.
    code, out, err = invoke("evaluate", model_path, "--data", str(mail_csv), "--target-label", "ham", "--json")
    assert code == 0, err
    clean = json.loads(out)
    assert clean["accuracy"] > 0.9 and 0 <= clean["target_rate"] < 0.3
    assert clean["accuracy_ci95"][0] <= clean["accuracy"] <= clean["accuracy_ci95"][1]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["train", "nope.csv", "--out", "m"], 1, "no such file"),
        (["attack", "digits", "--attack", "warp", "--out", "o"], 2, "Unknown --attack"),
        (["attack", "digits", "--attack", "patch-backdoor", "--trigger", "cf", "--out", "o"], 2,
         "--trigger does not apply"),
        (["attack", "digits", "--attack", "label-flip", "--rate", "1.5", "--out", "o"], 2,
         "--rate must be a float in [0, 1]"),
        (["evaluate", "missing.skops", "--data", "digits"], 1, "no such model file"),
        (["train", "digits", "--model", "nb-text", "--out", "m"], 2, "does not take image data"),
        (["demo", "--dataset", "wine"], 2, "Unknown demo dataset"),
        (["attack", "digits"], 2, "Missing option"),
    ],
)
def test_bad_input_gets_one_line_and_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               args: list[str], code: int, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    exit_code, _, err = invoke(*args)
    assert exit_code == code
    assert message in " ".join(err.split())
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_demo_quick_on_spamassassin(tmp_path: Path) -> None:
    code, out, err = invoke("demo", "--quick", "--out", str(tmp_path), "--json")
    assert code == 0, err
    r = json.loads((tmp_path / "results.json").read_text())
    assert r == json.loads(out)
    assert r["dataset"] == "spamassassin"
    # Measured 2026-11-22 (seed 0): clean 0.981; rare phrase x20 at 8 rows: success 0.90,
    # accuracy 0.981.
    assert r["clean"]["accuracy"] >= 0.95
    assert r["headline"]["found"] and r["headline"]["asr"] >= 0.9
    assert r["headline"]["accuracy"] >= r["clean"]["accuracy"] - 0.01
    assert {"strategy", "rate", "accuracy"} <= set(r["label_flip"][0])
    assert {"trigger", "n_poison", "accuracy", "asr"} <= set(r["backdoor"][0])
    assert {"trigger", "target_asr", "n_poison"} <= set(r["min_budget"][0])
    assert {"trigger", "asr"} <= set(r["triggers"][0])
    # The single rare token of the tutorials stays weak: measured 0.13 at 320 rows.
    single = [b for b in r["backdoor"] if b["trigger"] == "rare token 'zqxj'"]
    assert max(b["asr"] for b in single) < 0.5
    # Clean-label (measured 2026-12-07, seed 0): 'zqxj' x20 in 60 ham emails, labels kept, 0.714
    # success against 0.754 relabelled; the audit flagged 2 rows (no poison) of the clean-label
    # set and 62 rows (all 60 poisons) of the relabelled one.
    cl = {(row["labels"], row["model"]): row for row in r["clean_label"]["rows"]}
    assert cl[("clean", "nb-text")]["asr"] >= 0.5 and cl[("dirty", "nb-text")]["n_poison"] == 60
    audited = {a["labels"]: a for a in r["clean_label"]["audit"]}
    assert audited["dirty"]["poisons_flagged"] >= 55 and audited["clean"]["flagged"] <= 10
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html and "<script" not in html
    assert "Clean-label backdoors" in html


@pytest.mark.torch
@pytest.mark.slow
def test_demo_quick_on_digits(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    code, _, err = invoke("demo", "--dataset", "digits", "--quick", "--out", str(tmp_path))
    assert code == 0, err
    r = json.loads((tmp_path / "results.json").read_text())
    # Measured 2026-11-22: clean 0.969; 3x3 patch: 0.98 success at 40 rows, budget 35 rows.
    assert r["clean"]["accuracy"] >= 0.94
    assert max(b["asr"] for b in r["backdoor"]) >= 0.9
    # Clean-label, 100 zeros (measured 2026-12-07): PGD + patch 0.556 success, the naive patch
    # 0.041; the audit flagged 25 rows, no poison, on each clean-label set and all 100 relabelled.
    cl = {row["attack"]: row for row in r["clean_label"]["rows"]}
    assert cl["clean-label backdoor (PGD eps 0.3, 3x3 patch)"]["asr"] >= 0.3
    assert cl["naive clean-label 3x3 patch"]["asr"] < 0.2
    assert next(a for a in r["clean_label"]["audit"] if a["labels"] == "dirty")["poisons_flagged"] >= 95
    assert (tmp_path / "report.html").exists()
