"""``poisonlab train``: train a built-in model and save it in a safe format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.markup import escape

from poisonlab.cli.app import app
from poisonlab.cli.common import (
    DATA_DIR_OPTION,
    FEATURE_COLS_OPTION,
    JSON_OPTION,
    LABEL_COL_OPTION,
    SEED_OPTION,
    TEXT_COL_OPTION,
    columns_from,
    console,
    emit_json,
    handle_errors,
    out_console,
    pct,
)
from poisonlab.exceptions import ParameterError
from poisonlab.files import check_parent


@app.command()
@handle_errors
def train(
    data: str = typer.Argument(..., help="Dataset file, folder, or corpus name."),
    model: str | None = typer.Option(
        None, "--model", help="nb-text, logreg-text, logreg, mlp, cnn, torch-mlp (default by data kind)."),
    out: Path = typer.Option(..., "--out", help="Model file to write (.skops or .safetensors added)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Maximum epochs (torch models)."),
    text_col: str | None = TEXT_COL_OPTION,
    label_col: str | None = LABEL_COL_OPTION,
    feature_cols: str | None = FEATURE_COLS_OPTION,
    data_dir: Path | None = DATA_DIR_OPTION,
    json_out: bool = JSON_OPTION,
    seed: int = SEED_OPTION,
) -> None:
    """Train a model on DATA and save it in a safe format (skops or safetensors, never pickle)."""
    from poisonlab.data import load_dataset
    from poisonlab.models import TORCH_SPECS, default_spec, make_model
    from poisonlab.models.io import check_can_save, save_model

    check_parent(out)
    ds = load_dataset(data, columns_from(text_col, label_col, feature_cols), data_dir=data_dir)
    spec = model if model is not None else default_spec(ds.kind)
    _check_model_fits(spec, ds.kind)
    check_can_save(spec)  # a missing package is found before minutes of training, not after
    params: dict[str, Any] = {}
    if epochs is not None:
        if spec not in TORCH_SPECS:
            raise ParameterError(f"--epochs applies to torch models ({', '.join(TORCH_SPECS)}), not {spec}.")
        params["max_epochs"] = epochs
    with console.status(f"training {escape(spec)} on {len(ds)} rows", spinner="dots"):
        fitted = make_model(spec, random_state=seed, **params).fit(ds.X, ds.y, n_classes=ds.n_classes)
    path = save_model(fitted, out, classes=ds.classes, spec=spec)
    summary = {"model": str(path), "spec": spec, "n_rows": len(ds), "classes": list(ds.classes),
               "training_accuracy": float(np.mean(fitted.predict(ds.X) == ds.y))}
    if json_out:
        emit_json(summary)
    else:
        acc = float(np.mean(fitted.predict(ds.X) == ds.y))
        out_console.print(f"Saved {spec} to {path} (training accuracy {pct(acc)}).", markup=False)

def _check_model_fits(spec: str, kind: str) -> None:
    from poisonlab.models import specs_for

    allowed = specs_for(kind)
    if spec not in allowed:
        raise ParameterError(f"Model {spec!r} does not take {kind} data; use one of {list(allowed)}.")

