"""``poisonlab scan``: is this model backdoored, and by what trigger?"""

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
    TRUST_PICKLE_OPTION,
    load_saved_model,
    progress_line,
)
from poisonlab.exceptions import DataError, ParameterError
from poisonlab.files import write_json


@app.command()
@handle_errors
def scan(
    model: Path = typer.Argument(..., help="A saved model file (.skops, .safetensors, .pt)."),
    data: str = typer.Option(..., "--data", help="Clean rows (file, folder or corpus); labels optional "
                             "for text (without them the model's own predictions are used)."),
    out: Path = typer.Option(..., "--out", help="Folder for scan.json and report.html."),
    max_rows: int | None = typer.Option(
        None, "--max-rows", help="Clean rows to use (default 200 for text, 500 for images)."),
    class_map: str | None = typer.Option(
        None, "--class-map", help="Data class names to the model's classes, e.g. 'ham=0,spam=1' "
        "(default: by name, or from the model's own predictions when only one mapping fits)."),
    text_col: str | None = TEXT_COL_OPTION,
    label_col: str | None = LABEL_COL_OPTION,
    feature_cols: str | None = FEATURE_COLS_OPTION,
    data_dir: Path | None = DATA_DIR_OPTION,
    trust_pickle: bool = TRUST_PICKLE_OPTION,
    json_out: bool = JSON_OPTION,
    seed: int = SEED_OPTION,
) -> None:
    """Scan a model you did not train for a backdoor and its trigger.

    Text models: a black-box search for a word or phrase that flips clean rows into one class
    far more often than ordinary words do. PyTorch image models: Neural Cleanse and the
    maximum-margin test (MM-BD). Writes OUT/scan.json (verdict, target_class, ranked
    triggers, statistic, threshold) and OUT/report.html.
    """
    from poisonlab.data import load_dataset
    from poisonlab.report.scan import write_scan_report
    from poisonlab.scan.pipeline import read_unlabelled_texts, scan_model

    if max_rows is not None and max_rows < 2:
        raise ParameterError(f"--max-rows must be at least 2; got {max_rows}.")
    tmp = claim_out(out, "scan")
    saved = load_saved_model(model, trust_pickle)
    labelled = True
    try:
        ds = load_dataset(data, columns_from(text_col, label_col, feature_cols),
                          data_dir=data_dir)
    except DataError as exc:
        if label_col is not None or feature_cols is not None or "no label column found" not in str(exc):
            raise
        ds, labelled = read_unlabelled_texts(data, text_col), False
    with progress_line(json_out) as progress:
        task = progress.add_task(f"scanning {model.name}", total=None)
        report = scan_model(saved.model, saved.classes, ds, max_rows=max_rows,
                            random_state=seed, where=str(model), class_map=class_map,
                            labelled=labelled,
                            progress=lambda msg: progress.update(task, description=msg))
    doc = {"model": str(model), "data": str(data), "seed": seed, **report.to_json()}
    write_json(tmp / "scan.json", doc)
    write_scan_report(report, tmp / "report.html", model=str(model), data=str(data))
    if json_out:
        emit_json(doc)
        return
    _render_scan(doc, out)

def _render_scan(doc: dict[str, Any], out: Path) -> None:

    c = out_console
    color = {"backdoor": "red", "inconclusive": "yellow"}.get(doc["verdict"], "green")
    target = f", target class [b]{escape(str(doc['target_class']))}[/b]" if doc["target_class"] else ""
    c.print(f"verdict: [bold {color}]{doc['verdict']}[/]{target} "
            f"(anomaly index {doc['statistic']['value']}, threshold {doc['threshold']}; "
            f"{doc['method']}, {doc['seconds']} s)")
    for reason in doc.get("reasons") or []:
        c.print(f"  {'why' if doc['verdict'] == 'inconclusive' else 'note'}: {escape(reason)}")
    if doc.get("labels") == "model predictions":
        c.print("  labels: the clean rows have none; the model's own predictions were used")
    if doc.get("class_map") and doc.get("class_map_from") != "same names":
        pairs = ", ".join(f"{escape(k)}={escape(v)}" for k, v in doc["class_map"].items())
        c.print(f"  classes: {pairs} ({escape(str(doc['class_map_from']))})")
    absence = doc.get("absence")
    if absence and doc["verdict"] == "backdoor" and doc["statistic"]["value"] != "inf" and \
            float(doc["statistic"]["value"]) < float(doc["threshold"]):
        c.print(f"  (called on absence: the trigger's words are missing from every clean row of "
                f"{doc['target_class']}, p <= {absence['alpha']:g})", markup=False)
    margin = doc.get("max_margin")
    if margin:
        below_index = doc["statistic"]["value"] != "inf" and \
            float(doc["statistic"]["value"]) < float(doc["threshold"])
        widest = max(margin["margins"], key=lambda k: margin["margins"][k])
        how = "called on it" if doc["verdict"] == "backdoor" and below_index else "checked"
        c.print(f"  maximum margin (MM-BD) {how}: class {widest} has the widest margin, "
                f"{margin['margins'][widest]:g}, p {margin['per_class'][widest]:.3g} against "
                f"alpha {margin['alpha']:g}", markup=False)
    columns = ["#", "trigger", "target class", "flip rate", "anomaly index"]
    table = Table(*columns, *(["absence p", "support"] if absence else []),
                  *(["max margin p"] if margin else []))
    for i, t in enumerate(doc["triggers"][:5], 1):
        name = str(t["trigger"]) + (" (made up: a hash bucket)" if t.get("made_up") else "")
        cells: list[str | Text] = [str(i), Text(name), Text(str(t["target_class"])),
                 f"{100 * t['flip_rate']:.1f}%", str(t["anomaly_index"])]
        if absence:
            cells.append(f"{t.get('absence_p', 1.0):.3g}")
            cells.append(f"{100 * t.get('support', 0.0):.0f}%")
        if margin:
            cells.append(f"{t.get('max_margin_p', 1.0):.3g}")
        table.add_row(*cells)
    c.print(table)
    c.print(f"Wrote {out / 'scan.json'} and {out / 'report.html'}.", markup=False)

