"""``poisonlab evaluate``: accuracy and target rate of a saved model on labelled data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import typer

from poisonlab.cli.app import app
from poisonlab.cli.common import (
    DATA_DIR_OPTION,
    FEATURE_COLS_OPTION,
    JSON_OPTION,
    LABEL_COL_OPTION,
    TEXT_COL_OPTION,
    columns_from,
    emit_json,
    handle_errors,
    out_console,
    pct,
)
from poisonlab.exceptions import DataError, ParameterError


@app.command()
@handle_errors
def evaluate(
    model: Path = typer.Argument(..., help="A saved model file, or an ensemble folder from `defend`."),
    data: str = typer.Option(..., "--data", help="Labelled data to evaluate on."),
    target_label: str | None = typer.Option(
        None, "--target-label", help="Also report the share of non-L rows predicted L."),
    trust_pickle: bool = typer.Option(
        False, "--trust-pickle", help="Allow a pickle/joblib model (runs code from the file)."),
    text_col: str | None = TEXT_COL_OPTION,
    label_col: str | None = LABEL_COL_OPTION,
    feature_cols: str | None = FEATURE_COLS_OPTION,
    data_dir: Path | None = DATA_DIR_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Accuracy of MODEL on DATA and, with --target-label, the attack success (target) rate."""
    from poisonlab.data import load_dataset
    from poisonlab.measure.metrics import accuracy, bootstrap_rate, per_class_recall, target_rate
    from poisonlab.models.io import load_model

    saved = load_model(model, trust_pickle=trust_pickle)
    ds = load_dataset(data, columns_from(text_col, label_col, feature_cols), data_dir=data_dir)
    y = _labels_in_model_space(ds.classes, saved.classes, ds.y, str(model))
    pred = saved.model.predict(ds.X)
    summary: dict[str, Any] = {"model": str(model), "data": str(data), "n_rows": len(ds),
                               "accuracy": accuracy(y, pred),
                               "accuracy_ci95": _interval(bootstrap_rate(pred == y))}
    recall = per_class_recall(y, pred, len(saved.classes))
    summary["per_class_recall"] = {c: (None if np.isnan(v) else float(v))
                                   for c, v in zip(saved.classes, recall, strict=True)}
    if target_label is not None:
        if target_label not in saved.classes:
            raise ParameterError(f"--target-label {target_label!r} is not a class of the model: {list(saved.classes)}.")
        summary["target_label"] = target_label
        target = saved.classes.index(target_label)
        summary["target_rate"] = target_rate(y, pred, target)
        summary["target_rate_ci95"] = _interval(bootstrap_rate(pred[y != target] == target))
    if json_out:
        emit_json(summary)
        return
    lo, hi = summary["accuracy_ci95"]
    out_console.print(f"accuracy: {pct(summary['accuracy'])} on {len(ds)} rows (95% CI {pct(lo)}-{pct(hi)})",
                      markup=False)
    if target_label is not None:
        lo, hi = summary["target_rate_ci95"]
        out_console.print(f"target rate ({target_label}): {pct(summary['target_rate'])} "
                          f"(95% CI {pct(lo)}-{pct(hi)})", markup=False)

def _interval(est: Any) -> list[float]:
    return [est.low, est.high]

def _labels_in_model_space(data_classes: tuple[str, ...], model_classes: tuple[str, ...],
                           y: np.ndarray, where: str) -> np.ndarray:
    missing = [c for c in data_classes if c not in model_classes]
    if missing:
        raise DataError(
            f"The data has labels {missing} that the model {where} does not know (it predicts {list(model_classes)})."
        )
    lookup = np.array([model_classes.index(c) for c in data_classes])
    return lookup[y]

