"""The trade-off comparison, the files each defense writes, and the defend command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from poisonlab.attacks import PatchBackdoorAttack
from poisonlab.data import Dataset
from poisonlab.defend import DefendRequest
from poisonlab.defend import compare as compare_module
from poisonlab.defend.compare import (
    attack_scores,
    compare_defenses,
    run_compare,
    summary_lines,
    tradeoff_table,
)
from poisonlab.defend.partition import load_ensemble
from poisonlab.defend.partition import run as run_partition
from poisonlab.exceptions import DataError, ParameterError


@pytest.fixture(scope="module")
def patched(digits: Dataset) -> tuple[object, Dataset]:
    train, test = digits.split(test_size=0.3, random_state=0)
    return PatchBackdoorAttack(size=2, target_label=0, poison_rate=0.05, random_state=0).apply(train), test


def test_attack_scores_by_hand() -> None:
    # Four non-target rows, target 1. Triggered predictions hit rows 0, 1, 3 (3/4 = attack
    # success). Without the trigger rows 0 and 2 are right, row 1 already reads as the target and
    # row 3 as another wrong class: of the two right rows, the trigger flips one (1/2).
    out = attack_scores(np.array([1, 1, 0, 1]), np.array([0, 1, 0, 0]), np.array([0, 0, 0, 2]), 1)
    assert out == {"attack_success": 0.75, "trigger_flips": 0.5}
    # No row right without the trigger: no flip rate to report.
    assert attack_scores(np.array([1]), np.array([1]), np.array([0]), 1) == {"attack_success": 1.0}


def test_compare_rows_and_table(patched: tuple[object, Dataset]) -> None:
    truth, test = patched
    rows = compare_defenses(truth.dataset, model="logreg", test=test, ground_truth=truth,  # type: ignore[attr-defined]
                            methods=["bagging", "partition", "dp"], radii=[1, 3],
                            epsilons=[8.0], bagging={"n_estimators": 3},
                            partition={"n_partitions": 9})
    assert [r.defense for r in rows] == ["none", "clean rows only", "bagging", "partition", "dp"]
    none, clean, _, partition, dp = rows
    assert clean.attack_success is not None and clean.attack_success < 0.1
    assert none.relative_time == 1.0
    # Measured 2026-11-22 (digits 70/30, 2x2 patch on 5% of rows, logreg): undefended attack
    # success 0.911 at clean accuracy 0.969.
    assert none.attack_success is not None and none.attack_success >= 0.8
    assert partition.certified is not None and set(partition.certified) == {1, 3}
    assert partition.certified[1] >= partition.certified[3]
    assert dp.guarantee.startswith("(8, 1e-05)-DP") and dp.certified is None
    table = tradeoff_table(rows, radii=[1, 3])
    assert table.splitlines()[0].startswith("| defense | setting | clean acc. | attack success | "
                                            "trigger flips | cert. acc. r=1 | cert. acc. r=3 |")
    # Trigger flips count only rows the model gets right without the trigger.
    assert none.trigger_flips is not None and none.trigger_flips >= 0.8
    assert clean.trigger_flips is not None and clean.trigger_flips < 0.1
    assert len(table.splitlines()) == 2 + len(rows)


def test_sanitize_listed_as_unavailable_without_its_module(monkeypatch: pytest.MonkeyPatch,
                                                           patched: tuple[object, Dataset]) -> None:
    truth, test = patched
    monkeypatch.setattr(compare_module, "sanitize_function", lambda: None)
    rows = compare_defenses(truth.dataset, model="logreg", test=test, ground_truth=truth,  # type: ignore[attr-defined]
                            methods=["sanitize"])
    assert rows[2].defense == "sanitize" and "unavailable" in rows[2].note
    with pytest.raises(ParameterError, match="Unknown defense"):
        compare_defenses(truth.dataset, test=test, methods=["prune"])  # type: ignore[attr-defined]


def test_run_compare_holds_out_clean_rows_and_writes_files(tmp_path: Path,
                                                           patched: tuple[object, Dataset]) -> None:
    truth, _ = patched
    result = run_compare(DefendRequest(dataset=truth.dataset, out=tmp_path, ground_truth=truth,  # type: ignore[attr-defined]
                                       model="logreg",
                                       options={"html": False, "methods": ["partition"],
                                                "partition": {"n_partitions": 5}}))
    assert "held out" in result["measured_on"]
    assert json.loads((tmp_path / "tradeoffs.json").read_text())["rows"][2]["defense"] == "partition"
    assert (tmp_path / "tradeoffs.md").read_text().startswith("| defense |")
    with pytest.raises(DataError, match="--test"):
        run_compare(DefendRequest(dataset=truth.dataset, out=tmp_path))  # type: ignore[attr-defined]


def test_partition_run_writes_certified_curve_and_loadable_model(tmp_path: Path,
                                                                 patched: tuple[object, Dataset]) -> None:
    truth, test = patched
    summary = run_partition(DefendRequest(dataset=truth.dataset, out=tmp_path, test=test,  # type: ignore[attr-defined]
                                          options={"n_partitions": 7}))
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    radii = [c["radius"] for c in on_disk["certified"]]
    assert radii == list(range(len(radii))) and on_disk["certified"] == summary["certified"]
    saved = load_ensemble(tmp_path / "model")
    assert len(saved.model.members_) == 7
    lines = summary_lines(on_disk)
    assert lines[0].startswith("partition: 7 logreg models") and "certified accuracy: r=0" in lines[1]
    assert round(float(np.mean(saved.model.predict(test.X) == test.y)), 4) == on_disk["clean_accuracy"]


def test_defend_command_runs_partition_and_bagging(tmp_path: Path, patched: tuple[object, Dataset]) -> None:
    """`poisonlab defend DIR --method partition|bagging` through the command line."""
    from poisonlab.cli import app

    truth, _ = patched
    data = truth.save(tmp_path / "attack")  # type: ignore[attr-defined]
    runner = CliRunner()
    for method in ("partition", "bagging"):
        out = tmp_path / method
        result = runner.invoke(app, ["defend", str(data), "--method", method, "--model", "logreg",
                                     "--out", str(out), "--json"])
        assert result.exit_code == 0, result.output
        summary = json.loads((out / "summary.json").read_text())
        assert summary["method"] == method and "attack_success" in summary
        assert load_ensemble(out / "model").classes == truth.dataset.classes  # type: ignore[attr-defined]
    assert "certified" in json.loads((tmp_path / "partition" / "summary.json").read_text())


def test_defend_command_options_compare_and_evaluate_an_ensemble(
        tmp_path: Path, patched: tuple[object, Dataset]) -> None:
    """Method options reach the library; --compare writes the table; evaluate reads the ensemble folder."""
    from poisonlab.cli import app

    truth, test = patched
    data = truth.save(tmp_path / "attack")  # type: ignore[attr-defined]
    runner = CliRunner()
    out = tmp_path / "part"
    result = runner.invoke(app, ["defend", str(data), "--method", "partition", "--model", "logreg",
                                 "--n-partitions", "5", "--radii", "1,2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "partition: 5 logreg models" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_partitions"] == 5
    assert [c["radius"] for c in summary["certified_at"]] == [1, 2]

    test_file = tmp_path / "test.npz"
    np.savez(test_file, X=test.X.reshape(-1, 8, 8), y=test.y)
    result = runner.invoke(app, ["evaluate", str(out / "model"), "--data", str(test_file), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["accuracy"] > 0.5

    result = runner.invoke(app, ["defend", str(data), "--method", "dp", "--n-partitions", "5",
                                 "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "--n-partitions do not apply to --method dp" in result.output
    result = runner.invoke(app, ["defend", str(data), "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "exactly one of --method NAME or --compare" in result.output

    cmp_out = tmp_path / "cmp"
    result = runner.invoke(app, ["defend", str(data), "--compare", "--methods", "partition,bagging",
                                 "--model", "logreg", "--n-partitions", "5", "--n-estimators", "3",
                                 "--radii", "1", "--out", str(cmp_out)])
    assert result.exit_code == 0, result.output
    rows = json.loads((cmp_out / "tradeoffs.json").read_text())["rows"]
    assert {r["defense"] for r in rows} == {"none", "clean rows only", "partition", "bagging"}
    assert (cmp_out / "tradeoffs.md").read_text().startswith("|")
