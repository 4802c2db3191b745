"""``poisonlab labelers``: which annotator, labeler or source to distrust, why, and which rows to re-review."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from poisonlab.cli.app import app
from poisonlab.cli.common import (
    DATA_DIR_OPTION,
    FEATURE_COLS_OPTION,
    ID_COL_OPTION,
    JSON_OPTION,
    LABEL_COL_OPTION,
    SEED_OPTION,
    TEXT_COL_OPTION,
    claim_out,
    columns_from,
    emit_json,
    handle_errors,
    out_console,
)
from poisonlab.cli.inputs import (
    LABELER_COL_OPTION,
    MODEL_OPTION,
    SOURCE_COL_OPTION,
    TRUST_PICKLE_OPTION,
    Steps,
    model_option,
)
from poisonlab.exceptions import ParameterError
from poisonlab.files import final_path


@app.command(name="labelers")
@handle_errors
def labelers_command(
    data: str = typer.Argument(..., help="Data file (.csv/.tsv/.jsonl/.parquet/.npz), image folder or corpus "
                               "name: the rows the labels are about."),
    annotations: Path | None = typer.Option(
        None, "--annotations",
        help="Several labels per row: long (row, annotator, label) or wide (one column per annotator, blanks "
             "allowed), .csv/.tsv/.jsonl/.parquet. Without it, the data's labeler and source columns are judged."),
    out: Path = typer.Option(Path("poisonlab-labelers"), "--out",
                             help="Folder for annotators.csv, consensus.csv, review.csv, summary.json, report.html."),
    model: str | None = MODEL_OPTION,
    folds: int = typer.Option(5, "--folds", help="Folds for out-of-fold probabilities."),
    alpha: float = typer.Option(0.01, "--alpha", help="Level of the flip test and of the source/labeler test, "
                                "after the multiple-testing correction."),
    correction: str = typer.Option("holm", "--correction", help="Multiple-testing correction: holm or bh."),
    min_ratio: float = typer.Option(2.0, "--min-ratio", help="How many times the comparison rate a suspect "
                                    "cell's rate must be."),
    row_col: str | None = typer.Option(None, "--row-col", help="Row id column of the annotations "
                                       "(default: row, row_id, id, ...)."),
    annotator_col: str | None = typer.Option(None, "--annotator-col", help="Annotator column of long "
                                             "annotations (default: annotator, worker, ...)."),
    annotation_label_col: str | None = typer.Option(None, "--annotation-label-col", help="Label column of long "
                                                    "annotations (default: label, class, ...)."),
    no_html: bool = typer.Option(False, "--no-html", help="Skip report.html."),
    text_col: str | None = TEXT_COL_OPTION,
    label_col: str | None = LABEL_COL_OPTION,
    feature_cols: str | None = FEATURE_COLS_OPTION,
    id_col: str | None = ID_COL_OPTION,
    source_col: str | None = SOURCE_COL_OPTION,
    labeler_col: str | None = LABELER_COL_OPTION,
    data_dir: Path | None = DATA_DIR_OPTION,
    trust_pickle: bool = TRUST_PICKLE_OPTION,
    json_out: bool = JSON_OPTION,
    seed: int = SEED_OPTION,
) -> None:
    """Whom to trust: consensus labels (CROWDLAB, Dawid-Skene, majority vote), each annotator's quality
    and confusion matrix, a test for targeted flipping, and flag rates per source and labeler."""
    from poisonlab.api.labelers import labelers
    from poisonlab.data import load_dataset
    from poisonlab.provenance.annotations import AnnotationColumns

    for flag, value in (("--row-col", row_col), ("--annotator-col", annotator_col),
                        ("--annotation-label-col", annotation_label_col)):
        if value is not None and not value.strip():
            raise ParameterError(f"{flag} must name a column. Got {value!r}.")
    if annotations is None and any(v is not None for v in (row_col, annotator_col, annotation_label_col)):
        raise ParameterError("--row-col, --annotator-col and --annotation-label-col describe --annotations; "
                             "give --annotations too.")
    tmp = claim_out(out, "labelers")
    columns = columns_from(text_col, label_col, feature_cols, id_col, source_col, labeler_col)
    ds = load_dataset(data, columns, data_dir=data_dir, require_labels=annotations is None)
    if Path(data).is_dir() and ds.name == "data":  # a folder written by `poisonlab attack`
        from dataclasses import replace

        ds = replace(ds, name=Path(data).name)
    spec = model_option(model, ds.kind, trust_pickle)
    with Steps(disable=json_out) as steps:
        result = labelers(ds, annotations, model=spec, n_folds=folds, alpha=alpha, correction=correction,
                          min_ratio=min_ratio, random_state=seed, progress=steps,
                          annotation_columns=AnnotationColumns(row=row_col, annotator=annotator_col,
                                                               label=annotation_label_col))
        steps("writing files", 1, 1)
        from poisonlab.api.labelers import write_labelers

        paths = write_labelers(result, tmp, html=not no_html)
    if json_out:
        emit_json(result.summary())
        return
    _render(result, {k: final_path(p) for k, p in paths.items()})


def _render(result: Any, paths: dict[str, Path]) -> None:
    ds = result.dataset
    rel = result.reliability
    if rel is not None:
        ann = rel.annotations
        out_console.print(
            f"[bold]{escape(ds.name)}[/]: {int(ann.labels_per_row.sum())} labels from {ann.n_annotators} "
            f"annotators on {int((ann.labels_per_row > 0).sum())} of {len(ds)} rows; consensus by "
            f"{rel.consensus_method}" + (f", model {escape(str(result.model_spec))}" if result.model_spec else "")
            + ".")
        table = Table(title="Annotators, most suspicious first")
        for col in ("annotator", "labels", "quality", "verdict", "cell", "rate", "others", "own", "adj. p"):
            table.add_column(col, overflow="fold")
        for a in result.annotators[:20]:
            table.add_row(Text(a["annotator"]), str(a["n_labels"]), _num(a["quality"]),
                          Text(a["verdict"], style="bold red" if a["verdict"] == "suspect" else "green"),
                          Text(a["tested_cell"]), _pct(a["cell_rate"]), _pct(a["others_rate"]),
                          _pct(a["own_rate"]), f"{a['p_value']:.2g}")
        out_console.print(table)
    elif result.groups is not None:
        out_console.print(f"[bold]{escape(ds.name)}[/]: {result.groups['n_flagged']} of {len(ds)} rows flagged by "
                          "the audit.")
    if result.findings:
        for line in result.findings:
            out_console.print(Text("distrust " + line, style="bold red"))
    else:
        out_console.print(f"No annotator, labeler or source stands out (alpha {result.alpha}, corrected).")
    out_console.print("Wrote " + ", ".join(str(p) for p in paths.values()), markup=False)


def _num(v: Any) -> str:
    return "n/a" if v is None else f"{float(v):.3f}"


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * float(v):.1f}%"
