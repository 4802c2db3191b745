"""``poisonlab gate CANDIDATE --reference MODEL --holdout CLEAN``: the checks a new model version must pass.

Exit codes, so that the command drops into any CI job: 0 the candidate passes, 1 it fails a
check, 2 the gate could not decide (any error: a bad option value, a missing or refused model
file, unreadable holdout data). This differs from the other commands, whose errors about data,
models and files exit 1: here 1 must mean "rejected" and nothing else. Ctrl-C and SIGTERM keep
the usual 130 and 143.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

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
    emit_json,
    fail,
    handle_errors,
    out_console,
    warn,
)
from poisonlab.cli.inputs import TRUST_PICKLE_OPTION, progress_line

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2
"""What ``poisonlab gate`` exits with: the candidate passes, fails a check, or the gate could not run."""

F = TypeVar("F", bound=Callable[..., Any])


class GateFailed(Exception):
    """Raised after the result set is written when the candidate fails a check (exit code 1)."""


def errors_exit_2(fn: F) -> F:
    """Wrap a command already wrapped in :func:`~poisonlab.cli.common.handle_errors` so that every
    error exits 2 (``handle_errors`` prints the one line and exits 1 for data, model and file
    errors), an unexpected exception too, while a failed gate (:class:`GateFailed`) exits 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit as exc:
            if exc.exit_code == 1:
                raise typer.Exit(EXIT_ERROR) from None
            raise
        except GateFailed:
            raise typer.Exit(EXIT_FAIL) from None
        except Exception as exc:  # a bug, or an error no reader turned into ours: still "no decision"
            text = str(exc).strip().splitlines()
            fail(f"{type(exc).__name__}: {text[0] if text else 'no message'} (the gate could not decide).",
                 EXIT_ERROR)

    return wrapper  # type: ignore[return-value]


@app.command(name="gate")
@errors_exit_2
def gate(
    candidate: Path = typer.Argument(..., help="The new model version: a saved model file (.skops, "
                                     ".safetensors, .pt) or an ensemble folder."),
    reference: Path = typer.Option(..., "--reference", help="The model in production, saved the same ways."),
    holdout: str = typer.Option(..., "--holdout", help="Clean labelled rows neither model trained on "
                                "(file, folder or corpus)."),
    max_drop: float = typer.Option(0.01, "--max-drop", help="Accuracy the candidate may lose, as a share "
                                   "(0.01: one point); the lower bound of the paired interval decides."),
    psi_threshold: float | None = typer.Option(
        None, "--psi-threshold", help="PSI of predicted classes above which the gate fails (default 0.025)."),
    probe_alpha: float | None = typer.Option(
        None, "--probe-alpha", help="Family-wise error rate of the probe tests, Holm (default 0.01)."),
    trigger_excess: float | None = typer.Option(
        None, "--trigger-excess", help="Excess share of triggered rows sent to one class at which a "
        "trigger probe fails (default 0.75)."),
    disagreement_excess: float | None = typer.Option(
        None, "--disagreement-excess", help="Net share of other-class rows sent to one class at which "
        "a disagreement probe fails (default 0.02)."),
    no_scan: bool = typer.Option(False, "--no-scan", help="Skip the backdoor scan (and the trigger probes)."),
    max_scan_rows: int | None = typer.Option(
        None, "--max-scan-rows", help="Holdout rows the scan uses (default 200 text, 500 images)."),
    out: Path | None = typer.Option(None, "--out", help="Folder for gate.json and report.html."),
    class_map: str | None = typer.Option(
        None, "--class-map", help="Holdout class names to the models' classes, e.g. 'ham=0,spam=1'."),
    text_col: str | None = TEXT_COL_OPTION,
    label_col: str | None = LABEL_COL_OPTION,
    feature_cols: str | None = FEATURE_COLS_OPTION,
    data_dir: Path | None = DATA_DIR_OPTION,
    trust_pickle: bool = TRUST_PICKLE_OPTION,
    json_out: bool = JSON_OPTION,
    seed: int = SEED_OPTION,
) -> None:
    """Gate a new model version: may CANDIDATE replace the reference? Exit 0 pass, 1 fail, 2 error.

    Four checks on the clean holdout: accuracy no worse than --max-drop (paired bootstrap
    interval, exact McNemar beside it); `scan` on the candidate (a backdoor verdict fails);
    trigger and disagreement probes (the candidate must not send them to one class beyond what
    the reference does); the PSI of predicted classes. Writes OUT/gate.json and OUT/report.html.
    """
    passed = _gate(candidate=candidate, reference=reference, holdout=holdout, max_drop=max_drop,
          psi_threshold=psi_threshold, probe_alpha=probe_alpha, trigger_excess=trigger_excess,
          disagreement_excess=disagreement_excess, no_scan=no_scan, max_scan_rows=max_scan_rows,
          out=out, class_map=class_map, text_col=text_col, label_col=label_col,
          feature_cols=feature_cols, data_dir=data_dir, trust_pickle=trust_pickle, json_out=json_out,
          seed=seed)
    if not passed:  # raised here, after handle_errors has swapped the result set in
        raise GateFailed()


@handle_errors
def _gate(*, candidate: Path, reference: Path, holdout: str, max_drop: float, psi_threshold: float | None,
          probe_alpha: float | None, trigger_excess: float | None, disagreement_excess: float | None,
          no_scan: bool, max_scan_rows: int | None, out: Path | None, class_map: str | None,
          text_col: str | None, label_col: str | None, feature_cols: str | None, data_dir: Path | None,
          trust_pickle: bool, json_out: bool, seed: int) -> bool:
    from poisonlab.api.gate import gate as run_gate
    from poisonlab.api.gate import write_gate
    from poisonlab.api.inputs import as_dataset
    from poisonlab.cli.inputs import given

    columns = columns_from(text_col, label_col, feature_cols)
    tmp = claim_out(out, "gate") if out is not None else None
    data = as_dataset(holdout, columns=columns, data_dir=data_dir)
    options: dict[str, Any] = given(psi_threshold=psi_threshold, probe_alpha=probe_alpha,
                                    trigger_excess=trigger_excess, disagreement_excess=disagreement_excess,
                                    max_scan_rows=max_scan_rows)
    with progress_line(json_out) as progress, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        task = progress.add_task(f"gating {candidate.name}", total=None)
        result = run_gate(candidate, reference, data, max_drop=max_drop, run_scan=not no_scan,
                          class_map=class_map, random_state=seed, trust_pickle=trust_pickle,
                          progress=lambda msg: progress.update(task, description=msg), **options)
    for w in caught:
        warn(str(w.message))
    result.holdout_name = str(holdout)
    if tmp is not None:
        write_gate(result, tmp)
    doc = result.to_json()
    if json_out:
        emit_json(doc)
    else:
        _render(doc, out)
    return result.passed


def _render(doc: dict[str, Any], out: Path | None) -> None:
    c = out_console
    color = "green" if doc["verdict"] == "pass" else "red"
    c.print(f"gate: [bold {color}]{doc['verdict']}[/] — candidate {escape(doc['candidate'])} against "
            f"{escape(doc['reference'])} on {doc['n_rows']} holdout rows ({doc['seconds']} s)")
    table = Table("check", "status", "what it found")
    styles = {"pass": "green", "fail": "bold red", "warn": "yellow", "skipped": "yellow"}
    for name, check in doc["checks"].items():
        table.add_row(name, f"[{styles[check['status']]}]{check['status']}[/]", escape(check["summary"]))
    c.print(table)
    if out is not None:
        c.print(f"Wrote {out / 'gate.json'} and {out / 'report.html'}.", markup=False)
