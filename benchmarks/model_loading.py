"""What the skops checks cost: poisonlab's load_model against plain skops.io.load on real fitted models.

load_model reads schema.json against the allow-list, loads through skops, then checks every tree's
node indices. Run: PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/model_loading.py

Measured 2026-12-02 on a shared 2-core machine (load average about 5, so +-20%), best of 3:
random forest of 100 trees (7.5 MB) 0.25 s plain, 0.30 s checked; HistGradientBoosting 100
iterations (6.0 MB) 1.30 s, 1.55 s; TF-IDF + logistic regression on SpamAssassin (47 MB, its
vocabulary is most of the schema) 3.8 s, 3.9 s (an earlier run: 2.9 s, 5.4 s).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import skops.io as sio
from sklearn.datasets import load_digits
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from poisonlab.data import load_dataset
from poisonlab.models.allowlist import audit_skops
from poisonlab.models.io import load_model


def _best(fn, repeats: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    X, y = load_digits(return_X_y=True)
    spam = load_dataset("spamassassin")
    models = {
        "random forest, 100 trees (digits)": RandomForestClassifier(n_estimators=100, random_state=0).fit(X, y),
        "hist gradient boosting, 100 iters (digits)": HistGradientBoostingClassifier(random_state=0).fit(X, y),
        "tfidf + logreg (spamassassin)": make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000)).fit(
            spam.X, spam.y),
    }
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'model':45s} {'file MB':>8s} {'skops.load s':>13s} {'load_model s':>13s}")
        for name, model in models.items():
            path = Path(tmp) / "m.skops"
            sio.dump(model, path)
            trusted = audit_skops(path)
            plain = _best(lambda: sio.load(path, trusted=trusted))  # noqa: B023
            ours = _best(lambda: load_model(path))  # noqa: B023
            print(f"{name:45s} {path.stat().st_size / 1e6:8.1f} {plain:13.3f} {ours:13.3f}")


if __name__ == "__main__":
    main()
