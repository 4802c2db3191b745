"""STRIP and windowed STRIP over many backdoored CNNs (patterns, locations, targets, seeds).

    python benchmarks/strip_study.py            # about 7 minutes on 2 CPU cores

``benchmarks/strip_vs_art.py`` measures one model per dataset against ART; this script asks how
much that one model says. Each CNN is trained on a training split backdoored with
``PatchBackdoorAttack`` (10% of the rows, 3x3 patch). The detectors are calibrated on clean
held-out images (400 on digits, 500 on MNIST) and run on the other held-out images, clean and
with the trigger stamped (rows of other classes): ``StripDetector()`` and
``WindowStripDetector()`` each at 1% false rejection, and both at 0.5% with an input flagged by
either, which is what ``poisonlab check`` does for images. Splits as in ``strip_vs_art.py``:
digits 55/45, MNIST 80/20, seed 0. One table; "clean" is the share of fresh clean images
flagged, "det." the share of triggered ones; time is per evaluated input, calibration excluded.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
from threadpoolctl import threadpool_limits

from poisonlab.attacks import PatchBackdoorAttack
from poisonlab.data import load_dataset
from poisonlab.detect_inputs.adapters import predict_proba_function
from poisonlab.detect_inputs.strip import StripDetector, conformal_threshold
from poisonlab.detect_inputs.window import WindowStripDetector
from poisonlab.models import make_model

torch.set_num_threads(1)
threadpool_limits(1)

# (data, pattern, location, target, seed)
CASES = [
    ("digits", "checkerboard", "bottom-right", 0, 0), ("digits", "checkerboard", "bottom-right", 7, 0),
    ("digits", "checkerboard", "bottom-right", 0, 1), ("digits", "checkerboard", "bottom-right", 3, 1),
    ("digits", "checkerboard", "top-left", 7, 0), ("digits", "random", "top-right", 7, 1),
    ("digits", "random", "bottom-left", 5, 2), ("digits", "white", "bottom-right", 0, 0),
    ("digits", "white", "bottom-right", 7, 0), ("digits", "white", "top-left", 3, 2),
    ("mnist", "checkerboard", "bottom-right", 0, 0), ("mnist", "checkerboard", "bottom-right", 7, 0),
    ("mnist", "checkerboard", "bottom-right", 0, 1), ("mnist", "random", "top-right", 3, 1),
    ("mnist", "white", "top-left", 5, 2),
]


def run(case: tuple[str, str, str, int, int], splits: dict[str, Any]) -> dict[str, Any]:
    name, pattern, location, target, seed = case
    train, cal, fresh = splits[name]
    started = time.perf_counter()
    poisoned = PatchBackdoorAttack(target_label=target, poison_rate=0.1, random_state=seed,
                                   location=location, pattern=pattern).apply(train)
    model = make_model("cnn", random_state=seed, n_threads=1).fit(
        poisoned.dataset.X, poisoned.dataset.y, n_classes=10)
    triggered = poisoned.apply_trigger(fresh.X[fresh.y != target])
    asr = float(np.mean(model.predict(triggered) == target))
    predict = predict_proba_function(model)
    row: dict[str, Any] = {"case": case, "asr": asr}
    flags = {}
    n_inputs = len(fresh.X) + len(triggered)
    for rate in (0.01, 0.005):  # STRIP's stopping rule depends on the threshold: run it twice
        strip = StripDetector(random_state=0, false_rejection_rate=rate).fit(predict, cal.X)
        t0 = time.perf_counter()
        flags["strip", rate] = (strip.predict(fresh.X), strip.predict(triggered))
        if rate == 0.01:
            row["strip_ms"] = 1000 * (time.perf_counter() - t0) / n_inputs
    windowed = WindowStripDetector(random_state=0).fit(predict, cal.X)
    t0 = time.perf_counter()
    scores = windowed.decision_function(fresh.X), windowed.decision_function(triggered)
    row["window_ms"] = 1000 * (time.perf_counter() - t0) / n_inputs
    for rate in (0.01, 0.005):  # the same scores, the threshold for each rate
        threshold = conformal_threshold(windowed.scores_, rate)[0]
        flags["window", rate] = (scores[0] > threshold, scores[1] > threshold)
    for key in ("strip", "window"):
        row[key] = tuple(float(np.mean(f)) for f in flags[key, 0.01])
    row["both"] = tuple(float(np.mean(a | b)) for a, b in
                        zip(flags["strip", 0.005], flags["window", 0.005], strict=True))
    row["seconds"] = time.perf_counter() - started
    print(f"{name} {pattern} {location} -> {target} seed {seed}: ASR {asr:.3f}; detected (clean "
          f"flagged) STRIP {row['strip'][1]:.3f} ({row['strip'][0]:.3f}), windowed "
          f"{row['window'][1]:.3f} ({row['window'][0]:.3f}), both {row['both'][1]:.3f} "
          f"({row['both'][0]:.3f}) ({row['seconds']:.0f} s)", file=sys.stderr, flush=True)
    return row


def main() -> None:
    started = time.perf_counter()
    splits = {}
    for name, test_size, n_cal in (("digits", 0.45, 400), ("mnist", 0.2, 500)):
        train, test = load_dataset(name).split(test_size=test_size, random_state=0)
        splits[name] = (train, test.subset(np.arange(n_cal)),
                        test.subset(np.arange(n_cal, len(test))))
    rows = [run(case, splits) for case in CASES]
    print("| data | patch pattern | location | target | seed | ASR | STRIP clean / det. "
          "| windowed clean / det. | both (`check`) clean / det. | ms / input, STRIP / windowed "
          "| s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")

    def pair(v: tuple[float, float]) -> str:
        return f"{100 * v[0]:.1f}% / {100 * v[1]:.1f}%"

    for r in rows:
        name, pattern, location, target, seed = r["case"]
        print(f"| {name} | {pattern} | {location} | {target} | {seed} | {100 * r['asr']:.1f}% | "
              f"{pair(r['strip'])} | {pair(r['window'])} | {pair(r['both'])} | "
              f"{r['strip_ms']:.2f} / {r['window_ms']:.1f} | {r['seconds']:.0f} |")
    print()
    for name in ("digits", "mnist"):
        chosen = [r for r in rows if r["case"][0] == name]
        for key, label in (("strip", "STRIP"), ("window", "windowed STRIP"),
                           ("both", "both (poisonlab check)")):
            det = sorted(100 * r[key][1] for r in chosen)
            clean = max(100 * r[key][0] for r in chosen)
            print(f"- {name}, {label}: detected {', '.join(f'{d:.0f}%' for d in det)}; at least "
                  f"90% on {sum(d >= 90 for d in det)}/{len(det)} models; clean flagged at most "
                  f"{clean:.1f}%")
        print(f"- {name}, ms per input (one torch thread): STRIP "
              f"{np.median([r['strip_ms'] for r in chosen]):.2f}, windowed STRIP "
              f"{np.median([r['window_ms'] for r in chosen]):.1f} (medians)")
    print(f"\nTotal {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
