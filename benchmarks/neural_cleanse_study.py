"""The image scan's two tests on many CNNs the scanning benchmark does not use: one run, one table.

    python benchmarks/neural_cleanse_study.py            # 25 digits models, about 4 minutes
    python benchmarks/neural_cleanse_study.py --mnist    # and 9 MNIST models, about 13 minutes in all

Models are trained with seeds 10-34 (``benchmarks/scan_accuracy.py`` uses 0-3), clean or
backdoored with ``PatchBackdoorAttack`` (every location, pattern and several targets) or
``BlendBackdoorAttack``, and scanned with ``scan_model`` (the function behind ``poisonlab scan``,
500 clean test images). For each model the table gives Neural Cleanse's anomaly index (of the
attack's target class, or of the most suspicious class of a clean model) with no floor under its
unit and with the default floor (``min_scale``), and the maximum-margin test's p-value (MM-BD, of
the class with the widest margin). The verdicts are counted for each test alone and for the two
together, as ``poisonlab scan`` decides (backdoored when either fires). The floor and the
maximum-margin alpha were chosen on these models; the scanning benchmark's models are the check on
them. A black patch on digits is drawn on a background that is black already: it is listed, and
left out of the counts.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
from threadpoolctl import threadpool_limits

from poisonlab.attacks import BlendBackdoorAttack, PatchBackdoorAttack
from poisonlab.data import load_dataset
from poisonlab.models import make_model
from poisonlab.scan.images import NeuralCleanseScanner, mask_anomaly_index
from poisonlab.scan.margin import MaxMarginScanner
from poisonlab.scan.pipeline import scan_model

torch.set_num_threads(1)
threadpool_limits(1)

LOCATIONS = ("bottom-right", "bottom-left", "top-right", "top-left", "center")
PATTERNS = ("checkerboard", "white", "random", "black")


def cases(n_clean: int, n_backdoored: int) -> list[tuple[int, tuple[str, dict[str, Any]] | None]]:
    out: list[tuple[int, tuple[str, dict[str, Any]] | None]] = \
        [(10 + i, None) for i in range(n_clean)]
    for i in range(n_backdoored):
        if i % 5 == 4:
            out.append((20 + i, ("blend", {"alpha": 0.2, "target_label": i % 10})))
        else:
            out.append((20 + i, ("patch", {"location": LOCATIONS[i % 5],
                                           "pattern": PATTERNS[(i // 2) % 4],
                                           "target_label": (3 * i + 1) % 10})))
    return out


def study(name: str, n_clean: int, n_backdoored: int, floor: float) -> list[dict[str, Any]]:
    data = load_dataset(name)
    train, test = data.split(test_size=0.45 if name == "digits" else 0.2, random_state=0)
    rows = []
    for seed, attack in cases(n_clean, n_backdoored):
        started = time.perf_counter()
        X, y, target, asr = train.X, train.y, None, None
        if attack is not None:
            kind, params = attack
            cls = PatchBackdoorAttack if kind == "patch" else BlendBackdoorAttack
            poisoned = cls(poison_rate=0.1, random_state=seed, **params).apply(train)
            X, y, target = poisoned.dataset.X, poisoned.dataset.y, poisoned.target_label
        model = make_model("cnn", random_state=seed, n_threads=1).fit(X, y, n_classes=10)
        if attack is not None:
            others = test.X[test.y != target]
            asr = float(np.mean(model.predict(poisoned.apply_trigger(others)) == target))
        report = scan_model(model, test.classes, test, random_state=seed)
        l1 = np.array([report.details["mask_l1"][c] for c in report.classes])
        raw, floored = mask_anomaly_index(l1), mask_anomaly_index(l1, floor)
        margin = report.details["max_margin"]
        margins = np.array([margin["margins"][c] for c in report.classes])
        p_values = np.array([margin["per_class"][c] for c in report.classes])
        widest = int(np.argmax(margins))
        row = {"data": name, "seed": seed, "attack": attack, "target": target, "asr": asr,
               "l1": l1, "raw": raw, "floored": floored, "widest": widest,
               "margin_p": float(p_values[widest]),
               "margin_class": widest if p_values[widest] < margin["alpha"] else None,
               "scan_class": None if report.target_class is None else
               report.classes.index(report.target_class),
               "seconds": time.perf_counter() - started,
               "black": attack is not None and attack[1].get("pattern") == "black"}
        rows.append(row)
        print(f"{name} seed {seed} {attack} -> max index {raw.max():.2f} raw, "
              f"{floored.max():.2f} floored, max margin class {widest} p {row['margin_p']:.2g} "
              f"({row['seconds']:.0f} s)", file=sys.stderr, flush=True)
    return rows


def describe(row: dict[str, Any]) -> str:
    if row["attack"] is None:
        return "clean"
    kind, params = row["attack"]
    if kind == "blend":
        return f"blend alpha {params['alpha']}"
    return f"{params['pattern']} patch, {params['location']}"


def verdict(index: np.ndarray, threshold: float) -> int | None:
    k = int(np.argmax(index))
    return k if index[k] > threshold else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", action="store_true", help="add 4 clean and 5 backdoored MNIST CNNs")
    args = parser.parse_args()
    scanner = NeuralCleanseScanner()
    floor, threshold = scanner.min_scale, scanner.anomaly_threshold
    alpha = MaxMarginScanner().alpha
    started = time.perf_counter()
    rows = study("digits", 10, 15, floor)
    if args.mnist:
        rows += study("mnist", 4, 5, floor)

    print(f"| data | seed | model | target | ASR | index, no floor | index, floor {floor:g} "
          f"| smallest masks (px) | max margin p (class) | s |")
    print("|---|---:|---|---:|---:|---:|---:|---|---:|---:|")
    for r in rows:
        shown = r["target"] if r["target"] is not None else int(np.argmax(r["raw"]))
        asr = "" if r["asr"] is None else f"{100 * r['asr']:.0f}%"
        smallest = ", ".join(f"{r['l1'][k]:.1f} ({k})" for k in np.argsort(r["l1"])[:3])
        print(f"| {r['data']} | {r['seed']} | {describe(r)} | {'' if r['target'] is None else r['target']} "
              f"| {asr} | {r['raw'][shown]:.2f} | {r['floored'][shown]:.2f} | {smallest} "
              f"| {r['margin_p']:.2g} ({r['widest']}) | {r['seconds']:.0f} |")
    print(f"\nVerdicts (backdoored: called with the right target; black patches left out). Neural "
          f"Cleanse: index > {threshold:g}; maximum margin: p < {alpha:g}; both: poisonlab scan's "
          "verdict, backdoored when either test fires:")
    rules = (("Neural Cleanse, no floor", lambda r: verdict(r["raw"], threshold)),
             (f"Neural Cleanse, floor {floor:g}", lambda r: verdict(r["floored"], threshold)),
             ("maximum margin", lambda r: r["margin_class"]),
             ("both (poisonlab scan)", lambda r: r["scan_class"]))
    for name in dict.fromkeys(r["data"] for r in rows):
        chosen = [r for r in rows if r["data"] == name and not r["black"]]
        clean = [r for r in chosen if r["attack"] is None]
        bad = [r for r in chosen if r["attack"] is not None]
        for label, rule in rules:
            ok_clean = sum(rule(r) is None for r in clean)
            found = sum(rule(r) == r["target"] for r in bad)
            print(f"- {name}, {label}: clean called clean {ok_clean}/{len(clean)}, "
                  f"backdoored found {found}/{len(bad)}")
        found_p = ", ".join(f"{p:.2g}" for p in sorted(r["margin_p"] for r in bad))
        print(f"- {name}, maximum margin p: clean models {min(r['margin_p'] for r in clean):.2g} "
              f"and up; backdoored models (widest class) {found_p}")
    print(f"\nTotal {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
