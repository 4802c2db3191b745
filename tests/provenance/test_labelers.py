"""Labeler reliability: Dawid-Skene, CROWDLAB, the targeted-flip test, annotation files, bad input.

Quality floors are measured on real data (scikit-learn's breast cancer and wine sets, true labels as
the truth, out-of-fold probabilities of a logistic regression) with simulated annotators
(tests/provenance/labelers_helpers.py), on 2026-12-03.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from labelers_helpers import oof_probs, simulate
from sklearn.datasets import load_breast_cancer, load_wine
from threadpoolctl import threadpool_limits

from poisonlab.api.labelers import labelers
from poisonlab.data import Dataset, dataset_from_arrays
from poisonlab.exceptions import DataError, ParameterError
from poisonlab.provenance import (
    AnnotationColumns,
    Annotations,
    adjust_p_values,
    contributions_by_group,
    dawid_skene,
    flip_test,
    labeler_reliability,
    majority_vote,
    read_annotations,
    wilson_interval,
)
from poisonlab.provenance.annotations import MISSING
from poisonlab.provenance.labelers import group_findings


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    b = load_breast_cancer()
    with threadpool_limits(1):
        return b.data, b.target, oof_probs(b.data, b.target)


@pytest.fixture(scope="module")
def wine() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w = load_wine()
    with threadpool_limits(1):
        return w.data, w.target, oof_probs(w.data, w.target)


# ---------------------------------------------------------------------------------- statistics
def test_holm_and_bh_hand_worked() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # Holm: sorted 0.005*4, 0.01*3, 0.03*2, 0.04*1, then a running maximum
    assert adjust_p_values(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: sorted 0.005*4/1, 0.01*4/2, 0.03*4/3, 0.04*4/4, then a running minimum from the top
    assert adjust_p_values(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    # Holm is monotone: 0.9 * 1 is lifted to the 1.0 of the smaller p-value before it
    assert adjust_p_values(np.array([0.6, 0.9]), "holm") == pytest.approx([1.0, 1.0])
    with pytest.raises(ParameterError, match="'correction'"):
        adjust_p_values(p, "bonferroni")
    with pytest.raises(ParameterError, match=r"\[0, 1\]"):
        adjust_p_values(np.array([0.5, 1.5]))


def test_wilson_hand_worked() -> None:
    low, high = wilson_interval(np.array([0, 5, 0]), np.array([10, 10, 0]))
    # Brown, Cai and DasGupta (2001): 0 of 10 -> [0, 0.2775]; 5 of 10 -> [0.2366, 0.7634]
    assert low == pytest.approx([0.0, 0.2366, 0.0], abs=1e-4)
    assert high == pytest.approx([0.2775, 0.7634, 1.0], abs=1e-4)


def test_majority_vote_ties_go_to_the_model() -> None:
    labels = np.array([[0, 1, MISSING], [1, 1, 0], [MISSING, MISSING, MISSING], [0, 1, MISSING]])
    probs = np.array([[0.2, 0.8], [0.5, 0.5], [0.5, 0.5], [0.9, 0.1]])
    vote, agreement = majority_vote(labels, 2, probs)
    assert vote.tolist() == [1, 1, MISSING, 0]
    assert agreement[:2] == pytest.approx([0.5, 2 / 3]) and np.isnan(agreement[2])
    assert majority_vote(labels, 2)[0].tolist() == [0, 1, MISSING, 0]  # without a model: the lower class


# ---------------------------------------------------------------------------------- Dawid-Skene
def test_dawid_skene_recovers_known_confusion_matrices() -> None:
    """Labels drawn from the Dawid-Skene model itself: two good annotators, three poor ones (one with a
    structured confusion matrix); EM recovers the matrices and the prior, and beats the majority vote."""
    rng = np.random.default_rng(0)
    n, k, m = 3000, 3, 5
    truth = rng.choice(k, n, p=[0.5, 0.3, 0.2])
    conf = np.zeros((m, k, k))
    for a, acc in enumerate([0.95, 0.9, 0.55, 0.55, 0.55]):
        conf[a] = np.full((k, k), (1 - acc) / (k - 1))
        np.fill_diagonal(conf[a], acc)
    conf[2] = [[0.6, 0.3, 0.1], [0.1, 0.6, 0.3], [0.3, 0.1, 0.6]]
    u = rng.random((n, m, 1))
    labels = (u > np.cumsum(conf[np.arange(m)[None, :], truth[:, None]], axis=2)).sum(axis=2)
    result = dawid_skene(labels, k)
    assert result.converged
    # measured 2026-12-03: largest cell error 0.034, prior within 0.008, accuracy 0.972 vs 0.926
    assert np.abs(result.confusion - conf).max() < 0.05
    assert result.class_prior == pytest.approx([0.5, 0.3, 0.2], abs=0.02)
    assert np.mean(result.labels == truth) > 0.96
    assert np.mean(result.labels == truth) > np.mean(majority_vote(labels, k)[0] == truth) + 0.03


def test_dawid_skene_learns_an_inverting_annotator() -> None:
    """Two annotators always right, one always wrong: the wrong one's matrix is the swap."""
    truth = np.arange(40) % 2
    labels = np.column_stack([truth, truth, 1 - truth])
    result = dawid_skene(labels, 2, smoothing=0.0)
    assert result.labels.tolist() == truth.tolist()
    assert result.confusion[2] == pytest.approx(np.array([[0.0, 1.0], [1.0, 0.0]]), abs=1e-9)
    assert result.confusion[0] == pytest.approx(np.eye(2), abs=1e-9)
    assert result.class_prior == pytest.approx([0.5, 0.5])


def test_dawid_skene_rows_without_labels_get_the_prior() -> None:
    labels = np.array([[0, 0], [1, 1], [MISSING, MISSING], [0, 0]])
    result = dawid_skene(labels, 2)
    assert result.labels[2] == MISSING
    assert result.posterior[2] == pytest.approx(result.class_prior)
    with pytest.raises(ParameterError, match="'labels'"):
        dawid_skene(np.array([[0, 2]]), 2)
    with pytest.raises(DataError, match="no labels"):
        dawid_skene(np.full((3, 2), MISSING), 2)


# ---------------------------------------------------------------------------------- flip test
def test_flip_test_hand_worked_counts() -> None:
    """Two-class counts worked by hand: the flipper's 1->0 cell (30 of 100) against the others'
    (5 of 200) and its own 0->1 cell (5 of 100)."""
    counts = np.array([[[95, 5], [30, 70]],      # flipper
                       [[97, 3], [2, 98]],       # honest
                       [[98, 2], [3, 97]]])      # honest
    from scipy.stats import fisher_exact

    test = flip_test(counts, alpha=0.01)
    p_others = fisher_exact([[30, 70], [5, 195]], alternative="greater")[1]
    p_own = fisher_exact([[30, 70], [5, 95]], alternative="greater")[1]
    assert test.p_others[0, 1, 0] == pytest.approx(p_others)
    assert test.p_own[0, 1, 0] == pytest.approx(p_own)
    assert test.p_value[0, 1, 0] == pytest.approx(max(p_others, p_own))
    assert test.rate[0, 1, 0] == pytest.approx(0.3) and test.others_rate[0, 1, 0] == pytest.approx(0.025)
    assert test.called[0, 1, 0] and test.called.sum() == 1
    assert (test.p_adjusted >= test.p_value - 1e-15).all()


def test_flipper_is_called_and_honest_annotators_are_not(cancer: tuple[np.ndarray, ...]) -> None:
    """20 seeds, 5 honest annotators at 5-15% uniform noise (3 labels a row) and one flipper with 200
    labels who calls 40% of the benign rows malignant."""
    _, truth, probs = cancer
    false_alarms, called, precision, recall = 0, 0, [], []
    for seed in range(20):
        ann, flipped = simulate(truth, 2, seed, classes=("malignant", "benign"))
        report = labeler_reliability(ann, probs)
        table = {a["annotator"]: a for a in report.annotator_table()}
        false_alarms += sum(table[f"honest{m}"]["verdict"] == "suspect" for m in range(5))
        flipper = table["flipper"]
        called += flipper["verdict"] == "suspect" and flipper["suspect_cell"] == "benign->malignant"
        rows = report.suspect_rows(5)
        precision.append(flipped[rows].mean() if len(rows) else 0.0)
        recall.append(flipped[rows].sum() / flipped.sum())
    # measured 2026-12-03: 0 false alarms of 100, 20 of 20 called, rows precision >= 0.81 (mean 0.90),
    # recall >= 0.97 (mean 0.996)
    assert false_alarms == 0
    assert called == 20
    assert min(precision) > 0.75 and np.mean(precision) > 0.85
    assert min(recall) > 0.9


def test_noisy_honest_annotators_are_not_called(cancer: tuple[np.ndarray, ...]) -> None:
    """Honest annotators up to 30% uniform noise: worse, not suspect."""
    _, truth, probs = cancer
    false_alarms = 0
    for seed in range(20):
        ann, _ = simulate(truth, 2, seed, honest_errors=(0.05, 0.1, 0.15, 0.25, 0.3), flipper_labels=0)
        report = labeler_reliability(ann, probs)
        false_alarms += sum(a["verdict"] == "suspect" for a in report.annotator_table())
        quality = report.annotator_quality()
        assert quality[4] < quality[0]  # the 30% annotator ranks below the 5% one
    assert false_alarms == 0  # measured 2026-12-03: 0 of 120


def test_three_classes_names_the_cell(wine: tuple[np.ndarray, ...]) -> None:
    _, truth, probs = wine
    called = 0
    for seed in range(10):
        ann, _ = simulate(truth, 3, seed, flipper_labels=120, flip_from=0, flip_to=2, flip_share=0.5,
                          classes=("a", "b", "c"))
        table = {a["annotator"]: a for a in labeler_reliability(ann, probs).annotator_table()}
        called += table["flipper"]["suspect_cell"] == "a->c"
        assert all(table[f"honest{m}"]["verdict"] == "ok" for m in range(5))
    assert called == 10  # measured 2026-12-03: 20 of 20 seeds


def test_consensus_methods_side_by_side(cancer: tuple[np.ndarray, ...]) -> None:
    _, truth, probs = cancer
    ann, _ = simulate(truth, 2, 0, classes=("malignant", "benign"))
    report = labeler_reliability(ann, probs)
    acc = {name: float(np.mean(labels == truth)) for name, labels in
           (("crowdlab", report.crowdlab.labels), ("dawid_skene", report.dawid_skene.labels),
            ("majority", report.majority))}
    # measured 2026-12-03 over 20 seeds: CROWDLAB 0.984-0.989, Dawid-Skene 0.958-0.98, majority 0.967-0.985
    assert acc["crowdlab"] > 0.975 and acc["dawid_skene"] > 0.95 and acc["majority"] > 0.95
    assert report.consensus_method == "crowdlab"
    summary = report.summary()
    assert set(summary["consensus"]) == {"crowdlab", "dawid_skene", "majority_vote"}
    assert summary["n_suspect"] == 1 and summary["suspects"][0].startswith("annotator flipper: labels benign")
    flipper = next(a for a in summary["annotators"] if a["annotator"] == "flipper")
    conf = flipper["confusion"]
    assert np.array(conf["counts"]).sum() == flipper["n_labels"]
    assert all(lo <= r <= hi for rr, ll, hh in zip(conf["rates"], conf["low"], conf["high"], strict=True)
               for r, lo, hi in zip(rr, ll, hh, strict=True))
    json.dumps(summary)


def test_without_model_probabilities(cancer: tuple[np.ndarray, ...]) -> None:
    _, truth, _ = cancer
    ann, _ = simulate(truth, 2, 3)
    report = labeler_reliability(ann)
    assert report.crowdlab is None and report.consensus_method == "dawid_skene"
    table = {a["annotator"]: a for a in report.annotator_table()}
    assert table["flipper"]["verdict"] == "suspect"  # measured 2026-12-03: 20 of 20 seeds, 0 false alarms
    assert all(table[f"honest{m}"]["verdict"] == "ok" for m in range(5))


# ---------------------------------------------------------------------------------- annotation files
def _dataset(n: int = 6) -> Dataset:
    return Dataset(X=np.arange(2 * n, dtype=float).reshape(n, 2), y=np.arange(n) % 2, classes=("ham", "spam"),
                   ids=np.array([f"r{i}" for i in range(n)], dtype=object), name="mail")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_long_and_wide_files_read_alike(tmp_path: Path, suffix: str) -> None:
    ds = _dataset()
    long = pd.DataFrame({"row": ["r0", "r0", "r1", "r2", "r5"], "annotator": ["ann", "bob", "ann", "bob", "ann"],
                         "label": ["ham", "spam", "spam", "ham", "spam"]})
    wide = pd.DataFrame({"id": ["r0", "r1", "r2", "r5"], "ann": ["ham", "spam", None, "spam"],
                         "bob": ["spam", None, "ham", None]})
    for frame, name in ((long, "long"), (wide, "wide")):
        path = tmp_path / f"{name}{suffix}"
        if suffix == ".csv":
            frame.fillna("").to_csv(path, index=False)
        elif suffix == ".jsonl":
            frame.to_json(path, orient="records", lines=True)
        else:
            frame.to_parquet(path)
        ann = read_annotations(path, ds)
        assert ann.layout == name and ann.annotators == ("ann", "bob") and ann.classes == ("ham", "spam")
        assert ann.labels.tolist() == [[0, 1], [1, MISSING], [MISSING, 0], [MISSING, MISSING],
                                       [MISSING, MISSING], [1, MISSING]]


def test_wide_without_ids_is_positional() -> None:
    ds = _dataset(3)
    ann = read_annotations({"ann": ["ham", "", "spam"], "bob": [None, "spam", "spam"]}, ds)
    assert ann.labels.tolist() == [[0, MISSING], [MISSING, 1], [1, 1]]
    with pytest.raises(DataError, match="the table has 2 rows but mail has 3"):
        read_annotations({"ann": ["ham", "spam"]}, ds)


def test_bad_annotation_tables() -> None:
    ds = _dataset()
    with pytest.raises(DataError, match=r"record 2 has the label 'spma', which is not a class of the data; "
                                        r"classes are \['ham', 'spam'\]"):
        read_annotations({"row": ["r0", "r1"], "annotator": ["a", "a"], "label": ["ham", "spma"]}, ds)
    with pytest.raises(DataError, match=r"2 of 3 labels name row ids that are not ids of mail \(first: 'x1', 'x2'\)"):
        read_annotations({"row": ["x1", "r1", "x2"], "annotator": ["a", "a", "a"],
                          "label": ["ham", "ham", "ham"]}, ds)
    with pytest.raises(DataError, match="annotator 'a' labels row 'r1' twice"):
        read_annotations({"row": ["r1", "r1"], "annotator": ["a", "a"], "label": ["ham", "spam"]}, ds)
    with pytest.raises(DataError, match="record 1 has no annotator"):
        read_annotations({"row": ["r1"], "annotator": [""], "label": ["ham"]}, ds)
    with pytest.raises(DataError, match="no labels"):
        read_annotations({"row": ["r1"], "annotator": ["a"], "label": [""]}, ds)
    with pytest.raises(DataError, match="no column 'who'"):
        read_annotations({"row": ["r1"], "annotator": ["a"], "label": ["ham"]}, ds,
                         columns=AnnotationColumns(annotator="who"))
    with pytest.raises(DataError, match="no such file"):
        read_annotations("/nonexistent/ann.csv", ds)


def test_unlabelled_data_takes_the_classes_of_the_annotations() -> None:
    from poisonlab.data.readers import UNLABELLED

    ds = Dataset(X=np.zeros((3, 1)), y=np.zeros(3, dtype=np.int64), classes=(UNLABELLED,))
    ann = read_annotations({"row": ["0", "1", "2"], "annotator": ["a", "a", "b"], "label": ["dog", "cat", "dog"]},
                           ds)
    assert ann.classes == ("cat", "dog") and ann.labels[:, 0].tolist() == [1, 0, MISSING]


def test_one_label_annotators_and_unlabelled_rows_are_sane(cancer: tuple[np.ndarray, ...]) -> None:
    """An annotator with one label is reported (verdict ok: too few labels to call); rows no one
    labelled are left out of the consensus and counted."""
    _, truth, probs = cancer
    ann, _ = simulate(truth, 2, 1)
    labels = ann.labels.copy()
    labels[:20] = MISSING
    labels = np.column_stack([labels, np.full(len(labels), MISSING)])
    labels[30, -1] = 1 - truth[30]
    ann = Annotations(labels=labels, annotators=(*ann.annotators, "once"), classes=ann.classes, ids=ann.ids)
    report = labeler_reliability(ann, probs)
    table = {a["annotator"]: a for a in report.annotator_table()}
    assert table["once"]["n_labels"] == 1 and table["once"]["verdict"] == "ok"
    assert (report.consensus[:20] == MISSING).all() and np.isnan(report.consensus_quality[:20]).all()
    summary = report.summary()
    assert summary["n_rows_unlabelled"] == 20 and any("20 rows have no label" in n for n in summary["notes"])
    assert any("fewer than 10 labels" in n for n in summary["notes"])


# ---------------------------------------------------------------------------------- the api
def test_labelers_api_writes_the_result_set(tmp_path: Path, cancer: tuple[np.ndarray, ...]) -> None:
    X, truth, _ = cancer
    ann, flipped = simulate(truth, 2, 4, classes=("malignant", "benign"))
    rows, cols = np.nonzero(ann.labels != MISSING)
    long = pd.DataFrame({"row": [str(i) for i in rows], "annotator": [ann.annotators[c] for c in cols],
                         "label": [ann.classes[ann.labels[i, c]] for i, c in zip(rows, cols, strict=True)]})
    with threadpool_limits(1):
        result = labelers(X, long)
    assert result.model_spec == "logreg" and [a["annotator"] for a in result.suspects] == ["flipper"]
    assert result.findings[0].startswith("annotator flipper: labels benign as malignant")
    paths = result.save(tmp_path / "out")
    assert set(paths) == {"annotators", "consensus", "review", "summary", "report"}
    annotators = pd.read_csv(paths["annotators"])
    assert list(annotators.columns[:6]) == ["annotator", "n_labels", "quality", "verdict", "suspect_cell", "p_value"]
    assert annotators.loc[0, "annotator"] == "flipper" and annotators.loc[0, "suspect_cell"] == "benign->malignant"
    assert (annotators["verdict"] == "ok").sum() == 5
    consensus = pd.read_csv(paths["consensus"])
    assert len(consensus) == len(truth)
    assert np.mean(consensus["consensus"].to_numpy() == np.array(ann.classes)[truth]) > 0.97
    review = pd.read_csv(paths["review"])
    assert set(review["annotator"]) == {"flipper"} and flipped[review["row"]].mean() > 0.75
    html = paths["report"].read_text()
    assert "benign-&gt;malignant" in html and "Rows to re-review" in html
    summary = json.loads(paths["summary"].read_text())
    assert summary["annotations"]["n_suspect"] == 1


def test_single_labelled_data_with_labelers_and_sources(cancer: tuple[np.ndarray, ...]) -> None:
    """One label per row, a labeler and a source column, and an audit's flags: the flag rate per group
    with Holm's correction, and the labeler's confusion matrix against the model."""
    X, truth, probs = cancer
    rng = np.random.default_rng(0)
    who = rng.choice(["ann", "bob", "cat", "dan"], len(truth))
    source = np.where(rng.random(len(truth)) < 0.2, "vendorB", "inhouse")
    y = truth.copy()
    flip = (who == "dan") & (truth == 1) & (rng.random(len(truth)) < 0.5)
    y[flip] = 0
    ds = dataset_from_arrays(X, y, classes=["malignant", "benign"])
    ds = Dataset(X=ds.X, y=ds.y, classes=ds.classes, labeler=who.astype(object), source=source.astype(object))
    flags = flip | (rng.random(len(truth)) < 0.03)
    result = labelers(ds, flags=flags, pred_probs=probs)
    assert result.reliability is not None and result.reliability.annotations.layout == "labeler"
    assert [a["annotator"] for a in result.suspects] == ["dan"]
    assert result.groups is not None and next(iter(result.groups["by_labeler"])) == "dan"
    dan = result.groups["by_labeler"]["dan"]
    assert dan["p_adjusted"] < 1e-9 and dan["p_adjusted"] >= dan["p_value"]
    assert any(f.startswith("labeler dan: 2") and "of flagged rows" in f for f in result.findings)
    assert not any(f.startswith("source") for f in result.findings)


def test_group_findings_wording() -> None:
    groups = contributions_by_group(_dataset_with_sources(), np.array([True] * 8 + [False] * 92))
    lines = group_findings(groups, alpha=0.01)
    assert lines == [f"source B: 8% of rows, 100% of flagged rows (8 of its 8 rows flagged), adjusted p = "
                     f"{groups['by_source']['B']['p_adjusted']:.2g}"]


def _dataset_with_sources() -> Dataset:
    source = np.array(["B"] * 8 + ["A"] * 92, dtype=object)
    return Dataset(X=np.zeros((100, 1)), y=np.arange(100) % 2, source=source)


def test_labelers_api_bad_input(cancer: tuple[np.ndarray, ...]) -> None:
    X, truth, probs = cancer
    ds = dataset_from_arrays(X, truth)
    with pytest.raises(DataError, match="nothing to judge"):
        labelers(ds)
    with pytest.raises(ParameterError, match="'pred_probs'"):
        labelers(ds, {"row": ["0", "1"], "annotator": ["a", "b"], "label": ["0", "1"]}, pred_probs=probs[:5])
    with pytest.raises(ParameterError, match="'alpha'"):
        labelers(ds, {"row": ["0"], "annotator": ["a"], "label": ["0"]}, alpha=2.0)
    with pytest.raises(ParameterError, match="'correction'"):
        labelers(ds, {"row": ["0", "1"], "annotator": ["a", "b"], "label": ["0", "1"]}, pred_probs=probs,
                 correction="sidak")


def test_hostile_names_are_escaped(tmp_path: Path, cancer: tuple[np.ndarray, ...]) -> None:
    """Annotator names come from the data: escaped in the report, formula-safe in the CSV files."""
    _, truth, probs = cancer
    ann, _ = simulate(truth, 2, 5, classes=("malignant", "benign"))
    names = (*ann.annotators[:-1], "=HYPERLINK(\"x\")<script>alert(1)</script>")
    ann = Annotations(labels=ann.labels, annotators=names, classes=ann.classes, ids=ann.ids)
    result = labelers(dataset_from_arrays(cancer[0], truth), ann, pred_probs=probs)
    paths = result.save(tmp_path / "out")
    html = paths["report"].read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    first = paths["annotators"].read_text().splitlines()[1]
    assert first.startswith("'=HYPERLINK") or first.startswith("\"'=HYPERLINK")
