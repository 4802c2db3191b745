"""The audit under models and tables outside the generalization matrix.

    python benchmarks/unseen_models.py       # about 2 minutes here

Four scikit-learn models the matrix does not use (Gaussian naive Bayes, an RBF SVC and a
15-nearest-neighbor classifier, both after StandardScaler, extra trees) on four tables (iris, wine,
breast cancer, digits as a 64-column table, whole), each clean, with 10% random flips, and with two
out-of-range values (each column's maximum plus a standard deviation, in its first and last column)
in 6 rows of other classes relabeled 0. One line per audit: rows flagged, planted, found; the
ten-line baseline (cleanlab on out-of-fold scaled logistic regression: flagged / planted among
them); each detector's flag count.

Measured 2026-12-04 (detection code of d5cbf48), 48 audits: no crash; the flips found about as
well as the baseline finds them (iris 13 of 15, wine 15-18 of 18, breast cancer 51-54 of 57,
digits 164-175 of 180 against the baseline's 14, 18, 52, 155; Gaussian naive Bayes flags
423 rows for it); the wine and iris triggers found
under every model; clean wine 0-1 flags. Weak spots, not fixed:
* Clean iris: 5-6 confident-learning flags on the versicolor/virginica border under every model
  (the baseline flags none).
* Gaussian naive Bayes's probabilities are overconfident: clean breast cancer 17 flags (baseline
  2), clean digits 188 (baseline 27), all confident learning's.
* StandardScaler before an SVC or kNN on clean digits: robust spectral flags 75 rows in four
  classes, a few rows each with ink in a nearly empty pixel (|z| about 7 against a typical 2.3;
  one class's split was a single row at separation 342). Reading the columns' ranks instead
  removed every one of them and found the breast-cancer trigger below (then missed), but cost the matrix's
  source flips on digits as a table under a random forest (recall 1.0 to 0.31 and 0.54), so it
  was not kept.

Fixed after that run: the breast-cancer trigger (two out-of-range values, columns 0 and 29, in 6
rows) was found by no detector under any of the four models, because the value-trigger
detector's candidate pool, since it admits values held by 3 rows, filled up with natural 3- and
4-row values ranked above it (with the older minimum of 5 it was found). Small values now come
on top of the others: all four models find its 6 rows (value triggers, 6 of 6).
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from poisonlab.attacks import FeatureBackdoorAttack, LabelFlipAttack
from poisonlab.audit import audit
from poisonlab.data import Dataset

MODELS: dict[str, Callable[[], object]] = {
    "gnb": lambda: GaussianNB(),
    "svc": lambda: make_pipeline(StandardScaler(), SVC(probability=True, random_state=0)),
    "knn": lambda: make_pipeline(StandardScaler(), KNeighborsClassifier(15)),
    "et": lambda: ExtraTreesClassifier(200, random_state=0),
}
TABLES = {"iris": load_iris, "wine": load_wine, "breast_cancer": load_breast_cancer, "digits": load_digits}


def baseline(ds: Dataset) -> np.ndarray:
    """The ten lines: cleanlab on out-of-fold scaled logistic-regression probabilities."""
    from cleanlab.filter import find_label_issues

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probs = cross_val_predict(model, ds.X, ds.y, cv=5, method="predict_proba")
    return np.asarray(find_label_issues(ds.y, probs), dtype=bool)


def main() -> None:
    warnings.filterwarnings("ignore")
    for name, loader in TABLES.items():
        X, y = loader(return_X_y=True)
        ds = Dataset(X=np.asarray(X, dtype=np.float64), y=np.asarray(y))
        A = ds.X
        cols = {j: float(A[:, j].max() + A[:, j].std()) for j in (0, A.shape[1] - 1)}
        flipped = LabelFlipAttack(poison_rate=0.1, random_state=5).apply(ds)
        planted = FeatureBackdoorAttack(features=cols, target_label=0, n_poison=6, random_state=5).apply(ds)
        cases = {"clean": (ds, np.zeros(len(ds), dtype=bool)),
                 "flip10": (flipped.dataset, flipped.poison_mask),
                 "oob6": (planted.dataset, planted.poison_mask)}
        for case, (data, mask) in cases.items():
            base = baseline(data)
            for model_name, make in MODELS.items():
                started = time.perf_counter()
                try:
                    result = audit(data, model=make(), random_state=0)
                except Exception as exc:  # a crash is a finding: say which, keep going
                    print(f"{name:13s} {case:6s} {model_name:4s} ERROR {type(exc).__name__}: {str(exc)[:120]}")
                    continue
                flags = result.flags
                by = {k: int(v.flags.sum()) for k, v in result.detectors.items() if v.flags.any()}
                print(f"{name:13s} {case:6s} {model_name:4s} flagged {int(flags.sum()):4d} planted "
                      f"{int(mask.sum()):3d} found {int((flags & mask).sum()):3d} | baseline "
                      f"{int(base.sum()):3d}/{int((base & mask).sum()):3d} | {by} "
                      f"{time.perf_counter() - started:.1f}s", flush=True)


if __name__ == "__main__":
    main()
