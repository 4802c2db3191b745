"""The audit pipeline and sanitize-and-retrain on real data with planted poison.

Floors are measured values minus a margin; the measurement is beside each floor.
"""

from __future__ import annotations

import numpy as np
import pytest

from poisonlab.attacks import LabelFlipAttack, PatchBackdoorAttack, TextBackdoorAttack
from poisonlab.audit import audit, consensus_probs, evaluate_audit, write_audit
from poisonlab.data import Dataset
from poisonlab.exceptions import DataError, ParameterError


@pytest.fixture(scope="module")
def spam_subset(spamassassin: Dataset) -> Dataset:
    rng = np.random.default_rng(0)
    return spamassassin.subset(np.sort(rng.choice(len(spamassassin), 2000, replace=False)))


@pytest.mark.slow
def test_text_trigger_found_on_spamassassin(spam_subset: Dataset) -> None:
    # 60 spam emails relabeled ham with "cf" appended 5 times, logreg-text (the text default).
    # Measured (seed 0): trigger 'cf' found; combined AUROC 0.998, recall 1.0, precision 0.811;
    # the trigger test alone flags 61 rows: all 60 planted ones (42 whose prediction removing
    # 'cf' flips, 18 that repeat it 5 times under the label ham) and one ham email that quotes
    # SpamAssassin's '.cf' config files 7 times.
    p = TextBackdoorAttack(trigger="cf", repetitions=5, source_label="spam", target_label="ham",
                           n_poison=60, random_state=0).apply(spam_subset)
    result = audit(p.dataset)
    ev = evaluate_audit(result, p.poison_mask)["combined"]
    assert [t["trigger"] for t in result.suspected_triggers][:1] == ["cf"]
    assert result.suspected_triggers[0]["target_label"] == "ham"
    assert ev["auroc"] >= 0.98
    assert ev["recall"] >= 0.95
    assert ev["precision"] >= 0.7
    by_trigger = result.detectors["trigger_keywords"].flags
    assert p.poison_mask[by_trigger].mean() >= 0.95
    assert by_trigger[p.poison_mask].all()
    # Not on text: there it voted 97-166 clean emails of 2,100 (audit._agreement_outcome).
    assert "representation_agreement" not in result.detectors


@pytest.mark.slow
def test_phrase_trigger_found_with_naive_bayes(spam_subset: Dataset) -> None:
    # The demo's working backdoor: a rare three-word phrase x20 in 40 spam emails relabeled ham,
    # naive Bayes. Each word alone is one of three that push together, so removing one flips
    # nothing; they are removed together. Measured (seed 0): phrase found with its words in order,
    # all 40 planted rows flagged (24 more by confident learning); before removing the words
    # together, 0 of 40 were found.
    train, _ = spam_subset.split(test_size=0.3, random_state=0)
    p = TextBackdoorAttack(trigger="zqxj vlorp kwimb", repetitions=20, target_label="ham",
                           n_poison=40, random_state=0).apply(train)
    result = audit(p.dataset, model="nb-text")
    assert result.suspected_triggers[0]["trigger"] == "zqxj vlorp kwimb"
    assert result.flags[p.poison_mask].all()
    assert result.flags.sum() <= 2 * p.n_poison


@pytest.mark.torch
def test_badnets_on_digits(digits: Dataset) -> None:
    # 10% of rows (all from non-target classes) stamped with a 3x3 patch and relabeled 0: half
    # of class 0. Measured: AUROC 1.000, precision 1.000, recall 1.000 (robust spectral, cnn).
    p = PatchBackdoorAttack(target_label=0, poison_rate=0.1, random_state=0).apply(digits)
    result = audit(p.dataset, model="cnn")
    ev = evaluate_audit(result, p.poison_mask)
    assert ev["combined"]["auroc"] >= 0.99
    assert ev["combined"]["recall"] >= 0.99
    assert ev["combined"]["precision"] >= 0.9
    # Plain spectral signatures fail on a half-poisoned class (measured AUROC 0.696 vs 1.000).
    assert ev["detectors"]["spectral_signature"]["auroc"] < ev["detectors"]["robust_spectral"]["auroc"]
    assert result.detectors["robust_spectral"].details["per_class"]["0"]["significant"]
    assert result.detectors["representation_agreement"].votes


def test_robust_spectral_finds_a_patch_the_representation_does_not_carry(digits: Dataset) -> None:
    # Issue 13: on the generalization benchmark's digits cells, poisonlab's CNN learned BadNets
    # only in part (attack success 0.69) and its penultimate layer kept the patched rows mixed
    # with clean zeros (separation 4.34, not significant): recall 0. The audit now also splits
    # each image class in pixel space. Here the representation is blind to the trigger by
    # construction (16 principal components of the unpatched images). Measured 2026-12-04:
    # class 0 significant in the pixel view only (separation 15.7, reference gap 1.61), 12 rows
    # flagged, all 12 planted; 6 planted: 6 flagged, all planted; clean digits: no flag, no class
    # significant in either view.
    from sklearn.decomposition import PCA

    from poisonlab.audit import _robust_spectral_outcome, input_features
    from poisonlab.detect import KnnLabelDetector

    blind = PCA(16, random_state=0).fit_transform(np.asarray(digits.X, float).reshape(len(digits), -1))
    for n_poison in (12, 6):
        p = PatchBackdoorAttack(target_label=0, n_poison=n_poison, random_state=0).apply(digits)
        ref = KnnLabelDetector().fit(input_features(p.dataset), p.dataset.y).scores_
        out = _robust_spectral_outcome(p.dataset, blind, ref)
        assert out.details["views"] == ["representation", "pixels"]
        assert out.details["per_class"]["0"]["significant_in"] == ["pixels"]
        assert [c for c, v in out.details["per_class"].items() if v["significant"]] == ["0"]
        assert out.flags[p.poison_mask].all()
        assert out.flags.sum() <= n_poison + 1
        assert "robust spectral (pixels)" in out.reason(int(np.flatnonzero(p.poison_mask)[0]))
    ref = KnnLabelDetector().fit(input_features(digits), digits.y).scores_
    clean = _robust_spectral_outcome(digits, blind, ref)
    assert not clean.flags.any()
    assert not any(v["significant"] for v in clean.details["per_class"].values())


def test_spectral_signature_and_clustering_vote_where_they_agree(digits: Dataset) -> None:
    # Issue 13: on MNIST-5k with 20 feature-collision poisons a target (benchmarks/
    # feature_collision.py's setting, the audit's own CNN) spectral signature and activation
    # clustering each flagged 20-21 rows, the 20 poisons among them, and neither voted: the audit
    # found 0 of 100. Here the representation is digits' LDA projection and 20 rows of class 1 are
    # moved onto one class-0 row's features, as Poison Frogs' poisons are. Measured 2026-12-07:
    # spectral signature flags 24 rows (the 20 among them), activation clustering 131 (the 20
    # among them); in class 1 they share the 20 (overlap 0.556), which vote. With 10 or 5 moved
    # rows the clustering's cluster is too wide (overlap 0.40, 0.14): nothing votes. Clean: the
    # largest overlap 0.044, nothing votes.
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    from poisonlab.audit import DetectorOutcome, _agreement_outcome, input_features
    from poisonlab.detect import ActivationClusteringDetector, KnnLabelDetector, SpectralSignatureDetector

    pixels = np.asarray(digits.X, float).reshape(len(digits), -1)
    clean_rep = LinearDiscriminantAnalysis().fit_transform(pixels, digits.y)
    ref = KnnLabelDetector().fit(input_features(digits), digits.y).scores_
    rng = np.random.default_rng(0)

    def agreement(rep: np.ndarray) -> DetectorOutcome:
        ss = SpectralSignatureDetector().fit(rep, digits.y)
        ac = ActivationClusteringDetector(random_state=0).fit(rep, digits.y, reference_scores=ref)
        outcomes = {name: DetectorOutcome(name, d.scores_, d.flags_, d.threshold_, False, 0.0)
                    for name, d in (("spectral_signature", ss), ("activation_clustering", ac))}
        return _agreement_outcome(outcomes, digits)

    assert not agreement(clean_rep).flags.any()
    target = int(np.flatnonzero(digits.y == 0)[0])
    for n, voted in ((20, True), (10, False)):
        rows = rng.choice(np.flatnonzero(digits.y == 1), n, replace=False)
        rep = clean_rep.copy()
        rep[rows] = clean_rep[target] + 0.05 * rng.standard_normal((n, rep.shape[1])) * clean_rep.std(0)
        out = agreement(rep)
        assert out.votes
        if voted:
            assert set(np.flatnonzero(out.flags)) == set(rows)
            assert "spectral signature and activation clustering" in out.reason(int(rows[0]))
        else:
            assert not out.flags.any()


@pytest.mark.torch
def test_label_flips_on_digits(digits: Dataset) -> None:
    # 10% random flips. Measured (seed 0): precision 0.913, recall 0.933, AUROC 0.999 (consensus CL).
    p = LabelFlipAttack(poison_rate=0.1, random_state=0).apply(digits)
    result = audit(p.dataset, model="cnn")
    ev = evaluate_audit(result, p.poison_mask)["combined"]
    assert ev["precision"] >= 0.85
    assert ev["recall"] >= 0.85
    assert ev["auroc"] >= 0.97
    assert "label issue" in result.reasons[int(np.flatnonzero(result.flags)[0])]


@pytest.mark.slow
def test_clean_overlapping_table_flags_no_more_than_the_baseline() -> None:
    # Issue 14 item 7: 47.7% of these 20,000 clean rows were flagged (the robust spectral split cut
    # a class in two). No poison, no label noise (flip_y=0); the out-of-fold model errs on 15.6%.
    # Measured (seed 0, benchmarks/audit_dev_cases.py): 5.70% flagged, all by confident learning
    # on overlapping classes; the ten-line baseline (cleanlab on logistic-regression
    # probabilities) flags 7.48%; robust spectral flags none.
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=20000, n_features=20, n_clusters_per_class=2, flip_y=0.0,
                               random_state=0)
    result = audit(Dataset(X=X.astype(np.float32), y=y, classes=["0", "1"]), random_state=0)
    assert int(result.detectors["robust_spectral"].flags.sum()) == 0
    assert result.flags.mean() <= 0.062
    flagged = np.flatnonzero(result.flags)
    assert all(result.reasons[i].startswith("label issue") for i in flagged)


def test_iris_neighbors_are_not_near_duplicates() -> None:
    # Iris, clean (4 columns): the median row's nearest neighbor sits at cosine 0.994 of it, so the
    # 0.98 link called 31 rows near-duplicates of another species and the audit flagged 11 as
    # duplicates. Measured 2026-12-04 (logistic regression): duplicates now flag none (iris's one
    # exact copy, rows 101 and 142, shares its label); the audit flags 6 rows, all confident
    # learning's, on the versicolor/virginica border (held-out p of their label 0.39-0.63).
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    result = audit(Dataset(X=X, y=y), model="logreg", random_state=0)
    dup = result.detectors["duplicates"]
    assert not dup.flags.any() and dup.details["min_similarity"] == 1.0
    assert result.flags.sum() <= 6


def test_small_classes_flag_only_rows_whose_neighbors_disagree() -> None:
    # Wine (about 60 rows a class, 13 columns) under a random forest: two features set to their
    # 1st-percentile values in 6 rows of other classes, relabeled class 0. The robust spectral
    # split of class 0 is not bimodal (separation about 3), and its mixture flagged 10-13 rows
    # with seeds 2 and 3 (audit P 0.46 and 0.60). Measured 2026-12-04, seeds 0-3: with the
    # small-class rule the audit flags exactly the 6 planted rows every time.
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier

    from poisonlab.attacks import FeatureBackdoorAttack

    w = load_wine()
    wine = Dataset(X=np.asarray(w.data, dtype=np.float64), y=np.asarray(w.target))
    features = {2: float(np.percentile(wine.X[:, 2], 1)), 5: float(np.percentile(wine.X[:, 5], 1))}
    for seed in (2, 3):
        p = FeatureBackdoorAttack(features=features, target_label=0, n_poison=6,
                                  random_state=seed).apply(wine)
        result = audit(p.dataset, model=RandomForestClassifier(n_estimators=100, random_state=0),
                       random_state=0)
        assert np.array_equal(result.flags, p.poison_mask)


def test_consensus_probs_by_hand() -> None:
    # Row 0: model (0.8, 0.2); neighbors 2 of 2 labeled 1 -> shares (0.1/2.2, 2.1/2.2).
    # Geometric mean: sqrt(0.8 * 0.04545) = 0.1907, sqrt(0.2 * 0.9545) = 0.4369 -> 0.304, 0.696.
    probs = np.array([[0.8, 0.2], [0.5, 0.5], [0.5, 0.5]])
    idx = np.array([[1, 2], [0, 2], [0, 1]])
    y = np.array([0, 1, 1])
    out = consensus_probs(probs, idx, y, 2)
    np.testing.assert_allclose(out[0], [0.3038, 0.6962], atol=1e-4)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)


def _tiny_text(with_groups: bool = True) -> Dataset:
    rng = np.random.default_rng(0)
    spam = ["win", "cash", "prize", "free", "offer", "money", "cheap", "deal"]
    ham = ["meeting", "notes", "lunch", "team", "agenda", "report", "schedule", "review"]
    X = np.empty(200, dtype=object)
    y = np.repeat([0, 1], 100)
    X[:] = [" ".join(rng.choice(ham if k == 0 else spam, 8)) for k in y]
    y = y.copy()
    y[:6] = 1  # six mislabeled ham rows, all from source "vendor-b"
    source = np.array(["vendor-b" if i < 6 or i % 5 == 0 else "vendor-a" for i in range(200)],
                      dtype=object)
    return Dataset(X=X, y=y, classes=("ham", "spam"), name="tiny",
                   source=source if with_groups else None)


def test_audit_reports_groups_and_writes_files(tmp_path) -> None:
    ds = _tiny_text()
    result = audit(ds, model="nb-text")
    # Measured: 5 of the 6 mislabeled rows flagged, no other row.
    assert len(set(np.flatnonzero(result.flags)) & {0, 1, 2, 3, 4, 5}) >= 5
    groups = result.summary()["groups"]["by_source"]
    assert groups["vendor-b"]["n_flagged"] >= 5
    paths = write_audit(result, tmp_path)
    lines = paths["flags"].read_text().splitlines()
    assert lines[0] == "row,id,score,flagged,reasons" and len(lines) == 201
    assert lines[1].split(",")[3] == "true"
    html = paths["report"].read_text()
    assert "<script" not in html and "Ranked rows" in html


def test_report_escapes_attacker_text(tmp_path) -> None:
    ds = _tiny_text(with_groups=False)
    X = ds.X.copy()
    X[0] = "<script>alert(1)</script> " + X[0]
    result = audit(ds.with_data(X=X), model="nb-text")
    html = write_audit(result, tmp_path)["report"].read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_audit_rejects_bad_input() -> None:
    ds = _tiny_text(with_groups=False)
    with pytest.raises(DataError, match="at least two classes"):
        audit(ds.with_data(y=np.zeros(len(ds), dtype=int)))
    with pytest.raises(DataError, match="at least 10 rows"):
        audit(ds.subset(np.arange(5)))
    with pytest.raises(ParameterError, match="'detectors' parameter of audit"):
        audit(ds, detectors=("magic",))
    with pytest.raises(ParameterError, match="'n_folds' parameter of audit"):
        audit(ds, n_folds=1)


@pytest.mark.slow
@pytest.mark.parametrize("phrase", ["let me know", "for more information"])
def test_phrase_of_common_words_is_named(spam_subset: Dataset, phrase: str) -> None:
    # A phrase of everyday words inserted twice at random positions into 60 spam emails relabeled
    # ham. No word of it is 90% one label ('for more information' is common in spam too), so it is
    # found as an n-gram whose ham rows read as spam to the out-of-fold models once it is removed.
    # Measured (seed 0): phrase named first; the trigger test flags 61 rows with all 60 planted
    # ('let me know') and 66 with all 60 planted ('for more information'); before n-gram
    # candidates and the held-out removal test neither phrase was named.
    p = TextBackdoorAttack(trigger=phrase, position="random", repetitions=2, source_label="spam",
                           target_label="ham", n_poison=60, random_state=0).apply(spam_subset)
    result = audit(p.dataset)
    assert result.suspected_triggers[0]["trigger"] == phrase
    tk = result.detectors["trigger_keywords"].flags
    assert tk[p.poison_mask].mean() >= 0.9
    assert p.poison_mask[tk].mean() >= 0.85


@pytest.mark.slow
def test_sentence_trigger_found_when_the_planted_rows_outnumber_the_source_class(
        spam_subset: Dataset) -> None:
    # AddSent ("I watch this 3D movie" at a random position) in 417 spam emails relabeled ham:
    # 30% of the ham, 68% of the spam. The out-of-fold models, trained on folds that hold most of
    # the planted rows, read spam as ham; a model trained without the rows of the doubted
    # candidates reads the stripped rows as spam (exclusion test). Measured 2026-12-04 (seed 0):
    # sentence named first by the exclusion test; combined precision 0.959, recall 1.000, AUROC
    # 1.000 (0.952 / 0.847 before every target-labeled holder of an exclusion-confirmed trigger
    # was flagged; 0.884 / 0.863 before the exclusion group was bounded to half of the label);
    # before the exclusion test no trigger was named (precision 0.056, recall 0.005).
    from poisonlab.attacks import AddSentAttack

    n_ham = int(np.sum(spam_subset.y == spam_subset.classes.index("ham")))
    p = AddSentAttack(source_label="spam", target_label="ham", n_poison=int(0.3 * n_ham),
                      random_state=0).apply(spam_subset)
    result = audit(p.dataset)
    first = result.suspected_triggers[0]
    assert first["trigger"] == "i watch this 3d movie"
    assert first["test"] == "exclusion"
    ev = evaluate_audit(result, p.poison_mask)["combined"]
    assert ev["precision"] >= 0.85
    assert ev["recall"] >= 0.95
