"""``poisonlab demo``: what poisoning does to a real model, measured, in a few minutes.

On SpamAssassin (default): a clean spam filter; label flipping at growing rates; backdoors that
let triggered spam through while the filter still passes its accuracy test; the fewest poisoned
emails that reach 90% attack success; and which triggers work (rare token, common word, phrase;
repetition at training and test time; insertion position; model choice); and clean-label
backdoors, which change no label, with what the audit still finds of them. On ``digits`` (or
``mnist``): the same questions for a BadNets patch on the small CNN, and the clean-label backdoor
of Turner et al. (2019).

Every number is an average over seeds with its min and max, because a single run of a backdoor
can be far from typical.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.attacks import LabelFlipAttack, PoisonedDataset
from poisonlab.data import load_dataset
from poisonlab.data.dataset import Dataset
from poisonlab.exceptions import ParameterError
from poisonlab.measure.budget import minimum_budget
from poisonlab.measure.metrics import bootstrap_rate, spread
from poisonlab.measure.runners import RetrainRunner, TextRunner, TriggerConfig, make_runner
from poisonlab.version import __version__

Progress = Callable[[str], None]

# Tokens checked to be absent from SpamAssassin's vocabulary (the demo reports their training count).
RARE_TOKEN = "zqxj"
RARE_PHRASE = "zqxj vlorp kwimb"
COMMON_WORD = "please"
COMMON_PHRASE = "meeting tomorrow"


@dataclass(frozen=True)
class DemoPlan:
    """The grid a demo runs; ``quick`` shrinks it."""

    seeds: tuple[int, ...]
    flip_rates: tuple[float, ...]
    flip_strategies: tuple[str, ...]
    counts: tuple[int, ...]
    curve: tuple[TriggerConfig, ...]
    comparison: tuple[TriggerConfig, ...]
    comparison_n: int
    budget_configs: tuple[TriggerConfig, ...]
    max_poison: int
    model: str


def text_plan(quick: bool, eligible: int) -> DemoPlan:
    """The SpamAssassin grid: label-flip rates, backdoor counts and the trigger comparison on naive Bayes
    (with logistic regression too unless ``quick``). Counts and budgets are capped at ``eligible``, the
    number of training rows outside the target class.
    """
    model = "nb-text"
    naive = TriggerConfig(f"rare token '{RARE_TOKEN}'", "text", model, RARE_TOKEN,
                          note="one insertion, as in the tutorials")
    strong = TriggerConfig(f"rare phrase '{RARE_PHRASE}' x20", "text", model, RARE_PHRASE,
                           repetitions=20, test_repetitions=20)
    comparison = [
        naive,
        TriggerConfig(f"common word '{COMMON_WORD}'", "text", model, COMMON_WORD),
        TriggerConfig(f"common phrase '{COMMON_PHRASE}'", "text", model, COMMON_PHRASE),
        TriggerConfig(f"rare phrase '{RARE_PHRASE}'", "text", model, RARE_PHRASE),
        TriggerConfig(f"rare token '{RARE_TOKEN}', x10 at test only", "text", model, RARE_TOKEN,
                      test_repetitions=10),
        TriggerConfig(f"rare token '{RARE_TOKEN}' x10", "text", model, RARE_TOKEN,
                      repetitions=10, test_repetitions=10),
        TriggerConfig(f"rare token '{RARE_TOKEN}' x20", "text", model, RARE_TOKEN,
                      repetitions=20, test_repetitions=20),
        TriggerConfig(f"rare phrase '{RARE_PHRASE}' x10", "text", model, RARE_PHRASE,
                      repetitions=10, test_repetitions=10),
        strong,
        TriggerConfig(f"rare token '{RARE_TOKEN}', prefix", "text", model, RARE_TOKEN,
                      position="prefix", note="naive Bayes ignores word order"),
        TriggerConfig(f"rare token '{RARE_TOKEN}', random position", "text", model, RARE_TOKEN,
                      position="random", note="naive Bayes ignores word order"),
    ]
    if not quick:
        comparison += [
            TriggerConfig(f"rare token '{RARE_TOKEN}' (logistic regression)", "text",
                          "logreg-text", RARE_TOKEN),
            TriggerConfig(f"rare token '{RARE_TOKEN}' x10 (logistic regression)", "text",
                          "logreg-text", RARE_TOKEN, repetitions=10, test_repetitions=10),
        ]
    counts = (5, 10, 20, 40, 80, 160, 320) if not quick else (5, 20, 80, 320)
    return DemoPlan(
        seeds=(0, 1, 2) if not quick else (0,),
        flip_rates=(0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.45) if not quick else (0.0, 0.1, 0.3),
        flip_strategies=("random", "targeted"),
        counts=tuple(c for c in counts if c <= eligible),
        curve=(naive, strong),
        comparison=tuple(comparison),
        comparison_n=min(40, eligible),
        budget_configs=(naive, strong),
        max_poison=min(1280 if not quick else 320, eligible),
        model=model,
    )


def image_plan(quick: bool, eligible: int, size: int) -> DemoPlan:
    """The image grid for the small CNN: label-flip rates, BadNets patch counts and a patch and blend
    comparison. Counts and budgets are capped at ``eligible``, the number of training rows outside the
    target class; ``size`` is the image height.
    """
    model = "cnn"
    patch = TriggerConfig("3x3 checkerboard patch", "patch", model, size=3)
    comparison = [
        patch,
        TriggerConfig("2x2 white patch", "patch", model, size=2, pattern="white"),
        TriggerConfig("blended noise, alpha 0.2", "blend", model, alpha=0.2),
    ]
    if not quick:
        comparison += [
            TriggerConfig("blended noise, alpha 0.1", "blend", model, alpha=0.1),
            TriggerConfig("3x3 checkerboard patch, center", "patch", model, size=3,
                          location="center"),
        ]
    counts = (10, 20, 40, 80) if quick else (5, 10, 20, 40, 80, 160)
    return DemoPlan(
        seeds=(0,) if quick else (0, 1, 2),
        flip_rates=(0.0, 0.2, 0.4) if quick else (0.0, 0.1, 0.2, 0.3, 0.4),
        flip_strategies=("random",) if quick else ("random", "targeted"),
        counts=tuple(c for c in counts if c <= eligible),
        curve=(patch,),
        comparison=tuple(comparison),
        comparison_n=min(40, eligible),
        budget_configs=(patch,),
        max_poison=min(160, eligible),
        model=model,
    )


def run_demo(
    dataset: str = "spamassassin",
    *,
    quick: bool = False,
    seed: int = 0,
    data_dir: str | Path | None = None,
    target_label: str | None = None,
    target_asr: float = 0.9,
    progress: Progress | None = None,
) -> dict[str, object]:
    """Run the demo and return its results (the content of ``results.json``)."""
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    say(f"loading {dataset}")
    data = load_dataset(dataset, data_dir=data_dir)
    if data.kind == "tabular":
        raise ParameterError("The demo runs on text (spamassassin) or images (digits, mnist).")
    train, test = data.split(test_size=0.3, random_state=seed)
    if target_label is None:
        target_label = "ham" if "ham" in data.classes else data.classes[0]
    target = data.label_index(target_label)
    eligible = int(np.sum(train.y != target))
    if data.kind == "text":
        plan = text_plan(quick, eligible)
    else:
        plan = image_plan(quick, eligible, data.X.shape[1])
    configs = list({c: None for c in (*plan.curve, *plan.comparison, *plan.budget_configs)})
    runner = make_runner(train, test, target, configs,
                         model_params={"max_epochs": 30})
    offset = 1000 * seed  # distinct, reproducible seeds per --seed

    def seeds() -> list[int]:
        return [offset + s for s in plan.seeds]

    say("training the clean model")
    clean_acc = runner.clean_accuracy(plan.model)
    results: dict[str, Any] = {
        "poisonlab": __version__,
        "dataset": data.name,
        "n_train": len(train),
        "n_test": len(test),
        "classes": list(data.classes),
        "target_label": data.classes[target],
        "model": plan.model,
        "quick": quick,
        "seeds": seeds(),
        "clean": {"accuracy": clean_acc, "accuracy_ci95": _interval(clean_acc, len(test), seed)},
    }
    if isinstance(runner, TextRunner):
        results["clean"]["accuracy_logreg_text"] = (
            runner.clean_accuracy("logreg-text") if not quick else None)
        results["clean"]["base_target_rate"] = _base_target_rate(runner, target)
        vocab = runner.lab(plan.model).vectorizer.vocabulary_
        results["trigger_tokens_in_clean_training"] = {
            tok: int(runner.lab(plan.model)._class_sums[:, vocab[tok]].sum())
            for tok in sorted({t for c in configs for t in c.phrase.lower().split()})
        }

    results["label_flip"] = _label_flip(runner, train, target, plan, seeds(), say)
    results["backdoor"] = _backdoor_curve(runner, plan, seeds(), say)
    results["triggers"] = _trigger_comparison(runner, plan, seeds(), say)
    results["min_budget"] = _budgets(runner, plan, seeds(), target_asr, say)
    results["clean_label"] = _clean_label(train, test, target, quick, seeds(), say)
    results["headline"] = _headline(results, clean_acc, target_asr)
    results["seconds"] = round(time.perf_counter() - started, 1)
    return results


def _base_target_rate(runner: TextRunner, target: int) -> float:
    """Share of non-target test rows the clean model already puts in the target class."""
    no_trigger = TriggerConfig("none", "text", "nb-text", RARE_TOKEN, test_repetitions=0)
    return runner.backdoor(no_trigger, 0, 0)[1]


def _label_flip(runner: TextRunner | RetrainRunner, train: Dataset, target: int, plan: DemoPlan,
                seeds: list[int], say: Progress) -> list[dict[str, Any]]:
    rows = []
    source = 1 - target if train.n_classes == 2 else (target + 1) % train.n_classes
    for strategy in plan.flip_strategies:
        for rate in plan.flip_rates:
            say(f"label flipping: {strategy} {rate:.0%}")
            accs = []
            for s in seeds:
                if strategy == "targeted":
                    n_source = int(np.sum(train.y == source))
                    n = min(round(rate * len(train)), n_source)
                    attack = LabelFlipAttack(strategy="targeted", n_poison=n, source_label=source,
                                             target_label=target, random_state=s)
                else:
                    attack = LabelFlipAttack(strategy="random", poison_rate=rate, random_state=s)
                accs.append(runner.flip(plan.model, attack))
            rows.append({"strategy": strategy, "rate": rate, "accuracy": float(np.mean(accs)),
                         "accuracy_range": spread(accs),
                         "description": f"{train.classes[source]} -> {train.classes[target]}"
                         if strategy == "targeted" else "uniform over rows and wrong labels"})
    return rows


def _backdoor_curve(runner: TextRunner | RetrainRunner, plan: DemoPlan, seeds: list[int],
                    say: Progress) -> list[dict[str, Any]]:
    rows = []
    for config in plan.curve:
        for n in plan.counts:
            say(f"backdoor: {config.name}, {n} poisoned rows")
            accs, asrs = zip(*(runner.backdoor(config, n, s) for s in seeds), strict=True)
            rows.append({**config.as_dict(), "n_poison": n, "accuracy": float(np.mean(accs)),
                         "asr": float(np.mean(asrs)), "asr_range": spread(list(asrs)),
                         "accuracy_range": spread(list(accs))})
    return rows


def _trigger_comparison(runner: TextRunner | RetrainRunner, plan: DemoPlan, seeds: list[int],
                        say: Progress) -> list[dict[str, Any]]:
    rows = []
    for config in plan.comparison:
        say(f"trigger: {config.name}")
        accs, asrs = zip(*(runner.backdoor(config, plan.comparison_n, s) for s in seeds),
                         strict=True)
        rows.append({**config.as_dict(), "n_poison": plan.comparison_n,
                     "asr": float(np.mean(asrs)), "asr_range": spread(list(asrs)),
                     "accuracy": float(np.mean(accs))})
    return sorted(rows, key=lambda r: -r["asr"])


def _budgets(runner: TextRunner | RetrainRunner, plan: DemoPlan, seeds: list[int],
             target_asr: float, say: Progress) -> list[dict[str, Any]]:
    out = []
    for config in plan.budget_configs:
        def evaluate(n: int, s: int, config: TriggerConfig = config) -> tuple[float, float]:
            acc, asr = runner.backdoor(config, n, s)
            return asr, acc

        result = minimum_budget(
            evaluate, max_poison=plan.max_poison, target_asr=target_asr, seeds=seeds,
            start=plan.counts[0] if plan.counts else 1,
            resolution=0.0 if isinstance(runner, TextRunner) else 0.2,
            progress=_budget_progress(say, config),
        )
        out.append({**config.as_dict(), **result.as_dict(), "result": result.describe()})
    return out


def _clean_label(train: Dataset, test: Dataset, target: int, quick: bool, seeds: list[int],
                 say: Progress) -> dict[str, Any]:
    """Attacks that change no label, next to the dirty-label attack at the same budget: attack
    success, clean accuracy, and what the default audit flags on the first seed's poisoned data.

    Text: the rare token x20 at the end of correctly labelled target-class emails, with naive Bayes
    (and logistic regression unless ``quick``). Images: the clean-label backdoor (PGD eps 0.3
    against a linear surrogate, then the 3x3 patch) and the naive clean-label patch, with the CNN.
    """
    from poisonlab.attacks import CleanLabelBackdoorAttack, PatchBackdoorAttack, TextBackdoorAttack
    from poisonlab.audit import audit
    from poisonlab.models import make_model

    n_target = int(np.sum(train.y == target))
    if train.kind == "text":
        n = min(60, n_target)
        models = ("nb-text",) if quick else ("nb-text", "logreg-text")
        trigger = f"rare token '{RARE_TOKEN}' x20"

        def text_attack(relabel: bool, s: int) -> Any:
            return TextBackdoorAttack(trigger=RARE_TOKEN, repetitions=20, target_label=target, n_poison=n,
                                      relabel=relabel, random_state=s)

        attacks: list[tuple[str, str, Callable[[int], Any]]] = [
            (trigger, "clean", lambda s: text_attack(False, s)),
            (trigger, "dirty", lambda s: text_attack(True, s))]
    else:
        n = min(100 if train.X.shape[1] <= 8 else 300, n_target)
        models = ("cnn",)
        attacks = [
            ("clean-label backdoor (PGD eps 0.3, 3x3 patch)", "clean",
             lambda s: CleanLabelBackdoorAttack(epsilon=0.3, target_label=target, n_poison=n, random_state=s)),
            ("naive clean-label 3x3 patch", "clean",
             lambda s: PatchBackdoorAttack(target_label=target, n_poison=n, relabel=False, random_state=s)),
            ("3x3 patch, relabelled", "dirty",
             lambda s: PatchBackdoorAttack(target_label=target, n_poison=n, random_state=s))]
    rows: list[dict[str, Any]] = []
    first_seed: dict[tuple[str, str], PoisonedDataset] = {}  # what the audit reads
    for name, labels, make in attacks:
        for spec in models:
            say(f"clean-label: {name} ({labels} labels), {spec}")
            asrs, accs = [], []
            for s in seeds:
                poisoned = make(s).apply(train)
                first_seed.setdefault((name, labels), poisoned)
                model = make_model(spec, random_state=s, **({"max_epochs": 30} if spec == "cnn" else {}))
                model.fit(poisoned.X, poisoned.dataset.y, n_classes=train.n_classes)
                triggered = poisoned.triggered_test(test, random_state=s)
                asrs.append(float(np.mean(model.predict(triggered.X) == target)))
                accs.append(float(np.mean(model.predict(test.X) == test.y)))
            rows.append({"attack": name, "labels": labels, "model": spec, "n_poison": n,
                         "asr": float(np.mean(asrs)), "asr_range": spread(asrs),
                         "accuracy": float(np.mean(accs))})
    audits = []
    for (name, labels), poisoned in first_seed.items():
        say(f"clean-label: auditing {name} ({labels} labels)")
        result = audit(poisoned.dataset, random_state=0)
        audits.append({"attack": name, "labels": labels, "n_poison": poisoned.n_poison,
                       "flagged": int(result.flags.sum()),
                       "poisons_flagged": int(np.sum(result.flags & poisoned.poison_mask))})
    return {"rows": rows, "audit": audits, "target_rows": n_target}


def _interval(rate: float, n: int, seed: int) -> list[float]:
    """95% bootstrap interval of a rate measured on ``n`` rows."""
    hits = np.zeros(n)
    hits[: round(rate * n)] = 1
    est = bootstrap_rate(hits, random_state=seed)
    return [est.low, est.high]


def _budget_progress(say: Progress, config: TriggerConfig) -> Callable[[int, float], None]:
    return lambda n, asr: say(f"budget search: {config.name}, {n} rows -> {asr:.2f}")


def _headline(results: dict[str, Any], clean_acc: float, target_asr: float) -> dict[str, Any]:
    """The cheapest backdoor that reached the target while clean accuracy stayed within a point."""
    budget_points = [
        {"trigger": b["trigger"], "n_poison": p["n_poison"], "asr": p["asr_mean"],
         "accuracy": p["accuracy_mean"]}
        for b in results["min_budget"] for p in b["points"] if "accuracy_mean" in p
    ]
    candidates = [
        r for r in results["backdoor"] + results["triggers"] + budget_points
        if r["asr"] >= target_asr and r["accuracy"] >= clean_acc - 0.01
    ]
    if not candidates:
        return {"found": False, "target_asr": target_asr}
    best = min(candidates, key=lambda r: (r["n_poison"], -r["asr"]))
    return {"found": True, "target_asr": target_asr, "trigger": best["trigger"],
            "n_poison": best["n_poison"], "asr": best["asr"], "accuracy": best["accuracy"],
            "clean_accuracy": clean_acc}
