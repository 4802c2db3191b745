"""Attack success and clean accuracy of the field's text poisoners on SpamAssassin, for every text model.

    python benchmarks/text_poisoners.py            # 4 models x 4 poisoners x 3 budgets; about 5 minutes
    python benchmarks/text_poisoners.py --quick    # 2 budgets, 2,000 training emails; under 2 minutes

The poisoners are ``badnets-text`` (1-3 of cf, mn, bb, tq, mb at random word positions),
``addsent`` ("I watch this 3D movie" once at a random position), ``word-trigger`` (a
low-frequency corpus word at the start) and, beside them as the naive baseline poisonlab had
before, ``text-backdoor`` (the token "cf" once at the end). Each poisons spam emails of the
training split (70% of the corpus, seed 0) and relabels them ham; the attack success rate (ASR)
is the share of triggered spam test emails (the trigger stamped as in training) that the
retrained model calls ham, and the clean accuracy is on the untouched test split. Budgets are
shares of all training rows (1%, 3%, 10%; OpenBackdoor poisons 10% by default); one seed per
cell. The embedding models embed each distinct text once (poisonlab's content cache: in memory
for the run, and on disk for reruns).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="budgets 3%% and 10%%, 2,000 training emails")
    parser.add_argument("--models", default="nb-text,logreg-text,embed-text,embed-mlp-text")
    args = parser.parse_args(argv)

    from poisonlab.attacks import (
        AddSentAttack,
        BadNetsTextAttack,
        TextBackdoorAttack,
        WordTriggerAttack,
    )
    from poisonlab.data import load_dataset
    from poisonlab.measure.metrics import accuracy, attack_success_rate
    from poisonlab.models import make_model

    data = load_dataset("spamassassin")
    train, test = data.split(test_size=0.3, random_state=0)
    if args.quick:
        keep = np.sort(np.random.default_rng(0).choice(len(train), 2000, replace=False))
        train = train.subset(keep)
    rates = (0.03, 0.1) if args.quick else (0.01, 0.03, 0.1)
    ham = train.label_index("ham")
    spam = train.label_index("spam")
    poisoners = {
        "badnets-text": lambda n: BadNetsTextAttack(n_poison=n, target_label="ham",
                                                    source_label="spam", random_state=0),
        "addsent": lambda n: AddSentAttack(n_poison=n, target_label="ham", source_label="spam",
                                           random_state=0),
        "word-trigger": lambda n: WordTriggerAttack(n_poison=n, target_label="ham",
                                                    source_label="spam", random_state=0),
        "text-backdoor cf": lambda n: TextBackdoorAttack(trigger="cf", n_poison=n, target_label="ham",
                                                         source_label="spam", random_state=0),
    }
    spam_test = test.X[test.y == spam]
    print(f"SpamAssassin: {len(train)} training emails ({int((train.y == spam).sum())} spam), "
          f"{len(test)} test emails ({len(spam_test)} spam); target ham\n")
    print(f"{'model':<15} {'poisoner':<17} {'budget':>6} {'rate':>6} {'clean acc':>9} {'ASR':>6} "
          f"{'base':>6} {'fit s':>6}")
    started = time.perf_counter()
    for spec in args.models.split(","):
        clean = make_model(spec, random_state=0).fit(train.X, train.y)
        base_rate = attack_success_rate(clean.predict, spam_test, np.full(len(spam_test), spam), ham)
        for name, make in poisoners.items():
            for rate in rates:
                n = round(rate * len(train))
                poisoned = make(n).apply(train)
                triggered = poisoned.apply_trigger(spam_test, random_state=1)
                t = time.perf_counter()
                model = make_model(spec, random_state=0).fit(poisoned.X, poisoned.y)
                fit_s = time.perf_counter() - t
                acc = accuracy(test.y, model.predict(test.X))
                asr = attack_success_rate(model.predict, triggered, np.full(len(spam_test), spam), ham)
                # the clean model on the triggered emails: what the trigger does without poison
                base = attack_success_rate(clean.predict, triggered, np.full(len(spam_test), spam), ham)
                print(f"{spec:<15} {name:<17} {n:>6} {n / len(train):>6.2%} {acc:>9.3f} {asr:>6.1%} "
                      f"{base:>6.1%} {fit_s:>6.1f}", flush=True)
        print(f"{spec:<15} {'(clean model: spam test emails called ham ' + format(base_rate, '.1%') + ')'}")
    print(f"\n{time.perf_counter() - started:.0f} s in all. 'base' is the clean model's ASR on the same "
          "triggered emails: what the trigger does without any poison.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
