"""A 200-cell grid: 1 vs 2 Dask workers, the overhead per cell against a plain loop, and resume.

    python benchmarks/grid_scaling.py [--cells 200]

The grid: scikit-learn's MLP on digits with a BadNets patch, 10 budgets x 20 seeds (about half a
second a cell). Prints one table: wall time of the cell function called in a loop (no store, no
Dask), of ``run_experiment`` on a LocalCluster of 1 and of 2 workers (cluster start, store and
report included), the speedup, the overhead per cell, and the time to resume the finished grid.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def grid(n_cells: int) -> dict[str, object]:
    seeds = max(1, n_cells // 10)
    return {"name": "grid scaling", "datasets": ["digits"], "models": ["mlp"],
            "budgets": [5 * (i + 1) for i in range(10)], "seeds": list(range(seeds)),
            "attacks": [{"name": "patch-backdoor", "target_label": "0"}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=200)
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    from poisonlab.experiments import parse_config, run_experiment
    from poisonlab.experiments.cells import load_split, run_cell

    config = grid(args.cells)
    cells = parse_config(config).cells()
    load_split(cells[0]["dataset"])  # the loop, like a worker, loads the data once
    with threadpool_limits(1):
        t = time.perf_counter()
        loop_rows = [run_cell(c) for c in cells]
        loop = time.perf_counter() - t
    assert all(r["status"] == "ok" for r in loop_rows)
    rows = [("plain loop over the cell function", loop, "")]
    with tempfile.TemporaryDirectory() as tmp:
        walls = {}
        for workers in (1, 2):
            out = Path(tmp) / f"w{workers}"
            t = time.perf_counter()
            result = run_experiment(config, out=out, workers=workers)
            walls[workers] = time.perf_counter() - t
            assert result.n_failed == 0 and result.n_computed == len(cells)
            rows.append((f"run_experiment, LocalCluster of {workers}", walls[workers], ""))
        t = time.perf_counter()
        resumed = run_experiment(config, out=Path(tmp) / "w2", workers=2)
        resume = time.perf_counter() - t
        assert resumed.n_computed == 0
    speedup = walls[1] / walls[2]
    overhead = (walls[1] - loop) / len(cells)
    print(f"{len(cells)} cells (digits, mlp, patch backdoor), {os.cpu_count()} cores\n")
    print(f"| {'what':<42} | {'seconds':>8} |")
    print(f"|{'-' * 44}|{'-' * 10}|")
    for name, seconds, _ in rows:
        print(f"| {name:<42} | {seconds:8.1f} |")
    print(f"| {'resume of the finished grid':<42} | {resume:8.2f} |")
    print(f"\nspeedup 2 workers vs 1: {speedup:.2f}x (goal >= 1.8x)")
    print(f"overhead per cell (1 worker vs the loop): {1000 * overhead:.1f} ms "
          f"(mean cell {1000 * loop / len(cells):.0f} ms)")
    print(f"resume: {resume:.2f} s (goal < 5 s)")


if __name__ == "__main__":
    main()
