"""Two tiny cells of ``benchmarks/check_generalization.py``, through the benchmark's own code."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "check_generalization.py"


def _benchmark() -> Any:
    spec = importlib.util.spec_from_file_location("check_generalization", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def test_text_trigger_edits_are_plain_insertions() -> None:
    import numpy as np

    bench = _benchmark()
    rng = np.random.default_rng(0)
    text = "one two three four"
    assert bench.text_trigger("addsent")(text, rng).count(bench.ADDSENT) == 1
    assert bench.text_trigger("phrase")(text, rng).count(bench.PHRASE) == 2
    added = bench.text_trigger("badnets")(text, rng).split()
    assert 5 <= len(added) <= 7 and set(added) - set(text.split()) <= set(bench.RARE_WORDS)


def test_a_tabular_and_a_text_cell_run_through_the_benchmark() -> None:
    pytest.importorskip("art")
    bench = _benchmark()
    rows: list[dict[str, Any]] = []
    bench.table_cells(0, ("breast_cancer",), ("one-col",), ("lr",), (16,), rows, strip=True)
    bench.text_cells(0, ("phrase",), ("tfidf12-lr",), (16,), rows, 800, 120, 120, strip=False)
    methods = {(r["data"], r["method"]) for r in rows}
    assert {("breast_cancer", "STRIP (before)"), ("breast_cancer", "leave-out g=16"),
            ("breast_cancer", "ART 1.20.1 STRIP"), ("spamassassin", "leave-out g=16")} <= methods
    leave = next(r for r in rows if r["data"] == "breast_cancer" and r["method"] == "leave-out g=16")
    # measured 2026-12-02 (seed 0): 0.0% of fresh clean rows flagged, 91.9% of triggered detected,
    # AUROC 0.999
    assert leave["clean"] <= 0.05
    assert leave["det"] >= 0.85
    text = next(r for r in rows if r["data"] == "spamassassin")
    assert not math.isnan(text["auc"]) and text["ms"] > 0
