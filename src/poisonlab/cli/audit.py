"""``poisonlab audit``: rank the rows of a training set that look planted or mislabeled."""

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
    load_training_data,
    model_option,
)
from poisonlab.exceptions import DataError
from poisonlab.files import final_path


@app.command(name="audit")
@handle_errors
def audit_command(
    data: str = typer.Argument(..., help="Data file (.csv/.tsv/.jsonl/.parquet/.npz), image folder, "
                               "folder written by `poisonlab attack`, or corpus name."),
    out: Path = typer.Option(Path("poisonlab-audit"), "--out",
                             help="Folder for flags.csv, summary.json and report.html."),
    model: str | None = MODEL_OPTION,
    representation: str = typer.Option(
        "auto", "--representation",
        help="What the spectral detectors read: auto, activations, contributions, gradient, input."),
    folds: int | None = typer.Option(None, "--folds", help="Folds for out-of-fold probabilities."),
    manifest: Path | None = typer.Option(
        None, "--manifest", help="A manifest of this data: report flagged rows per source and labeler."),
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
    """Find the rows of a training set that look planted or mislabeled, with reasons and triggers."""
    from poisonlab.audit import audit, evaluate_audit, write_audit

    tmp = claim_out(out, "audit")
    ds, truth = load_training_data(data, text_col, label_col, feature_cols, id_col, source_col, labeler_col,
                      data_dir)
    spec = model_option(model, ds.kind, trust_pickle)
    man = None
    if manifest is not None:
        from poisonlab.provenance import load_manifest

        man = load_manifest(manifest)
        if man.n_rows != len(ds):
            raise DataError(f"{manifest}: the manifest lists {man.n_rows} rows but the data has "
                            f"{len(ds)}.")
    with Steps(disable=json_out) as steps:
        result = audit(ds, model=spec, representation=representation, n_folds=folds,
                       random_state=seed, progress=steps)
        if truth is not None:
            evaluate_audit(result, truth.poison_mask)
            result.extra["ground_truth"] = {"attack": truth.record.get("attack"),
                                            "n_poison": truth.n_poison}
        if man is not None:
            from poisonlab.provenance import contributions_by_group

            result.extra["manifest_groups"] = contributions_by_group(man, result.flags)
        steps("writing files", 1, 1)
        paths = write_audit(result, tmp, html=not no_html)
    summary = result.summary()
    if json_out:
        emit_json(summary)
        return
    _render_audit(result, {k: final_path(p) for k, p in paths.items()})

def _render_audit(result: Any, paths: dict[str, Path]) -> None:
    ds = result.dataset
    n_flag = int(result.flags.sum())
    out_console.print(
        f"[bold]{escape(ds.name)}[/]: {n_flag} of {len(ds)} rows flagged "
        f"({100 * n_flag / max(1, len(ds)):.1f}%), model {escape(str(result.model_spec))}, "
        f"representation {escape(result.representation)}.")
    for t in result.suspected_triggers[:3]:
        out_console.print(
            f"  suspected trigger [bold red]{escape(repr(t['trigger']))}[/] -> "
            f"{escape(repr(t['target_label']))}: in "
            f"{t['n_rows']} rows; without it {100 * (t.get('off_label_rate') or 0):.0f}% of the "
            "tested rows read as another class", highlight=False)
    table = Table(title="Most suspicious rows", show_lines=False)
    for col in ("row", "id", "label", "score", "reasons"):
        table.add_column(col, overflow="fold")
    for i in result.ranked(10):
        if not result.flags[i]:
            break
        table.add_row(str(i), Text(str(ds.ids[i])), Text(ds.classes[ds.y[i]]), f"{result.scores[i]:.2f}",
                      Text(result.reasons[i][:160]))
    if n_flag:
        out_console.print(table)
    if result.evaluation is not None:
        e = result.evaluation["combined"]
        out_console.print(
            f"Against the attack's ground truth: precision {_fmt(e.get('precision'))}, recall "
            f"{_fmt(e.get('recall'))}, AUROC {_fmt(e.get('auroc'))}, AP "
            f"{_fmt(e.get('average_precision'))}, recall at 1.5x {_fmt(e.get('recall_at_1.5x'))}.")
    out_console.print("Wrote " + ", ".join(str(p) for p in paths.values()), markup=False)

def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{float(v):.3f}"

