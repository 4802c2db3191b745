"""Why the audit's recall on random label flips stops near 0.9, and what raising it would cost.

    python benchmarks/flip_recall.py            # 9 flip cells and 6 clean cells, about 4 minutes here

The cells are those of ``benchmarks/generalization.py`` (its cache: poisons and trained models);
the flip cells are the held-out ones whose recall fell under 0.9 and the dev ones of the same
data. Two tables:

1. *Where the missed flips are.* Per flip cell: planted rows, rows the audit flags and the planted
   among them; how many flipped rows a model trained on the *clean* labels (5-fold out-of-fold,
   TF-IDF or scaled logistic regression) already reads as their new label (no label-based
   detector can find those without flagging the clean rows that read the same way); the audit's
   recall on the other flipped rows; and the precision of the audit's ranking at recall 0.9 and
   0.95 (were its threshold lower).
2. *The count is the limit.* Confident learning flags as many rows as it estimates from the
   confident joint. The same consensus probabilities under other rules of cleanlab's
   ``find_label_issues`` (``filter_by``), and "both the out-of-fold model and the consensus
   predict another label", flagged / planted among them, on the flip cells and on clean cells
   (every flag a false alarm).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import generalization as g  # the benchmark beside this file

FLIP_CELLS = ("spam/flip-random/0.1/tfidf-lr/s0", "spam/flip-random/0.1/tfidf-lr/s1",
              "spam/flip-random/0.1/tfidf-svm/s1", "spam-mixed/flip-random/0.1/tfidf-lr/s1",
              "breast_cancer/flip-random/0.1/lr/s0", "breast_cancer/flip-random/0.1/lr/s1",
              "digits-table/flip-random/0.1/rf/s0", "digits-table/flip-random/0.1/rf/s1",
              "digits/flip-random/0.1/cnn/s0")
CLEAN_CELLS = ("spam/clean/0/tfidf-lr/s0", "spam/clean/0/count-nb/s0", "digits/clean/0/cnn/s0",
               "breast_cancer/clean/0/lr/s0", "digits-table/clean/0/rf/s0", "wine/clean/0/hgb/s0")
RULES = ("prune_by_noise_rate", "confident_learning", "both", "predicted_neq_given")


def _clean_label_reading(cell: g.Cell, X: object, y_clean: np.ndarray) -> np.ndarray:
    """Out-of-fold probabilities of a logistic regression trained on the clean labels."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if cell.kind == "text":
        model = make_pipeline(TfidfVectorizer(sublinear_tf=True, min_df=2),
                              LogisticRegression(C=10, max_iter=2000))
        rows: object = list(X)  # type: ignore[call-overload]
    else:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        A = np.asarray(X, dtype=np.float64)
        rows = A.reshape(len(A), -1)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    return cross_val_predict(model, rows, y_clean, cv=folds, method="predict_proba")


def main() -> None:
    from poisonlab.audit import audit, consensus_probs
    from poisonlab.detect.labels import confident_learning_flags

    cells = {c.id: c for c in g.full_matrix()}
    first = ["| cell | part | planted | flagged / planted | recall | read as the new label by a clean-label model "
             "(flagged) | recall on the rest | P at R 0.9 | P at R 0.95 |", "|---|---|---|---|---|---|---|---|---|"]
    second = ["| cell | planted | " + " | ".join(RULES) + " | model and consensus both disagree |",
              "|---|---|" + "---|" * (len(RULES) + 1)]
    for cid in (*FLIP_CELLS, *CLEAN_CELLS):
        cell = cells[cid]
        prep, train = g.prepare_elsewhere(cell)
        X, y, mask = prep["X"], prep["y"], prep["mask"]
        ds = train.with_data(X=X, y=y)
        result = audit(ds, model=g.make_model(cell.model, cell.seed), fitted_model=prep["model"],
                       random_state=cell.seed)
        flags = result.flags
        oof = result.arrays["pred_probs"]
        neighbors = result.arrays["neighbors"]
        assert isinstance(neighbors, tuple)
        consensus = consensus_probs(oof, neighbors[0][:, :10], y, ds.n_classes)
        cols = [f"{int(f.sum())} / {int((f & mask).sum())}" for f in
                (confident_learning_flags(consensus, y, filter_by=rule) for rule in RULES)]
        both = (oof.argmax(axis=1) != y) & (consensus.argmax(axis=1) != y)
        second.append(f"| {cid} | {int(mask.sum())} | " + " | ".join(cols) +
                      f" | {int(both.sum())} / {int((both & mask).sum())} |")
        if mask.any():
            probs = _clean_label_reading(cell, X, train.y)
            idx = np.arange(len(y))
            invisible = mask & (probs[idx, y] > probs[idx, train.y])
            rest = mask & ~invisible
            first.append(
                f"| {cid} | {cell.split} | {int(mask.sum())} | {int(flags.sum())} / {int((flags & mask).sum())} "
                f"| {np.mean(flags[mask]):.3f} | {int(invisible.sum())} ({int(flags[invisible].sum())}) "
                f"| {np.mean(flags[rest]):.3f} | {g.precision_at_recall(mask, result.scores, 0.9) or 0.0:.3f} "
                f"| {g.precision_at_recall(mask, result.scores, 0.95) or 0.0:.3f} |")
        print(f"done {cid}", file=sys.stderr, flush=True)
    print("\n".join(first))
    print()
    print("\n".join(second))


if __name__ == "__main__":
    main()
