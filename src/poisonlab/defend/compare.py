"""What every defense returns, how it is measured, and the trade-off table that compares them.

Each defense has one library function with the same signature::

    defend_<method>(train, *, model=None, test=None, ground_truth=None, random_state=0,
                    progress=None, **options) -> DefenseResult

(:func:`~poisonlab.defend.bagging.defend_bagging`, :func:`~poisonlab.defend.partition.defend_partition`,
:func:`~poisonlab.defend.dp.defend_dp`). :func:`compare_defenses` runs the undefended model and each
defense on the same poisoned training set and measures them on the same clean test rows: clean
accuracy, attack success rate, certified accuracy at a few radii, training time relative to the
undefended model. :func:`tradeoff_table` renders its rows as Markdown.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.exceptions import ParameterError

Progress = Callable[[str, int, int], None]
DEFENSES = ("sanitize", "bagging", "partition", "dp")
DEFAULT_RADII = (1, 5, 10, 20)


@dataclass
class DefenseResult:
    """A defended model, what was measured, and (for ``partition``) the certified-accuracy curve.

    ``model`` follows the model contract (``fit``/``predict_proba``/``predict``); ensembles also
    have ``save(folder, classes=...)`` and are read back with
    :func:`poisonlab.defend.partition.load_ensemble`. ``summary`` is JSON-able. ``certified`` lists
    ``{"radius", "accuracy"}`` in increasing radius; ``flags`` marks suspicious training rows where
    the method flags any (``bagging``).
    """

    method: str
    model: Any
    summary: dict[str, Any]
    certified: list[dict[str, float]] | None = None
    flags: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def attack_rows(test: Dataset, ground_truth: Any | None) -> tuple[np.ndarray, int] | None:
    """Triggered copies of the test rows outside the target class, and the target, for a backdoor."""
    if ground_truth is None or getattr(ground_truth, "trigger", None) is None \
            or ground_truth.target_label is None:
        return None
    target = int(ground_truth.target_label)
    rows = test.y != target
    if not rows.any():
        return None
    return ground_truth.apply_trigger(test.X[rows]), target


def attack_scores(pred_triggered: np.ndarray, pred_clean: np.ndarray, y: np.ndarray,
                  target: int) -> dict[str, float]:
    """Attack success and trigger flips from predictions on the same non-target test rows.

    ``attack_success``: the share of triggered rows put in the target class. ``trigger_flips``:
    the same share among the rows the model classifies correctly without the trigger, which is what
    the trigger itself does: a row already misclassified into the target class without it (4.6% of
    SpamAssassin's test spam reads as ham to a clean model) counts as a success but not as a flip.

    >>> attack_scores(np.array([1, 1, 0, 1]), np.array([0, 1, 0, 0]), np.array([0, 0, 0, 2]), 1)
    {'attack_success': 0.75, 'trigger_flips': 0.5}
    """
    hit = np.asarray(pred_triggered) == target
    right = np.asarray(pred_clean) == np.asarray(y)
    out = {"attack_success": round(float(np.mean(hit)), 4)}
    if right.any():
        out["trigger_flips"] = round(float(np.mean(hit[right])), 4)
    return out


def attack_outcome(predict: Callable[[np.ndarray], np.ndarray], test: Dataset,
                   ground_truth: Any | None,
                   pred_clean: np.ndarray | None = None) -> dict[str, float]:
    """:func:`attack_scores` of ``predict`` on ``test`` for a backdoor; ``{}`` when there is none.

    ``pred_clean``: the predictions on all of ``test.X`` when the caller already has them.
    """
    triggered = attack_rows(test, ground_truth)
    if triggered is None:
        return {}
    X_t, target = triggered
    rows = test.y != target
    clean = predict(test.X[rows]) if pred_clean is None else np.asarray(pred_clean)[rows]
    return attack_scores(predict(X_t), clean, test.y[rows], target)


def measure_model(model: Any, test: Dataset, ground_truth: Any | None = None) -> dict[str, float]:
    """Clean accuracy on ``test`` and, for a backdoor, :func:`attack_scores` on its triggered rows."""
    pred = model.predict(test.X)
    out = {"clean_accuracy": round(float(np.mean(pred == test.y)), 4)}
    out.update(attack_outcome(model.predict, test, ground_truth, pred_clean=pred))
    return out


def check_options(method: str, options: dict[str, Any], allowed: Sequence[str]) -> None:
    """An unknown option is an error naming the ones the method takes, never silently ignored."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ParameterError(
            f"The {method} defense does not take the option(s) {unknown}; it takes {sorted(allowed)}."
        )


def save_defense(result: DefenseResult, out: str | Path, *, classes: tuple[str, ...]) -> dict[str, Any]:
    """Write ``out/model...`` (a model file, or the folder ``out/model/`` for an ensemble) and
    ``out/summary.json``; return the summary with ``model_path`` added."""
    from poisonlab.files import final_path, write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(result.model, "save"):
        path = result.model.save(out / "model", classes=classes)
    else:
        from poisonlab.models.io import save_model

        path = save_model(result.model, out / "model", classes=classes,
                          spec=result.summary.get("model"))
    summary = {**result.summary, "model_path": str(final_path(path))}
    if result.certified is not None:
        summary["certified"] = result.certified
    write_json(out / "summary.json", summary)
    return summary


def timed_fit(model: Any, train: Dataset) -> float:
    """Fit ``model`` on ``train`` and return the seconds it took."""
    t = time.perf_counter()
    model.fit(train.X, train.y, n_classes=train.n_classes)
    return time.perf_counter() - t


def hold_out_clean_rows(train: Dataset, ground_truth: Any, *, share: float = 0.25,
                        random_state: int = 0) -> tuple[Dataset, Any, Dataset]:
    """Hold out a stratified ``share`` of the rows the attack did not touch, for measurement.

    Returns the training part, its ground truth, and the clean test part (with the original
    labels). ``poisonlab defend`` makes this split for every method when no ``--test`` is given.
    """
    from poisonlab.attacks import PoisonedDataset

    rng = np.random.default_rng(random_state)
    clean = np.flatnonzero(~ground_truth.poison_mask)
    test_rows: list[int] = []
    for k in range(train.n_classes):
        rows = clean[ground_truth.original_y[clean] == k]
        n = round(share * len(rows))
        if n:
            test_rows.extend(rng.choice(rows, size=n, replace=False).tolist())
    test_idx = np.sort(np.array(test_rows, dtype=np.int64))
    train_idx = np.setdiff1d(np.arange(len(train)), test_idx)
    part = train.subset(train_idx)
    truth = PoisonedDataset(part, ground_truth.poison_mask[train_idx],
                            ground_truth.original_y[train_idx], ground_truth.record,
                            ground_truth.trigger, ground_truth.target_label)
    test = train.subset(test_idx).with_data(y=ground_truth.original_y[test_idx])
    return part, truth, test


# Keys the command line puts in DefendRequest.options for every method (sanitize's report switch).
CLI_SHARED_OPTIONS = ("html",)


def run_request(request: Any, defend: Callable[..., DefenseResult], allowed: Sequence[str], *,
                write_extra: Callable[[DefenseResult, Dataset, Path], object] | None = None) -> dict[str, Any]:
    """Call ``defend`` for a :class:`poisonlab.defend.DefendRequest`, save its model and summary.

    With ground truth and no ``test``, a stratified quarter of the clean rows is held out for
    measurement and never trained on. Options shared by every method on the command line are
    skipped, and so are options set to None (not given); any other unknown option is an error.
    ``write_extra(result, train, out)`` writes a method's own files (the training rows it was
    given, after any hold-out).
    """
    from poisonlab.models import default_spec
    from poisonlab.models.io import check_can_save

    train, truth, test = request.dataset, request.ground_truth, request.test
    held_out = False
    if truth is not None and test is None:
        train, truth, test = hold_out_clean_rows(train, truth, random_state=request.random_state)
        held_out = True
    options = {k: v for k, v in request.options.items()
               if k not in CLI_SHARED_OPTIONS and v is not None}
    check_options(defend.__name__.replace("defend_", ""), options, allowed)
    # what saving will need, checked before training rather than after: ensembles default to
    # scikit-learn members (partition.resolve_member_model), the other defenses to the data kind's spec
    if request.model is not None:
        check_can_save(request.model)
    elif defend.__name__ in ("defend_partition", "defend_bagging"):
        from poisonlab.defend.partition import resolve_member_model

        check_can_save(resolve_member_model(None, train.X))
    else:
        check_can_save(default_spec(train.kind))
    result = defend(train, model=request.model, test=test, ground_truth=truth,
                    random_state=request.random_state, progress=request.progress, **options)
    if held_out:
        result.summary["measured_on"] = (
            f"{len(test)} clean rows held out of the data (a stratified 25% of the rows the attack "
            "did not touch); not trained on")
    elif test is None:
        result.summary["measured_on"] = "nothing: no --test data and no ground truth to hold out from"
    summary = save_defense(result, request.out, classes=request.dataset.classes)
    if write_extra is not None:
        write_extra(result, train, Path(request.out))
    return summary


# ---------------------------------------------------------------------------------- the comparison
@dataclass
class TradeoffRow:
    """One line of the trade-off table."""

    defense: str
    setting: str
    clean_accuracy: float | None = None
    attack_success: float | None = None
    trigger_flips: float | None = None
    certified: dict[int, float] | None = None
    train_seconds: float | None = None
    relative_time: float | None = None
    guarantee: str = "none"
    note: str = ""
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"defense": self.defense, "setting": self.setting,
                "clean_accuracy": self.clean_accuracy, "attack_success": self.attack_success,
                "trigger_flips": self.trigger_flips,
                "certified": None if self.certified is None else
                [{"radius": r, "accuracy": a} for r, a in sorted(self.certified.items())],
                "train_seconds": self.train_seconds, "relative_time": self.relative_time,
                "guarantee": self.guarantee, "note": self.note}


COMPARE_OPTIONS = ("methods", "radii", "epsilons", "sanitize", "bagging", "partition", "dp")


def sanitize_function() -> Callable[..., Any] | None:
    """``poisonlab.defend.sanitize.sanitize`` where that module is present, else None."""
    try:
        from poisonlab.defend.sanitize import sanitize
    except ImportError:
        return None
    return sanitize


def compare_defenses(train: Dataset, *, model: str | None = None, test: Dataset,
                     ground_truth: Any | None = None, random_state: int = 0,
                     progress: Progress | None = None, **options: Any) -> list[TradeoffRow]:
    """Train the undefended model and each defense on ``train``; measure all on ``test``.

    Options: ``methods`` (default: all of :data:`DEFENSES`), ``radii`` (certified accuracy columns,
    default :data:`DEFAULT_RADII`), ``epsilons`` (one DP row each, default ``[1, 8]``), and a dict of
    options per method (``partition={"n_partitions": 80}``, ``dp={"epochs": 10}``, ...; for
    partition also a list of dicts, one row each; a ``"model"`` key there overrides ``model`` for
    that method, e.g. the base model of the partitions). Training time is relative to the undefended model's.
    """
    from poisonlab.models import TORCH_SPECS, default_spec, make_model

    check_options("compare", options, COMPARE_OPTIONS)
    methods = tuple(options.get("methods") or DEFENSES)
    unknown = sorted(set(methods) - set(DEFENSES))
    if unknown:
        raise ParameterError(f"Unknown defense(s) {unknown}; choose from {list(DEFENSES)}.")
    radii = sorted(int(r) for r in (options.get("radii") or DEFAULT_RADII))
    epsilons = [float(e) for e in (options.get("epsilons") or (1.0, 8.0))]
    spec = model or default_spec(train.kind)
    if not isinstance(spec, str):
        raise ParameterError(f"compare_defenses takes a model spec name; got {type(spec).__name__}.")

    def step(name: str) -> None:
        if progress is not None:
            progress(name, 0, 1)

    def per(method: str) -> list[dict[str, Any]]:
        found = options.get(method) or {}
        settings = found if isinstance(found, list) and method == "partition" else [found]
        if not all(isinstance(f, dict) for f in settings):
            raise ParameterError(f"The '{method}' option of compare_defenses must be a dict of that "
                                 "defense's options (for partition, also a list of such dicts). "
                                 f"Got {found!r} instead.")
        return [dict(f) for f in settings]

    rows: list[TradeoffRow] = []
    step(f"training the undefended {spec}")
    baseline = make_model(spec, random_state=random_state)
    seconds = timed_fit(baseline, train)
    rows.append(TradeoffRow("none", spec, **_scores(measure_model(baseline, test, ground_truth)),
                            train_seconds=seconds))
    if ground_truth is not None and ground_truth.n_poison:
        step(f"training {spec} on the clean rows only (reference)")
        clean = train.subset(np.flatnonzero(~np.asarray(ground_truth.poison_mask, dtype=bool)))
        reference = make_model(spec, random_state=random_state)
        ref_seconds = timed_fit(reference, clean)
        rows.append(TradeoffRow("clean rows only", spec,
                                **_scores(measure_model(reference, test, ground_truth)),
                                train_seconds=ref_seconds,
                                note="reference, not a defense: the planted rows removed by hand"))
    for method, opts in [(m, o) for m in methods for o in per(m)]:
        if method == "sanitize":
            run_sanitize = sanitize_function()
            if run_sanitize is None:
                rows.append(TradeoffRow("sanitize", "-", note="unavailable: poisonlab.defend.sanitize "
                                        "is not installed"))
                continue
            step("sanitize: auditing and retraining")
            t = time.perf_counter()
            res = run_sanitize(train, model=opts.pop("model", spec), test=test,
                               ground_truth=ground_truth, random_state=random_state,
                               progress=progress, **opts)
            after = res.metrics.get("after", {})
            rows.append(TradeoffRow(
                "sanitize", f"removed {res.metrics.get('n_removed')} rows",
                **_scores(after), train_seconds=time.perf_counter() - t,
                note=(f"{res.metrics.get('poison_removed')} of {ground_truth.n_poison} planted rows "
                      "removed") if ground_truth is not None else "", summary=dict(res.metrics)))
        elif method == "bagging":
            from poisonlab.defend.bagging import defend_bagging

            step("bagging")
            t = time.perf_counter()
            base = opts.pop("model", spec)
            if base in TORCH_SPECS:
                opts.setdefault("model_params", {"n_threads": 1})
            result = defend_bagging(train, model=base, test=test, ground_truth=ground_truth,
                                    random_state=random_state, progress=progress, **opts)
            s = result.summary
            note = f"flags {s.get('flagged_triggered_inputs', 0):.0%} of triggered inputs, " \
                   f"{s.get('flagged_clean_inputs', 0):.0%} of clean ones" if "flagged_triggered_inputs" in s \
                else f"flags {s.get('flagged_clean_inputs', 0):.0%} of clean inputs"
            if "training_flags" in s:
                tf = s["training_flags"]
                note += f"; {tf['true_positives']} of {tf['n_flagged']} flagged rows planted"
            rows.append(TradeoffRow("bagging", f"{s['n_estimators']} x {s['model']} on "
                                    f"{s['max_samples']:.0%}", **_scores(s),
                                    train_seconds=time.perf_counter() - t, note=note, summary=s))
        elif method == "partition":
            from poisonlab.defend.partition import defend_partition

            step("partition aggregation")
            t = time.perf_counter()
            base = opts.pop("model", None)
            result = defend_partition(train, model=base, test=test, ground_truth=ground_truth,
                                      random_state=random_state, progress=progress,
                                      radii=radii, **opts)
            s = result.summary
            cert = {c["radius"]: c["accuracy"] for c in s["certified_at"]}
            note = f"median certified radius {s['median_certified_radius']}"
            if "certified_against_planted_rows" in s:
                note += (f"; {s['certified_against_planted_rows']:.0%} of test rows certified "
                         f"against all {s['n_poison']} planted rows")
            rows.append(TradeoffRow(
                "partition", f"k={s['n_partitions']}, {s['model']}", **_scores(s), certified=cert,
                train_seconds=time.perf_counter() - t,
                guarantee="each prediction: unchanged by r inserted/removed rows", note=note,
                summary={**s, "certified": result.certified}))
        elif method == "dp":
            from poisonlab.defend.dp import defend_dp

            base = opts.pop("model", spec)
            for eps in epsilons:
                step(f"differentially private training, epsilon={eps:g}")
                t = time.perf_counter()
                result = defend_dp(train, model=base, test=test, ground_truth=ground_truth,
                                   random_state=random_state, progress=progress, epsilon=eps, **opts)
                s = result.summary
                note = s["trained"]
                if "group_epsilon" in s:
                    note += f"; group epsilon for the planted rows {s['group_epsilon']:.0f}"
                private = bool(s.get("private", True))
                if not private:
                    note += (" trained the same way without noise (for DP-SGD: clipping only), the "
                             "reference that shows what the noise itself does")
                rows.append(TradeoffRow(
                    "dp", f"epsilon={s['epsilon']:.2g}, delta={s['delta']:.0e}" if private
                    else "epsilon=inf (no noise)", **_scores(s),
                    train_seconds=time.perf_counter() - t,
                    guarantee=f"({s['epsilon']:.2g}, {s['delta']:.0e})-DP per row" if private
                    else "none", note=note, summary=s))
    base_seconds = rows[0].train_seconds or 0.0
    for row in rows:
        if row.train_seconds is not None and base_seconds > 0:
            row.relative_time = float(f"{row.train_seconds / base_seconds:.2g}")
        if row.train_seconds is not None:
            row.train_seconds = round(row.train_seconds, 1)
    return rows


def _scores(summary: dict[str, Any]) -> dict[str, Any]:
    return {"clean_accuracy": summary.get("clean_accuracy"),
            "attack_success": summary.get("attack_success"),
            "trigger_flips": summary.get("trigger_flips")}


def tradeoff_table(rows: Sequence[TradeoffRow], *, radii: Sequence[int] = DEFAULT_RADII) -> str:
    """The rows as a Markdown table: clean accuracy, attack success, trigger flips (attack success
    on the rows classified correctly without the trigger), certified accuracy at each radius,
    training time (and relative to the undefended model), guarantee, notes."""

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    head = ["defense", "setting", "clean acc.", "attack success", "trigger flips",
            *[f"cert. acc. r={r}" for r in radii], "train s", "time vs none", "guarantee", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cert = [pct(row.certified.get(r)) if row.certified else "-" for r in radii]
        cells = [row.defense, row.setting, pct(row.clean_accuracy), pct(row.attack_success),
                 pct(row.trigger_flips), *cert,
                 "-" if row.train_seconds is None else f"{row.train_seconds:.1f}",
                 "-" if row.relative_time is None else f"{row.relative_time:g}x",
                 row.guarantee, row.note]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def run_compare(request: Any) -> dict[str, Any]:
    """``poisonlab defend DATA --compare``: every defense against the same attack.

    ``request`` is a :class:`poisonlab.defend.DefendRequest`; ``request.options`` may hold any
    option of :func:`compare_defenses`. Needs test rows: ``request.test``, or ground truth to hold
    out a stratified quarter of the clean rows. Writes ``DIR/tradeoffs.json`` and
    ``DIR/tradeoffs.md``; returns ``{"rows": [...], "table": markdown, "measured_on": ...}``.
    """
    from poisonlab.exceptions import DataError
    from poisonlab.files import write_json

    train, truth, test = request.dataset, request.ground_truth, request.test
    measured_on = f"{len(test)} rows of the test data" if test is not None else ""
    if test is None:
        if truth is None:
            raise DataError("--compare needs clean test rows: pass --test, or give data written by "
                            "`poisonlab attack` so that clean rows can be held out.")
        train, truth, test = hold_out_clean_rows(train, truth, random_state=request.random_state)
        measured_on = (f"{len(test)} clean rows held out of the data (a stratified 25% of the rows "
                       "the attack did not touch); not trained on")
    options = {k: v for k, v in request.options.items()
               if k not in CLI_SHARED_OPTIONS and v is not None}
    rows = compare_defenses(train, model=request.model, test=test, ground_truth=truth,
                            random_state=request.random_state, progress=request.progress, **options)
    radii = sorted(int(r) for r in (options.get("radii") or DEFAULT_RADII))
    table = tradeoff_table(rows, radii=radii)
    out = Path(request.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"dataset": request.dataset.name, "n_train": len(train), "measured_on": measured_on,
              "attack": None if truth is None else truth.record, "radii": radii,
              "rows": [r.to_dict() for r in rows], "table": table}
    write_json(out / "tradeoffs.json", result)
    tmp = out / "tradeoffs.md.partial"
    tmp.write_text(table + "\n", encoding="utf-8")
    tmp.replace(out / "tradeoffs.md")
    return result


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """A few plain lines describing a bagging, partition or dp summary, for the command line."""

    def pct(v: Any) -> str:
        return "n/a" if v is None else f"{100 * float(v):.1f}%"

    method = summary.get("method")
    scores = []
    if "clean_accuracy" in summary:
        scores.append(f"clean accuracy {pct(summary['clean_accuracy'])}")
    if "attack_success" in summary:
        scores.append(f"attack success {pct(summary['attack_success'])}")
    if "trigger_flips" in summary:
        scores.append(f"trigger flips {pct(summary['trigger_flips'])}")
    measured = f" ({summary['measured_on']})" if summary.get("measured_on") else ""
    lines: list[str] = []
    if method == "partition":
        rows = summary.get("partition_rows", {})
        lines.append(f"partition: {summary.get('n_partitions')} {summary.get('model')} models on "
                     f"content-hashed partitions (median {rows.get('median')} rows, "
                     f"{rows.get('empty', 0)} empty)")
        if "median_certified_radius" in summary:
            scores.append(f"median certified radius {summary['median_certified_radius']}")
        if summary.get("certified_at"):
            lines.append("  certified accuracy: " + ", ".join(
                f"r={c['radius']} {pct(c['accuracy'])}" for c in summary["certified_at"]))
        if "certified_against_planted_rows" in summary:
            lines.append(f"  {pct(summary['certified_against_planted_rows'])} of test rows are "
                         f"certified against all {summary['n_poison']} planted rows")
    elif method == "bagging":
        lines.append(f"bagging: {summary.get('n_estimators')} x {summary.get('model')} on "
                     f"{pct(summary.get('max_samples'))} of the rows; {summary.get('n_flagged_rows')} "
                     f"training rows flagged (threshold {summary.get('threshold')})")
        if "training_flags" in summary:
            tf = summary["training_flags"]
            lines.append(f"  {tf['true_positives']} of the {tf['n_flagged']} flagged rows were "
                         f"planted ({tf['n_poison']} planted in all)")
        if "flagged_clean_inputs" in summary:
            part = f"  inputs flagged: {pct(summary['flagged_clean_inputs'])} of clean test rows"
            if "flagged_triggered_inputs" in summary:
                part += f", {pct(summary['flagged_triggered_inputs'])} of triggered ones"
            lines.append(part)
    elif method == "dp":
        budget = (f"epsilon={float(summary['epsilon']):.3g}, delta={float(summary['delta']):.0e}"
                  if summary.get("epsilon") is not None else "no noise (not private)")
        lines.append(f"dp: {summary.get('trained')} for {summary.get('model')} at {budget} "
                     f"({summary.get('mechanism')})")
        if "group_epsilon" in summary:
            lines.append(f"  the {summary['n_poison']} planted rows together: epsilon "
                         f"{summary['group_epsilon']:.3g} (group privacy)")
    else:
        lines.append(f"{method}")
    if scores:
        lines.append("  " + "; ".join(scores) + measured)
    if summary.get("model_path"):
        lines.append(f"  model: {summary['model_path']}")
    return lines
