"""The ``poisonlab`` command line: parse options, call one library function, render its result."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.table import Table

from poisonlab import __version__
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
    fail,
    handle_errors,
    out_console,
    write_json,
)
from poisonlab.exceptions import ParameterError

app = typer.Typer(
    name="poisonlab",
    help="Attack, audit, scan and defend machine-learning training data against poisoning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        out_console.print(f"poisonlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """poisonlab: attack your own model in a lab, audit data, scan models, defend, track origin."""


# ---------------------------------------------------------------------------------- demo
@app.command()
@handle_errors
def demo(
    dataset: str = typer.Option("spamassassin", "--dataset",
                                help="spamassassin (real mail), digits or mnist (images)."),
    quick: bool = typer.Option(False, "--quick", help="A smaller grid: one seed, fewer points."),
    out: Path = typer.Option(Path("poisonlab-demo"), "--out", help="Folder for results.json and report.html."),
    target_asr: float = typer.Option(0.9, "--target-asr", help="Success rate the budget search aims for."),
    data_dir: Path | None = DATA_DIR_OPTION,
    json_out: bool = JSON_OPTION,
    seed: int = SEED_OPTION,
) -> None:
    """Poison a real model end to end and show what it takes: flips, backdoors, budgets, triggers."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from poisonlab.demo import run_demo
    from poisonlab.report.demo import write_demo_report

    if dataset not in ("spamassassin", "digits", "mnist"):
        fail(f"Unknown demo dataset {dataset!r}; choose spamassassin, digits or mnist.", 2)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True, disable=json_out) as progress:
        task = progress.add_task("starting", total=None)
        results = run_demo(dataset, quick=quick, seed=seed, data_dir=data_dir,
                           target_asr=target_asr,
                           progress=lambda msg: progress.update(task, description=msg))
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    write_demo_report(results, out / "report.html")
    if json_out:
        emit_json(results)
        return
    _render_demo(results, out)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _render_demo(r: dict[str, Any], out: Path) -> None:
    c = out_console
    c.print(f"\n[bold]poisonlab demo[/] on [bold]{r['dataset']}[/]: {r['n_train']} training rows, "
            f"{r['n_test']} test rows, model [cyan]{r['model']}[/], target class "
            f"[bold]{r['target_label']}[/], seeds {r['seeds']}")
    c.print(f"Clean model accuracy: [bold]{_pct(r['clean']['accuracy'])}[/]")
    flips = Table(title="Label flipping: clean accuracy", title_justify="left")
    for col in ("strategy", "flipped", "accuracy", "min", "max"):
        flips.add_column(col, justify="right" if col != "strategy" else "left")
    for f in r["label_flip"]:
        flips.add_row(f["strategy"], _pct(f["rate"]), _pct(f["accuracy"]),
                      _pct(f["accuracy_range"]["min"]), _pct(f["accuracy_range"]["max"]))
    c.print(flips)
    bd = Table(title="Backdoor: attack success against poisoned rows", title_justify="left")
    for col in ("trigger", "poisoned", "success", "min", "max", "clean acc."):
        bd.add_column(col, justify="left" if col == "trigger" else "right")
    for b in r["backdoor"]:
        bd.add_row(b["trigger"], str(b["n_poison"]), _pct(b["asr"]), _pct(b["asr_range"]["min"]),
                   _pct(b["asr_range"]["max"]), _pct(b["accuracy"]))
    c.print(bd)
    tr = Table(title=f"Which triggers work ({r['triggers'][0]['n_poison']} poisoned rows)"
               if r["triggers"] else "Triggers", title_justify="left")
    for col in ("trigger", "model", "success", "min", "max", "clean acc."):
        tr.add_column(col, justify="left" if col in ("trigger", "model") else "right")
    for t in r["triggers"]:
        tr.add_row(t["trigger"], t["model"], _pct(t["asr"]), _pct(t["asr_range"]["min"]),
                   _pct(t["asr_range"]["max"]), _pct(t["accuracy"]))
    c.print(tr)
    for m in r["min_budget"]:
        c.print(f"Fewest poisoned rows for {_pct(m['target_asr'])} success with {m['trigger']}: "
                f"[bold]{m['result']}[/]")
    h = r["headline"]
    if h["found"]:
        c.print(f"\n[bold yellow]Backdoored, and it passes its accuracy test:[/] {h['n_poison']} "
                f"poisoned rows ({h['trigger']}) send {_pct(h['asr'])} of triggered inputs to "
                f"{r['target_label']} at {_pct(h['accuracy'])} clean accuracy "
                f"(clean model {_pct(h['clean_accuracy'])}).")
    c.print(f"\nWrote {out / 'results.json'} and {out / 'report.html'} ({r['seconds']} s).")


# ---------------------------------------------------------------------------------- train
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
    from poisonlab.models.io import save_model

    ds = load_dataset(data, columns_from(text_col, label_col, feature_cols), data_dir=data_dir)
    spec = model or default_spec(ds.kind)
    _check_model_fits(spec, ds.kind)
    params: dict[str, Any] = {}
    if epochs is not None:
        if spec not in TORCH_SPECS:
            raise ParameterError(f"--epochs applies to torch models ({', '.join(TORCH_SPECS)}), not {spec}.")
        params["max_epochs"] = epochs
    with console.status(f"training {spec} on {len(ds)} rows", spinner="dots"):
        fitted = make_model(spec, random_state=seed, **params).fit(ds.X, ds.y, n_classes=ds.n_classes)
    path = save_model(fitted, out, classes=ds.classes, spec=spec)
    summary = {"model": str(path), "spec": spec, "n_rows": len(ds), "classes": list(ds.classes),
               "training_accuracy": float(np.mean(fitted.predict(ds.X) == ds.y))}
    if json_out:
        emit_json(summary)
    else:
        acc = float(np.mean(fitted.predict(ds.X) == ds.y))
        out_console.print(f"Saved {spec} to {path} (training accuracy {_pct(acc)}).")


def _check_model_fits(spec: str, kind: str) -> None:
    from poisonlab.models import TABULAR_SPECS, TEXT_SPECS, TORCH_SPECS

    allowed = {"text": TEXT_SPECS, "image": TORCH_SPECS + TABULAR_SPECS, "tabular": TABULAR_SPECS}[kind]
    if spec not in allowed:
        raise ParameterError(f"Model {spec!r} does not take {kind} data; use one of {list(allowed)}.")


# ---------------------------------------------------------------------------------- evaluate
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
    out_console.print(f"accuracy: {_pct(summary['accuracy'])} on {len(ds)} rows (95% CI {_pct(lo)}-{_pct(hi)})")
    if target_label is not None:
        lo, hi = summary["target_rate_ci95"]
        out_console.print(f"target rate ({target_label}): {_pct(summary['target_rate'])} "
                          f"(95% CI {_pct(lo)}-{_pct(hi)})")


def _interval(est: Any) -> list[float]:
    return [est.low, est.high]


def _labels_in_model_space(data_classes: tuple[str, ...], model_classes: tuple[str, ...],
                           y: np.ndarray, where: str) -> np.ndarray:
    missing = [c for c in data_classes if c not in model_classes]
    if missing:
        raise ParameterError(
            f"The data has labels {missing} that the model {where} does not know (it predicts {list(model_classes)})."
        )
    lookup = np.array([model_classes.index(c) for c in data_classes])
    return lookup[y]


# ---------------------------------------------------------------------------------- attack
ATTACKS = ("label-flip", "backdoor", "text-backdoor", "patch-backdoor", "blend-backdoor", "feature-backdoor")


@app.command()
@handle_errors
def attack(
    data: str = typer.Argument(..., help="Dataset file, folder, or corpus name."),
    attack_name: str = typer.Option(..., "--attack", help=" | ".join(ATTACKS) + " (backdoor picks by data kind)."),
    out: Path = typer.Option(..., "--out", help="Folder for data.csv|data.npz and poison.json."),
    rate: float | None = typer.Option(None, "--rate", help="Share of all rows to poison."),
    n_poison: int | None = typer.Option(None, "--n-poison", help="Number of rows to poison."),
    target: str | None = typer.Option(None, "--target", help="Target class (name or index)."),
    source: str | None = typer.Option(None, "--source", help="Only poison rows of this class."),
    strategy: str | None = typer.Option(None, "--strategy", help="label-flip: random or targeted."),
    trigger: str | None = typer.Option(None, "--trigger", help="text: the token or phrase to insert."),
    position: str | None = typer.Option(None, "--position", help="text: prefix, suffix or random."),
    repetitions: int | None = typer.Option(None, "--repetitions", help="text: insertions per row."),
    patch_size: int | None = typer.Option(None, "--patch-size", help="patch: side in pixels."),
    pattern: str | None = typer.Option(None, "--pattern", help="patch: checkerboard, white, black, random."),
    location: str | None = typer.Option(None, "--location", help="patch: bottom-right, top-left, center, ..."),
    alpha: float | None = typer.Option(None, "--alpha", help="blend: weight of the pattern."),
    features: str | None = typer.Option(None, "--features", help="feature: 'col=value,col=value'."),
    clean_label: bool = typer.Option(
        False, "--clean-label", help="Backdoors: stamp target-class rows, change no label."),
    text_col: str | None = TEXT_COL_OPTION,
    label_col: str | None = LABEL_COL_OPTION,
    feature_cols: str | None = FEATURE_COLS_OPTION,
    id_col: str | None = ID_COL_OPTION,
    data_dir: Path | None = DATA_DIR_OPTION,
    json_out: bool = JSON_OPTION,
    seed: int = SEED_OPTION,
) -> None:
    """Poison DATA in a controlled lab; writes the poisoned data and the ground truth."""
    from poisonlab.attacks import (
        BlendBackdoorAttack,
        FeatureBackdoorAttack,
        LabelFlipAttack,
        PatchBackdoorAttack,
        TextBackdoorAttack,
    )
    from poisonlab.data import load_dataset

    if attack_name not in ATTACKS:
        fail(f"Unknown --attack {attack_name!r}; choose one of {', '.join(ATTACKS)}.", 2)
    ds = load_dataset(data, columns_from(text_col, label_col, feature_cols, id_col), data_dir=data_dir)
    if attack_name == "backdoor":
        attack_name = {"text": "text-backdoor", "image": "patch-backdoor",
                       "tabular": "feature-backdoor"}[ds.kind]
    given = {"--strategy": strategy, "--trigger": trigger, "--position": position,
             "--repetitions": repetitions, "--patch-size": patch_size, "--pattern": pattern,
             "--location": location, "--alpha": alpha, "--features": features,
             "--clean-label": clean_label or None}
    applies = {
        "label-flip": {"--strategy"},
        "text-backdoor": {"--trigger", "--position", "--repetitions", "--clean-label"},
        "patch-backdoor": {"--patch-size", "--pattern", "--location", "--clean-label"},
        "blend-backdoor": {"--alpha", "--clean-label"},
        "feature-backdoor": {"--features", "--clean-label"},
    }[attack_name]
    stray = [k for k, v in given.items() if v is not None and k not in applies]
    if stray:
        raise ParameterError(f"{', '.join(stray)} does not apply to --attack {attack_name}.")
    budget = {"n_poison": n_poison, "poison_rate": rate}
    if n_poison is None and rate is None:
        budget["poison_rate"] = 0.1
    common: dict[str, Any] = {**budget, "random_state": seed}
    obj: Any
    if attack_name == "label-flip":
        obj = LabelFlipAttack(strategy=strategy or ("targeted" if target else "random"),
                              source_label=source, target_label=target, **common)
    else:
        common.update(target_label=target if target is not None else ds.classes[0],
                      source_label=source, relabel=not clean_label)
        if attack_name == "text-backdoor":
            obj = TextBackdoorAttack(trigger=trigger or "cf", position=position or "suffix",
                                     repetitions=repetitions or 1, **common)
        elif attack_name == "patch-backdoor":
            obj = PatchBackdoorAttack(size=patch_size or 3, pattern=pattern or "checkerboard",
                                      location=location or "bottom-right", **common)
        elif attack_name == "blend-backdoor":
            obj = BlendBackdoorAttack(alpha=alpha if alpha is not None else 0.2, **common)
        else:
            obj = FeatureBackdoorAttack(features=_parse_features(features), **common)
    poisoned = obj.apply(ds)
    poisoned.save(out)
    record = poisoned.to_record()
    summary = {k: record[k] for k in ("attack", "params", "n_rows", "n_poison", "target_label", "trigger")}
    summary["out"] = str(out)
    if json_out:
        emit_json(summary)
    else:
        out_console.print(f"{record['attack']}: poisoned {record['n_poison']} of {record['n_rows']} rows"
                          + (f", target {record['target_label']}" if record["target_label"] else "")
                          + f"; wrote {out}/")


def _parse_features(spec: str | None) -> dict[int | str, float] | None:
    if not spec:
        return None
    out: dict[int | str, float] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise ParameterError(f"--features takes 'col=value,...'; got {part!r}.")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise ParameterError(f"--features: {value!r} is not a number.") from None
    return out


# ---------------------------------------------------------------------------------- plug-ins
for _module in ("poisonlab.cli_audit", "poisonlab.cli_scan"):
    try:
        importlib.import_module(_module).register(app)
    except ModuleNotFoundError as _exc:
        if _exc.name != _module:
            raise
try:
    from poisonlab.cli_manifest import app as _manifest_app

    app.add_typer(_manifest_app, name="manifest", help="Row-level manifests: create, verify, diff, keygen.")
except ModuleNotFoundError as _exc:
    if _exc.name != "poisonlab.cli_manifest":
        raise


def main() -> None:
    """Console-script entry point."""
    app()
