"""STRIP: poisonlab against IBM ART 1.20.1 and a straightforward implementation, one run, one table.

    pip install adversarial-robustness-toolbox   # only for this comparison
    python benchmarks/strip_vs_art.py            # about 5-10 minutes on 2 CPU cores

Setup (all seeds 0): the MNIST sample (5000 digits) split 80/20; a 3x3 checkerboard patch at the
bottom-right, target class 0, on 10% of the training rows; the built-in CNN trained once. The 1000
held-out digits are split in two: 500 clean rows to calibrate on (ART's ``mitigate`` gets the
same rows), 500 fresh clean rows to measure the false-rejection rate on, and the fresh rows of
classes 1-9 with the trigger stamped on them to measure detection. Every method runs the same
model with one torch thread; time is wall-clock per 1000 evaluation inputs (clean + triggered),
calibration excluded.

Rows:
* ART STRIP: ``art.defences.transformer.poisoning.STRIP`` with its defaults (20 perturbations,
  ``false_acceptance_rate=0.01``), the network wrapped in ``PyTorchClassifier`` with a softmax
  appended (without it ART takes the entropy of logits and fails; the error is printed). Its
  scores are recomputed with ART's own formula for the AUROC.
* straightforward STRIP: the paper's recipe: 20 overlays drawn at random, ``0.5 x + 0.5 overlay``,
  mean per-perturbation entropy, threshold at the 1% quantile of clean scores.
* poisonlab: ``StripDetector()`` defaults through ``predict_proba_function`` (a frozen TorchScript
  forward); also with the model's plain ``predict_proba`` (same algorithm, eager forward) and
  with averaging instead of superimposition (an ablation).
Further rows repeat poisonlab and ART on digits (8x8; 988 training rows, 400 calibration rows),
on a blended-noise trigger (alpha 0.2) on MNIST, on a text backdoor (logistic regression on
SpamAssassin, trigger "cf" three times) and on a tabular feature trigger (breast cancer), where
STRIP is beside the leave-out test that ``poisonlab check`` runs there by default
(``python benchmarks/strip_vs_art.py --text-tabular`` runs only those two rows). The last
lines check calibration: the false-rejection rate on fresh clean inputs over 10 random
calibration/evaluation splits of the MNIST held-out rows.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from poisonlab.attacks import (
    BlendBackdoorAttack,
    FeatureBackdoorAttack,
    PatchBackdoorAttack,
    TextBackdoorAttack,
)
from poisonlab.data import Dataset, load_dataset
from poisonlab.detect_inputs import LeaveOutDetector, StripDetector
from poisonlab.detect_inputs.adapters import predict_proba_function
from poisonlab.models import make_model

torch.set_num_threads(1)
threadpool_limits(1)
ROWS: list[dict[str, Any]] = []


def auroc(clean: np.ndarray, triggered: np.ndarray) -> float:
    y = np.r_[np.zeros(len(clean)), np.ones(len(triggered))]
    return float(roc_auc_score(y, np.r_[clean, triggered]))


def record(setting: str, method: str, frr: float, det: float, auc: float | None,
           seconds_per_1000: float, note: str = "") -> None:
    ROWS.append({"setting": setting, "method": method, "frr": frr, "det": det, "auc": auc,
                 "s1000": seconds_per_1000, "note": note})
    auc_s = "  n/a " if auc is None else f"{auc:.4f}"
    print(f"  {setting:24s} {method:34s} FRR {100 * frr:5.1f}%  detected {100 * det:5.1f}%  "
          f"AUROC {auc_s}  {seconds_per_1000:6.2f} s/1000 {note}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- methods
def run_poisonlab(setting: str, method: str, predict: Callable[[np.ndarray], np.ndarray],
                  X_cal: np.ndarray, X_clean: np.ndarray, X_trig: np.ndarray,
                  **params: Any) -> StripDetector:
    det = StripDetector(random_state=0, **params).fit(predict, X_cal)
    start = time.perf_counter()
    a = det.evaluate(X_clean)
    b = det.evaluate(X_trig)
    seconds = time.perf_counter() - start
    mean_n = float(np.r_[a.n_perturbations, b.n_perturbations].mean())
    record(setting, method, float(a.flags.mean()), float(b.flags.mean()),
           auroc(a.scores, b.scores), 1000 * seconds / (len(a.scores) + len(b.scores)),
           f"({mean_n:.1f} mixes/input)")
    return det


def run_leave_out(setting: str, predict: Callable[[np.ndarray], np.ndarray], X_cal: np.ndarray,
                  X_clean: np.ndarray, X_trig: np.ndarray, **params: Any) -> None:
    det = LeaveOutDetector(random_state=0, **params).fit(predict, X_cal)
    start = time.perf_counter()
    a, b = det.evaluate(X_clean), det.evaluate(X_trig)
    seconds = time.perf_counter() - start
    record(setting, "poisonlab LeaveOutDetector() (check)", float(a.flags.mean()), float(b.flags.mean()),
           auroc(a.scores, b.scores), 1000 * seconds / (len(a.scores) + len(b.scores)))


def straightforward_strip(predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray,
                          pool: np.ndarray, rng: np.random.Generator, n: int = 20) -> np.ndarray:
    """The paper's recipe: 0.5/0.5 blends with random clean images, mean entropy (low = suspect)."""
    sel = rng.integers(len(pool), size=(len(X), n))
    Z = (0.5 * X[:, None] + 0.5 * pool[sel]).reshape(-1, *X.shape[1:]).astype(np.float32)
    P = np.clip(predict(Z), 1e-12, 1).reshape(len(X), n, -1)
    return -(P * np.log(P)).sum(axis=2).mean(axis=1)


def run_straightforward(setting: str, predict: Callable[[np.ndarray], np.ndarray],
                        X_cal: np.ndarray, X_clean: np.ndarray, X_trig: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    cal = straightforward_strip(predict, X_cal, X_cal, rng)
    threshold = np.quantile(cal, 0.01)
    start = time.perf_counter()
    a = straightforward_strip(predict, X_clean, X_cal, rng)
    b = straightforward_strip(predict, X_trig, X_cal, rng)
    seconds = time.perf_counter() - start
    record(setting, "straightforward STRIP (N=20)", float((a < threshold).mean()),
           float((b < threshold).mean()), auroc(-a, -b), 1000 * seconds / (len(a) + len(b)))


def art_classifier(model: Any, shape: tuple[int, int, int], softmax: bool) -> Any:
    from art.estimators.classification import PyTorchClassifier

    net = torch.nn.Sequential(model.net_, torch.nn.Softmax(dim=1)) if softmax else model.net_
    return PyTorchClassifier(model=net.eval(), loss=torch.nn.CrossEntropyLoss(),
                             input_shape=shape, nb_classes=model.n_classes_, clip_values=(0, 1))


def art_scores(predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray, pool: np.ndarray,
               n: int = 20) -> np.ndarray:
    """ART 1.20.1's STRIP statistic, recomputed for the AUROC (lower = flagged)."""
    from scipy.stats import entropy

    rng = np.random.default_rng(0)
    out = np.empty(len(X))
    for i, img in enumerate(X):
        sel = rng.choice(np.arange(len(pool)), n)
        P = predict(np.array([0.5 * img + 0.5 * pool[j] for j in sel], dtype=np.float32))
        out[i] = np.sum(entropy(P, base=2, axis=0)) / float(n)
    return out


def run_art(setting: str, model: Any, X_cal: np.ndarray, X_clean: np.ndarray,
            X_trig: np.ndarray) -> None:
    try:
        from art.defences.transformer.poisoning import STRIP
    except ImportError:
        print("  (ART not installed: pip install adversarial-robustness-toolbox)", file=sys.stderr)
        return

    def to_nchw(X: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(X.transpose(0, 3, 1, 2))

    shape = tuple(int(s) for s in to_nchw(X_cal[:1]).shape[1:])
    np.random.seed(0)  # noqa: NPY002 - ART draws its overlays from numpy's global generator
    # as ART wraps the model by default: logits, no softmax
    try:
        bare = STRIP(art_classifier(model, shape, softmax=False))()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bare.mitigate(to_nchw(X_cal[:50]))
            out = bare.predict(to_nchw(X_clean[:20]))
        print(f"  ART on logits: no error, {int((out.sum(axis=1) == 0).sum())}/20 abstained",
              file=sys.stderr)
    except Exception as exc:  # we report whatever ART raises
        print(f"  ART on logits (no softmax): {type(exc).__name__}: {str(exc).splitlines()[0]}",
              file=sys.stderr)
    clf = art_classifier(model, shape, softmax=True)
    defence = STRIP(clf)(num_samples=20, false_acceptance_rate=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        defence.mitigate(to_nchw(X_cal))
        start = time.perf_counter()
        a = defence.predict(to_nchw(X_clean))
        b = defence.predict(to_nchw(X_trig))
        seconds = time.perf_counter() - start
    flagged_a = a.sum(axis=1) == 0
    flagged_b = b.sum(axis=1) == 0

    def predict(Z: np.ndarray) -> np.ndarray:
        return np.asarray(clf.predict(to_nchw(Z)))

    auc = auroc(-art_scores(predict, X_clean, X_cal), -art_scores(predict, X_trig, X_cal))
    record(setting, "ART 1.20.1 STRIP (defaults)", float(flagged_a.mean()),
           float(flagged_b.mean()), auc, 1000 * seconds / (len(a) + len(b)))


# ---------------------------------------------------------------------------------- settings
def image_setting(name: str, attack: Any, test_size: float, n_cal: int) -> tuple[Any, ...]:
    ds = load_dataset(name)
    train, test = ds.split(test_size=test_size, random_state=0)
    poisoned = attack.apply(train)
    start = time.perf_counter()
    model = make_model("cnn", random_state=0, n_threads=1).fit(
        poisoned.dataset.X, poisoned.dataset.y, n_classes=ds.n_classes)
    target = poisoned.target_label
    asr = float(np.mean(model.predict(poisoned.apply_trigger(test.X[test.y != target])) == target))
    acc = float(np.mean(model.predict(test.X) == test.y))
    print(f"{name} {type(attack).__name__}: trained in {time.perf_counter() - start:.0f} s, "
          f"clean accuracy {acc:.3f}, attack success {asr:.3f}", file=sys.stderr, flush=True)
    X_cal = test.X[:n_cal]
    fresh = test.subset(np.arange(n_cal, len(test)))
    X_trig = poisoned.apply_trigger(fresh.X[fresh.y != target])
    return model, X_cal, fresh.X, X_trig, test


def main() -> None:
    started = time.perf_counter()
    print(f"torch {torch.__version__}, 1 thread", file=sys.stderr)

    # 1. MNIST, patch trigger: every method
    setting = "MNIST, 3x3 patch"
    model, X_cal, X_clean, X_trig, mnist_test = image_setting(
        "mnist", PatchBackdoorAttack(target_label=0, poison_rate=0.1, random_state=0), 0.2, 500)
    fast = predict_proba_function(model)
    run_art(setting, model, X_cal, X_clean, X_trig)
    run_straightforward(setting, fast, X_cal, X_clean, X_trig)
    run_poisonlab(setting, "poisonlab StripDetector()", fast, X_cal, X_clean, X_trig)
    run_poisonlab(setting, "poisonlab, eager predict_proba", model.predict_proba, X_cal, X_clean,
                  X_trig)
    run_poisonlab(setting, "poisonlab, superimpose='average'", fast, X_cal, X_clean, X_trig,
                  superimpose="average")

    # calibration: FRR on fresh clean inputs over 10 random splits of the held-out rows
    rates = []
    for seed in range(10):
        idx = np.random.default_rng(seed).permutation(len(mnist_test))
        det = StripDetector(random_state=seed).fit(fast, mnist_test.X[idx[:500]])
        rates.append(float(det.predict(mnist_test.X[idx[500:]]).mean()))
    calibration = (float(np.mean(rates)), float(np.std(rates)), min(rates), max(rates))

    # 2. digits, patch trigger
    setting = "digits, 3x3 patch"
    model, X_cal, X_clean, X_trig, _ = image_setting(
        "digits", PatchBackdoorAttack(target_label=0, poison_rate=0.1, random_state=0), 0.45, 400)
    fast = predict_proba_function(model)
    run_art(setting, model, X_cal, X_clean, X_trig)
    run_straightforward(setting, fast, X_cal, X_clean, X_trig)
    run_poisonlab(setting, "poisonlab StripDetector()", fast, X_cal, X_clean, X_trig)

    # 3. MNIST, blended noise
    setting = "MNIST, blend alpha 0.2"
    model, X_cal, X_clean, X_trig, _ = image_setting(
        "mnist", BlendBackdoorAttack(target_label=0, poison_rate=0.1, random_state=0), 0.2, 500)
    fast = predict_proba_function(model)
    run_art(setting, model, X_cal, X_clean, X_trig)
    run_poisonlab(setting, "poisonlab StripDetector()", fast, X_cal, X_clean, X_trig)

    text_and_tabular()
    print_table()
    mean, sd, lo, hi = calibration
    print(f"\nCalibration (MNIST, asked 1.0%): false-rejection rate on 500 fresh clean inputs over "
          f"10 splits: mean {100 * mean:.2f}%, sd {100 * sd:.2f}%, range {100 * lo:.1f}-"
          f"{100 * hi:.1f}%.")
    print(f"Total {math.ceil(time.perf_counter() - started)} s.")


def print_table() -> None:
    print("\n| setting | method | clean flagged (FRR) | triggered detected | AUROC "
          "| s / 1000 inputs | speed-up vs ART |")
    print("|---|---|---:|---:|---:|---:|---:|")
    art_time = {r["setting"]: r["s1000"] for r in ROWS if r["method"].startswith("ART")}
    for r in ROWS:
        base = art_time.get(r["setting"])
        speed = f"{base / r['s1000']:.1f}x" if base and not r["method"].startswith("ART") else ""
        auc = "" if r["auc"] is None else f"{r['auc']:.4f}"
        note = f" {r['note']}" if r["note"] else ""
        print(f"| {r['setting']} | {r['method']}{note} | {100 * r['frr']:.1f}% | "
              f"{100 * r['det']:.1f}% | {auc} | {r['s1000']:.2f} | {speed} |")


def text_and_tabular() -> None:
    # 4. text: logistic regression on SpamAssassin
    setting = "SpamAssassin, 'cf' x3"
    spam = load_dataset("spamassassin")
    train, test = spam.split(test_size=0.3, random_state=0)
    attack = TextBackdoorAttack(trigger="cf", target_label="ham", poison_rate=0.1, repetitions=3,
                                position="random", random_state=0)
    poisoned = attack.apply(train)
    text_model = make_model("logreg-text").fit(poisoned.dataset.X, poisoned.dataset.y,
                                               n_classes=2)
    idx = np.random.default_rng(0).permutation(len(test))
    cal, fresh = test.subset(idx[:500]), test.subset(idx[500:1000])
    X_trig = poisoned.apply_trigger(fresh.X[fresh.y != 0])
    asr = float(np.mean(text_model.predict(X_trig) == 0))
    print(f"SpamAssassin logreg-text: attack success {asr:.3f}", file=sys.stderr)
    run_poisonlab(setting, "poisonlab StripDetector()", text_model.predict_proba, cal.X, fresh.X,
                  X_trig)
    run_leave_out(setting, text_model.predict_proba, cal.X, fresh.X, X_trig)

    # 5. tabular: breast cancer with a feature trigger
    setting = "breast cancer, feature"
    from sklearn.datasets import load_breast_cancer

    bc = load_breast_cancer()
    table = Dataset(X=bc.data.astype(np.float64), y=bc.target,
                    classes=tuple(str(c) for c in bc.target_names), name="breast_cancer")
    train, test = table.split(test_size=0.5, random_state=0)
    poisoned = FeatureBackdoorAttack(target_label=0, poison_rate=0.1, random_state=0).apply(train)
    tab_model = make_model("logreg").fit(poisoned.dataset.X, poisoned.dataset.y, n_classes=2)
    half = len(test) // 2
    cal, fresh = test.subset(np.arange(half)), test.subset(np.arange(half, len(test)))
    X_trig = poisoned.apply_trigger(fresh.X[fresh.y != 0])
    asr = float(np.mean(tab_model.predict(X_trig) == 0))
    print(f"breast cancer logreg: attack success {asr:.3f}", file=sys.stderr)
    run_poisonlab(setting, "poisonlab (rate 5%: 142 rows)", tab_model.predict_proba, cal.X,
                  fresh.X, X_trig, false_rejection_rate=0.05)
    run_leave_out(setting, tab_model.predict_proba, cal.X, fresh.X, X_trig, false_rejection_rate=0.05)


if __name__ == "__main__":
    if "--text-tabular" in sys.argv[1:]:
        text_and_tabular()
        print_table()
    else:
        main()
