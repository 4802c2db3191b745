"""Audit dev cases (issue 13 item 3, issue 14 item 7): false alarms on clean synthetic tabular data.

Only case (f), clean synthetic: sklearn make_classification with ``flip_y=0`` (no label noise, no
poison), so every flagged row is a false alarm. Prints, per size and clusters per class, the share
flagged, how many rows each detector flags (and whether it votes), the share of rows the
out-of-fold model gets wrong (how much the classes overlap) and, beside them, the share the plain
baseline flags (cleanlab's ``find_label_issues`` on 5-fold logistic-regression probabilities,
``benchmarks/generalization.py``'s ``baseline``). The other dev cases of the issue (hand-made text
and image poisons) are not written yet.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/audit_dev_cases.py [--rows 4000 20000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from generalization import baseline
from sklearn.datasets import make_classification

from poisonlab.audit import audit
from poisonlab.data.dataset import Dataset


def clean_synthetic(n_rows: int, clusters: int, seed: int = 0) -> Dataset:
    X, y = make_classification(n_samples=n_rows, n_features=20, n_clusters_per_class=clusters,
                               flip_y=0.0, random_state=seed)
    return Dataset(X=X.astype(np.float32), y=y, classes=["0", "1"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[4000, 20000])
    args = parser.parse_args()
    print(f"{'rows':>6} {'clusters':>8} {'flagged':>8} {'baseline':>8} {'oof_err':>7} {'secs':>6}  "
          "per detector (flags, votes)")
    for n_rows in args.rows:
        for clusters in (1, 2):
            start = time.perf_counter()
            data = clean_synthetic(n_rows, clusters)
            result = audit(data, random_state=0)
            secs = time.perf_counter() - start
            base = baseline(data.X, data.y, "tabular", 0)["flags"].mean()
            per = ", ".join(f"{name} {int(o.flags.sum())}{'*' if o.votes else ''}"
                            for name, o in result.detectors.items())
            print(f"{n_rows:>6} {clusters:>8} {result.flags.mean():>8.2%} {base:>8.2%} "
                  f"{1 - result.oof_accuracy:>7.1%} {secs:>6.1f}  {per}")
    print("* = votes. Every flag is a false alarm (no poison, flip_y=0).")


if __name__ == "__main__":
    main()
