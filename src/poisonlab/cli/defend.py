"""``poisonlab defend``: sanitize, bagging, partition (certified) or dp; ``--compare`` runs them all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

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
    MODEL_OPTION,
    TRUST_PICKLE_OPTION,
    Steps,
    floats,
    given,
    ints,
    load_training_data,
    model_option,
)
from poisonlab.exceptions import DataError, ParameterError


@app.command(name="defend")
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
    trust_pickle: bool = TRUST_PICKLE_OPTION,
    json_out: bool = JSON_OPTION,
    seed: int = SEED_OPTION,
) -> None:
    """Defend a training set: sanitize, bagging, partition (certified) or dp; --compare runs them all."""
    from poisonlab.defend import DefendRequest, method_function

    if compare == (method is not None):
        raise ParameterError("defend needs exactly one of --method NAME or --compare.")
    radius_list = ints(radii, "--radii")
    partition = given(n_partitions=n_partitions, hash_seed=hash_seed, n_jobs=n_jobs,
                       scheduler=scheduler)
    bagging = given(n_estimators=n_estimators, max_samples=max_samples, bootstrap=bootstrap,
                     threshold=threshold, input_threshold=input_threshold, n_jobs=n_jobs,
                     scheduler=scheduler)
    dp = given(epsilon=epsilon, delta=delta, epochs=epochs, max_grad_norm=max_grad_norm,
                batch_size=batch_size, learning_rate=learning_rate, regularization=regularization,
                device=device)
    run = None if compare else method_function(str(method))
    tmp = claim_out(out, "defend")
    ds, truth = load_training_data(data, text_col, label_col, feature_cols, id_col, None, None, data_dir)
    spec = model_option(model, ds.kind, trust_pickle)
    test_ds = None
    if test is not None:
        test_ds, _ = load_training_data(test, text_col, label_col, feature_cols, id_col, None, None, data_dir)
        if test_ds.classes != ds.classes:
            raise DataError(f"--test {test}: classes {list(test_ds.classes)} differ from the "
                            f"training data's {list(ds.classes)}.")
    if compare:
        chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods is not None else None
        if chosen == []:
            raise ParameterError(f"--methods must name defenses separated by commas. Got {methods!r}.")
        budgets = floats(epsilons, "--epsilons") or ([epsilon] if epsilon is not None else None)
        options: dict[str, Any] = given(methods=chosen, radii=radius_list, epsilons=budgets)
        options.update(given(partition=partition or None, bagging=bagging or None,
                              dp={k: v for k, v in dp.items() if k != "epsilon"} or None))
    elif method == "partition":
        options = {**partition, **given(radii=radius_list)}
    elif method == "bagging":
        options = bagging
    elif method == "dp":
        options = dp
    else:
        options = {"html": not no_html}
    given_elsewhere = set(given(**partition, **bagging, **dp)) - set(options) - {"html"}
    given_elsewhere |= set(given(methods=methods, epsilons=epsilons))
    if not compare and given_elsewhere:
        flags = ", ".join("--" + k.replace("_", "-") for k in sorted(given_elsewhere))
        raise ParameterError(f"{flags} do not apply to --method {method}.")
    request = DefendRequest(dataset=ds, out=tmp, model=spec,
                            ground_truth=truth, test=test_ds,
                            random_state=seed, progress=None, options=options)
    with Steps(disable=json_out) as steps:
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
        out_console.print(summary["table"], highlight=False, markup=False)
        if summary.get("measured_on"):
            out_console.print(f"Measured on {summary['measured_on']}.", markup=False)
        out_console.print(f"Wrote {out / 'tradeoffs.json'}, {out / 'tradeoffs.md'}", markup=False)
        return
    if method != "sanitize":
        from poisonlab.defend.compare import summary_lines

        for line in summary_lines(summary):
            out_console.print(line, highlight=False, markup=False)
        return
    line = (f"{method}: removed {summary.get('n_removed')} of {summary.get('n_rows')} rows, "
            f"retrained {summary.get('model')} -> {summary.get('model_path')}")
    out_console.print(line, markup=False)
    if "before" in summary:
        b, a = summary["before"], summary["after"]
        parts = [f"clean accuracy {b['clean_accuracy']:.3f} -> {a['clean_accuracy']:.3f}"]
        if "attack_success" in b:
            parts.append(f"attack success {b['attack_success']:.3f} -> {a['attack_success']:.3f}")
        if "trigger_flips" in b and "trigger_flips" in a:
            parts.append(f"trigger flips {b['trigger_flips']:.3f} -> {a['trigger_flips']:.3f}")
        out_console.print("  " + "; ".join(parts) + f" ({summary.get('measured_on', '')})", markup=False)
    if "poison_removed" in summary:
        out_console.print(f"  planted rows removed: {summary['poison_removed']}, left: "
                          f"{summary['poison_left']}")

