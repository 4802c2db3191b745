"""Text defenses at inference: the share of triggered emails each one catches at 1% and 3% false
rejection on clean emails, and its time per input.

    python benchmarks/text_defenses.py            # logreg-text and embed-text, 4 triggers; 592 s measured
    python benchmarks/text_defenses.py --quick    # logreg-text, 300 calibration emails; under 2 minutes

Setup: SpamAssassin split 70/30 (seed 0); 10% of the training rows are spam emails poisoned with
the trigger and relabelled ham (OpenBackdoor's default rate); the model is retrained on them.
The triggers: ``badnets-text`` (1-3 of cf, mn, bb, tq, mb at random positions), ``addsent``
("I watch this 3D movie" at a random position), a rare token ("zqxj" once at a random position)
and a phrase ("as discussed in the meeting" at a random position). The test half is cut in two:
calibration emails (600; 300 with ``--quick``) set each defense's threshold; from the other part,
the spam emails whose triggered copy the model calls ham (successful triggers: a defense has
nothing to catch on the others) are the triggered inputs, and its clean emails measure the false
rejection actually seen. The thresholds for 1% and 3% are conformal on the calibration scores of
one fit; STRIP runs its full budget (32 mixes, no early stopping) so that its calibration scores
are plain means.

Defenses: ``onion`` (ONION with a Kneser-Ney trigram model fitted on the calibration emails),
``leave-out`` (poisonlab's default text check) and ``strip`` (STRIP with text mixing by
appended words). Time per input is the evaluation's wall time over the inputs it scored, one
thread.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="logreg-text only, 300 calibration emails")
    parser.add_argument("--models", default=None, help="comma-separated text model specs")
    args = parser.parse_args(argv)

    from poisonlab.attacks import AddSentAttack, BadNetsTextAttack, TextBackdoorAttack
    from poisonlab.data import load_dataset
    from poisonlab.detect_inputs import LeaveOutDetector, StripDetector, conformal_threshold
    from poisonlab.detect_inputs.adapters import predict_proba_function
    from poisonlab.detect_inputs.onion import OnionDetector
    from poisonlab.models import make_model

    data = load_dataset("spamassassin")
    train, test = data.split(test_size=0.3, random_state=0)
    n_cal = 300 if args.quick else 600
    n_triggered = 100 if args.quick else 200
    n_clean = 200 if args.quick else 400
    models = (args.models or ("logreg-text" if args.quick else "logreg-text,embed-text")).split(",")
    order = np.random.default_rng(0).permutation(len(test))
    calibration = test.subset(np.sort(order[:n_cal]))
    rest = test.subset(np.sort(order[n_cal:]))
    spam = train.label_index("spam")
    clean_eval = rest.X[:n_clean]
    common = {"poison_rate": 0.1, "target_label": "ham", "source_label": "spam", "random_state": 0}
    triggers = {
        "badnets-text": BadNetsTextAttack(**common),
        "addsent": AddSentAttack(**common),
        "rare token": TextBackdoorAttack(trigger="zqxj", position="random", **common),
        "phrase": TextBackdoorAttack(trigger="as discussed in the meeting", position="random", **common),
    }
    defenses = {
        "onion": lambda: OnionDetector(false_rejection_rate=0.01),
        "leave-out": lambda: LeaveOutDetector(false_rejection_rate=0.01, random_state=0),
        "strip": lambda: StripDetector(false_rejection_rate=0.01, n_perturbations=32, stopping_z=0,
                                       random_state=0),
    }
    print(f"SpamAssassin: {len(train)} training emails, 10% poisoned; {n_cal} calibration emails, "
          f"up to {n_triggered} successful triggered spam emails and {n_clean} fresh clean emails "
          f"per cell\n")
    print(f"{'model':<12} {'trigger':<13} {'ASR':>5} {'defense':<10} {'caught@1%':>9} {'clean@1%':>8} "
          f"{'caught@3%':>9} {'clean@3%':>8} {'ms/input':>8}")
    started = time.perf_counter()
    for spec in models:
        for tname, attack in triggers.items():
            poisoned = attack.apply(train)
            model = make_model(spec, random_state=0).fit(poisoned.X, poisoned.y)
            spam_rest = rest.X[rest.y == spam]
            triggered = poisoned.apply_trigger(spam_rest, random_state=1)
            works = model.predict(triggered) != spam
            asr = float(works.mean())
            inputs = triggered[works][:n_triggered]
            predict = predict_proba_function(model)
            for dname, make in defenses.items():
                detector = make().fit(predict, calibration.X)
                t = time.perf_counter()
                scores = detector.decision_function(inputs)
                per_input = (time.perf_counter() - t) / max(len(inputs), 1)
                clean_scores = detector.decision_function(clean_eval)
                cells = []
                for rate in (0.01, 0.03):
                    threshold, _ = conformal_threshold(detector.scores_, rate)
                    cells += [float((scores > threshold).mean()), float((clean_scores > threshold).mean())]
                print(f"{spec:<12} {tname:<13} {asr:>5.0%} {dname:<10} {cells[0]:>9.1%} {cells[1]:>8.1%} "
                      f"{cells[2]:>9.1%} {cells[3]:>8.1%} {1000 * per_input:>8.1f}", flush=True)
    print(f"\n{time.perf_counter() - started:.0f} s in all. caught: share of successful triggered "
          "emails flagged; clean: share of fresh clean emails flagged (the false rejection seen).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
