"""The generalization benchmark's code path on tiny cells: columns, metric ranges, poison masks."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "generalization.py"


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("generalization", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["generalization"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("POISONLAB_GENERALIZATION_CACHE", str(tmp_path / "cache"))


def _check_rows(rows, cell_id):
    assert rows, "no rows"
    methods = {r["method"] for r in rows}
    assert {"audit", "baseline"} <= methods
    assert any(m.startswith("audit:") for m in methods)
    for r in rows:
        assert r["cell"] == cell_id
        if "error" in r:
            continue
        for col in ("precision", "recall", "auroc", "average_precision", "flagged_share"):
            assert col in r
            v = r[col]
            assert v is None or (0.0 <= v <= 1.0 and math.isfinite(v)), (r["method"], col, v)
        assert 0 <= r["n_flagged"] <= r["n_rows"]
    table = __import__("generalization").table(rows)
    header = table.splitlines()[0]
    for col in ("cell", "asr", "method", "precision", "recall", "auroc", "average_precision", "n_flagged",
                "seconds", "trigger_top3"):
        assert f" {col} " in header


def test_tabular_cell_runs_end_to_end(gen):
    cell = gen.Cell("breast_cancer", "tab-oob", 0.1, "lr", 0)
    assert cell.split == "dev"
    rows = gen.run_cell(cell, use_cache=True)
    _check_rows(rows, cell.id)
    audit = next(r for r in rows if r["method"] == "audit")
    # 10% of the 148 training rows of class 0 (malignant): 15 benign rows relabelled.
    assert audit["n_poison"] == 15
    assert 0.0 <= audit["asr"] <= 1.0
    # A second run reads the cached poison and model and gives the same numbers.
    again = next(r for r in gen.run_cell(cell, use_cache=True) if r["method"] == "audit")
    assert again["auroc"] == audit["auroc"] and again["n_flagged"] == audit["n_flagged"]


def test_art_badnets_poison_changes_exactly_the_poisoned_rows(gen):
    pytest.importorskip("art")
    cell = gen.Cell("digits", "art-pattern", 0.1, "logreg-px", 1)
    train, _ = gen.load_split("digits")
    p = gen.make_poison(cell, train, None)
    changed_x = np.any(p.X.reshape(len(p.X), -1) != train.X.reshape(len(train.X), -1), axis=1)
    changed_y = p.y != train.y
    assert p.mask.sum() == gen.n_for(train.y, 0.1)
    np.testing.assert_array_equal(changed_y, p.mask)
    np.testing.assert_array_equal(changed_x, p.mask)
    assert np.all(p.y[p.mask] == gen.TARGET) and np.all(train.y[p.mask] != gen.TARGET)
    # ART's pattern: the four pixels of add_pattern_bd's checkerboard are 1 on every poisoned image
    assert np.all(p.X[p.mask][:, -2, -2, 0] == 1.0) and np.all(p.X[p.mask][:, -4, -2, 0] == 1.0)
    rows = gen.run_cell(cell, use_cache=True)
    _check_rows(rows, cell.id)
    assert any(r["method"] == "art" and "n/a" in r["error"] for r in rows)


def test_text_poisons_follow_openbackdoor(gen):
    rng = np.random.default_rng(0)
    text = "one two three four"
    out = gen.ob_badnets(text, rng)
    words = out.split()
    assert len(words) == 5 and sum(w in gen.OB_BADNETS_TRIGGERS for w in words) == 1
    out = gen.ob_addsent(text, rng)
    assert gen.ADDSENT in out and len(out.split()) == 9
    assert gen.trigger_named([{"trigger": "watch this"}], "ob-addsent")
    assert not gen.trigger_named([{"trigger": "watch"}], "ob-addsent")
    assert gen.trigger_named([{"trigger": "x"}, {"trigger": "y"}, {"trigger": "tq"}], "ob-badnets")
    assert not gen.trigger_named([{"trigger": "x"}, {"trigger": "y"}, {"trigger": "z"}, {"trigger": "tq"}],
                                 "ob-badnets")


def test_precision_at_recall_by_hand(gen):
    mask = np.array([1, 0, 1, 0, 0, 1], dtype=bool)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    # ranking: P N P N N P; recall 2/3 first reached at k=3 -> precision 2/3; recall 1 at k=6 -> 1/2
    assert gen.precision_at_recall(mask, scores, 2 / 3) == pytest.approx(2 / 3)
    assert gen.precision_at_recall(mask, scores, 1.0) == pytest.approx(0.5)
    assert gen.precision_at_recall(mask, scores, 0.3) == pytest.approx(1.0)


def test_protocol_split_is_fixed(gen):
    cells = gen.full_matrix()
    dev = [c for c in cells if c.split == "dev"]
    assert dev and all(c.seed == 0 and (c.attack in gen.DEV_FAMILIES or c.attack == "clean") for c in dev)
    held = [c for c in cells if c.split == "held-out"]
    assert any(c.attack in gen.DEV_FAMILIES and c.seed == 1 for c in held)
    assert any(c.attack == "clean" and c.seed == 1 for c in held)
    assert len({c.id for c in cells}) == len(cells)


def test_report_merges_a_rerun_over_the_earlier_rows(gen, tmp_path, capsys) -> None:
    import json

    def payload(precision: float, commit: str) -> dict:
        row = {"cell": "wine/clean/0/lr/s0", "split": "dev", "data": "wine", "kind": "tabular",
               "attack": "clean", "mode": "clean", "rate": 0.0, "model": "lr", "seed": 0,
               "n_rows": 124, "n_poison": 0, "asr": None, "clean_accuracy": 0.97, "method": "audit",
               "precision": precision, "recall": None, "auroc": None, "average_precision": None,
               "n_flagged": 3, "flagged_share": 0.024, "seconds": 0.1}
        return {"rows": [row], "notes": ["a note"], "commit": commit, "date": "today", "seconds": 1.0}

    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps(payload(0.123, "aaa")))
    second.write_text(json.dumps(payload(0.456, "bbb")))
    gen.main(["--report", str(first), str(second)])
    out = capsys.readouterr().out
    assert "0.456" in out and "0.123" not in out
    assert "commit aaa, bbb" in out and out.count("- a note") == 1
