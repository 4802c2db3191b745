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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.defend.base import CLI_SHARED_OPTIONS as CLI_SHARED_OPTIONS
from poisonlab.defend.base import DEFAULT_RADII as DEFAULT_RADII
from poisonlab.defend.base import DEFENSES as DEFENSES
from poisonlab.defend.base import DefenseResult as DefenseResult
from poisonlab.defend.base import Progress as Progress
from poisonlab.defend.base import attack_outcome as attack_outcome
from poisonlab.defend.base import attack_rows as attack_rows
from poisonlab.defend.base import attack_scores as attack_scores
from poisonlab.defend.base import check_options as check_options
from poisonlab.defend.base import hold_out_clean_rows as hold_out_clean_rows
from poisonlab.defend.base import measure_model as measure_model
from poisonlab.defend.base import run_request as run_request
from poisonlab.defend.base import save_defense as save_defense
from poisonlab.defend.base import timed_fit as timed_fit
from poisonlab.exceptions import ParameterError

if TYPE_CHECKING:
    from poisonlab.attacks import PoisonedDataset
    from poisonlab.defend import DefendRequest
    from poisonlab.defend.sanitize import SanitizeResult
    from poisonlab.models import ModelLike


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
    summary: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """The row as a JSON-ready dict; ``certified`` becomes a list of ``{"radius", "accuracy"}`` by radius
        (None where the defense certifies nothing). ``summary`` is left out.
        """
        return {"defense": self.defense, "setting": self.setting,
                "clean_accuracy": self.clean_accuracy, "attack_success": self.attack_success,
                "trigger_flips": self.trigger_flips,
                "certified": None if self.certified is None else
                [{"radius": r, "accuracy": a} for r, a in sorted(self.certified.items())],
                "train_seconds": self.train_seconds, "relative_time": self.relative_time,
                "guarantee": self.guarantee, "note": self.note}


COMPARE_OPTIONS = ("methods", "radii", "epsilons", "sanitize", "bagging", "partition", "dp")


def sanitize_function() -> Callable[..., SanitizeResult] | None:
    """``poisonlab.defend.sanitize.sanitize`` where that module is present, else None."""
    try:
        from poisonlab.defend.sanitize import sanitize
    except ImportError:
        return None
    return sanitize


def compare_defenses(train: Dataset, *, model: ModelLike | None = None, test: Dataset,
                     ground_truth: PoisonedDataset | None = None, random_state: int = 0,
                     progress: Progress | None = None, **options: object) -> list[TradeoffRow]:
    """Train the undefended model and each defense on ``train``; measure all on ``test``.

    Options: ``methods`` (default: all of :data:`DEFENSES`), ``radii`` (certified accuracy columns,
    default :data:`DEFAULT_RADII`), ``epsilons`` (one DP row each, default ``[1, 8]``), and a dict of
    options per method (``partition={"n_partitions": 80}``, ``dp={"epochs": 10}``, ...; for
    partition also a list of dicts, one row each; a ``"model"`` key there overrides ``model`` for
    that method, e.g. the base model of the partitions). Training time is relative to the undefended model's.
    """
    from poisonlab.models import TORCH_SPECS, default_spec, make_model

    check_options("compare", options, COMPARE_OPTIONS)
    methods = tuple(cast("Iterable[str]", options.get("methods") or DEFENSES))
    unknown = sorted(set(methods) - set(DEFENSES))
    if unknown:
        raise ParameterError(f"Unknown defense(s) {unknown}; choose from {list(DEFENSES)}.")
    radii = sorted(int(r) for r in cast("Iterable[int]", options.get("radii") or DEFAULT_RADII))
    epsilons = [float(e) for e in cast("Iterable[float]", options.get("epsilons") or (1.0, 8.0))]
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
        return [dict(cast("dict[str, Any]", f)) for f in settings]

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
            after = cast("Mapping[str, object]", res.metrics.get("after", {}))
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


def _scores(summary: Mapping[str, object]) -> dict[str, Any]:
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


# Any: the command line reads it back key by key, in the variable that holds a method's summary
# (poisonlab.defend.method_function).
def run_compare(request: DefendRequest) -> dict[str, Any]:
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
    radii = sorted(int(r) for r in cast("Iterable[int]", options.get("radii") or DEFAULT_RADII))
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


def summary_lines(summary: Mapping[str, Any]) -> list[str]:  # Any: a summary.json, read key by key
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
