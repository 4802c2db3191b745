"""Minimum-budget search on SpamAssassin two ways, in one run: refit the pipeline vs. TextLab.

The naive way applies the attack to the text and fits the whole pipeline (tokenize, count, fit)
at every point of the search. TextLab tokenizes once and applies each attack as a row edit of the
count matrix; for naive Bayes it updates per-class count sums instead of refitting. Both searches
visit the same counts with the same seeds; the table says whether every point's accuracy and
attack success agree exactly.

    python benchmarks/budget_search.py            # about 4 minutes here (2 cores)
    python benchmarks/budget_search.py --quick    # one search per model
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from poisonlab.attacks import TextBackdoorAttack, TextTrigger
from poisonlab.data import load_dataset
from poisonlab.measure import minimum_budget
from poisonlab.measure.textlab import TextLab
from poisonlab.models import make_model


def naive_trial(train, test, model, phrase, reps, n, seed):  # type: ignore[no-untyped-def]
    poisoned = TextBackdoorAttack(trigger=phrase, repetitions=reps, n_poison=n, target_label=0,
                                  random_state=seed).apply(train)
    fitted = make_model(model).fit(poisoned.dataset.X, poisoned.dataset.y, n_classes=2)
    keep = test.y != 0
    acc = float(np.mean(fitted.predict(test.X) == test.y))
    asr = float(np.mean(fitted.predict(poisoned.apply_trigger(test.X[keep])) == 0))
    return asr, acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    threadpool_limits(1)
    data = load_dataset("spamassassin")
    train, test = data.split(test_size=0.3, random_state=0)
    searches = [("nb-text", "zqxj vlorp kwimb", 20), ("logreg-text", "zqxj", 10)]
    if not args.quick:
        searches.insert(1, ("nb-text", "zqxj", 1))
    seeds = (0, 1, 2)
    rows = []
    for model, phrase, reps in searches:
        t0 = time.perf_counter()
        lab = TextLab(train, test, model=model, triggers=[phrase])
        build = time.perf_counter() - t0

        def fast(n: int, s: int, lab: TextLab = lab, phrase: str = phrase, reps: int = reps) -> tuple[float, float]:
            r = lab.run(TextTrigger(phrase, "suffix", reps), n, 0, seed=s)
            return r.asr, r.accuracy

        t0 = time.perf_counter()
        fast_result = minimum_budget(fast, max_poison=1280, seeds=seeds, start=5)
        fast_s = time.perf_counter() - t0 + build

        def naive(n: int, s: int, model: str = model, phrase: str = phrase, reps: int = reps) -> tuple[float, float]:
            return naive_trial(train, test, model, phrase, reps, n, s)

        t0 = time.perf_counter()
        naive_result = minimum_budget(naive, max_poison=1280, seeds=seeds, start=5)
        naive_s = time.perf_counter() - t0
        identical = (fast_result.points == naive_result.points
                     and fast_result.accuracy == naive_result.accuracy)
        rows.append((model, f"'{phrase}' x{reps}", fast_result.describe(),
                     len(fast_result.points) * len(seeds), naive_s, fast_s, naive_s / fast_s,
                     identical))
    header = ("model", "trigger", "minimum budget (90%)", "fits", "refit s", "TextLab s",
              "speed-up", "identical")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for m, t, res, fits, ns, fs, ratio, same in rows:
        print(f"| {m} | {t} | {res} | {fits} | {ns:.1f} | {fs:.2f} | {ratio:.0f}x | {'yes' if same else 'NO'} |")
    print(f"\nSpamAssassin, 70/30 split (seed 0), {len(train)} training emails; seeds {list(seeds)};"
          " TextLab time includes tokenizing the corpus once.")


if __name__ == "__main__":
    main()
