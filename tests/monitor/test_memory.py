"""Memory stays bounded over a million inputs: the window, the judgement history and the alerts
are fixed-size; what grows goes to the store."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from poisonlab.monitor.service import Monitor


@pytest.mark.slow
def test_memory_stays_bounded_over_a_million_inputs(lab) -> None:
    monitor = Monitor(history=200).fit(lab.clean, lab.baseline, classes=lab.classes)
    P = monitor.predict_proba_(lab.live)
    flags = np.zeros(len(P), dtype=bool)
    rng = np.random.default_rng(0)
    tracemalloc.start()
    try:
        def feed(n_inputs: int) -> None:
            for _ in range(n_inputs // 100):
                idx = rng.integers(0, len(P), 100)
                monitor.record(P[idx], flags[idx])

        feed(100_000)
        after_100k, _ = tracemalloc.get_traced_memory()
        feed(900_000)
        after_1m, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert monitor.n_inputs_ == 1_000_000 and len(monitor.history_) == 200
    # measured 2026-12-03: +0.13 MB traced from 100k to 1M inputs (0.50 MB at 100k)
    assert after_1m - after_100k < 1_000_000
