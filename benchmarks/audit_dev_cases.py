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


def expected_issues(probs: np.ndarray, draws: int = 5) -> tuple[float, float]:
    """Confident learning's count when each label is drawn from ``probs`` (no wrong label)."""
    from cleanlab.filter import find_label_issues

    rng = np.random.default_rng(0)
    cum = np.cumsum(probs, axis=1)
    counts = [int(np.sum(find_label_issues(
        np.minimum((rng.random(len(probs))[:, None] > cum).sum(axis=1), probs.shape[1] - 1),
        probs))) for _ in range(draws)]
    return float(np.mean(counts)), float(np.std(counts))


def flips_versus_overlap() -> None:
    from cleanlab.filter import find_label_issues
    from sklearn import datasets

    from poisonlab.attacks import LabelFlipAttack

    print(f"\n{'table':>14} {'flips':>5} {'flagged':>7} {'recall':>6} {'found':>5} "
          f"{'expected with no wrong label':>28}")
    tables = {name: Dataset(X=b.data, y=b.target, classes=[str(c) for c in b.target_names])
              for name in ("breast_cancer", "wine", "digits")
              for b in [getattr(datasets, f"load_{name}")()]}
    tables["synthetic"] = clean_synthetic(4000, 1)
    for name, clean in tables.items():
        for rate in (0.0, 0.05, 0.1, 0.2):
            if rate:
                p = LabelFlipAttack(poison_rate=rate, random_state=0).apply(clean)
                data, mask = p.dataset, p.poison_mask
            else:
                data, mask = clean, np.zeros(len(clean), dtype=bool)
            result = audit(data, random_state=0)
            probs = result.arrays["pred_probs"]
            found = int(np.sum(find_label_issues(data.y, probs)))
            mean, sd = expected_issues(probs)
            recall = f"{result.flags[mask].mean():.2f}" if mask.any() else "-"
            print(f"{name:>14} {rate:>5.0%} {int(result.flags.sum()):>7} {recall:>6} {found:>5} "
                  f"{mean:>21.0f} +- {sd:<3.0f}")


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
    flips_versus_overlap()


if __name__ == "__main__":
    main()
