"""How often ``poisonlab gate`` passes clean candidates and fails poisoned or degraded ones.

    python benchmarks/gate_study.py            # about 6 minutes on 2 CPU cores
    python benchmarks/gate_study.py --quick    # under 2 minutes: fewer candidates
    python benchmarks/gate_study.py --held-out # other splits, seeds, triggers and targets

Each suite has one clean reference and candidates made from the same training split:

- text: SpamAssassin, 70/30 split (seed 0), holdout 1814 rows; references ``nb-text`` and
  ``logreg-text`` trained on the whole training split. Candidates: clean retrains on random 90%
  subsets (other seeds); ``TextBackdoorAttack`` ("zqxj" appended, relabelled ham) at 1% and 3%;
  ``LabelFlipAttack`` (random, 30% of rows) and half of the spam rows relabelled ham.
- image: digits, 60/40 split (seed 0), holdout 719 rows; reference a ``cnn``. Candidates: clean
  retrains on random 90% subsets; ``PatchBackdoorAttack`` (3x3 checkerboard) at 10% (target 0)
  and 5% (target 7), ``BlendBackdoorAttack`` at 10% (target 3); ``LabelFlipAttack`` (random, 30%)
  and half of the 3s relabelled 8.

Every candidate goes through ``poisonlab.gate`` with its defaults, except ``max_drop``: 0.01 for
text and 0.02 for digits, whose 719 holdout rows give a paired interval about 1.2 points wide
on each side for two clean CNNs (the "low" column shows the lower bound, so the verdict at any
other ``max_drop`` can be read off). The naive gate it is compared with is what a CI job does
without poisonlab: pass when the candidate's holdout accuracy is at most ``max_drop`` below the
reference's. Time is per gate, the models' training excluded; the ratio is gate time over
naive-gate time (two ``predict`` calls) in the same run.

The last lines are the measurements the defaults rest on: the largest PSI, trigger-probe excess
and disagreement-probe excess among clean candidates, and the smallest among poisoned ones.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

from threadpoolctl import threadpool_limits

from poisonlab.api.gate import gate
from poisonlab.attacks import BlendBackdoorAttack, LabelFlipAttack, PatchBackdoorAttack, TextBackdoorAttack
from poisonlab.data import Dataset, load_dataset
from poisonlab.models import make_model

threadpool_limits(1)


def subset(train: Dataset, seed: int, share: float = 0.9) -> Dataset:
    rng = np.random.default_rng(seed)
    return train.subset(np.sort(rng.choice(len(train), int(share * len(train)), replace=False)))


def fit(spec: str, ds: Dataset, seed: int) -> Any:
    extra = {"n_threads": 1} if spec == "cnn" else {}
    return make_model(spec, random_state=seed, **extra).fit(ds.X, ds.y, n_classes=ds.n_classes)


DEV = {"split": 0, "seeds": (1, 2, 3, 4, 5), "attack_seed": 0, "trigger": "zqxj",
       "patch": ((0, 0.1), (7, 0.05)), "blend": 3, "targeted": ("3", "8")}
"""The candidates the defaults were read from."""
HELD_OUT = {"split": 1, "seeds": (11, 12, 13, 14, 15), "attack_seed": 10, "trigger": "vlorp",
            "patch": ((2, 0.1), (5, 0.05)), "blend": 6, "targeted": ("9", "4")}
"""Other splits, seeds, trigger words and target classes, run only after the defaults were set."""


def candidates(kind: str, train: Dataset, quick: bool, part: dict[str, Any] = DEV
               ) -> list[tuple[str, str, Any, int]]:
    """(name, expected verdict, training rows or an attack's PoisonedDataset, seed)."""
    seeds = part["seeds"][:2] if quick else part["seeds"]
    a0, word = part["attack_seed"], part["trigger"]
    out: list[tuple[str, str, Any, int]] = [(f"clean retrain, seed {s}", "pass", subset(train, s), s)
                                            for s in seeds]
    if kind == "text":
        rates = (0.03,) if quick else (0.01, 0.03)
        for r in rates:
            attack = TextBackdoorAttack(trigger=word, target_label="ham", poison_rate=r, random_state=a0)
            out.append((f"text backdoor '{word}' {r:.0%}", "fail", attack.apply(train), a0))
    else:
        (t1, r1), (t2, r2) = part["patch"]
        attacks = [(f"patch backdoor {r1:.0%} -> {t1}", PatchBackdoorAttack(target_label=t1, poison_rate=r1,
                                                                              random_state=a0))]
        if not quick:
            attacks += [(f"patch backdoor {r2:.0%} -> {t2}", PatchBackdoorAttack(target_label=t2, poison_rate=r2,
                                                                                  random_state=a0 + 1)),
                        (f"blend backdoor 10% -> {part['blend']}",
                         BlendBackdoorAttack(target_label=part["blend"], poison_rate=0.1, random_state=a0 + 2))]
        out += [(name, "fail", a.apply(train), a0) for name, a in attacks]
    flipped = LabelFlipAttack(poison_rate=0.3, random_state=a0).apply(train).dataset
    out.append(("label flip 30% (degraded)", "fail", flipped, a0))
    if not quick:
        source, target = ("spam", "ham") if kind == "text" else part["targeted"]
        n = int(0.5 * np.sum(train.y == train.classes.index(source)))
        targeted = LabelFlipAttack(strategy="targeted", source_label=source, target_label=target,
                                   n_poison=n, random_state=a0).apply(train).dataset
        out.append((f"half of {source} -> {target} (degraded)", "fail", targeted, a0))
    return out


def attack_success(model: Any, poisoned: Any, holdout: Dataset) -> float:
    """Share of triggered holdout rows of other classes the model puts in the target class."""
    target = poisoned.target_label
    rows = holdout.X[holdout.y != target]
    return float(np.mean(model.predict(poisoned.apply_trigger(rows)) == target))


def _pct(v: float) -> str:
    return "" if np.isnan(v) else f"{100 * v:.0f}%"


def naive_gate(candidate: Any, reference: Any, holdout: Dataset, max_drop: float) -> tuple[bool, float]:
    started = time.perf_counter()
    acc_c = float(np.mean(candidate.predict(holdout.X) == holdout.y))
    acc_r = float(np.mean(reference.predict(holdout.X) == holdout.y))
    return acc_c >= acc_r - max_drop, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer candidates (under 2 minutes)")
    parser.add_argument("--held-out", action="store_true",
                        help="the held-out candidates (other splits, seeds, triggers and targets)")
    args = parser.parse_args()
    part = HELD_OUT if args.held_out else DEV
    split = part["split"]
    started = time.perf_counter()
    spam = load_dataset("spamassassin")
    digits = load_dataset("digits")
    suites = [("text", "logreg-text", *spam.split(test_size=0.3, random_state=split), 0.01)]
    if not args.quick:
        suites.insert(0, ("text", "nb-text", *spam.split(test_size=0.3, random_state=split), 0.01))
    suites.append(("image", "cnn", *digits.split(test_size=0.4, random_state=split), 0.02))
    rows: list[dict[str, Any]] = []
    for kind, spec, train, holdout, max_drop in suites:
        reference = fit(spec, train, 0)
        for name, expected, made, seed in candidates(kind, train, args.quick, part):
            poisoned = made if hasattr(made, "poison_mask") else None
            candidate = fit(spec, made.dataset if poisoned is not None else made, seed)
            asr = attack_success(candidate, poisoned, holdout) if poisoned is not None else float("nan")
            result = gate(candidate, reference, holdout, max_drop=max_drop, random_state=0)
            naive_pass, naive_s = naive_gate(candidate, reference, holdout, max_drop)
            probes = result.check("probes").evidence["probes"]
            rows.append({
                "suite": f"{kind}/{spec}", "candidate": name, "expected": expected,
                "verdict": result.verdict, "naive": "pass" if naive_pass else "fail",
                **{c.name: c.status for c in result.checks},
                "low": result.check("accuracy").evidence["interval"][0],
                "psi": result.check("shift").evidence["psi"],
                "trig": max((p["excess"] for p in probes if p["kind"] == "trigger"), default=float("nan")),
                "dis": max((p["excess"] for p in probes if p["kind"] == "disagreement"), default=float("nan")),
                "asr": asr, "n_probes": len(probes), "n_probe_fail": sum(p["failed"] for p in probes),
                "seconds": result.seconds, "ratio": result.seconds / max(naive_s, 1e-9)})
            r = rows[-1]
            print(f"  {r['suite']:<16} {name:<31} {result.verdict:<4} ({result.seconds:.1f} s)",
                  file=sys.stderr, flush=True)
    header = (f"{'suite':<16} {'candidate':<31} {'want':<4} {'gate':<4} {'naive':<5} {'acc':<4} "
              f"{'scan':<7} {'probe':<5} {'shift':<5} {'low':>6} {'psi':>7} {'trig':>6} {'dis':>6} "
              f"{'asr':>5} {'s/gate':>6} {'ratio':>7}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['suite']:<16} {r['candidate']:<31} {r['expected']:<4} {r['verdict']:<4} {r['naive']:<5} "
              f"{r['accuracy']:<4} {r['scan']:<7} {r['probes']:<5} {r['shift']:<5} {100 * r['low']:>6.2f} "
              f"{r['psi']:>7.4f} {r['trig']:>6.3f} {r['dis']:>6.3f} {_pct(r['asr']):>5} {r['seconds']:>6.1f} "
              f"{r['ratio']:>7.0f}")
    print()
    for label, want in (("clean candidates", "pass"), ("poisoned or degraded candidates", "fail")):
        group = [r for r in rows if r["expected"] == want]
        right = sum(r["verdict"] == want for r in group)
        naive = sum(r["naive"] == want for r in group)
        per_check = ", ".join(f"{c} {sum(r[c] == 'fail' for r in group)}" for c in ("accuracy", "scan",
                                                                                    "probes", "shift"))
        print(f"{label}: {len(group)}; gate right on {right}, naive gate right on {naive}; "
              f"failed per check: {per_check}")
    clean = [r for r in rows if r["expected"] == "pass"]
    bad = [r for r in rows if r["expected"] == "fail"]
    backdoors = [r for r in bad if "backdoor" in r["candidate"]]
    print(f"probe tests on clean candidates: {sum(r['n_probes'] for r in clean)}, failed "
          f"{sum(r['n_probe_fail'] for r in clean)}")
    print(f"clean candidates, largest: PSI {max(r['psi'] for r in clean):.4f}, trigger excess "
          f"{np.nanmax([r['trig'] for r in clean]):.3f}, disagreement excess "
          f"{np.nanmax([r['dis'] for r in clean]):.3f}")
    print(f"backdoored candidates, smallest largest trigger excess: "
          f"{np.nanmin([r['trig'] for r in backdoors]):.3f}; degraded, largest PSI "
          f"{max(r['psi'] for r in bad if 'degraded' in r['candidate']):.4f}")
    seconds = [r["seconds"] for r in rows]
    print(f"time per gate: median {np.median(seconds):.1f} s, max {max(seconds):.1f} s; "
          f"median ratio to the naive gate {np.median([r['ratio'] for r in rows]):.0f}x; "
          f"whole run {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
