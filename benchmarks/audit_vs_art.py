"""poisonlab audit side by side with IBM ART's poison detectors, on the same data and model.

Needs ART, which poisonlab does not depend on (this script installs nothing):

    pip install adversarial-robustness-toolbox      # measured with 1.20.1

Run:

    python benchmarks/audit_vs_art.py                      # every scenario, seed 0 (~10 min, 2 cores)
    python benchmarks/audit_vs_art.py --scenarios mnist-badnets digits-badnets
    python benchmarks/audit_vs_art.py --representations    # which representation for which model

Per scenario, one poisoned training set and one model trained on it (seeded). Then:

* ``ART SS``: ``SpectralSignatureDefense`` with its defaults (``expected_pp_poison=0.33``,
  ``eps_multiplier=1.5``), once on the layer it reads by default (the last one: logits) and once on
  the penultimate layer (the same 64 activations poisonlab reads). AUROC uses ART's own per-class
  scores (``SpectralSignatureDefense.spectral_signature_scores``) on the activations it read.
* ``ART AC``: ``ActivationDefence`` with its defaults (2 clusters, PCA to 10 dims, the "smaller"
  cluster analysis), on the same two layers. It returns flags only, so its AUROC is that of a 0/1
  score.
* ``poisonlab``: :func:`poisonlab.audit.audit` with defaults, given the same trained model.

Columns: AUROC and average precision of the scores; precision and recall of the flagged set;
recall among the 1.5 x n_poison highest scores; ``detect s``, the seconds of detection on
representations already computed (ART: ``detect_poison`` with ``get_activations`` answered from a
cache; poisonlab: the detectors plus the neighbor search); ``audit s``, poisonlab's whole audit
(training the out-of-fold models included); then clean accuracy, attack success and trigger
flips of the same model retrained, same seed, on the rows each method keeps. Attack success is the
share of triggered test rows outside the target class that land in it; trigger flips, the same share
among those rows the model classifies correctly without the trigger (a row the model already puts
in the target class is no work of the trigger).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

warnings.filterwarnings("ignore")
os.environ.setdefault("OMP_NUM_THREADS", "2")

SCENARIOS = ("mnist-badnets", "digits-badnets", "mnist-blend", "mnist-flips", "spamassassin-trigger")


@dataclass
class Scenario:
    name: str
    train: Any
    test: Any
    poisoned: Any
    model: str
    description: str


def make_scenario(name: str, seed: int) -> Scenario:
    from poisonlab.attacks import (
        BlendBackdoorAttack,
        LabelFlipAttack,
        PatchBackdoorAttack,
        TextBackdoorAttack,
    )
    from poisonlab.data import load_dataset

    corpus = name.split("-")[0]
    ds = load_dataset(corpus)
    train, test = ds.split(test_size=0.2 if corpus == "mnist" else 0.3, random_state=0)
    if name.endswith("badnets"):
        attack: Any = PatchBackdoorAttack(target_label=0, poison_rate=0.1, random_state=seed)
        what = "3x3 checkerboard patch, 10% of rows (non-target classes) relabeled 0"
    elif name == "mnist-blend":
        attack = BlendBackdoorAttack(alpha=0.2, target_label=0, poison_rate=0.1, random_state=seed)
        what = "noise pattern blended at alpha 0.2, 10% of rows relabeled 0"
    elif name == "mnist-flips":
        attack = LabelFlipAttack(strategy="random", poison_rate=0.1, random_state=seed)
        what = "10% of labels flipped at random"
    elif name == "spamassassin-trigger":
        attack = TextBackdoorAttack(trigger="cf", repetitions=5, position="suffix",
                                    source_label="spam", target_label="ham", n_poison=200,
                                    random_state=seed)
        what = "'cf' appended 5 times to 200 spam emails relabeled ham (4.7% of rows)"
    else:
        raise SystemExit(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    model = "logreg-text" if corpus == "spamassassin" else "cnn"
    return Scenario(name, train, test, attack.apply(train), model, what)


def fit(spec: str, X: np.ndarray, y: np.ndarray, K: int, seed: int) -> Any:
    from poisonlab.models import make_model

    params = {"n_threads": 2} if spec in ("cnn", "torch-mlp") else {}
    return make_model(spec, random_state=seed, **params).fit(X, y, n_classes=K)


def outcome(model: Any, sc: Scenario) -> dict[str, float]:
    from poisonlab.defend.compare import measure_model

    trig = sc.poisoned if sc.poisoned.trigger is not None else None
    return measure_model(model, sc.test, trig)


# ---------------------------------------------------------------------------------- ART
def art_classifier(net: Any, input_shape: tuple[int, ...], K: int, penultimate: bool) -> Any:
    import torch
    from art.estimators.classification import PyTorchClassifier

    class LogitsLast(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.head = net.body, net.head

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x))

    class PenultimateLast(torch.nn.Module):
        # Same network; registering `head` first makes ART's "last layer" the body's output.
        def __init__(self) -> None:
            super().__init__()
            self.head, self.body = net.head, net.body

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x))

    module = PenultimateLast() if penultimate else LogitsLast()
    return PyTorchClassifier(model=module, loss=torch.nn.CrossEntropyLoss(),
                             input_shape=input_shape, nb_classes=K, clip_values=(0.0, 1.0),
                             device_type="cpu")


def run_art(sc: Scenario, model: Any, method: str, penultimate: bool) -> dict[str, Any]:
    from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense

    ds = sc.poisoned.dataset
    X = np.ascontiguousarray(ds.X.transpose(0, 3, 1, 2)).astype(np.float32)
    K = ds.n_classes
    onehot = np.eye(K, dtype=np.float32)[ds.y]
    clf = art_classifier(model.net_, X.shape[1:], K, penultimate)
    layer = len(clf.layer_names) - 1
    acts = clf.get_activations(X, layer=layer, batch_size=128)
    acts = np.asarray(acts).reshape(len(X), -1)
    clf.get_activations = lambda *a, **k: acts  # detection timed on the same cached activations
    t = time.perf_counter()
    if method == "SS":
        defence = SpectralSignatureDefense(clf, X, onehot)
        _, is_clean = defence.detect_poison()
        seconds = time.perf_counter() - t
        scores = np.zeros(len(X))
        for k in range(K):
            rows = np.flatnonzero(ds.y == k)
            if len(rows):
                scores[rows] = SpectralSignatureDefense.spectral_signature_scores(acts[rows]).ravel()
    else:
        defence = ActivationDefence(clf, X, onehot)
        _, is_clean = defence.detect_poison(nb_clusters=2, nb_dims=10, reduce="PCA")
        seconds = time.perf_counter() - t
        scores = 1.0 - np.asarray(is_clean, dtype=float)
    flags = np.asarray(is_clean) == 0
    return {"scores": scores, "flags": flags, "detect_s": seconds}


def art_text_attempt(sc: Scenario, model: Any) -> str:
    """What ART says when handed the scikit-learn text model (it has no detector that takes one)."""
    from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense
    from art.estimators.classification import SklearnClassifier

    ds = sc.poisoned.dataset
    messages = []
    for cls in (SpectralSignatureDefense, ActivationDefence):
        try:
            clf = SklearnClassifier(model=model.estimator_)
            cls(clf, ds.X, np.eye(2)[ds.y]).detect_poison()
            messages.append(f"{cls.__name__}: ran")
        except Exception as exc:  # ART raises assorted types here; we report what it says
            messages.append(f"{cls.__name__}: {type(exc).__name__}: {str(exc).splitlines()[0][:90]}")
    return "; ".join(messages)


# ---------------------------------------------------------------------------------- ours
def run_ours(sc: Scenario, model: Any, seed: int) -> tuple[dict[str, Any], Any]:
    from poisonlab.audit import audit

    ds = sc.poisoned.dataset
    t = time.perf_counter()
    result = audit(ds, model=sc.model, fitted_model=model, random_state=seed,
                   torch_params={"n_threads": 2})
    total = time.perf_counter() - t
    detect = sum(d.seconds for d in result.detectors.values()) + \
        result.timings.get("nearest neighbors", 0.0)
    # Retraining drops what ``poisonlab.defend.sanitize`` drops: the flagged rows and the robust
    # spectral detector's wider cut (``AuditResult.removal_flags``).
    return {"scores": result.scores, "flags": result.flags, "removal": result.removal_flags,
            "detect_s": detect, "audit_s": total}, result


def same_representation_timing(sc: Scenario, model: Any, result: Any) -> str:
    """ART's two detectors and ours on the same cached penultimate activations, best of 25."""
    from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense

    from poisonlab.detect import (
        ActivationClusteringDetector,
        RobustSpectralDetector,
        SpectralSignatureDetector,
    )

    ds = sc.poisoned.dataset
    X = np.ascontiguousarray(ds.X.transpose(0, 3, 1, 2)).astype(np.float32)
    K = ds.n_classes
    onehot = np.eye(K, dtype=np.float32)[ds.y]
    clf = art_classifier(model.net_, X.shape[1:], K, penultimate=True)
    acts = np.asarray(clf.get_activations(X, layer=len(clf.layer_names) - 1, batch_size=128))
    acts = acts.reshape(len(X), -1)
    clf.get_activations = lambda *a, **k: acts
    rep = result.arrays["representation"]
    ref = result.detectors["knn_labels"].scores

    runs = {
        "art_ss": lambda: SpectralSignatureDefense(clf, X, onehot).detect_poison(),
        "art_ac": lambda: ActivationDefence(clf, X, onehot).detect_poison(
            nb_clusters=2, nb_dims=10, reduce="PCA"),
        "ss": lambda: SpectralSignatureDetector().fit(rep, ds.y),
        "rs": lambda: RobustSpectralDetector().fit(rep, ds.y, reference_scores=ref),
        "ac": lambda: ActivationClusteringDetector().fit(rep, ds.y, reference_scores=ref),
    }
    # Round-robin, best of 25 each: a slow spell of the machine hits every method alike.
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(25):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    art_ss, art_ac, ss, rs, ac = (min(times[k]) for k in ("art_ss", "art_ac", "ss", "rs", "ac"))
    return (f"| {sc.name} | {art_ss:.3f} | {ss:.3f} ({art_ss / ss:.1f}x) | {rs:.3f} "
            f"({art_ss / rs:.1f}x) | {art_ac:.3f} | {ac:.3f} ({art_ac / ac:.1f}x) |")


def evaluate(sc: Scenario, found: dict[str, Any], seed: int, retrain: bool) -> dict[str, Any]:
    from poisonlab.detect import detection_metrics

    m = detection_metrics(sc.poisoned.poison_mask, found["scores"], found["flags"])
    row = {k: m.get(k) for k in ("auroc", "average_precision", "precision", "recall",
                                 "recall_at_1.5x", "n_flagged")}
    row["detect_s"] = found["detect_s"]
    row["audit_s"] = found.get("audit_s")
    if retrain:
        keep = ~found.get("removal", found["flags"])
        row["n_removed"] = int((~keep).sum())
        ds = sc.poisoned.dataset
        model = fit(sc.model, ds.X[keep], ds.y[keep], ds.n_classes, seed)
        row.update({f"after_{k}": v for k, v in outcome(model, sc).items()})
    return row


def fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{v:.{digits}f}"


def main_table(names: list[str], seed: int, retrain: bool) -> None:
    header = ("| scenario | method | AUROC | AP | precision | recall | recall@1.5x | flagged | "
              "detect s | audit s | clean acc after | attack success after | trigger flips after |")
    lines = [header, "|" + "---|" * 13]
    notes: list[str] = []
    timings: list[str] = []
    for name in names:
        sc = make_scenario(name, seed)
        ds = sc.poisoned.dataset
        t = time.perf_counter()
        model = fit(sc.model, ds.X, ds.y, ds.n_classes, seed)
        before = outcome(model, sc)
        clean_model = fit(sc.model, sc.train.X, sc.train.y, sc.train.n_classes, seed)
        clean = outcome(clean_model, sc)
        notes.append(f"- **{name}**: {sc.description}; {len(ds)} training rows, "
                     f"{sc.poisoned.n_poison} poisoned; model `{sc.model}` (trained in "
                     f"{time.perf_counter() - t:.0f} s with the clean reference). Clean model: "
                     f"accuracy {fmt(clean['clean_accuracy'])}"
                     + (f", attack success {fmt(clean.get('attack_success'))} (the trigger on a "
                        "model that never saw it: the floor), trigger flips "
                        f"{fmt(clean.get('trigger_flips'))}" if "attack_success" in clean else "")
                     + f"; poisoned model: accuracy "
                     f"{fmt(before['clean_accuracy'])}"
                     + (f", attack success {fmt(before.get('attack_success'))}"
                        if "attack_success" in before else "") + ".")
        rows: list[tuple[str, dict[str, Any]]] = []
        if sc.model == "cnn":
            for method in ("SS", "AC"):
                for pen in (False, True):
                    label = f"ART {method} ({'penultimate' if pen else 'default: logits'})"
                    try:
                        found = run_art(sc, model, method, pen)
                        rows.append((label, evaluate(sc, found, seed, retrain)))
                    except Exception as exc:  # report what ART does instead of stopping the run
                        rows.append((label, {"error": f"{type(exc).__name__}: {exc}"[:80]}))
        else:
            notes.append(f"  - ART on `{sc.model}`: {art_text_attempt(sc, model)}")
            rows.append(("ART (any detector)", {"error": "no detector accepts a scikit-learn "
                                                         "text model"}))
        found, result = run_ours(sc, model, seed)
        rows.append(("**poisonlab audit**", evaluate(sc, found, seed, retrain)))
        if retrain and sc.poisoned.trigger is not None:
            oracle = evaluate(sc, {"scores": sc.poisoned.poison_mask.astype(float),
                                   "flags": sc.poisoned.poison_mask, "detect_s": 0.0}, seed, True)
            notes.append(f"  - removing exactly the planted rows and retraining: clean accuracy "
                         f"{fmt(oracle.get('after_clean_accuracy'))}, attack success "
                         f"{fmt(oracle.get('after_attack_success'))}, trigger flips "
                         f"{fmt(oracle.get('after_trigger_flips'))}")
        if sc.model == "cnn":
            timings.append(same_representation_timing(sc, model, result))
        if result.suspected_triggers:
            t0 = result.suspected_triggers[0]
            notes.append(f"  - poisonlab's suspected trigger: '{t0['trigger']}' -> "
                         f"{t0['target_label']} (without it {fmt(t0.get('off_label_rate'), 2)} of "
                         "the tested rows read as another class to the out-of-fold model)")
        for label, r in rows:
            if "poisonlab" in label and r.get("n_removed") is not None:
                notes.append(f"  - {name}: poisonlab retrains without {r['n_removed']} rows (the "
                             f"{r['n_flagged']} flagged and the robust spectral removal set)")
            if "error" in r:
                lines.append(f"| {name} | {label} | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | "
                             f"n/a | n/a | {r['error']} |")
                continue
            lines.append(
                f"| {name} | {label} | {fmt(r['auroc'])} | {fmt(r['average_precision'])} | "
                f"{fmt(r['precision'], 2)} | {fmt(r['recall'], 2)} | {fmt(r['recall_at_1.5x'], 2)} "
                f"| {fmt(r['n_flagged'])} | {fmt(r['detect_s'], 2)} | {fmt(r['audit_s'], 1)} | "
                f"{fmt(r.get('after_clean_accuracy'))} | {fmt(r.get('after_attack_success'))} | "
                f"{fmt(r.get('after_trigger_flips'))} |")
        print("\n".join(lines[-len(rows):]), flush=True)
    print("\n" + "\n".join(lines))
    print("\n" + "\n".join(notes))
    if timings:
        print("\nDetection on the same cached penultimate activations (best of 25 runs, seconds):\n")
        print("| scenario | ART SS | poisonlab spectral signature | poisonlab robust spectral | "
              "ART AC | poisonlab activation clustering |")
        print("|---|---|---|---|---|---|")
        print("\n".join(timings))


# ---------------------------------------------------------------------------------- representations
def representation_table(seed: int) -> None:
    """AUROC of the spectral detectors on each representation, per model kind."""
    from poisonlab.audit import input_features
    from poisonlab.detect import (
        ActivationClusteringDetector,
        KnnLabelDetector,
        RobustSpectralDetector,
        SpectralSignatureDetector,
        detection_metrics,
        model_representation,
    )

    cases = [("spamassassin-trigger", "logreg-text"), ("spamassassin-trigger", "nb-text"),
             ("digits-badnets", "logreg"), ("digits-badnets", "mlp"), ("digits-badnets", "cnn"),
             ("mnist-badnets", "cnn")]
    kinds_for = {"logreg-text": ("input", "contributions", "gradient"),
                 "nb-text": ("input", "contributions", "gradient"),
                 "logreg": ("input", "contributions", "gradient"),
                 "mlp": ("input", "activations", "gradient"),
                 "cnn": ("input", "activations")}
    print("| data | model | representation | robust spectral AUROC | spectral signature AUROC | "
          "activation clustering AUROC | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name, spec in cases:
        sc = make_scenario(name, seed)
        ds = sc.poisoned.dataset
        model = fit(spec, ds.X, ds.y, ds.n_classes, seed)
        ref = KnnLabelDetector().fit(input_features(ds), ds.y).scores_
        mask = sc.poisoned.poison_mask
        for kind in kinds_for[spec]:
            t = time.perf_counter()
            if kind == "input" and spec == "cnn":
                from poisonlab.detect.representations import reduce_dims

                R = reduce_dims(ds.X.reshape(len(ds), -1), 64, seed)
            else:
                R, _ = model_representation(model, ds.X, ds.y, kind=kind, random_state=seed)
            secs = time.perf_counter() - t
            a = [detection_metrics(mask, d.fit(R, ds.y, **kw).scores_)["auroc"] for d, kw in (
                (RobustSpectralDetector(), {"reference_scores": ref}),
                (SpectralSignatureDetector(), {}),
                (ActivationClusteringDetector(), {"reference_scores": ref}))]
            print(f"| {name} | {spec} | {kind} | {fmt(a[0])} | {fmt(a[1])} | {fmt(a[2])} | "
                  f"{secs:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-retrain", action="store_true", help="Skip sanitize-and-retrain.")
    parser.add_argument("--representations", action="store_true",
                        help="Print the representation table instead.")
    args = parser.parse_args()
    if os.environ.get("POISONLAB_SPAMASSASSIN_DIR") is None:
        print("(SpamAssassin loads from the poisonlab cache; set POISONLAB_SPAMASSASSIN_DIR to a "
              "local copy to skip the download)")
    if args.representations:
        representation_table(args.seed)
        return
    try:
        import art
    except ImportError:
        raise SystemExit("This benchmark needs ART: pip install adversarial-robustness-toolbox") \
            from None
    print(f"ART {art.__version__}; seed {args.seed}")
    main_table(args.scenarios, args.seed, not args.no_retrain)


if __name__ == "__main__":
    main()
