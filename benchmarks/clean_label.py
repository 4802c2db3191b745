"""Clean-label poisoning: how well it works, and which audit detectors still see it.

    python benchmarks/clean_label.py            # every table; about 5 minutes on 2 CPU cores
    python benchmarks/clean_label.py --quick    # fewer budgets, epsilons and seeds; under 2 minutes
    python benchmarks/clean_label.py --art      # adds section 4 (needs adversarial-robustness-toolbox)
    python benchmarks/clean_label.py --art-only # section 4 alone; under a minute (--quick: 10 s)

1. Images: ``CleanLabelBackdoorAttack`` (Turner, Tsipras and Madry 2019: PGD against a logistic
   regression surrogate, then a 3x3 checkerboard patch) against the naive clean-label patch
   (``PatchBackdoorAttack(relabel=False)``, ``--clean-label`` on the command line) at the same
   budget, on scikit-learn's digits (70/30 split, seed 0; target class 0, 124 training rows of it)
   with poisonlab's CNN, and in the full run on the MNIST sample (5,000 images, 80/20 split), with
   the linear (``logreg``) and the CNN surrogate and a half-amplitude training patch. Attack success
   (ASR) is the share of non-target test images, patched, that the model calls 0; ``ratio`` is the
   ASR over the naive patch's at the same budget and CNN seed.
2. Text and tables: the trigger on correctly labelled target rows only (ham emails carrying
   ``zqxj`` x20 on SpamAssassin with naive Bayes and logistic regression; benign tumours with
   x29=1 on breast cancer with logistic regression), next to the dirty-label attack at the same
   budget.
3. Detection: every audit detector (``poisonlab.audit``'s per-detector outcomes), the combined
   audit, and cleanlab's ``find_label_issues`` on 5-fold logistic-regression probabilities, on each
   clean-label attack and on the dirty-label patch for comparison: precision and recall of the
   flags, AUROC of the scores.
4. With ``--art``: ``CleanLabelBackdoorAttack`` next to IBM ART 1.20.1's
   ``PoisoningAttackCleanLabelBackdoor`` on digits, on the same poisoned rows (ART's ``poison()``
   draws its own, with replacement; see :func:`art_poison`), with the same proxy (the logistic
   regression or CNN poisonlab's attack fits), the same 3x3 checkerboard (through ART's
   ``PoisoningAttackBackdoor``) and the same CNN victims; ART once with poisonlab's PGD settings
   (eps 0.3, 20 steps of 0.0375) and once with its own defaults (eps 0.3, 100 steps of 0.1). ART's
   PGD starts where poisonlab's does (no random start, L-inf) but pushes each row away from the
   proxy's *predicted* class, poisonlab's from its true one. Skipped with one line when ART is not
   importable.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np


def print_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    """Print ``rows`` under ``header`` as an aligned text table (floats to 3 decimals)."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.3f}"
        return str(v)

    body = [[cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in body:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def image_success(name: str, train: Any, test: Any, budgets: list[int],
                  configs: list[tuple[float, str, float]], seeds: list[int],
                  rows: list[list[Any]]) -> None:
    """ASR and clean accuracy of the naive patch and of the clean-label backdoor at each
    (epsilon, surrogate, amplitude) of ``configs``, per budget and CNN seed, on one image corpus."""
    from poisonlab.attacks import CleanLabelBackdoorAttack, PatchBackdoorAttack
    from poisonlab.models import make_model

    keep = test.y != 0
    for n in budgets:
        for seed in seeds:
            naive_asr = None
            for eps, surrogate, amplitude in [(0.0, "", 1.0), *configs]:
                t = time.perf_counter()
                if eps == 0.0:
                    attack: Any = PatchBackdoorAttack(target_label=0, n_poison=n, relabel=False,
                                                      random_state=0)
                    label = "naive patch"
                else:
                    attack = CleanLabelBackdoorAttack(target_label=0, n_poison=n, epsilon=eps,
                                                      surrogate=surrogate, amplitude=amplitude,
                                                      random_state=0)
                    label = f"PGD eps {eps:g}, {surrogate}" + (f", amp {amplitude:g}" if amplitude < 1 else "")
                poisoned = attack.apply(train)
                craft = time.perf_counter() - t
                model = make_model("cnn", random_state=seed).fit(poisoned.X, poisoned.dataset.y,
                                                                 n_classes=train.n_classes)
                asr = float(np.mean(model.predict(poisoned.apply_trigger(test.X[keep])) == 0))
                acc = float(np.mean(model.predict(test.X) == test.y))
                if eps == 0.0:
                    naive_asr = asr
                ratio = asr / naive_asr if naive_asr else math.nan
                rows.append([name, n, label, seed, asr, acc, ratio, f"{craft:.2f}s"])
                print(f"  {name} n={n} {label} seed={seed}: asr {asr:.3f} acc {acc:.3f}", flush=True)


def text_table_success(quick: bool, rows: list[list[Any]]) -> dict[str, Any]:
    """Clean-label against dirty-label triggers on SpamAssassin and breast cancer; returns the
    poisoned sets that section 3 audits."""
    from sklearn.datasets import load_breast_cancer

    from poisonlab.attacks import FeatureBackdoorAttack, TextBackdoorAttack
    from poisonlab.data import dataset_from_arrays, load_dataset
    from poisonlab.models import make_model

    audited: dict[str, Any] = {}
    spam = load_dataset("spamassassin")
    if quick:
        spam = spam.subset(np.sort(np.random.default_rng(0).choice(len(spam), 2500, replace=False)))
    train, test = spam.split(test_size=0.3, random_state=0)
    ham = spam.label_index("ham")
    keep = test.y != ham
    for n in ([60] if quick else [30, 60, 120]):
        for relabel in (False, True):
            attack = TextBackdoorAttack(trigger="zqxj", repetitions=20, target_label="ham", n_poison=n,
                                        relabel=relabel, random_state=0)
            poisoned = attack.apply(train)
            if n == 60 and not relabel:
                audited["spam: clean-label zqxj, 60 ham"] = poisoned
            for spec in ("nb-text", "logreg-text"):
                model = make_model(spec, random_state=0).fit(poisoned.X, poisoned.dataset.y,
                                                             n_classes=spam.n_classes)
                asr = float(np.mean(model.predict(poisoned.apply_trigger(test.X[keep])) == ham))
                acc = float(np.mean(model.predict(test.X) == test.y))
                rows.append(["spamassassin", spec, n, "dirty-label" if relabel else "clean-label", asr, acc])
    X, y = load_breast_cancer(return_X_y=True)
    tumours = dataset_from_arrays(X, y)
    train, test = tumours.split(test_size=0.3, random_state=0)
    keep = test.y != 1
    for n in ([40] if quick else [20, 40, 80]):
        for relabel in (False, True):
            poisoned = FeatureBackdoorAttack(features={29: 1.0}, target_label="1", n_poison=n,
                                             relabel=relabel, random_state=0).apply(train)
            if n == 40 and not relabel:
                audited["breast cancer: clean-label x29=1, 40 benign"] = poisoned
            model = make_model("logreg", random_state=0).fit(poisoned.X, poisoned.dataset.y, n_classes=2)
            asr = float(np.mean(model.predict(poisoned.apply_trigger(test.X[keep])) == 1))
            acc = float(np.mean(model.predict(test.X) == test.y))
            rows.append(["breast cancer", "logreg", n, "dirty-label" if relabel else "clean-label", asr, acc])
    return audited


def cleanlab_baseline(X: np.ndarray, y: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab's find_label_issues on 5-fold out-of-fold logistic-regression probabilities."""
    from cleanlab.filter import find_label_issues
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "text":
        est: Any = make_pipeline(TfidfVectorizer(sublinear_tf=True), LogisticRegression(max_iter=1000))
        Z: Any = X
    else:
        Z = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    probs = cross_val_predict(est, Z, y, cv=StratifiedKFold(5, shuffle=True, random_state=0),
                              method="predict_proba")
    flags = np.asarray(find_label_issues(labels=y, pred_probs=probs), dtype=bool)
    return 1.0 - probs[np.arange(len(y)), y], flags


def detection(audited: dict[str, Any], rows: list[list[Any]]) -> None:
    """Precision, recall and AUROC of every audit detector, the audit and cleanlab on each attack."""
    from poisonlab.audit import audit
    from poisonlab.detect.metrics import detection_metrics

    for name, poisoned in audited.items():
        t = time.perf_counter()
        result = audit(poisoned.dataset, random_state=0)
        seconds = time.perf_counter() - t
        mask = poisoned.poison_mask
        outcomes: list[tuple[str, Callable[[], tuple[np.ndarray, np.ndarray]]]] = [
            (f"{det} (audit)" if o.votes else f"{det} (audit, no vote)",
             lambda o=o: (o.scores, o.flags)) for det, o in result.detectors.items()]
        outcomes.append((f"combined audit ({seconds:.0f}s)",
                         lambda r=result: (r.scores, r.flags)))
        outcomes.append(("cleanlab baseline", lambda p=poisoned: cleanlab_baseline(
            p.X, p.dataset.y, p.dataset.kind)))
        for label, get in outcomes:
            scores, flags = get()
            m = detection_metrics(mask, scores, flags)
            rows.append([name, label, int(m["n_flagged"]), float(m["precision"]), float(m["recall"]),
                         float(m["auroc"])])
        print(f"  audited {name} in {seconds:.1f}s", flush=True)


# ART's documented PGD defaults for PoisoningAttackCleanLabelBackdoor (ART 1.20.1): eps 0.3, eps_step
# 0.1, max_iter 100, L-inf norm, no random start; PGD's own defaults: batch_size 32, labels taken
# from the proxy's predictions (the attack calls ``generate`` without ``y``).
ART_DEFAULTS = {"eps": 0.3, "eps_step": 0.1, "max_iter": 100}


def art_poison(train: Any, chosen: np.ndarray, proxy: str, pgd: dict[str, float], seed: int) -> np.ndarray:
    """The training images with ART 1.20.1's ``PoisoningAttackCleanLabelBackdoor`` applied to the
    rows ``chosen`` (all of class 0): a proxy fitted here on the clean rows (``logreg``: the same
    scikit-learn logistic regression as poisonlab's surrogate, in ART's ScikitlearnLogisticRegression;
    ``cnn``: poisonlab's CNN, in ART's PyTorchClassifier), ART's PGD with ``pgd``, then
    ``PoisoningAttackBackdoor`` with a perturbation that pastes poisonlab's 3x3 checkerboard.
    ``seed`` is the proxy's, the one poisonlab's attack draws for its surrogate (the same network).

    ``poison()`` draws its rows itself, with replacement, from NumPy's global generator, so it
    cannot be given a budget of distinct rows; this runs the two calls ``poison()`` makes on its
    draw, ``attack.generate`` and ``backdoor.poison``, on poisonlab's draw instead."""
    from art.attacks.poisoning import PoisoningAttackBackdoor, PoisoningAttackCleanLabelBackdoor
    from art.estimators.classification import PyTorchClassifier
    from art.estimators.classification.scikitlearn import ScikitlearnLogisticRegression

    from poisonlab.attacks.triggers import PatchTrigger

    X, y, K = train.X, train.y, train.n_classes
    shape = X.shape[1:]  # H x W x C
    trigger = PatchTrigger(3, "bottom-right", "checkerboard")
    if proxy == "logreg":
        from sklearn.linear_model import LogisticRegression

        # poisonlab's surrogate_weights fits LogisticRegression(max_iter=300) on the flat pixels too
        lr = LogisticRegression(max_iter=300, random_state=seed).fit(X.reshape(len(X), -1), y)
        clf: Any = ScikitlearnLogisticRegression(model=lr, clip_values=(0.0, 1.0))
        to_art: Callable[[np.ndarray], np.ndarray] = lambda Z: Z.reshape(len(Z), -1)  # noqa: E731
        from_art: Callable[[np.ndarray], np.ndarray] = lambda Z: Z.reshape(len(Z), *shape)  # noqa: E731
    else:
        import torch

        from poisonlab.models import make_model

        net: Any = make_model("cnn", random_state=seed, device="cpu").fit(X, y, n_classes=K)
        module = net.net_.to("cpu").eval()
        to_art = lambda Z: np.ascontiguousarray(Z.transpose(0, 3, 1, 2))  # noqa: E731
        from_art = lambda Z: np.ascontiguousarray(Z.transpose(0, 2, 3, 1))  # noqa: E731
        clf = PyTorchClassifier(model=module, loss=torch.nn.CrossEntropyLoss(),
                                input_shape=(shape[2], shape[0], shape[1]), nb_classes=K,
                                clip_values=(0.0, 1.0), device_type="cpu")

    def stamp(Z: np.ndarray) -> np.ndarray:  # ART's layout -> poisonlab's patch -> ART's layout
        return to_art(trigger.apply(from_art(np.asarray(Z, dtype=X.dtype))))

    attack = PoisoningAttackCleanLabelBackdoor(backdoor=PoisoningAttackBackdoor(stamp), proxy_classifier=clf,
                                               target=np.eye(K)[0], pp_poison=0.5, **pgd)
    with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):  # ART's progress bars
        perturbed = attack.attack.generate(to_art(X[chosen]).astype(np.float32))
    poisoned, _ = attack.backdoor.poison(perturbed, attack.target, broadcast=True)
    out = X.copy()
    out[chosen] = from_art(np.asarray(poisoned)).astype(X.dtype)
    return out


def art_comparison(train: Any, test: Any, budgets: list[int], proxies: list[str], seeds: list[int],
                   rows: list[list[Any]]) -> None:
    """poisonlab's ``CleanLabelBackdoorAttack`` against ART's ``PoisoningAttackCleanLabelBackdoor``
    on the same rows, trigger and victim CNN: ART once with poisonlab's PGD settings (eps 0.3, 20
    steps of 0.0375) and once with its own defaults (:data:`ART_DEFAULTS`)."""
    from poisonlab.attacks import CleanLabelBackdoorAttack
    from poisonlab.models import make_model

    keep = test.y != 0
    ours_pgd = {"eps": 0.3, "max_iter": 20, "eps_step": 2.5 * 0.3 / 20}
    for n in budgets:
        for proxy in proxies:
            crafted: list[tuple[str, np.ndarray, float]] = []
            repeats = 5 if proxy == "logreg" else 1  # craft time: the best of `repeats` runs
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                poisoned = CleanLabelBackdoorAttack(target_label=0, n_poison=n, epsilon=0.3, surrogate=proxy,
                                                    random_state=0).apply(train)
                times.append(time.perf_counter() - t)
            crafted.append(("poisonlab", poisoned.X, min(times)))
            chosen = np.flatnonzero(poisoned.poison_mask)  # the same rows for ART
            rng = np.random.default_rng(0)  # replays the attack's draws: rows, then surrogate seed
            rng.choice(np.flatnonzero(train.y == 0), size=n, replace=False)
            proxy_seed = int(rng.integers(2**31))
            ours_time = crafted[0][2]
            for label, pgd in (("ART, our PGD settings", ours_pgd), ("ART, ART's PGD defaults", ART_DEFAULTS)):
                times = []
                for _ in range(repeats):
                    t = time.perf_counter()
                    Xa = art_poison(train, chosen, proxy, pgd, proxy_seed)
                    times.append(time.perf_counter() - t)
                crafted.append((label, Xa, min(times)))
            for label, Xp, craft in crafted:
                for seed in seeds:
                    model = make_model("cnn", random_state=seed).fit(Xp, train.y, n_classes=train.n_classes)
                    asr = float(np.mean(model.predict(poisoned.apply_trigger(test.X[keep])) == 0))
                    acc = float(np.mean(model.predict(test.X) == test.y))
                    ratio = "1" if label == "poisonlab" else f"{craft / ours_time:.1f}x"
                    rows.append([n, proxy, label, seed, asr, acc, f"{craft:.3f}s", ratio])
                    print(f"  art-vs-ours n={n} {proxy} {label} seed={seed}: asr {asr:.3f} acc {acc:.3f} "
                          f"craft {craft:.2f}s", flush=True)


def art_section(quick: bool) -> int:
    """Section 4: the side-by-side with ART, or one line saying why it is skipped."""
    try:
        import art  # noqa: F401
    except ImportError:
        print("\n4. Comparison with ART: skipped (adversarial-robustness-toolbox is not importable)")
        return 0
    from poisonlab.data import load_dataset

    train, test = load_dataset("digits").split(test_size=0.3, random_state=0)
    rows: list[list[Any]] = []
    art_comparison(train, test, [100] if quick else [60, 100], ["logreg"] if quick else ["logreg", "cnn"],
                   [1] if quick else [1, 2], rows)
    print_table("4. poisonlab's CleanLabelBackdoorAttack vs ART 1.20.1's PoisoningAttackCleanLabelBackdoor "
           "(digits, target 0, same rows, 3x3 checkerboard, CNN victim;\n"
           "   craft: fitting the proxy and crafting, best of 5 runs for logreg, 1 for cnn)",
           ["n_poison", "proxy", "attack", "cnn seed", "asr", "clean acc", "craft", "craft / ours"], rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the three sections and print their tables."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer budgets, epsilons and seeds")
    parser.add_argument("--art", action="store_true",
                        help="also compare with IBM ART's PoisoningAttackCleanLabelBackdoor (section 4)")
    parser.add_argument("--art-only", action="store_true", help="run section 4 only (implies --art)")
    args = parser.parse_args(argv)
    if args.art_only:
        return art_section(args.quick)
    from poisonlab.attacks import CleanLabelBackdoorAttack, PatchBackdoorAttack
    from poisonlab.data import load_dataset

    start = time.perf_counter()
    digits = load_dataset("digits")
    train, test = digits.split(test_size=0.3, random_state=0)
    image_rows: list[list[Any]] = []
    if args.quick:
        image_success("digits", train, test, [100], [(0.3, "logreg", 1.0)], [1], image_rows)
    else:
        image_success("digits", train, test, [30, 60, 100],
                      [(e, "logreg", 1.0) for e in (0.1, 0.2, 0.3, 0.5)], [1, 2], image_rows)
        image_success("digits", train, test, [100], [(0.3, "logreg", 0.5), (0.3, "cnn", 1.0)], [1, 2],
                      image_rows)
        mtrain, mtest = load_dataset("mnist").split(test_size=0.2, random_state=0)
        image_success("mnist-5k", mtrain, mtest, [300],
                      [(0.3, "logreg", 1.0), (0.5, "logreg", 1.0), (0.3, "cnn", 1.0)], [1], image_rows)
    print_table("1. Images, CNN: attack success of the clean-label backdoor vs the naive clean-label patch",
           ["data", "n_poison", "attack", "cnn seed", "asr", "clean acc", "ratio vs naive", "craft"],
           image_rows)

    text_rows: list[list[Any]] = []
    audited = text_table_success(args.quick, text_rows)
    print_table("2. Text and tables: trigger on correctly labelled target rows (clean-label) vs dirty-label",
           ["data", "model", "n_poison", "attack", "asr", "clean acc"], text_rows)

    images = {
        "digits: clean-label backdoor, eps 0.3, 100 zeros": CleanLabelBackdoorAttack(
            target_label=0, n_poison=100, epsilon=0.3, random_state=0),
        "digits: naive clean-label patch, 100 zeros": PatchBackdoorAttack(
            target_label=0, n_poison=100, relabel=False, random_state=0),
        "digits: dirty-label patch, 100 rows": PatchBackdoorAttack(
            target_label=0, n_poison=100, random_state=0),
    }
    audited = {**{k: a.apply(train) for k, a in images.items()}, **audited}
    det_rows: list[list[Any]] = []
    detection(audited, det_rows)
    print_table("3. Detection (flags: precision, recall; scores: AUROC)",
           ["attack", "detector", "flagged", "precision", "recall", "auroc"], det_rows)
    if args.art:
        art_section(args.quick)
    print(f"\ntotal {time.perf_counter() - start:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
