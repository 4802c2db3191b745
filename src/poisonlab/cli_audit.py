"""``poisonlab audit`` and ``poisonlab defend``: parse options, call the library, render the result."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from poisonlab.cli_common import (
    DATA_DIR_OPTION,
    FEATURE_COLS_OPTION,
    ID_COL_OPTION,
    JSON_OPTION,
    LABEL_COL_OPTION,
    SEED_OPTION,
    TEXT_COL_OPTION,
    columns_from,
    console,
    emit_json,
    handle_errors,
    out_console,
)
from poisonlab.exceptions import DataError, ParameterError

MODEL_OPTION = typer.Option(
    None, "--model",
    help="Model to train: nb-text, logreg-text, logreg, mlp, cnn, torch-mlp, or a saved model file "
         "(default: logreg-text for text, cnn for images, logreg for tables).")
SOURCE_COL_OPTION = typer.Option(None, "--source-col",
                                 help="Column naming each row's source (default: 'source' if present).")
LABELER_COL_OPTION = typer.Option(None, "--labeler-col",
                                  help="Column naming each row's labeler (default: 'labeler' if present).")
KIND_OF_SPEC = {"nb-text": ("text",), "logreg-text": ("text",), "logreg": ("tabular", "image"),
                "mlp": ("tabular", "image"), "cnn": ("image",), "torch-mlp": ("image",)}


def register(app: typer.Typer) -> None:
    """Add ``audit`` and ``defend`` to the ``poisonlab`` command line."""
    app.command(name="audit")(audit_command)
    app.command(name="defend")(defend_command)


# ---------------------------------------------------------------------------------- helpers
def _load(data: str, text_col: str | None, label_col: str | None, feature_cols: str | None,
          id_col: str | None, source_col: str | None, labeler_col: str | None,
          data_dir: Path | None) -> tuple[Any, Any]:
    """The dataset and, for a folder written by ``poisonlab attack``, its ground truth."""
    from poisonlab.data import load_dataset

    path = Path(data)
    table = _table_file(path)
    if table is not None:
        header = _header(table)
        source_col = source_col or ("source" if "source" in header else None)
        labeler_col = labeler_col or ("labeler" if "labeler" in header else None)
    columns = columns_from(text_col, label_col, feature_cols, id_col, source_col, labeler_col)
    ds = load_dataset(data, columns, data_dir=data_dir)
    if path.is_dir() and ds.name == "data":  # a folder written by `poisonlab attack`
        from dataclasses import replace

        ds = replace(ds, name=path.name)
    truth = None
    if path.is_dir() and (path / "poison.json").exists():
        from poisonlab.attacks import load_ground_truth

        truth = load_ground_truth(ds, path / "poison.json")
    return ds, truth


def _table_file(path: Path) -> Path | None:
    if path.is_dir():
        inner = sorted(path.glob("data.*"))
        path = inner[0] if inner else path
    return path if path.is_file() and path.suffix.lower() in (".csv", ".tsv", ".jsonl") else None


def _header(path: Path) -> set[str]:
    """Column names of a table file, read from its first line (empty on any trouble)."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError):
        return set()
    if path.suffix.lower() == ".jsonl":
        try:
            obj = json.loads(first)
        except json.JSONDecodeError:
            return set()
        return set(obj) if isinstance(obj, dict) else set()
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    return {h.strip().lstrip("\ufeff") for h in next(csv.reader([first], delimiter=delimiter), [])}


def _model(spec: str | None, kind: str) -> Any:
    """A spec name checked against the data kind, or an unfitted copy of a saved model."""
    if spec is None:
        return None
    if spec in KIND_OF_SPEC:
        if kind not in KIND_OF_SPEC[spec]:
            raise ParameterError(
                f"--model {spec} trains on {' or '.join(KIND_OF_SPEC[spec])} data; this data is "
                f"{kind}. Choose one of "
                f"{', '.join(s for s, kinds in KIND_OF_SPEC.items() if kind in kinds)}.")
        return spec
    path = Path(spec)
    if path.exists():
        from sklearn.base import clone

        from poisonlab.models.io import load_model

        saved = load_model(path)
        return saved.spec if saved.spec in KIND_OF_SPEC else clone(saved.model)
    raise ParameterError(
        f"--model {spec!r} is neither a built-in spec ({', '.join(KIND_OF_SPEC)}) nor a model file.")


class _Steps:
    """A rich progress line per step of a long run (transient; silent with --json)."""

    def __init__(self, disable: bool) -> None:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 TimeElapsedColumn(), console=console, transient=True,
                                 disable=disable)
        self.task: Any = None

    def __enter__(self) -> _Steps:
        self.progress.__enter__()
        self.task = self.progress.add_task("loading", total=None)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, step: str, done: int, total: int) -> None:
        self.progress.update(self.task, description=step, completed=done, total=total)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: exists and is not a folder.")


# ---------------------------------------------------------------------------------- audit
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
    json_out: bool = JSON_OPTION,
    seed: int = SEED_OPTION,
) -> None:
    """Find the rows of a training set that look planted or mislabeled, with reasons and triggers."""
    from poisonlab.audit import audit, evaluate_audit, write_audit

    _check_out(out)
    ds, truth = _load(data, text_col, label_col, feature_cols, id_col, source_col, labeler_col,
                      data_dir)
    spec = _model(model, ds.kind)
    man = None
    if manifest is not None:
        from poisonlab.provenance import load_manifest

        man = load_manifest(manifest)
        if man.n_rows != len(ds):
            raise DataError(f"{manifest}: the manifest lists {man.n_rows} rows but the data has "
                            f"{len(ds)}.")
    with _Steps(disable=json_out) as steps:
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
        paths = write_audit(result, out, html=not no_html)
    summary = result.summary()
    if json_out:
        emit_json(summary)
        return
    _render_audit(result, paths)


def _render_audit(result: Any, paths: dict[str, Path]) -> None:
    ds = result.dataset
    n_flag = int(result.flags.sum())
    out_console.print(
        f"[bold]{ds.name}[/]: {n_flag} of {len(ds)} rows flagged "
        f"({100 * n_flag / max(1, len(ds)):.1f}%), model {result.model_spec}, "
        f"representation {result.representation}.")
    for t in result.suspected_triggers[:3]:
        out_console.print(
            f"  suspected trigger [bold red]{t['trigger']!r}[/] -> {t['target_label']!r}: in "
            f"{t['n_rows']} rows, removing it flips {100 * (t['removal_flip_rate'] or 0):.0f}% of "
            "tested rows", highlight=False)
    table = Table(title="Most suspicious rows", show_lines=False)
    for col in ("row", "id", "label", "score", "reasons"):
        table.add_column(col, overflow="fold")
    for i in result.ranked(10):
        if not result.flags[i]:
            break
        table.add_row(str(i), str(ds.ids[i]), ds.classes[ds.y[i]], f"{result.scores[i]:.2f}",
                      result.reasons[i][:160])
    if n_flag:
        out_console.print(table)
    if result.evaluation is not None:
        e = result.evaluation["combined"]
        out_console.print(
            f"Against the attack's ground truth: precision {_fmt(e.get('precision'))}, recall "
            f"{_fmt(e.get('recall'))}, AUROC {_fmt(e.get('auroc'))}, AP "
            f"{_fmt(e.get('average_precision'))}, recall at 1.5x {_fmt(e.get('recall_at_1.5x'))}.")
    out_console.print("Wrote " + ", ".join(str(p) for p in paths.values()))


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{float(v):.3f}"


# ---------------------------------------------------------------------------------- defend
def _floats(value: str | None, flag: str) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise ParameterError(f"{flag} must be numbers separated by commas. Got {value!r}.") from None


def _given(**options: Any) -> dict[str, Any]:
    """Only the options the user gave; the library's defaults stand for the rest."""
    return {k: v for k, v in options.items() if v is not None}


@handle_errors
def defend_command(
    data: str = typer.Argument(..., help="Training data (file, folder written by `poisonlab "
                               "attack`, or corpus name)."),
    method: str | None = typer.Option(
        None, "--method", help="Defense: sanitize (audit, drop flagged rows, retrain), bagging "
        "(ensemble on subsamples, flags rows and inputs), partition (certified partition "
        "aggregation), dp (differentially private training)."),
    compare: bool = typer.Option(False, "--compare", help="Run every defense (or those named in "
                                 "--methods) against the same data; writes tradeoffs.json/md."),
    methods: str | None = typer.Option(None, "--methods", help="With --compare: which defenses, "
                                       "comma-separated (default: all four)."),
    out: Path = typer.Option(Path("poisonlab-defend"), "--out",
                             help="Folder for the model, summary.json and the method's files."),
    model: str | None = MODEL_OPTION,
    test: str | None = typer.Option(None, "--test", help="Clean test data to measure on (default "
                                    "with ground truth: a held-out quarter of the clean rows)."),
    n_partitions: int | None = typer.Option(None, "--n-partitions", help="partition: number of "
                                            "models, one per content-hashed partition (default 50)."),
    hash_seed: int | None = typer.Option(None, "--hash-seed", help="partition: seed of the row hash."),
    radii: str | None = typer.Option(None, "--radii", help="partition: radii to report certified "
                                     "accuracy at, comma-separated (default 1,5,10,20)."),
    n_estimators: int | None = typer.Option(None, "--n-estimators", help="bagging: members (default 10)."),
    max_samples: float | None = typer.Option(None, "--max-samples", help="bagging: share of rows "
                                             "per member (default 0.5)."),
    bootstrap: bool | None = typer.Option(None, "--bootstrap/--no-bootstrap", help="bagging: draw "
                                          "with replacement (default: without)."),
    threshold: float | None = typer.Option(None, "--threshold", help="bagging: out-of-bag "
                                           "disagreement that flags a training row (default 0.5)."),
    input_threshold: float | None = typer.Option(None, "--input-threshold", help="bagging: vote "
                                                 "disagreement that flags a live input."),
    epsilon: float | None = typer.Option(None, "--epsilon", help="dp: privacy budget epsilon."),
    epsilons: str | None = typer.Option(None, "--epsilons", help="With --compare: dp budgets to "
                                        "try, comma-separated (default 1,8)."),
    delta: float | None = typer.Option(None, "--delta", help="dp: privacy delta (default 1/n^1.1)."),
    epochs: int | None = typer.Option(None, "--epochs", help="dp: training epochs (DP-SGD)."),
    max_grad_norm: float | None = typer.Option(None, "--max-grad-norm", help="dp: per-row gradient "
                                               "clipping norm (DP-SGD)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="dp: batch size (DP-SGD)."),
    learning_rate: float | None = typer.Option(None, "--learning-rate", help="dp: learning rate (DP-SGD)."),
    regularization: float | None = typer.Option(None, "--regularization", help="dp: L2 strength "
                                                "of the private logistic regression."),
    device: str | None = typer.Option(None, "--device", help="dp, cnn: cpu, cuda or auto."),
    n_jobs: int | None = typer.Option(None, "--n-jobs", help="partition, bagging: parallel workers."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="partition, bagging: address of "
                                         "a Dask scheduler to train the members on."),
    no_html: bool = typer.Option(False, "--no-html", help="sanitize: skip report.html."),
    text_col: str | None = TEXT_COL_OPTION,
    label_col: str | None = LABEL_COL_OPTION,
    feature_cols: str | None = FEATURE_COLS_OPTION,
    id_col: str | None = ID_COL_OPTION,
    data_dir: Path | None = DATA_DIR_OPTION,
    json_out: bool = JSON_OPTION,
    seed: int = SEED_OPTION,
) -> None:
    """Defend a training set: sanitize, bagging, partition (certified) or dp; --compare runs them all."""
    from poisonlab.defend import DefendRequest, method_function

    if compare == (method is not None):
        raise ParameterError("defend needs exactly one of --method NAME or --compare.")
    radius_list = [int(r) for r in _floats(radii, "--radii") or []] or None
    partition = _given(n_partitions=n_partitions, hash_seed=hash_seed, n_jobs=n_jobs,
                       scheduler=scheduler)
    bagging = _given(n_estimators=n_estimators, max_samples=max_samples, bootstrap=bootstrap,
                     threshold=threshold, input_threshold=input_threshold, n_jobs=n_jobs,
                     scheduler=scheduler)
    dp = _given(epsilon=epsilon, delta=delta, epochs=epochs, max_grad_norm=max_grad_norm,
                batch_size=batch_size, learning_rate=learning_rate, regularization=regularization,
                device=device)
    run = None if compare else method_function(str(method))
    _check_out(out)
    ds, truth = _load(data, text_col, label_col, feature_cols, id_col, None, None, data_dir)
    spec = _model(model, ds.kind)
    test_ds = None
    if test is not None:
        test_ds, _ = _load(test, text_col, label_col, feature_cols, id_col, None, None, data_dir)
        if test_ds.classes != ds.classes:
            raise DataError(f"--test {test}: classes {list(test_ds.classes)} differ from the "
                            f"training data's {list(ds.classes)}.")
    if compare:
        chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
        budgets = _floats(epsilons, "--epsilons") or ([epsilon] if epsilon is not None else None)
        options: dict[str, Any] = _given(methods=chosen, radii=radius_list, epsilons=budgets)
        options.update(_given(partition=partition or None, bagging=bagging or None,
                              dp={k: v for k, v in dp.items() if k != "epsilon"} or None))
    elif method == "partition":
        options = {**partition, **_given(radii=radius_list)}
    elif method == "bagging":
        options = bagging
    elif method == "dp":
        options = dp
    else:
        options = {"html": not no_html}
    given_elsewhere = set(_given(**partition, **bagging, **dp)) - set(options) - {"html"}
    given_elsewhere |= set(_given(methods=methods, epsilons=epsilons))
    if not compare and given_elsewhere:
        flags = ", ".join("--" + k.replace("_", "-") for k in sorted(given_elsewhere))
        raise ParameterError(f"{flags} do not apply to --method {method}.")
    request = DefendRequest(dataset=ds, out=out, model=spec, ground_truth=truth, test=test_ds,
                            random_state=seed, progress=None, options=options)
    with _Steps(disable=json_out) as steps:
        request.progress = steps
        if compare:
            from poisonlab.defend.compare import run_compare

            summary = run_compare(request)
        else:
            assert run is not None
            summary = run(request)
    if json_out:
        emit_json(summary)
        return
    if compare:
        out_console.print(summary["table"], highlight=False)
        if summary.get("measured_on"):
            out_console.print(f"Measured on {summary['measured_on']}.")
        out_console.print(f"Wrote {out / 'tradeoffs.json'}, {out / 'tradeoffs.md'}")
        return
    if method != "sanitize":
        from poisonlab.defend.compare import summary_lines

        for line in summary_lines(summary):
            out_console.print(line, highlight=False)
        return
    line = (f"{method}: removed {summary.get('n_removed')} of {summary.get('n_rows')} rows, "
            f"retrained {summary.get('model')} -> {summary.get('model_path')}")
    out_console.print(line)
    if "before" in summary:
        b, a = summary["before"], summary["after"]
        parts = [f"clean accuracy {b['clean_accuracy']:.3f} -> {a['clean_accuracy']:.3f}"]
        if "attack_success" in b:
            parts.append(f"attack success {b['attack_success']:.3f} -> {a['attack_success']:.3f}")
        if "trigger_flips" in b and "trigger_flips" in a:
            parts.append(f"trigger flips {b['trigger_flips']:.3f} -> {a['trigger_flips']:.3f}")
        out_console.print("  " + "; ".join(parts) + f" ({summary.get('measured_on', '')})")
    if "poison_removed" in summary:
        out_console.print(f"  planted rows removed: {summary['poison_removed']}, left: "
                          f"{summary['poison_left']}")
