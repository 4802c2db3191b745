"""contributions_by_group: a poisoned contributor stands out in per-source and per-labeler counts."""

from __future__ import annotations

import numpy as np
import pytest
from manifest_helpers import manifest_of, text_dataset

from poisonlab.exceptions import DataError, ParameterError
from poisonlab.provenance import contributions_by_group


def _data(n: int = 300) -> tuple[list[str], list[str], list[str], list[str]]:
    texts = [f"row {k}" for k in range(n)]
    labels = ["ham" if k % 2 else "spam" for k in range(n)]
    labelers = [f"ann-{k % 3}" for k in range(n)]
    sources = ["vendor" if k % 5 == 0 else "inhouse" for k in range(n)]
    return texts, labels, labelers, sources


def test_a_poisoned_labeler_tops_the_table() -> None:
    texts, labels, labelers, sources = _data()
    flags = np.zeros(len(texts), dtype=bool)
    rng = np.random.default_rng(0)
    flags[rng.choice(len(texts), 6, replace=False)] = True  # background noise
    bad = [k for k in range(len(texts)) if labelers[k] == "ann-1"][:30]
    flags[bad] = True
    m = manifest_of(texts, labels, sources=sources, labelers=labelers)
    out = contributions_by_group(m, flags)
    assert out["n_rows"] == 300 and out["n_flagged"] == int(flags.sum())
    by_labeler = out["by_labeler"]
    assert next(iter(by_labeler)) == "ann-1"  # most suspicious first
    assert by_labeler["ann-1"]["n_rows"] == 100
    assert by_labeler["ann-1"]["n_flagged"] == int(flags[[k for k in range(300)
                                                          if labelers[k] == "ann-1"]].sum())
    assert by_labeler["ann-1"]["p_value"] < 1e-6 < by_labeler["ann-0"]["p_value"]
    assert by_labeler["ann-1"]["lift"] > 2
    assert set(out["by_source"]) == {"vendor", "inhouse"}
    assert sum(g["n_rows"] for g in out["by_source"].values()) == 300
    # the same from a Dataset
    ds = text_dataset(texts, labels, sources=sources, labelers=labelers)
    assert contributions_by_group(ds, flags) == out


def test_hand_worked_counts() -> None:
    m = manifest_of(["a", "b", "c", "d"], ["x"] * 4, labelers=["p", "p", "q", "q"])
    out = contributions_by_group(m, np.array([1, 1, 0, 1]))
    assert out["by_labeler"]["p"] == {"n_rows": 2, "n_flagged": 2, "flagged_rate": 1.0,
                                      "lift": pytest.approx(4 / 3),
                                      "p_value": pytest.approx(0.75 ** 2),
                                      # Holm over the two labelers: min(1, 2 * 0.5625)
                                      "p_adjusted": pytest.approx(1.0)}
    assert out["by_labeler"]["q"]["flagged_rate"] == 0.5 and out["by_source"] is None


def test_bad_flags() -> None:
    m = manifest_of(["a", "b"], ["x", "x"], labelers=["p", "q"])
    with pytest.raises(DataError, match="flags has 3 rows but the data has 2"):
        contributions_by_group(m, np.array([True, False, True]))
    with pytest.raises(ParameterError, match="'flags'"):
        contributions_by_group(m, np.array([0.5, 0.2]))
    with pytest.raises(ParameterError, match="'manifest_or_dataset'"):
        contributions_by_group("m.json", np.array([True, False]))  # type: ignore[arg-type]
    assert contributions_by_group(m, np.zeros(2, bool))["by_labeler"]["p"]["lift"] is None
