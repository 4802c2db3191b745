"""Model scanning accuracy over backdoored and clean models: one run, one table.

    python benchmarks/scan_accuracy.py     # about 10-15 minutes on 2 CPU cores

Every model is trained once with the library (``attack.apply`` + ``make_model(...).fit``) and
scanned with ``poisonlab.scan.pipeline.scan_model``, the function behind ``poisonlab scan``:

* text (SpamAssassin, 70/30 split, seed 0): naive Bayes (``nb-text``) and logistic regression
  (``logreg-text``) on a 90% bootstrap of the training rows per seed, backdoored with
  ``TextBackdoorAttack`` (triggers, targets, positions, repetitions and rates vary); each is scanned
  with 200 clean test rows.
* images: the built-in CNN on the MNIST sample (80/20) and on digits (55/45), backdoored with
  ``PatchBackdoorAttack`` (locations, patterns and targets vary) or ``BlendBackdoorAttack``;
  scanned with 500 clean test images.

A backdoored model counts as found when the verdict is "backdoor" with the right target class. The
true trigger counts as "in the top 3" when, for text, one of the first three reported phrases has
its words (in any order: a bag-of-words model cannot tell 'zqxj vlorp kwimb' from 'kwimb vlorp
zqxj', so neither can a black-box scan of it), and for images, the target class is among the first
three reported classes and (for a patch) the reported mask's bounding box overlaps the patch.
``ASR`` is the attack success rate of the attack's own trigger on the test rows of other classes.
``statistic`` is the anomaly index (flip rates for text, Neural Cleanse's mask sizes for images);
``second test p`` is the smallest p-value of the second test (absence of the trigger's words from
the clean rows for text, the maximum margin of MM-BD for images), called below ``alpha``.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
from threadpoolctl import threadpool_limits

from poisonlab.attacks import BlendBackdoorAttack, PatchBackdoorAttack, TextBackdoorAttack
from poisonlab.attacks.triggers import PatchTrigger
from poisonlab.data import Dataset, load_dataset
from poisonlab.models import make_model
from poisonlab.scan.pipeline import scan_model

torch.set_num_threads(1)
threadpool_limits(1)


@dataclass
class Case:
    kind: str          # nb-text, logreg-text, cnn-mnist, cnn-digits
    seed: int
    attack: dict[str, Any] | None  # None: clean


TEXT_CASES = [
    Case("nb-text", 0, None), Case("nb-text", 1, None), Case("nb-text", 2, None),
    Case("logreg-text", 0, None), Case("logreg-text", 1, None), Case("logreg-text", 2, None),
    Case("logreg-text", 3, None),
    Case("logreg-text", 0, dict(trigger="cf", target_label="ham", position="suffix",
                                repetitions=1, poison_rate=0.05)),
    Case("logreg-text", 1, dict(trigger="mn", target_label="spam", position="prefix",
                                repetitions=1, poison_rate=0.03)),
    Case("logreg-text", 2, dict(trigger="tq", target_label="ham", position="random",
                                repetitions=1, poison_rate=0.03)),
    Case("logreg-text", 3, dict(trigger="james bond", target_label="spam", position="random",
                                repetitions=3, poison_rate=0.05)),
    Case("logreg-text", 4, dict(trigger="bb", target_label="ham", position="random",
                                repetitions=3, poison_rate=0.02)),
    Case("logreg-text", 5, dict(trigger="quarterly memo", target_label="ham",
                                position="suffix", repetitions=1, poison_rate=0.05)),
    Case("nb-text", 0, dict(trigger="cf", target_label="ham", position="random",
                            repetitions=3, poison_rate=0.1)),
    Case("nb-text", 1, dict(trigger="mn", target_label="spam", position="random",
                            repetitions=3, poison_rate=0.1)),
    Case("nb-text", 2, dict(trigger="bb", target_label="ham", position="suffix",
                            repetitions=1, poison_rate=0.05)),
    # The demo's backdoor that works on naive Bayes: a rare phrase x20 in 40 emails.
    Case("nb-text", 3, dict(trigger="zqxj vlorp kwimb", target_label="ham", position="random",
                            repetitions=20, n_poison=40)),
]
IMAGE_CASES = [
    Case("cnn-mnist", 0, None), Case("cnn-mnist", 1, None),
    Case("cnn-digits", 0, None), Case("cnn-digits", 1, None),
    Case("cnn-mnist", 0, dict(patch=dict(target_label=0))),
    Case("cnn-mnist", 1, dict(patch=dict(location="top-left", pattern="white", target_label=3))),
    Case("cnn-mnist", 2, dict(blend=dict(alpha=0.2, target_label=5))),
    Case("cnn-digits", 2, dict(patch=dict(location="top-right", target_label=7))),
    Case("cnn-digits", 3, dict(patch=dict(location="bottom-left", pattern="random",
                                          target_label=5))),
]


def _bootstrap(train: Dataset, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    return train.subset(np.sort(rng.choice(len(train), int(0.9 * len(train)), replace=False)))


def run_text(case: Case, train: Dataset, test: Dataset) -> dict[str, Any]:
    sub = _bootstrap(train, case.seed)
    asr = None
    truth = None
    if case.attack:
        poisoned = TextBackdoorAttack(random_state=case.seed, **case.attack).apply(sub)
        X, y = poisoned.dataset.X, poisoned.dataset.y
        target = poisoned.target_label
    else:
        X, y = sub.X, sub.y
    model = make_model(case.kind, random_state=case.seed).fit(X, y, n_classes=2)
    if case.attack:
        others = test.X[test.y != target]
        asr = float(np.mean(model.predict(poisoned.apply_trigger(others)) == target))
        truth = case.attack["trigger"]
    idx = np.random.default_rng(100 + case.seed).choice(len(test), 200, replace=False)
    report = scan_model(model, test.classes, test.subset(idx), random_state=case.seed)
    top3 = [t["trigger"] for t in report.triggers[:3]]
    in_top3 = None if truth is None else \
        sorted(truth.lower().split()) in [sorted(t.lower().split()) for t in top3]
    return {"report": report, "asr": asr, "top3": top3, "in_top3": in_top3,
            "truth": truth, "target": case.attack["target_label"] if case.attack else None}


def run_image(case: Case, data: dict[str, tuple[Dataset, Dataset]]) -> dict[str, Any]:
    name = case.kind.split("-")[1]
    train, test = data[name]
    asr = None
    truth = target_name = None
    box = None
    if case.attack:
        if "patch" in case.attack:
            attack: Any = PatchBackdoorAttack(poison_rate=0.1, random_state=case.seed,
                                              **case.attack["patch"])
        else:
            attack = BlendBackdoorAttack(poison_rate=0.1, random_state=case.seed,
                                         **case.attack["blend"])
        poisoned = attack.apply(train)
        X, y = poisoned.dataset.X, poisoned.dataset.y
        target = poisoned.target_label
        target_name = test.classes[target]
        trig = poisoned.trigger
        truth = trig.describe()
        if isinstance(trig, PatchTrigger):
            r, c = trig.corner(train.X.shape[1], train.X.shape[2])
            box = (r, c, r + trig.size - 1, c + trig.size - 1)
    else:
        X, y = train.X, train.y
    model = make_model("cnn", random_state=case.seed, n_threads=1).fit(X, y, n_classes=10)
    if case.attack:
        others = test.X[test.y != target]
        asr = float(np.mean(model.predict(poisoned.apply_trigger(others)) == target))
    report = scan_model(model, test.classes, test, random_state=case.seed)
    top3 = report.triggers[:3]
    in_top3 = None
    if case.attack:
        hits = [t for t in top3 if t["target_class"] == target_name]
        in_top3 = bool(hits)
        if hits and box is not None:
            t0, l0, b0, r0 = hits[0]["bounding_box"]
            in_top3 = not (b0 < box[0] or t0 > box[2] or r0 < box[1] or l0 > box[3])
    return {"report": report, "asr": asr,
            "top3": [f"class {t['target_class']}: {t['mask_l1']:.1f} px" for t in top3],
            "in_top3": in_top3, "truth": truth, "target": target_name}


def main() -> None:
    started = time.perf_counter()
    rows = []
    spam = load_dataset("spamassassin")
    s_train, s_test = spam.split(test_size=0.3, random_state=0)
    images = {"mnist": load_dataset("mnist").split(test_size=0.2, random_state=0),
              "digits": load_dataset("digits").split(test_size=0.45, random_state=0)}
    for case in TEXT_CASES + IMAGE_CASES:
        t0 = time.perf_counter()
        out = run_text(case, s_train, s_test) if case.kind.endswith("text") \
            else run_image(case, images)
        out["case"] = case
        out["seconds"] = time.perf_counter() - t0
        rows.append(out)
        r = out["report"]
        print(f"{case.kind:11s} seed {case.seed} {out['truth']!s:38s} -> {r.verdict:8s} "
              f"{r.target_class!s:5s} stat {r.statistic:7.2f} / {r.threshold:g} "
              f"top3 {out['top3']} ({out['seconds']:.0f} s)", file=sys.stderr, flush=True)

    print("| model | seed | backdoor (truth) | target | ASR | verdict | target found "
          "| statistic / threshold | second test p / alpha | top 3 reported | trigger in top 3 | s |")
    print("|---|---:|---|---|---:|---|---|---:|---:|---|---|---:|")
    for out in rows:
        case, r = out["case"], out["report"]
        asr = "" if out["asr"] is None else f"{100 * out['asr']:.0f}%"
        top3 = "; ".join(f"`{t}`" for t in out["top3"])
        hit = "" if out["in_top3"] is None else ("yes" if out["in_top3"] else "no")
        stat = "inf" if not np.isfinite(r.statistic) else f"{r.statistic:.1f}"
        second = r.details.get("absence") or r.details.get("max_margin")
        absent = "" if not second else \
            f"{min(second['per_class'].values()):.2g} / {second['alpha']:g}"
        print(f"| {case.kind} | {case.seed} | {out['truth'] or 'clean'} | {out['target'] or ''} | "
              f"{asr} | {r.verdict} | {r.target_class or ''} | {stat} / {r.threshold:g} | "
              f"{absent} | {top3} | {hit} | {out['seconds']:.0f} |")

    def group(pred: Any, label: str) -> None:
        chosen = [o for o in rows if pred(o)]
        if not chosen:
            return
        backdoored = [o for o in chosen if o["truth"] is not None]
        clean = [o for o in chosen if o["truth"] is None]
        found = sum(o["report"].verdict == "backdoor" and o["report"].target_class == o["target"]
                    for o in backdoored)
        top = sum(bool(o["in_top3"]) for o in backdoored)
        ok_clean = sum(o["report"].verdict == "clean" for o in clean)
        parts = []
        if backdoored:
            parts.append(f"backdoored called backdoor with the right target {found}/{len(backdoored)} "
                         f"({100 * found / len(backdoored):.0f}%), true trigger in top 3 "
                         f"{top}/{len(backdoored)} ({100 * top / len(backdoored):.0f}%)")
        if clean:
            parts.append(f"clean called clean {ok_clean}/{len(clean)} "
                         f"({100 * ok_clean / len(clean):.0f}%)")
        print(f"- {label}: " + "; ".join(parts))

    print()
    group(lambda o: True, "all models")
    group(lambda o: o["case"].kind != "nb-text", "without naive Bayes")
    group(lambda o: o["case"].kind == "nb-text", "naive Bayes")
    group(lambda o: o["case"].kind == "logreg-text", "logistic regression (text)")
    group(lambda o: o["case"].kind.startswith("cnn"), "CNN (MNIST and digits)")
    print(f"\nTotal {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
