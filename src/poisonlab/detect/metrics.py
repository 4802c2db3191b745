"""How well scores and flags find the rows an attack planted (ground truth: ``poison_mask``)."""

from __future__ import annotations

import math

import numpy as np

from poisonlab.exceptions import ParameterError


def detection_metrics(poison_mask: np.ndarray, scores: np.ndarray,
                      flags: np.ndarray | None = None) -> dict[str, float | int]:
    """Precision, recall and F1 of ``flags``; AUROC, average precision and recall at 1.5x.

    ``recall_at_1.5x``: the share of poisoned rows among the ``1.5 * n_poison`` highest scores
    (the budget of the spectral signatures paper). AUROC and AP are NaN without both poisoned and
    clean rows; precision is NaN when nothing is flagged.
    """
    mask = np.asarray(poison_mask, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if mask.shape != s.shape:
        raise ParameterError(f"poison_mask has {mask.size} rows but scores has {s.size}.")
    n_poison = int(mask.sum())
    out: dict[str, float | int] = {"n_rows": int(mask.size), "n_poison": n_poison}
    if flags is not None:
        f = np.asarray(flags, dtype=bool)
        if f.shape != mask.shape:
            raise ParameterError(f"poison_mask has {mask.size} rows but flags has {f.size}.")
        tp = int(np.sum(f & mask))
        out["n_flagged"] = int(f.sum())
        out["precision"] = tp / int(f.sum()) if f.any() else math.nan
        out["recall"] = tp / n_poison if n_poison else math.nan
        p, r = out["precision"], out["recall"]
        out["f1"] = 2 * p * r / (p + r) if (p == p and r == r and p + r > 0) else math.nan
    if 0 < n_poison < mask.size:
        from sklearn.metrics import average_precision_score, roc_auc_score

        out["auroc"] = float(roc_auc_score(mask, s))
        out["average_precision"] = float(average_precision_score(mask, s))
        budget = min(mask.size, math.ceil(1.5 * n_poison))
        top = np.argsort(-s, kind="stable")[:budget]
        out["recall_at_1.5x"] = float(mask[top].sum() / n_poison)
    else:
        out["auroc"] = out["average_precision"] = out["recall_at_1.5x"] = math.nan
    return out
