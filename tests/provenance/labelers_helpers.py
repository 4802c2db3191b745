"""Simulated annotators on real data: honest ones with uniform noise, and a targeted flipper."""

from __future__ import annotations

import numpy as np

from poisonlab.provenance.annotations import MISSING, Annotations


def oof_probs(X: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """5-fold out-of-fold probabilities of a standardized logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return cross_val_predict(model, X, y, cv=5, method="predict_proba")


def simulate(truth: np.ndarray, n_classes: int, seed: int, *, honest_errors: tuple[float, ...] = (
        0.05, 0.075, 0.1, 0.125, 0.15), per_row: int = 3, flipper_labels: int = 200,
        flip_from: int = 1, flip_to: int = 0, flip_share: float = 0.4, flipper_noise: float = 0.05,
        classes: tuple[str, ...] | None = None) -> tuple[Annotations, np.ndarray]:
    """Honest annotators (uniform noise at ``honest_errors``), ``per_row`` of them on every row, and one
    flipper (annotator ``flipper``) on ``flipper_labels`` random rows, who labels ``flip_share`` of the
    ``flip_from`` rows among them ``flip_to``, and errs uniformly at ``flipper_noise`` otherwise.
    Returns the annotations and a boolean mask of the rows the flipper flipped on purpose."""
    rng = np.random.default_rng(seed)
    n = len(truth)
    m = len(honest_errors)
    labels = np.full((n, m + 1), MISSING, dtype=np.int64)

    def noisy(k: int, rate: float) -> int:
        if rng.random() < rate:
            return int(rng.choice([c for c in range(n_classes) if c != k]))
        return int(k)

    for i in range(n):
        for a in rng.choice(m, per_row, replace=False):
            labels[i, a] = noisy(truth[i], honest_errors[a])
    flipped = np.zeros(n, dtype=bool)
    for i in rng.choice(n, min(flipper_labels, n), replace=False):
        if truth[i] == flip_from and rng.random() < flip_share:
            labels[i, m] = flip_to
            flipped[i] = True
        else:
            labels[i, m] = noisy(truth[i], flipper_noise)
    names = (*(f"honest{a}" for a in range(m)), "flipper")
    ann = Annotations(labels=labels, annotators=names,
                      classes=classes or tuple(str(k) for k in range(n_classes)),
                      ids=np.array([str(i) for i in range(n)], dtype=object))
    return ann, flipped
