"""``poisonlab check``: which of these live inputs carry a trigger (STRIP, the leave-out test, ONION)?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from poisonlab.cli.app import app
from poisonlab.cli.common import (
    DATA_DIR_OPTION,
    FEATURE_COLS_OPTION,
    JSON_OPTION,
    LABEL_COL_OPTION,
    SEED_OPTION,
    TEXT_COL_OPTION,
    claim_out,
    columns_from,
    console,
    emit_json,
    handle_errors,
    out_console,
)
from poisonlab.cli.inputs import (
    TRUST_PICKLE_OPTION,
    load_saved_model,
    progress_line,
)
from poisonlab.exceptions import DataError, ParameterError
from poisonlab.files import write_json


@app.command()
@handle_errors
def check(
    model: Path = typer.Argument(..., help="A saved model file (.skops, .safetensors, .pt)."),
    data: str = typer.Option(..., "--data", help="Inputs to check (labels not needed)."),
    calibrate: str = typer.Option(..., "--calibrate", help="Clean inputs to calibrate on."),
    out: Path = typer.Option(..., "--out", help="Folder for verdicts.csv and summary.json."),
    false_rejection_rate: float = typer.Option(
        0.01, "--false-rejection-rate", help="Share of clean inputs that may be flagged."),
    perturbations: int = typer.Option(
        128, "--perturbations", help="Most mixes per input (clear-cut inputs stop earlier)."),
    scan_file: Path | None = typer.Option(
        None, "--scan", help="Text: a scan.json whose backdoor verdict lists trigger phrases; "
                             "inputs containing one are flagged too."),
    method: str = typer.Option(
        "auto", "--method", help="auto (images: STRIP; text and tables: the leave-out test), "
                                 "strip, leave-out or onion (text: remove the words an n-gram "
                                 "model fitted on the clean rows finds out of place)."),
    window: bool = typer.Option(
        True, "--window/--no-window",
        help="Images: also run windowed STRIP (finds patches that mixing overwrites; about "
             "60x slower than STRIP on 28x28 images)."),
    text_col: str | None = TEXT_COL_OPTION,
    label_col: str | None = LABEL_COL_OPTION,
    feature_cols: str | None = FEATURE_COLS_OPTION,
    data_dir: Path | None = DATA_DIR_OPTION,
    trust_pickle: bool = TRUST_PICKLE_OPTION,
    json_out: bool = JSON_OPTION,
    seed: int = SEED_OPTION,
) -> None:
    """Check live inputs for triggers, calibrated on clean inputs.

    The threshold flags at most --false-rejection-rate of clean inputs. Images get STRIP and
    windowed STRIP (each test at half the rate); text and tables the leave-out test (does
    removing one of 16 random groups of words or columns undo the predicted class?), since
    STRIP misses most text and tabular triggers. summary.json's "method" says which ran; in
    verdicts.csv, score and strip_flagged are that test's. For text, --scan
    OUT/scan.json also flags inputs holding a trigger the scan found. Writes
    OUT/verdicts.csv (row, id, score, flagged, predicted, n_perturbations, strip_flagged,
    trigger_match; window_score, window_flagged for images) and OUT/summary.json
    (threshold, expected false-rejection rate, counts).
    """
    from poisonlab.detect_inputs.check import check_inputs, load_inputs

    if not 0 < false_rejection_rate < 1:
        raise ParameterError(
            f"--false-rejection-rate must be in (0, 1); got {false_rejection_rate}.")
    from poisonlab.detect_inputs.check import CHECK_METHODS

    if method not in CHECK_METHODS:
        raise ParameterError(f"--method must be one of {', '.join(CHECK_METHODS)}; got {method!r}.")
    if perturbations < 1:
        raise ParameterError(f"--perturbations must be at least 1; got {perturbations}.")
    tmp = claim_out(out, "check")
    saved = load_saved_model(model, trust_pickle)
    columns = columns_from(text_col, label_col, feature_cols)
    inputs = load_inputs(data, columns, data_dir=data_dir)
    clean = load_inputs(calibrate, columns, data_dir=data_dir)
    if inputs.kind != clean.kind:
        raise DataError(f"The inputs are {inputs.kind} data but the calibration rows are "
                        f"{clean.kind} data.")
    triggers = scan_triggers(scan_file) if scan_file is not None else None
    with progress_line(json_out) as progress:
        task = progress.add_task("calibrating", total=None)
        report = check_inputs(saved.model, inputs.X, clean.X, ids=inputs.ids,
                              false_rejection_rate=false_rejection_rate,
                              n_perturbations=perturbations, random_state=seed,
                              triggers=triggers, window=window, method=method,
                              progress=lambda msg: progress.update(task, description=msg))
    classes = tuple(saved.classes) or None
    _write_verdicts(tmp / "verdicts.csv", report, classes)
    summary = {"model": str(model), "data": str(data), "calibrate": str(calibrate),
               "seed": seed, **report.summary(classes)}
    write_json(tmp / "summary.json", summary)
    if json_out:
        emit_json(summary)
        return
    _render_check(summary, out)

def scan_triggers(path: Path) -> list[str]:
    """The trigger phrases of a backdoor verdict in ``scan.json``: the suspects at or above the
    threshold, towards the suspected class."""

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable scan.json ({exc}).") from None
    if not isinstance(doc, dict) or "verdict" not in doc or "triggers" not in doc:
        raise DataError(f"{path}: not a scan.json written by `poisonlab scan`.")
    if doc.get("kind") != "text":
        raise DataError(f"{path}: trigger phrases come from a scan of a text model; this scan "
                        f"was of a {doc.get('kind')} model.")
    from poisonlab.api.results import scan_trigger_phrases

    return scan_trigger_phrases(doc)


def _write_verdicts(path: Path, report: Any, classes: tuple[str, ...] | None) -> None:
    from poisonlab.api.results import write_verdicts

    write_verdicts(path, report, classes)


def _render_check(summary: dict[str, Any], out: Path) -> None:
    c = out_console
    c.print(f"flagged [b]{summary['n_flagged']}[/b] of {summary['n_inputs']} inputs "
            f"({100 * summary['flagged_rate']:.1f}%) at threshold {summary['threshold']:.4f}, "
            f"calibrated on {summary['calibration_rows']} clean inputs for a "
            f"{100 * summary['expected_false_rejection_rate']:.2f}% false-rejection rate.")
    if summary.get("window"):
        c.print(f"  STRIP flagged {summary['n_flagged_by_strip']}, windowed STRIP "
                f"{summary['n_flagged_by_window']} (threshold "
                f"{summary['window']['threshold']:.4f}); each test had half the rate.")
    if summary["triggers_matched"]:
        c.print(f"{summary['n_trigger_matches']} inputs contain a trigger from the scan "
                f"({', '.join(summary['triggers_matched'][:5])}); "
                f"{100 * summary['calibration_trigger_match_rate']:.1f}% of the clean rows do.", markup=False)
    if summary["saturated"]:
        console.print("[bold yellow]warning:[/] most clean inputs already get certain predictions "
                      "under mixing: this model is too confident for STRIP to tell triggered "
                      "inputs apart.", highlight=False)
    c.print(f"Wrote {out / 'verdicts.csv'} and {out / 'summary.json'}.", markup=False)

