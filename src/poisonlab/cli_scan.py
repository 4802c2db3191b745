"""``poisonlab scan`` (is this model backdoored, and by what trigger?) and ``poisonlab check``
(which of these live inputs carry a trigger?). Registered into the main app by ``register``."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any

import typer

from poisonlab.cli_common import (
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
    write_json,
)
from poisonlab.exceptions import DataError, ParameterError

TRUST_PICKLE_OPTION = typer.Option(
    False, "--trust-pickle",
    help="Allow a pickle/joblib model file. Unpickling runs any code in the file: only for files "
         "you would run as a program.")


def _load(model: Path, trust_pickle: bool) -> Any:
    from poisonlab.models.io import load_model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        saved = load_model(model, trust_pickle=trust_pickle)
    for w in caught:
        console.print(f"[bold yellow]warning:[/] {w.message}", highlight=False, soft_wrap=True)
    return saved


def _progress(json_out: bool) -> Any:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                    console=console, transient=True, disable=json_out)


def register(app: typer.Typer) -> None:
    """Add ``scan`` and ``check`` to ``app``."""

    @app.command()
    @handle_errors
    def scan(
        model: Path = typer.Argument(..., help="A saved model file (.skops, .safetensors, .pt)."),
        data: str = typer.Option(..., "--data", help="Clean labelled rows (file, folder or corpus)."),
        out: Path = typer.Option(..., "--out", help="Folder for scan.json and report.html."),
        max_rows: int | None = typer.Option(
            None, "--max-rows", help="Clean rows to use (default 200 for text, 500 for images)."),
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
        from poisonlab.scan.pipeline import scan_model

        if max_rows is not None and max_rows < 2:
            raise ParameterError(f"--max-rows must be at least 2; got {max_rows}.")
        saved = _load(model, trust_pickle)
        ds = load_dataset(data, columns_from(text_col, label_col, feature_cols),
                          data_dir=data_dir)
        with _progress(json_out) as progress:
            task = progress.add_task(f"scanning {model.name}", total=None)
            report = scan_model(saved.model, saved.classes, ds, max_rows=max_rows,
                                random_state=seed, where=str(model),
                                progress=lambda msg: progress.update(task, description=msg))
        doc = {"model": str(model), "data": str(data), "seed": seed, **report.to_json()}
        write_json(out / "scan.json", doc)
        write_scan_report(report, out / "report.html", model=str(model), data=str(data))
        if json_out:
            emit_json(doc)
            return
        _render_scan(doc, out)

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
        """Check live inputs for triggers (STRIP), calibrated on clean inputs.

        The threshold flags at most --false-rejection-rate of clean inputs. Images also get
        windowed STRIP (each test at half the rate). For text, where STRIP is weak, --scan
        OUT/scan.json also flags inputs holding a trigger the scan found. Writes
        OUT/verdicts.csv (row, id, score, flagged, predicted, n_perturbations, strip_flagged,
        trigger_match; window_score, window_flagged for images) and OUT/summary.json
        (threshold, expected false-rejection rate, counts).
        """
        from poisonlab.detect_inputs.check import check_inputs, load_inputs

        if not 0 < false_rejection_rate < 1:
            raise ParameterError(
                f"--false-rejection-rate must be in (0, 1); got {false_rejection_rate}.")
        if perturbations < 1:
            raise ParameterError(f"--perturbations must be at least 1; got {perturbations}.")
        saved = _load(model, trust_pickle)
        columns = columns_from(text_col, label_col, feature_cols)
        inputs = load_inputs(data, columns, data_dir=data_dir)
        clean = load_inputs(calibrate, columns, data_dir=data_dir)
        if inputs.kind != clean.kind:
            raise DataError(f"The inputs are {inputs.kind} data but the calibration rows are "
                            f"{clean.kind} data.")
        triggers = _scan_triggers(scan_file) if scan_file is not None else None
        with _progress(json_out) as progress:
            task = progress.add_task("calibrating", total=None)
            report = check_inputs(saved.model, inputs.X, clean.X, ids=inputs.ids,
                                  false_rejection_rate=false_rejection_rate,
                                  n_perturbations=perturbations, random_state=seed,
                                  triggers=triggers, window=window,
                                  progress=lambda msg: progress.update(task, description=msg))
        classes = tuple(saved.classes) or None
        out.mkdir(parents=True, exist_ok=True)
        _write_verdicts(out / "verdicts.csv", report, classes)
        summary = {"model": str(model), "data": str(data), "calibrate": str(calibrate),
                   "seed": seed, **report.summary(classes)}
        write_json(out / "summary.json", summary)
        if json_out:
            emit_json(summary)
            return
        _render_check(summary, out)


def _scan_triggers(path: Path) -> list[str]:
    """The trigger phrases of a backdoor verdict in ``scan.json``: the suspects at or above the
    threshold, towards the suspected class."""
    import json

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable scan.json ({exc}).") from None
    if not isinstance(doc, dict) or "verdict" not in doc or "triggers" not in doc:
        raise DataError(f"{path}: not a scan.json written by `poisonlab scan`.")
    if doc.get("kind") != "text":
        raise DataError(f"{path}: trigger phrases come from a scan of a text model; this scan "
                        f"was of a {doc.get('kind')} model.")
    if doc["verdict"] != "backdoor":
        return []
    threshold = float(doc.get("threshold", 0))
    alpha = float((doc.get("absence") or {}).get("alpha", 0.0))
    min_flip = float(doc.get("min_flip_rate", 0.0))

    def strong(t: dict[str, Any]) -> bool:
        index = t.get("anomaly_index")
        absent = t.get("absence_p")
        if isinstance(absent, (int, float)) and absent <= alpha and \
                float(t.get("flip_rate", 0)) >= min_flip:
            return True
        return index == "inf" or (isinstance(index, (int, float)) and index >= threshold)

    return [str(t["trigger"]) for t in doc["triggers"]
            if t.get("target_class") == doc.get("target_class") and strong(t)]


def _write_verdicts(path: Path, report: Any, classes: tuple[str, ...] | None) -> None:
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        windowed = report.window_scores is not None
        writer.writerow(["row", "id", "score", "flagged", "predicted", "n_perturbations",
                         "strip_flagged", "trigger_match",
                         *(["window_score", "window_flagged"] if windowed else [])])
        for i in range(len(report.scores)):
            k = int(report.predictions[i])
            name = classes[k] if classes and k < len(classes) else str(k)
            extra = [f"{report.window_scores[i]:.6f}", bool(report.window_flags[i])] \
                if windowed else []
            writer.writerow([i, report.ids[i], f"{report.scores[i]:.6f}",
                             bool(report.flags[i]), name, int(report.n_perturbations[i]),
                             bool(report.strip_flags[i]), bool(report.matched[i]), *extra])
    tmp.replace(path)


def _render_scan(doc: dict[str, Any], out: Path) -> None:
    from rich.table import Table

    c = out_console
    color = "red" if doc["verdict"] == "backdoor" else "green"
    target = f", target class [b]{doc['target_class']}[/b]" if doc["target_class"] else ""
    c.print(f"verdict: [bold {color}]{doc['verdict']}[/]{target} "
            f"(anomaly index {doc['statistic']['value']}, threshold {doc['threshold']}; "
            f"{doc['method']}, {doc['seconds']} s)")
    absence = doc.get("absence")
    if absence and doc["verdict"] == "backdoor" and doc["statistic"]["value"] != "inf" and \
            float(doc["statistic"]["value"]) < float(doc["threshold"]):
        c.print(f"  (called on absence: the trigger's words are missing from every clean row of "
                f"{doc['target_class']}, p <= {absence['alpha']:g})")
    margin = doc.get("max_margin")
    if margin:
        below_index = doc["statistic"]["value"] != "inf" and \
            float(doc["statistic"]["value"]) < float(doc["threshold"])
        widest = max(margin["margins"], key=lambda k: margin["margins"][k])
        how = "called on it" if doc["verdict"] == "backdoor" and below_index else "checked"
        c.print(f"  maximum margin (MM-BD) {how}: class {widest} has the widest margin, "
                f"{margin['margins'][widest]:g}, p {margin['per_class'][widest]:.3g} against "
                f"alpha {margin['alpha']:g}")
    columns = ["#", "trigger", "target class", "flip rate", "anomaly index"]
    table = Table(*columns, *(["absence p"] if absence else []),
                  *(["max margin p"] if margin else []))
    for i, t in enumerate(doc["triggers"][:5], 1):
        cells = [str(i), str(t["trigger"]), str(t["target_class"]),
                 f"{100 * t['flip_rate']:.1f}%", str(t["anomaly_index"])]
        if absence:
            cells.append(f"{t.get('absence_p', 1.0):.3g}")
        if margin:
            cells.append(f"{t.get('max_margin_p', 1.0):.3g}")
        table.add_row(*cells)
    c.print(table)
    c.print(f"Wrote {out / 'scan.json'} and {out / 'report.html'}.")


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
                f"{100 * summary['calibration_trigger_match_rate']:.1f}% of the clean rows do.")
    if summary["saturated"]:
        console.print("[bold yellow]warning:[/] most clean inputs already get certain predictions "
                      "under mixing: this model is too confident for STRIP to tell triggered "
                      "inputs apart.", highlight=False)
    c.print(f"Wrote {out / 'verdicts.csv'} and {out / 'summary.json'}.")
