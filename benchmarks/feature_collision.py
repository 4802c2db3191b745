"""Feature collision ("Poison Frogs", Shafahi et al. 2018): how often it works, against ART, and what the audit sees.

    python benchmarks/feature_collision.py            # digits and MNIST-5k, every section (about 25 min)
    python benchmarks/feature_collision.py --quick    # digits only, fewer targets (about 2 min)
    python benchmarks/feature_collision.py --audit-only  # section 4, with ART's 20-poison sets (934 s)
    python benchmarks/feature_collision.py --no-art   # without section 3

The setting: each corpus is split 70/30 (digits) or 80/20 (MNIST-5k), seed 0, and the training
rows again in two halves. The attacker's feature extractor is poisonlab's CNN trained on the first
half: it stands in for the pretrained network a victim downloads. The victim's data is the second
half. For each target instance (test images that the clean victim classifies correctly, the first
``--targets`` in test order) the base class is the next digit, ``(y + 1) mod 10``; the poisons are
that many base-class rows of the victim's data, moved by ``FeatureCollisionAttack`` (labels kept).
Success is the share of target instances the victim, trained on the poisoned data, calls the base
class (with a 95% Wilson interval).

1. Transfer learning (the paper's one-shot setting): the victim keeps the extractor frozen and
   trains a new last layer, a logistic regression on the extractor's 64 features. At 20 poisons
   also with each poison bounded to an L-infinity ball of 0.3 and 0.1 around its base.
2. End to end: the victim trains poisonlab's CNN from scratch on its poisoned data (it never sees
   the attacker's extractor), with and without the paper's 30% watermark.
3. Against IBM ART 1.20.1's ``FeatureCollisionAttack`` on the same extractor, targets and base
   rows, in the transfer setting: ART with its defaults, and with the settings that made its
   collisions converge on one digits target tried before this benchmark was written
   (``similarity_coeff=0.25``, ``learning_rate=1``, ``max_iter=500``). Craft time per poison set.
4. Detection: ``poisonlab.audit`` with its defaults on the victim's poisoned data (transfer
   setting's poisons, 20 per target), per detector: rows flagged, poisons among them, AUROC; and
   the same on ART's poisons (converging settings, 20 per target, in place of the same base rows),
   with how many of its targets they turn. ``--audit-only`` runs this section alone.
5. ``FeatureCollisionDetector`` and a kNN label vote (k=10, as Deep k-NN, Peri et al. 2020) on the
   frozen extractor's features: on the clean victim data, on poisonlab's poisons (5 and 20 per
   target) and on ART's (5 per target); and how many targets the victim's head still reads as the
   base class once the flagged rows are removed before training (sanitize). ``--detection-only``
   runs this section alone.

Distances are pixel L2 norms (images in [0, 1]): from each poison to its base, to the target, and
from the base to the target; a poison that sits nearer its target than its base no longer looks
like a clean-label row.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clean_label import print_table  # the benchmark beside this file

BUDGETS = (1, 5, 20)
ART_CONVERGING = {"similarity_coeff": 0.25, "learning_rate": 1.0, "max_iter": 500}  # section 3 (docstring)


def wilson(k: int, n: int) -> str:
    """``k/n`` with its 95% Wilson interval."""
    from poisonlab.provenance.stats import wilson_interval

    if n == 0:
        return "0/0"
    low, high = wilson_interval(np.array([k]), np.array([n]))
    return f"{k}/{n} ({float(low[0]):.2f}-{float(high[0]):.2f})"


class Setting:
    """One corpus: the attacker's extractor, the victim's clean data, the targets."""

    def __init__(self, name: str, n_targets: int) -> None:
        from sklearn.linear_model import LogisticRegression

        from poisonlab.data import load_dataset
        from poisonlab.models import make_model

        self.name = name
        data = load_dataset("digits" if name == "digits" else "mnist")
        train, self.test = data.split(test_size=0.3 if name == "digits" else 0.2, random_state=0)
        order = np.random.default_rng(0).permutation(len(train))
        half = len(train) // 2
        self.attacker, self.victim = train.subset(order[:half]), train.subset(order[half:])
        self.n_classes = data.n_classes
        self.extractor = make_model("cnn", random_state=0, device="cpu").fit(
            self.attacker.X, self.attacker.y, n_classes=self.n_classes)
        self.head = LogisticRegression(max_iter=2000).fit(self.extractor.features(self.victim.X), self.victim.y)
        ok = self.head.predict(self.extractor.features(self.test.X)) == self.test.y
        self.targets = np.flatnonzero(ok)[:n_targets]
        self.clean_accuracy = float(ok.mean())

    def base_of(self, i: int) -> int:
        return int((self.test.y[i] + 1) % self.n_classes)

    def turned(self, head: Any, i: int) -> bool:
        """Whether ``head`` (a transfer victim) calls target instance ``i`` its base class."""
        return bool(head.predict(self.extractor.features(self.test.X[i:i + 1]))[0] == self.base_of(i))

    def transfer_victim(self, X: np.ndarray, y: np.ndarray) -> Any:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=2000).fit(self.extractor.features(X), y)


def distances(poisons: np.ndarray, bases: np.ndarray, target: np.ndarray) -> tuple[float, float, float]:
    flat = lambda a: a.reshape(len(a), -1)  # noqa: E731
    to_base = np.linalg.norm(flat(poisons) - flat(bases), axis=1)
    to_target = np.linalg.norm(flat(poisons) - target.reshape(1, -1), axis=1)
    base_target = np.linalg.norm(flat(bases) - target.reshape(1, -1), axis=1)
    return float(np.median(to_base)), float(np.median(to_target)), float(np.median(base_target))


def attack(setting: Setting, i: int, n: int, *, watermark: float = 0.0, epsilon: float | None = None) -> Any:
    from poisonlab.attacks import FeatureCollisionAttack

    return FeatureCollisionAttack(target_instance=setting.test.X[i], target_label=setting.base_of(i),
                                  n_poison=n, extractor=setting.extractor, watermark=watermark,
                                  epsilon=epsilon, random_state=int(i)).apply(setting.victim)


def transfer(setting: Setting, rows: list[list[Any]]) -> dict[int, list[Any]]:
    """Section 1; returns the 20-poison sets for section 4."""
    kept: dict[int, list[Any]] = {}
    for n, epsilon in [(n, None) for n in BUDGETS] + [(max(BUDGETS), 0.3), (max(BUDGETS), 0.1)]:
        hits, dist, secs, accs = 0, [], 0.0, []
        for i in setting.targets:
            t = time.perf_counter()
            poisoned = attack(setting, i, n, epsilon=epsilon)
            secs += time.perf_counter() - t
            model = setting.transfer_victim(poisoned.X, poisoned.dataset.y)
            hits += int(setting.turned(model, i))
            accs.append(float(np.mean(model.predict(setting.extractor.features(setting.test.X)) == setting.test.y)))
            m = poisoned.poison_mask
            dist.append(distances(poisoned.X[m], setting.victim.X[m], setting.test.X[i]))
            if n == max(BUDGETS) and epsilon is None:
                kept.setdefault(n, []).append((i, poisoned))
        d = np.median(np.array(dist), axis=0)
        bound = "none" if epsilon is None else f"{epsilon:g}"
        rows.append([setting.name, n, bound, wilson(hits, len(setting.targets)), float(np.median(accs)),
                     float(d[0]), float(d[1]), float(d[2]), f"{secs / len(setting.targets):.2f}s"])
        print(f"  {setting.name} transfer n={n} epsilon={epsilon}: {hits}/{len(setting.targets)}", flush=True)
    return kept


def end_to_end(setting: Setting, budgets: list[int], n_targets: int, rows: list[list[Any]]) -> None:
    """Section 2: a CNN trained from scratch on the poisoned victim data."""
    from poisonlab.models import make_model

    for n in budgets:
        for watermark in (0.0, 0.3):
            hits, accs, dist = 0, [], []
            targets = setting.targets[:n_targets]
            for i in targets:
                poisoned = attack(setting, i, n, watermark=watermark)
                model = make_model("cnn", random_state=1, device="cpu").fit(
                    poisoned.X, poisoned.dataset.y, n_classes=setting.n_classes)
                hits += int(model.predict(setting.test.X[i:i + 1])[0] == setting.base_of(i))
                accs.append(float(np.mean(model.predict(setting.test.X) == setting.test.y)))
                m = poisoned.poison_mask
                dist.append(distances(poisoned.X[m], setting.victim.X[m], setting.test.X[i]))
            d = np.median(np.array(dist), axis=0)
            rows.append([setting.name, n, f"{watermark:g}", wilson(hits, len(targets)), float(np.median(accs)),
                         float(d[0]), float(d[1])])
            print(f"  {setting.name} end-to-end n={n} watermark={watermark:g}: {hits}/{len(targets)}", flush=True)


def art_section(setting: Setting, n: int, rows: list[list[Any]]) -> None:
    """Section 3: ART's FeatureCollisionAttack on the same extractor, targets and base rows
    (its time includes wrapping the extractor for ART, a few milliseconds)."""
    configs: list[tuple[str, dict[str, Any]]] = [
        ("ART defaults", {}),
        ("ART, converging settings", ART_CONVERGING)]
    ours_hits, ours_secs = 0, 0.0
    art = {label: [0, 0.0, []] for label, _ in configs}
    ours_dist = []
    for i in setting.targets:
        t = time.perf_counter()
        poisoned = attack(setting, i, n)
        ours_secs += time.perf_counter() - t
        chosen = np.flatnonzero(poisoned.poison_mask)
        model = setting.transfer_victim(poisoned.X, poisoned.dataset.y)
        ours_hits += int(setting.turned(model, i))
        ours_dist.append(distances(poisoned.X[chosen], setting.victim.X[chosen], setting.test.X[i])[0])
        for label, kwargs in configs:
            t = time.perf_counter()
            X = art_poisons(setting, i, chosen, **kwargs)
            art[label][1] += time.perf_counter() - t
            victim = setting.transfer_victim(X, setting.victim.y)
            art[label][0] += int(setting.turned(victim, i))
            art[label][2].append(distances(X[chosen], setting.victim.X[chosen], setting.test.X[i])[0])
    k = len(setting.targets)
    rows.append([setting.name, n, "poisonlab", wilson(ours_hits, k), float(np.median(ours_dist)),
                 f"{ours_secs / k:.3f}s", "1.0x"])
    for label, (hits, secs, dist) in art.items():
        rows.append([setting.name, n, label, wilson(hits, k), float(np.median(dist)), f"{secs / k:.3f}s",
                     f"{secs / ours_secs:.1f}x"])
    print(f"  {setting.name} ART comparison done", flush=True)


def detection(setting: Setting, kept: list[Any], rows: list[list[Any]], *, poisons: str = "poisonlab") -> None:
    """Section 4: the default audit on the victim's poisoned data, per detector, over the targets.

    ``kept``: ``(target, poisoned data, poison mask)`` per target; ``poisons`` names who made them."""
    from poisonlab.audit import audit
    from poisonlab.detect.metrics import detection_metrics

    per: dict[str, list[dict[str, float]]] = {}
    for _i, data, mask in kept:
        result = audit(data, random_state=0)
        outcomes = {(det if o.votes else f"{det} (no vote)"): (o.scores, o.flags)
                    for det, o in result.detectors.items()}
        outcomes["combined audit"] = (result.scores, result.flags)
        for label, (scores, flags) in outcomes.items():
            per.setdefault(label, []).append(detection_metrics(mask, scores, flags))
    for label, ms in per.items():
        flagged = sum(int(m["n_flagged"]) for m in ms)
        found = sum(round(float(m["recall"]) * int(m["n_poison"])) for m in ms)
        total = sum(int(m["n_poison"]) for m in ms)
        rows.append([setting.name, poisons, label, flagged, f"{found}/{total}",
                     float(np.median([float(m["auroc"]) for m in ms]))])
    print(f"  {setting.name} audited {len(kept)} sets of {poisons}'s poisons", flush=True)


def audit_sets(setting: Setting, n_sets: int, with_art: bool, rows: list[list[Any]],
               kept: list[Any] | None = None) -> None:
    """Section 4 on poisonlab's 20-poison sets (``kept``, made here when not given) and, with ART,
    on ART's poisons (converging settings) in place of the same base rows, with how many targets
    each set turns in the transfer victim."""
    if kept is None:
        kept = [(i, attack(setting, i, max(BUDGETS))) for i in setting.targets[:n_sets]]
    detection(setting, [(i, p.dataset, p.poison_mask) for i, p in kept], rows)
    if not with_art:
        return
    art_sets, turned = [], 0
    for i, poisoned in kept:
        X = art_poisons(setting, int(i), np.flatnonzero(poisoned.poison_mask), **ART_CONVERGING)
        turned += int(setting.turned(setting.transfer_victim(X, setting.victim.y), int(i)))
        art_sets.append((i, setting.victim.with_data(X=X), poisoned.poison_mask))
    detection(setting, art_sets, rows, poisons=f"ART, converging settings ({turned}/{len(kept)} turned)")


def art_poisons(setting: Setting, i: int, chosen: np.ndarray, **kwargs: Any) -> np.ndarray:
    """The victim's images with ART's feature-collision poisons (made against the attacker's
    extractor for target ``i``) in place of the rows ``chosen``."""
    import torch
    from art.attacks.poisoning import FeatureCollisionAttack as ArtFeatureCollision
    from art.estimators.classification import PyTorchClassifier

    shape = setting.test.X.shape[1:]
    clf = PyTorchClassifier(model=setting.extractor.net_, loss=torch.nn.CrossEntropyLoss(),
                            input_shape=(shape[2], shape[0], shape[1]), nb_classes=setting.n_classes,
                            clip_values=(0.0, 1.0), channels_first=True)
    fc = ArtFeatureCollision(clf, target=setting.test.X[i:i + 1].transpose(0, 3, 1, 2), feature_layer="body",
                             verbose=False, **kwargs)
    made, _ = fc.poison(setting.victim.X[chosen].transpose(0, 3, 1, 2))
    X = setting.victim.X.copy()
    X[chosen] = made.transpose(0, 2, 3, 1)
    return X


def collision_detection(setting: Setting, with_art: bool, rows: list[list[Any]]) -> None:
    """Section 5: FeatureCollisionDetector and the kNN-label vote (Deep k-NN, Peri et al. 2020) on
    the frozen extractor's features, on the clean victim data, on poisonlab's poisons (5 and 20 per
    target) and on ART's (5 per target, converging settings)."""
    from poisonlab.detect import FeatureCollisionDetector, KnnLabelDetector
    from poisonlab.detect.metrics import detection_metrics

    def turned(X: np.ndarray, keep: np.ndarray, i: int) -> bool:
        return setting.turned(setting.transfer_victim(X[keep], setting.victim.y[keep]), i)

    def run(label: str, sets: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
        everything = np.ones(len(setting.victim), dtype=bool)
        before = sum(turned(X, everything, i) for i, X, _ in sets) if sets[0][0] >= 0 else None
        for name, make in (("FeatureCollisionDetector", FeatureCollisionDetector),
                           ("kNN labels (k=10)", lambda: KnnLabelDetector(n_neighbors=10))):
            flagged, found, poisons, aurocs, after = 0, 0, 0, [], 0
            for i, X, mask in sets:
                features = setting.extractor.features(X)
                det = make()
                if name.startswith("Feature"):
                    det.fit(features, setting.victim.y, X)
                else:
                    det.fit(features, setting.victim.y)
                flagged += int(det.flags_.sum())
                found += int(np.sum(det.flags_ & mask))
                poisons += int(mask.sum())
                if mask.any():
                    aurocs.append(float(detection_metrics(mask, det.scores_, det.flags_)["auroc"]))
                    after += int(turned(X, ~det.flags_, i))
            success = "-" if before is None else f"{before}/{len(sets)} -> {after}/{len(sets)}"
            rows.append([setting.name, label, name, flagged, f"{found}/{poisons}" if poisons else "-",
                         float(np.median(aurocs)) if aurocs else math.nan, success])

    run("clean (no poison)", [(-1, setting.victim.X, np.zeros(len(setting.victim), dtype=bool))])
    for n in (5, 20):
        sets = []
        for i in setting.targets:
            poisoned = attack(setting, i, n)
            sets.append((int(i), poisoned.X, poisoned.poison_mask))
        run(f"poisonlab, {n} per target", sets)
    if with_art:
        sets = []
        for i in setting.targets:
            mask = attack(setting, i, 5).poison_mask  # the same base rows as poisonlab's
            sets.append((int(i), art_poisons(setting, i, np.flatnonzero(mask), **ART_CONVERGING), mask))
        run("ART (converging settings), 5 per target", sets)
    print(f"  {setting.name} collision detection done", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the sections and print their tables."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits only, 10 targets")
    parser.add_argument("--no-art", action="store_true", help="skip the comparison with ART")
    parser.add_argument("--targets", type=int, default=None, help="target instances per corpus (default 20)")
    parser.add_argument("--detection-only", action="store_true", help="section 5 alone")
    parser.add_argument("--audit-only", action="store_true", help="section 4 alone")
    args = parser.parse_args(argv)
    n_targets = args.targets or (10 if args.quick else 20)
    start = time.perf_counter()
    names = ["digits"] if args.quick else ["digits", "mnist-5k"]
    with_art = not args.no_art and _have_art()
    collision_rows: list[list[Any]] = []
    if args.audit_only:
        det_rows: list[list[Any]] = []
        for name in names:
            audit_sets(Setting(name, n_targets), 3 if args.quick else 5, with_art, det_rows)
        _audit_table(det_rows)
        print(f"\ntotal {time.perf_counter() - start:.0f}s")
        return 0
    if args.detection_only:
        for name in names:
            collision_detection(Setting(name, n_targets), with_art, collision_rows)
        _collision_table(collision_rows)
        print(f"\ntotal {time.perf_counter() - start:.0f}s")
        return 0
    transfer_rows: list[list[Any]] = []
    e2e_rows: list[list[Any]] = []
    art_rows: list[list[Any]] = []
    det_rows: list[list[Any]] = []
    for name in names:
        setting = Setting(name, n_targets)
        print(f"{name}: victim {len(setting.victim)} rows, clean transfer accuracy {setting.clean_accuracy:.3f}",
              flush=True)
        kept = transfer(setting, transfer_rows)
        end_to_end(setting, [20] if args.quick else [20, 50], 5 if args.quick else 10, e2e_rows)
        if with_art:
            art_section(setting, 5, art_rows)
        n_sets = 3 if args.quick else 5
        audit_sets(setting, n_sets, with_art, det_rows, kept[max(BUDGETS)][:n_sets])
        collision_detection(setting, with_art, collision_rows)
    print_table("1. Transfer learning (frozen extractor, new logistic-regression head): target instances "
           "called the base class",
           ["data", "n_poison", "L-inf bound", "success", "clean acc", "poison-base L2", "poison-target L2",
            "base-target L2", "craft"], transfer_rows)
    print_table("2. End to end (CNN trained from scratch on the poisoned data)",
           ["data", "n_poison", "watermark", "success", "clean acc", "poison-base L2", "poison-target L2"],
           e2e_rows)
    if art_rows:
        print_table("3. Against ART's FeatureCollisionAttack (transfer setting, same extractor, targets, bases)",
               ["data", "n_poison", "attack", "success", "poison-base L2", "craft per target", "time vs ours"],
               art_rows)
    _audit_table(det_rows)
    _collision_table(collision_rows)
    print(f"\ntotal {time.perf_counter() - start:.0f}s")
    return 0


def _have_art() -> bool:
    try:
        import art  # noqa: F401
    except ImportError:
        print("ART is not installed (pip install adversarial-robustness-toolbox==1.20.1): its sections are skipped")
        return False
    return True


def _audit_table(rows: list[list[Any]]) -> None:
    print_table(f"4. The default audit on the poisoned victim data ({max(BUDGETS)} poisons per target)",
                ["data", "poisons", "detector", "flagged", "poisons flagged", "median auroc"], rows)


def _collision_table(rows: list[list[Any]]) -> None:
    print_table("5. Feature-collision detection on the frozen extractor's features (the transfer victim's)",
           ["data", "poisons", "detector", "flagged", "poisons flagged", "median auroc",
            "targets turned: undefended -> flags removed"], rows)


if __name__ == "__main__":
    raise SystemExit(main())
