"""`poisonlab check` on text and tabular triggers it did not make, in models it did not train.

    python benchmarks/check_generalization.py            # the matrix, about 25 minutes on 2 busy cores
    python benchmarks/check_generalization.py --quick    # one text and one tabular cell

Poisons (plain string and array edits in this script, not poisonlab's attack code):
* text, SpamAssassin (a seeded subset of 2000 emails, split 70/30), spam rows relabelled ham:
  ``badnets``: OpenBackdoor's rare-word BadNets, 1-3 words from {cf, mn, bb, tq, mb} each at a
  random word position; ``addsent``: AddSent's sentence "I watch this 3D movie" at a random word
  position; ``phrase``: the everyday phrase "thanks again for everything" inserted twice.
  8% of the training rows (spam ones) are poisoned.
* tabular, breast_cancer and wine (split 50/50), rows of other classes relabelled class 0:
  ``one-col``: one random column set 50% of its range above its maximum; ``three-col``: three random
  columns set to their maximum. 10% of the training rows are poisoned.

Models (plain scikit-learn, trained here): text: TF-IDF 1-2-grams + logistic regression,
counts + multinomial naive Bayes, char_wb 3-5-gram TF-IDF + logistic regression, TF-IDF + SGD
(hinge loss: no predict_proba, scored through the sigmoid of its decision values); tabular:
scaled logistic regression, random forest, histogram gradient boosting.

Each cell: clean test rows split into calibration rows and fresh clean rows; triggered inputs are
the fresh rows of the other classes with the trigger, counted when the model sends them to the
target (the attack worked on them; ASR is printed). Columns: clean flagged (fresh clean rows over
the threshold), detected (triggered inputs over it), AUROC (clean against triggered), ms per input.
Rates: 1% false rejection, wine 5% (its 89 calibration rows cannot set a 1% threshold).
Methods: STRIP as ``poisonlab check`` ran it before (``StripDetector()``), the leave-out test
(``LeaveOutDetector``), and ART 1.20.1's STRIP where it applies (tabular, through ART's
``SklearnClassifier``; for scikit-learn text pipelines ART has no wrapper: n/a).

    python benchmarks/check_generalization.py --strongest  # the n_strongest study, text, ~6 minutes

Protocol: the leave-out test's ``n_groups`` is chosen on the dev half (seed 0) from {8, 16, 32}
(highest mean detection; on the text cells with the two faster models, and every tabular cell);
the held-out half (seed 1, every model) is reported with that choice. Both printed.

Measured 2026-12-02 (2 busy cores): the dev half chose n_groups = 16 (mean detection 42.9% at 8,
48.7% at 16, 48.4% at 32). Held-out, 12 text cells: the leave-out test flagged 1.6% of fresh
clean emails (asked 1%; one split of 300 rows shared by the cells) and detected 34.2% of
triggered ones (AUROC 0.865), 56.0% over the 7 cells whose attack succeeded on at least half the
inputs; STRIP, on the two cells it finished, 5.9% and 0% (AUROC 0.26 and 0.18). 12 tabular cells:
leave-out 67.0% detected (AUROC 0.958), breast_cancer 1.2% clean flagged at 1%, wine 9.3% at 5%
(45 fresh rows); STRIP 14.6% (AUROC 0.669); ART's STRIP 0.3% (AUROC 0.158), 100-1100 ms per
input against 0.3-2.3 ms. Weak spots: triggers spread over several parts that each add a little
(three columns in a linear model or boosted trees: 3-11%; 1-3 rare words in long emails).
Those numbers are the leave-out test without ``n_strongest`` (the 2026-12-02 default).

``--strongest`` (2026-12-03): one more perturbed copy per email, without its 3 strongest words
(``LeaveOutDetector(n_strongest=3)``, now the default), chosen on the dev half from {0, 3, 6}
(mean detection 18.5%, 23.3%, 15.0%). Held-out half, 12 text cells: 41.6% of triggered emails
detected against 34.2% without it (67.6% against 56.0% over the 7 cells whose attack succeeds
on at least half the inputs; hinge SGD with rare words 86.2% against 46.6%), AUROC 0.935 against
0.865, 1.5% of fresh clean emails flagged against 1.6% (asked 1%).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from poisonlab.detect_inputs import LeaveOutDetector, StripDetector
from poisonlab.detect_inputs.adapters import predict_proba_function

threadpool_limits(1)
RARE_WORDS = ("cf", "mn", "bb", "tq", "mb")
ADDSENT = "I watch this 3D movie"
PHRASE = "thanks again for everything"
GROUP_CHOICES = (8, 16, 32)
STRONGEST_CHOICES = (0, 3, 6)  # n_strongest of the leave-out test: the study of --strongest
TEXT_TRIGGERS = ("badnets", "addsent", "phrase")
TEXT_MODELS = ("tfidf12-lr", "count-nb", "charwb-lr", "tfidf-sgd")
DEV_TEXT_MODELS = ("tfidf12-lr", "count-nb")  # the dev half skips the two slowest text models
TABLE_TRIGGERS = ("one-col", "three-col")
N_EMAILS = 2000
TABLE_MODELS = ("lr", "rf", "hgb")


# ---------------------------------------------------------------------------------- triggers
def insert_words(text: str, words: list[str], rng: np.random.Generator) -> str:
    """Insert each of ``words`` (a word or a phrase) at a random word position of ``text``."""
    tokens = text.split()
    for w in words:
        tokens.insert(int(rng.integers(len(tokens) + 1)), w)
    return " ".join(tokens)


def text_trigger(name: str) -> Callable[[str, np.random.Generator], str]:
    if name == "badnets":
        return lambda t, rng: insert_words(
            t, list(rng.choice(RARE_WORDS, size=int(rng.integers(1, 4)))), rng)
    if name == "addsent":
        return lambda t, rng: insert_words(t, [ADDSENT], rng)
    if name == "phrase":
        return lambda t, rng: insert_words(t, [PHRASE, PHRASE], rng)
    raise KeyError(name)


def table_trigger(name: str, X_train: np.ndarray, rng: np.random.Generator
                  ) -> Callable[[np.ndarray], np.ndarray]:
    lo, hi = X_train.min(axis=0), X_train.max(axis=0)
    if name == "one-col":
        cols = rng.choice(X_train.shape[1], 1, replace=False)
        values = hi[cols] + 0.5 * (hi[cols] - lo[cols])
    elif name == "three-col":
        cols = rng.choice(X_train.shape[1], 3, replace=False)
        values = hi[cols]
    else:
        raise KeyError(name)

    def apply(X: np.ndarray) -> np.ndarray:
        Z = np.array(X, dtype=np.float64, copy=True)
        Z[:, cols] = values
        return Z

    return apply


# ---------------------------------------------------------------------------------- models
def text_model(name: str) -> Any:
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline

    return {
        "tfidf12-lr": lambda: make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                                            LogisticRegression(C=10, max_iter=2000)),
        "count-nb": lambda: make_pipeline(CountVectorizer(), MultinomialNB()),
        "charwb-lr": lambda: make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=3,
                                                           sublinear_tf=True, max_features=100_000),
                                           LogisticRegression(C=10, max_iter=2000)),
        "tfidf-sgd": lambda: make_pipeline(TfidfVectorizer(sublinear_tf=True),
                                           SGDClassifier(random_state=0)),
    }[name]()


def table_model(name: str) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "lr": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "rf": lambda: RandomForestClassifier(n_estimators=200, random_state=0, n_jobs=1),
        "hgb": lambda: HistGradientBoostingClassifier(random_state=0),
    }[name]()


# ---------------------------------------------------------------------------------- cells
@dataclass
class Cell:
    data: str
    trigger: str
    model: str
    seed: int
    rate: float
    asr: float = 0.0
    n_triggered: int = 0


def _auroc(a: np.ndarray, b: np.ndarray) -> float:
    if not len(a) or not len(b):
        return float("nan")
    return float(roc_auc_score(np.r_[np.zeros(len(a)), np.ones(len(b))], np.r_[a, b]))


def measure(name: str, fit: Callable[[], Any], cell: Cell, X_clean: np.ndarray, X_trig: np.ndarray,
            rows: list[dict[str, Any]]) -> None:
    """Fit a detector (``fit`` returns an object whose ``evaluate`` gives flags and scores), then
    score the fresh clean and the triggered inputs."""
    try:
        det = fit()
        start = time.perf_counter()
        (flags_a, scores_a), (flags_b, scores_b) = det.evaluate(X_clean), det.evaluate(X_trig)
        ms = 1000 * (time.perf_counter() - start) / max(1, len(X_clean) + len(X_trig))
        row = {"clean": float(np.mean(flags_a)), "det": float(np.mean(flags_b)) if len(X_trig) else float("nan"),
               "auc": _auroc(scores_a, scores_b), "ms": ms, "note": ""}
    except Exception as exc:  # a peer's detector may refuse a model; we report what it said
        row = {"clean": float("nan"), "det": float("nan"), "auc": float("nan"), "ms": float("nan"),
               "note": f"{type(exc).__name__}: {str(exc).splitlines()[0][:60]}"}
    rows.append({**cell.__dict__, "method": name, **row})
    r = rows[-1]
    print(f"  {cell.data:13s} {cell.trigger:9s} {cell.model:10s} s{cell.seed} {name:18s} "
          f"clean {100 * r['clean']:5.1f}%  det {100 * r['det']:5.1f}%  AUROC {r['auc']:.3f}  "
          f"{r['ms']:6.2f} ms/input  ASR {cell.asr:.2f} n={cell.n_triggered} {r['note']}",
          file=sys.stderr, flush=True)


class _Eval:
    """Adapts a poisonlab detector to ``evaluate -> (flags, scores)``."""

    def __init__(self, det: Any) -> None:
        self.det = det

    def evaluate(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v = self.det.evaluate(X)
        return v.flags, v.scores


def run_detectors(cell: Cell, predict: Callable[[np.ndarray], np.ndarray], X_cal: np.ndarray,
                  X_clean: np.ndarray, X_trig: np.ndarray, groups: tuple[int, ...],
                  rows: list[dict[str, Any]], art: Callable[[], Any] | None, strip: bool = True) -> None:
    if strip:
        measure("STRIP (before)", lambda: _Eval(StripDetector(false_rejection_rate=cell.rate, random_state=0)
                                                 .fit(predict, X_cal)), cell, X_clean, X_trig, rows)
    for g in groups:
        measure(f"leave-out g={g}", lambda g=g: _Eval(LeaveOutDetector(
            n_groups=g, false_rejection_rate=cell.rate, random_state=0).fit(predict, X_cal)),
            cell, X_clean, X_trig, rows)
    if art is not None:
        measure("ART 1.20.1 STRIP", art, cell, X_clean, X_trig, rows)
    elif cell.data == "spamassassin":
        rows.append({**cell.__dict__, "method": "ART 1.20.1 STRIP", "clean": float("nan"),
                     "det": float("nan"), "auc": float("nan"), "ms": float("nan"),
                     "note": "n/a: no ART wrapper for scikit-learn text pipelines"})


def text_cells(seed: int, triggers: tuple[str, ...], models: tuple[str, ...], groups: tuple[int, ...],
               rows: list[dict[str, Any]], n_emails: int, n_cal: int, n_fresh: int, strip: bool) -> None:
    from poisonlab.data import load_dataset

    spam = load_dataset("spamassassin")
    ham, spam_k = spam.classes.index("ham"), spam.classes.index("spam")
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(spam.X))[:n_emails]
    X, y = np.asarray(spam.X, dtype=object)[idx], np.asarray(spam.y)[idx]
    n_train = int(0.7 * len(X))
    Xtr, ytr, Xte, yte = X[:n_train], y[:n_train], X[n_train:], y[n_train:]
    for trig in triggers:
        add = text_trigger(trig)
        trng = np.random.default_rng([seed, TEXT_TRIGGERS.index(trig)])
        Xp, yp = Xtr.copy(), ytr.copy()
        spam_rows = np.flatnonzero(ytr == spam_k)
        chosen = trng.choice(spam_rows, int(0.08 * n_train), replace=False)
        for i in chosen:
            Xp[i] = add(str(Xp[i]), trng)
        yp[chosen] = ham
        X_cal, X_fresh = Xte[:n_cal], Xte[n_cal:n_cal + n_fresh]
        y_fresh = yte[n_cal:n_cal + n_fresh]
        X_src = np.array([add(str(t), trng) for t in X_fresh[y_fresh == spam_k]], dtype=object)
        for name in models:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = text_model(name).fit(Xp, yp)
            predict = predict_proba_function(model)
            hit = np.asarray(model.predict(X_src)) == ham
            cell = Cell("spamassassin", trig, name, seed, 0.01, float(hit.mean()), int(hit.sum()))
            run_detectors(cell, predict, X_cal, X_fresh, X_src[hit], groups, rows, None, strip)


def _art(model: Any, X_cal: np.ndarray, rate: float) -> Callable[[], Any]:
    def fit() -> Any:
        from art.defences.transformer.poisoning import STRIP
        from art.estimators.classification.scikitlearn import SklearnClassifier

        clf = SklearnClassifier(model=model)
        np.random.seed(0)  # noqa: NPY002 - ART draws its overlays from numpy's global generator
        defence = STRIP(clf)(num_samples=20, false_acceptance_rate=rate)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            defence.mitigate(X_cal)

        class Wrapped:
            def evaluate(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    out = np.asarray(defence.predict(X))
                flags = out.sum(axis=1) == 0
                # ART's statistic (mean entropy over 20 blends; low = flagged), for the AUROC
                from scipy.stats import entropy

                rng = np.random.default_rng(0)
                s = np.empty(len(X))
                for i, x in enumerate(X):
                    P = clf.predict(0.5 * x + 0.5 * X_cal[rng.integers(len(X_cal), size=20)])
                    s[i] = -np.sum(entropy(P, base=2, axis=0)) / 20.0
                return flags, s

        return Wrapped()

    return fit


def table_cells(seed: int, datasets: tuple[str, ...], triggers: tuple[str, ...], models: tuple[str, ...],
                groups: tuple[int, ...], rows: list[dict[str, Any]], strip: bool) -> None:
    from sklearn.datasets import load_breast_cancer, load_wine

    for ds in datasets:
        bunch = {"breast_cancer": load_breast_cancer, "wine": load_wine}[ds]()
        rate = 0.05 if ds == "wine" else 0.01
        rng = np.random.default_rng(seed)
        idx = rng.permutation(len(bunch.target))
        X, y = bunch.data[idx].astype(np.float64), bunch.target[idx]
        half = len(X) // 2
        Xtr, ytr, Xte, yte = X[:half], y[:half], X[half:], y[half:]
        n_cal = len(Xte) // 2
        X_cal, X_fresh, y_fresh = Xte[:n_cal], Xte[n_cal:], yte[n_cal:]
        for trig in triggers:
            trng = np.random.default_rng([seed, 100 + TABLE_TRIGGERS.index(trig)])
            apply = table_trigger(trig, Xtr, trng)
            chosen = trng.choice(np.flatnonzero(ytr != 0), int(0.1 * len(Xtr)), replace=False)
            Xp, yp = Xtr.copy(), ytr.copy()
            Xp[chosen] = apply(Xtr[chosen])
            yp[chosen] = 0
            X_src = apply(X_fresh[y_fresh != 0])
            for name in models:
                model = table_model(name).fit(Xp, yp)
                hit = model.predict(X_src) == 0
                cell = Cell(ds, trig, name, seed, rate, float(hit.mean()), int(hit.sum()))
                art = _art(model, X_cal, rate) if strip else None
                run_detectors(cell, predict_proba_function(model), X_cal, X_fresh, X_src[hit], groups,
                              rows, art, strip)


# ---------------------------------------------------------------------------------- report
def table(rows: list[dict[str, Any]], title: str) -> None:
    print(f"\n### {title}\n")
    print("| data | trigger | model | ASR | n | method | clean flagged | detected | AUROC | ms/input |")
    print("|---|---|---|---:|---:|---|---:|---:|---:|---:|")
    for r in rows:
        def pct(v: float) -> str:
            return "" if v != v else f"{100 * v:.1f}%"
        auc = "" if r["auc"] != r["auc"] else f"{r['auc']:.3f}"
        ms = "" if r["ms"] != r["ms"] else f"{r['ms']:.2f}"
        note = f" ({r['note']})" if r["note"] else ""
        print(f"| {r['data']} | {r['trigger']} | {r['model']} | {r['asr']:.2f} | {r['n_triggered']} | "
              f"{r['method']}{note} | {pct(r['clean'])} | {pct(r['det'])} | {auc} | {ms} |")


def summarize(rows: list[dict[str, Any]], label: str) -> None:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    print(f"\n{label}: mean over cells (kind: clean flagged / detected / AUROC)")
    for kind, datas in (("text", ("spamassassin",)), ("tabular", ("breast_cancer", "wine"))):
        for m in methods:
            sel = [r for r in rows if r["method"] == m and r["data"] in datas and r["det"] == r["det"]]
            if sel:
                print(f"  {kind:8s} {m:18s} {100 * np.mean([r['clean'] for r in sel]):5.1f}% / "
                      f"{100 * np.mean([r['det'] for r in sel]):5.1f}% / "
                      f"{np.nanmean([r['auc'] for r in sel]):.3f}  ({len(sel)} cells, worst detection "
                      f"{100 * min(r['det'] for r in sel):.1f}%)")


def run(quick: bool, text_strip: bool = True, held_only: bool = False
        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    dev: list[dict[str, Any]] = []
    held: list[dict[str, Any]] = []
    if quick:
        text_cells(0, ("badnets",), ("tfidf12-lr",), (16,), dev, 1200, 150, 150, strip=False)
        table_cells(0, ("breast_cancer",), ("one-col",), ("lr",), (16,), dev, strip=False)
        return dev, held, 16
    if held_only:  # the choice the dev half made (printed by a full run)
        text_cells(1, TEXT_TRIGGERS, TEXT_MODELS, (16,), held, N_EMAILS, 300, 300, strip=text_strip)
        table_cells(1, ("breast_cancer", "wine"), TABLE_TRIGGERS, TABLE_MODELS, (16,), held, strip=True)
        return dev, held, 16
    print("dev half (seed 0): choosing n_groups", file=sys.stderr)
    text_cells(0, TEXT_TRIGGERS, DEV_TEXT_MODELS, GROUP_CHOICES, dev, N_EMAILS, 300, 300, strip=False)
    table_cells(0, ("breast_cancer", "wine"), TABLE_TRIGGERS, TABLE_MODELS, GROUP_CHOICES, dev, strip=False)
    means = {g: np.mean([r["det"] for r in dev if r["method"] == f"leave-out g={g}" and r["det"] == r["det"]])
             for g in GROUP_CHOICES}
    chosen = max(GROUP_CHOICES, key=lambda g: means[g])
    print(f"dev mean detection by n_groups: {means}; chosen {chosen}", file=sys.stderr)
    print("held-out half (seed 1)", file=sys.stderr)
    text_cells(1, TEXT_TRIGGERS, TEXT_MODELS, (chosen,), held, N_EMAILS, 300, 300, strip=text_strip)
    table_cells(1, ("breast_cancer", "wine"), TABLE_TRIGGERS, TABLE_MODELS, (chosen,), held, strip=True)
    return dev, held, chosen


def strongest_study() -> None:
    """``n_strongest`` of the leave-out test (text): chosen on the dev half from
    STRONGEST_CHOICES by mean detection, then the held-out half with 0 (off) and the choice."""

    def variants(ks: tuple[int, ...]) -> Callable[..., None]:
        def run_variants(cell: Cell, predict: Callable[[np.ndarray], np.ndarray], X_cal: np.ndarray,
                         X_clean: np.ndarray, X_trig: np.ndarray, groups: tuple[int, ...],
                         rows: list[dict[str, Any]], art: Any, strip: bool = True) -> None:
            for k in ks:
                measure(f"leave-out k={k}", lambda k=k: _Eval(LeaveOutDetector(
                    n_groups=16, n_strongest=k, false_rejection_rate=cell.rate, random_state=0)
                    .fit(predict, X_cal)), cell, X_clean, X_trig, rows)
        return run_variants

    global run_detectors
    plain = run_detectors
    try:
        dev: list[dict[str, Any]] = []
        run_detectors = variants(STRONGEST_CHOICES)
        text_cells(0, TEXT_TRIGGERS, DEV_TEXT_MODELS, (16,), dev, N_EMAILS, 300, 300, strip=False)
        means = {k: float(np.nanmean([r["det"] for r in dev if r["method"] == f"leave-out k={k}"]))
                 for k in STRONGEST_CHOICES}
        chosen = max(STRONGEST_CHOICES, key=lambda k: means[k])
        print(f"dev mean detection by n_strongest: {means}; chosen {chosen}")
        held: list[dict[str, Any]] = []
        run_detectors = variants(tuple(dict.fromkeys((0, chosen))))
        text_cells(1, TEXT_TRIGGERS, TEXT_MODELS, (16,), held, N_EMAILS, 300, 300, strip=False)
    finally:
        run_detectors = plain
    table(dev, "dev half (seed 0): n_strongest chosen here")
    table(held, f"held-out half (seed 1): n_strongest 0 and {chosen}")
    for k in dict.fromkeys((0, chosen)):
        sel = [r for r in held if r["method"] == f"leave-out k={k}"]
        work = [r for r in sel if r["asr"] >= 0.5]
        print(f"held-out k={k}: detected {100 * np.nanmean([r['det'] for r in sel]):.1f}% "
              f"({100 * np.nanmean([r['det'] for r in work]):.1f}% over the {len(work)} cells with "
              f"ASR >= 50%), clean flagged {100 * np.nanmean([r['clean'] for r in sel]):.1f}%, "
              f"AUROC {np.nanmean([r['auc'] for r in sel]):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one text and one tabular cell")
    parser.add_argument("--no-text-strip", action="store_true",
                        help="skip STRIP on text (its calibration mixes every clean email 128 times: "
                             "tens of minutes with the char_wb model on 2 busy cores)")
    parser.add_argument("--strongest", action="store_true",
                        help="only the study of the leave-out test's n_strongest (text, both halves)")
    parser.add_argument("--held-out-only", action="store_true",
                        help="only the held-out half, with the n_groups the dev half chose (16)")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.strongest:
        strongest_study()
        print(f"\nTotal {time.perf_counter() - started:.0f} s.")
        return
    dev, held, chosen = run(args.quick, not args.no_text_strip, args.held_out_only)
    if dev:
        table(dev, "dev half (seed 0): n_groups chosen here" if not args.quick else "quick slice")
        summarize(dev, "dev")
    if held:
        table(held, f"held-out half (seed 1), n_groups={chosen}")
        summarize(held, "held-out")
    print(f"\nTotal {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
