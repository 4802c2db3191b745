"""Which defense, at what cost: every defense against the same poisoning, on real data.

    python benchmarks/defense_tradeoffs.py            # mnist (patch, blend) and SpamAssassin
    python benchmarks/defense_tradeoffs.py --quick    # digits and a SpamAssassin subset, ~3 minutes
    python benchmarks/defense_tradeoffs.py --clean-label  # the defenses against attacks that keep labels

For each scenario the undefended model and every defense are trained on the same poisoned training
rows and measured on the same clean test rows (``poisonlab.defend.compare_defenses``): clean
accuracy, attack success rate (triggered test rows outside the target class that land in it),
certified accuracy at a few radii (partition aggregation), training time relative to the undefended
model. A second table sets partition aggregation on clean mnist beside Levine and Feizi's Table 1.
A third repeats sanitize and the clean-rows reference on the mnist patch over ``--seeds`` training
seeds (the attack fixed), since one CNN's accuracy on 1000 test digits moves by about a point from
seed to seed.

Threads are limited to one per process (BLAS and torch) so timings are comparable on a shared
machine; ``--n-jobs`` trains ensemble members in parallel processes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")


def scenarios(quick: bool) -> list[dict[str, Any]]:
    from poisonlab.attacks import BlendBackdoorAttack, PatchBackdoorAttack, TextBackdoorAttack

    text_attack = TextBackdoorAttack(trigger="zqxj vlorp kwimb", repetitions=20, target_label="ham",
                                     n_poison=40, random_state=0)
    if quick:
        return [
            {"name": "digits, 3x3 patch on 10% of rows, cnn", "data": "digits", "model": "cnn",
             "attack": PatchBackdoorAttack(target_label=0, poison_rate=0.1, random_state=0),
             "partition": {"n_partitions": 20}, "epsilons": [8.0], "dp": {"batch_size": 64}},
            {"name": "SpamAssassin (2000 random emails), rare phrase x20 in 40 emails, nb-text",
             "data": "spamassassin", "rows": 2000, "model": "nb-text", "attack": text_attack,
             "partition": {"n_partitions": 20}, "epsilons": [8.0]},
        ]
    return [
        {"name": "mnist, 3x3 patch on 10% of rows, cnn", "data": "mnist", "model": "cnn",
         "attack": PatchBackdoorAttack(target_label=0, poison_rate=0.1, random_state=0),
         "partition": [{"n_partitions": 80}, {"n_partitions": 20}],
         "epsilons": [1.0, 8.0, math.inf]},
        {"name": "mnist, blended noise (alpha 0.2) on 10% of rows, cnn", "data": "mnist",
         "model": "cnn", "methods": ["sanitize", "partition", "dp"],
         "attack": BlendBackdoorAttack(alpha=0.2, target_label=0, poison_rate=0.1, random_state=0),
         "partition": {"n_partitions": 80}, "epsilons": [8.0]},
        {"name": "SpamAssassin, rare phrase x20 in 40 emails, nb-text", "data": "spamassassin",
         "model": "nb-text", "attack": text_attack,
         "partition": [{"n_partitions": 50}, {"n_partitions": 200}],
         "epsilons": [1.0, 8.0, math.inf]},
        {"name": "SpamAssassin, rare phrase x20 in 40 emails, logreg-text", "data": "spamassassin",
         "model": "logreg-text", "methods": ["sanitize", "partition"], "attack": text_attack,
         "partition": {"n_partitions": 50, "model": "logreg-text"}},
    ]


def clean_label_scenarios() -> list[dict[str, Any]]:
    """Attacks that change no label (docs/clean_label.md): the clean-label backdoor on digits, and
    the rare token x20 in correctly labelled ham emails."""
    from poisonlab.attacks import CleanLabelBackdoorAttack, TextBackdoorAttack

    return [
        {"name": "digits, clean-label backdoor (PGD eps 0.3, 3x3 patch) on 100 zeros, cnn", "data": "digits",
         "model": "cnn", "attack": CleanLabelBackdoorAttack(target_label=0, n_poison=100, epsilon=0.3,
                                                            random_state=0),
         "partition": {"n_partitions": 20}, "epsilons": [8.0], "dp": {"batch_size": 64}},
        {"name": "SpamAssassin, 'zqxj' x20 in 60 correctly labelled ham emails, nb-text",
         "data": "spamassassin", "model": "nb-text",
         "attack": TextBackdoorAttack(trigger="zqxj", repetitions=20, target_label="ham", n_poison=60,
                                      relabel=False, random_state=0),
         "partition": [{"n_partitions": 50}, {"n_partitions": 200}], "epsilons": [1.0, 8.0]},
    ]


def run_scenario(sc: dict[str, Any], n_jobs: int | None) -> dict[str, Any]:
    from poisonlab.data import load_dataset
    from poisonlab.defend.compare import compare_defenses, tradeoff_table

    ds = load_dataset(sc["data"])
    if sc.get("rows"):
        ds = ds.subset(np.sort(np.random.default_rng(0).choice(len(ds), sc["rows"], replace=False)))
    train, test = ds.split(test_size=0.2 if sc["data"] == "mnist" else 0.3, random_state=0)
    truth = sc["attack"].apply(train)
    found = sc.get("partition", {})
    partition = [{**p, "n_jobs": n_jobs} for p in (found if isinstance(found, list) else [found])]
    bagging = {"n_jobs": n_jobs}
    t = time.perf_counter()
    rows = compare_defenses(truth.dataset, model=sc["model"], test=test, ground_truth=truth,
                            random_state=0, methods=sc.get("methods"), epsilons=sc.get("epsilons"),
                            partition=partition, bagging=bagging, dp=sc.get("dp", {}),
                            progress=_progress)
    _progress("", 0, 0)
    return {"name": sc["name"], "n_train": len(train), "n_test": len(test),
            "n_poison": truth.n_poison, "seconds": round(time.perf_counter() - t, 1),
            "rows": [r.to_dict() for r in rows], "table": tradeoff_table(rows)}


def paper_comparison(quick: bool, n_jobs: int | None) -> dict[str, Any]:
    """Partition aggregation on clean mnist at 50 rows per partition, as in the paper's k=1200 on
    60,000 digits (Levine and Feizi 2021, Table 1: clean accuracy 95.85%, base models 79.6%,
    median certified radius 448 = 37% of k)."""
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    from poisonlab.data import load_dataset
    from poisonlab.defend.partition import defend_partition

    name = "digits" if quick else "mnist"
    train, test = load_dataset(name).split(test_size=0.2, random_state=0)
    k = max(2, len(train) // 50)
    bases: list[tuple[str, Any, dict[str, Any] | None]] = [
        ("logreg", "logreg", None),
        ("1-NN on unit-norm rows", make_pipeline(Normalizer(), KNeighborsClassifier(1)), None),
    ]
    if not quick:
        bases.append(("cnn", "cnn", {"max_epochs": 30, "n_threads": 1}))
    out = []
    for label, base, params in bases:
        t = time.perf_counter()
        res = defend_partition(train, model=base, test=test, n_partitions=k, n_jobs=n_jobs,
                               model_params=params, progress=_progress)
        _progress("", 0, 0)
        s = res.summary
        curve = {c["radius"]: c["accuracy"] for c in res.certified or []}
        out.append({"base": label, "k": k, "rows_per_partition": round(len(train) / k, 1),
                    "clean_accuracy": s["clean_accuracy"], "base_accuracy": s["base_accuracy"],
                    "median_certified_radius": s["median_certified_radius"],
                    "median_radius_over_k": None if s["median_certified_radius"] is None
                    else round(s["median_certified_radius"] / k, 3),
                    "certified": {r: curve.get(r, 0.0) for r in (5, 10, 20, 30)},
                    "seconds": round(time.perf_counter() - t, 1)})
    lines = ["| base model | k | rows/partition | clean acc. | base acc. | median radius | "
             "median/k | cert. acc. r=5 | r=10 | r=20 | r=30 | s |", "|" + "---|" * 12,
             "| NiN (paper, 60,000 digits) | 1200 | 50 | 95.9% | 79.6% | 448 | 0.373 | - | - | - | - | - |"]
    for o in out:
        c = o["certified"]
        lines.append(f"| {o['base']} ({name}, {len(train)} digits) | {o['k']} | "
                     f"{o['rows_per_partition']} | {100 * o['clean_accuracy']:.1f}% | "
                     f"{100 * o['base_accuracy']:.1f}% | {o['median_certified_radius']} | "
                     f"{o['median_radius_over_k']} | {100 * c[5]:.1f}% | {100 * c[10]:.1f}% | "
                     f"{100 * c[20]:.1f}% | {100 * c[30]:.1f}% | {o['seconds']} |")
    return {"rows": out, "table": "\n".join(lines)}


def seed_spread(n_seeds: int) -> dict[str, Any]:
    """Sanitize beside the clean-rows reference and the undefended model on the mnist patch, over
    training seeds: is the gap in clean accuracy the defense's or the seed's?"""
    from poisonlab.attacks import PatchBackdoorAttack
    from poisonlab.data import load_dataset
    from poisonlab.defend.compare import compare_defenses

    train, test = load_dataset("mnist").split(test_size=0.2, random_state=0)
    truth = PatchBackdoorAttack(target_label=0, poison_rate=0.1, random_state=0).apply(train)
    per_seed = []
    for seed in range(n_seeds):
        rows = compare_defenses(truth.dataset, model="cnn", test=test, ground_truth=truth,
                                random_state=seed, methods=["sanitize"], progress=_progress)
        _progress("", 0, 0)
        per_seed.append({r.defense: r.to_dict() for r in rows})

    def pct(v: Any) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    lines = ["| seed | none: clean acc. / attack | clean rows only: clean acc. / attack | "
             "sanitize: clean acc. / attack / trigger flips | sanitize minus clean rows |",
             "|---|---|---|---|---|"]
    gaps = []
    for seed, r in enumerate(per_seed):
        none, ref, san = r["none"], r["clean rows only"], r["sanitize"]
        gap = san["clean_accuracy"] - ref["clean_accuracy"]
        gaps.append(gap)
        lines.append(f"| {seed} | {pct(none['clean_accuracy'])} / {pct(none['attack_success'])} | "
                     f"{pct(ref['clean_accuracy'])} / {pct(ref['attack_success'])} | "
                     f"{pct(san['clean_accuracy'])} / {pct(san['attack_success'])} / "
                     f"{pct(san['trigger_flips'])} | {100 * gap:+.1f} pts |")
    mean = {k: float(np.mean([r[k]["clean_accuracy"] for r in per_seed]))
            for k in ("none", "clean rows only", "sanitize")}
    lines.append(f"| mean | {pct(mean['none'])} | {pct(mean['clean rows only'])} | "
                 f"{pct(mean['sanitize'])} | {100 * float(np.mean(gaps)):+.1f} pts |")
    return {"per_seed": per_seed, "table": "\n".join(lines)}


_last = [0.0]


def _progress(step: str, done: int, total: int) -> None:
    now = time.perf_counter()
    if not step:
        sys.stderr.write("\r" + " " * 78 + "\r")
        return
    if now - _last[0] > 0.5 or done == total:
        _last[0] = now
        sys.stderr.write(f"\r  {step[:60]} {done}/{total}".ljust(78))
        sys.stderr.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="digits and a SpamAssassin subset")
    parser.add_argument("--n-jobs", type=int, default=None, help="parallel processes for ensembles")
    parser.add_argument("--json", default=None, help="also write all results to this JSON file")
    parser.add_argument("--only", default=None,
                        help="run only scenarios whose name contains this (or: paper, seeds)")
    parser.add_argument("--clean-label", action="store_true",
                        help="the clean-label scenarios only (docs/clean_label.md)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="training seeds for the sanitize spread on mnist (0 to skip)")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    results: dict[str, Any] = {"scenarios": []}
    start = time.perf_counter()
    with threadpool_limits(1):
        for sc in clean_label_scenarios() if args.clean_label else scenarios(args.quick):
            if args.only and args.only not in sc["name"] and args.only != "paper":
                continue
            if args.only == "paper":
                break
            res = run_scenario(sc, args.n_jobs)
            results["scenarios"].append(res)
            print(f"\n### {res['name']}\n\n{res['n_train']} training rows ({res['n_poison']} "
                  f"poisoned), {res['n_test']} clean test rows; {res['seconds']} s\n")
            print(res["table"], flush=True)
        if args.only in (None, "paper") and not args.clean_label:
            paper = paper_comparison(args.quick, args.n_jobs)
            results["paper"] = paper
            print("\n### Partition aggregation on clean digits, beside Levine and Feizi (2021), "
                  "Table 1\n")
            print(paper["table"], flush=True)
        if not args.quick and not args.clean_label and args.seeds > 0 and args.only in (None, "seeds"):
            spread = seed_spread(args.seeds)
            results["seeds"] = spread
            print(f"\n### Sanitize over {args.seeds} training seeds: mnist, 3x3 patch on 10% of "
                  "rows, cnn\n")
            print(spread["table"], flush=True)
    print(f"\nTotal {time.perf_counter() - start:.0f} s.")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=1, default=str)


if __name__ == "__main__":
    main()
