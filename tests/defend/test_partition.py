"""Deep Partition Aggregation: content hashing, the certificate, and real insertions that test it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.neighbors import KNeighborsClassifier

from poisonlab.data import Dataset
from poisonlab.defend.partition import (
    PartitionEnsemble,
    assign_partitions,
    certified_accuracy,
    certified_radius,
    defend_partition,
    load_ensemble,
    median_certified_radius,
    vote_counts,
)
from poisonlab.exceptions import ModelError, ParameterError


@pytest.fixture(scope="module")
def digit_split(digits: Dataset) -> tuple[Dataset, Dataset]:
    return digits.split(test_size=0.3, random_state=0)


# ---------------------------------------------------------------------------------- reference
def test_certified_radius_hand_worked() -> None:
    counts = np.array([
        [5, 3, 0],  # c*=0; rivals 3 and 0 (no tie bonus above c*): (5-3)//2 = 1
        [3, 5, 0],  # c*=1; class 0 wins ties against it: (5-(3+1))//2 = 0
        [4, 4, 0],  # a tie goes to class 0: (4-4)//2 = 0
        [0, 0, 7],  # c*=2; both rivals get the tie bonus: (7-1)//2 = 3
        [0, 0, 0],  # nobody voted: class 0, radius 0
        [9, 0, 0],  # unanimous class 0: 9//2 = 4
    ])
    pred, radius = certified_radius(counts)
    assert pred.tolist() == [0, 1, 0, 2, 0, 0]
    assert radius.tolist() == [1, 0, 0, 3, 0, 4]


def test_vote_counts_skip_abstaining_members() -> None:
    P = np.array([[0, 1, -1], [0, 2, -1], [1, 2, -1]])
    assert vote_counts(P, 3).tolist() == [[2, 1, 0], [0, 1, 2], [0, 0, 0]]


def test_certified_accuracy_and_median() -> None:
    radius = np.array([0, 1, 2, 3, 5])
    correct = np.array([True, True, False, True, True])
    curve = certified_accuracy(radius, correct)
    assert [c["radius"] for c in curve] == [0, 1, 2, 3, 4, 5, 6]
    assert [c["accuracy"] for c in curve] == [0.8, 0.6, 0.4, 0.4, 0.2, 0.2, 0.0]
    # Scores with misclassified rows at -1: [0, 1, -1, 3, 5]; the median is 1.
    assert median_certified_radius(radius, correct) == 1
    assert median_certified_radius(radius, np.zeros(5, dtype=bool)) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=2, max_size=5))
def test_certificate_is_exact_for_vote_moves(votes: list[int]) -> None:
    """Moving r votes from the prediction to any rival never flips it; r+1 moves to the best
    rival always does (the bound is tight)."""
    counts = np.array([votes])
    (pred,), (r,) = certified_radius(counts)
    rivals = [c for c in range(len(votes)) if c != pred]
    for c in rivals:
        moved = counts.copy()
        moved[0, pred] -= r
        moved[0, c] += r
        assert certified_radius(moved)[0][0] == pred
    if counts[0, pred] >= r + 1:
        flipped = False
        for c in rivals:
            moved = counts.copy()
            moved[0, pred] -= r + 1
            moved[0, c] += r + 1
            flipped |= certified_radius(moved)[0][0] != pred
        assert flipped


# ---------------------------------------------------------------------------------- hashing
def test_partition_depends_on_content_not_position(digits: Dataset) -> None:
    X = digits.X[:300]
    parts = assign_partitions(X, 7)
    order = np.random.default_rng(0).permutation(len(X))
    extra = np.clip(X[:20] + 0.01, 0, 1)
    shuffled = assign_partitions(np.concatenate([X[order], extra]), 7)
    assert np.array_equal(shuffled[: len(X)], parts[order])
    assert set(parts.tolist()) == set(range(7))
    assert not np.array_equal(assign_partitions(X, 7, hash_seed=1), parts)


def test_text_partition_uses_nfc_content() -> None:
    X = np.array(["caf\u00e9 menu", "cafe\u0301 menu", "other"], dtype=object)
    parts = assign_partitions(X, 1000)
    assert parts[0] == parts[1]  # canonically equivalent spellings are one row's content


# ---------------------------------------------------------------------------------- the ensemble
def _near_copies(x: np.ndarray, k: int, targets: list[int], *, hash_seed: int = 0) -> list[np.ndarray]:
    """One slightly perturbed copy of ``x`` landing in each target partition (found by trying)."""
    found: dict[int, np.ndarray] = {}
    flat = x.reshape(-1)
    step = 0
    while len(found) < len(set(targets)):
        step += 1
        cand = flat.copy()
        cand[step % flat.size] += 1e-4 * (1 + step // flat.size)
        cand = cand.reshape(x.shape).astype(x.dtype)
        j = int(assign_partitions(cand[None], k, hash_seed=hash_seed)[0])
        if j in targets and j not in found:
            found[j] = cand
    return [found[j] for j in targets]


def _attack_one(train: Dataset, x: np.ndarray, label: int, k: int, targets: list[int],
                model: object, rng: np.random.Generator) -> int:
    """Insert one copy of ``x`` labelled ``label`` into each target partition, put every row in a
    new random position, retrain from scratch, and return the new prediction for ``x``."""
    rows = _near_copies(x, k, targets)
    X = np.concatenate([train.X, np.stack(rows)])
    y = np.concatenate([train.y, np.full(len(rows), label)])
    order = rng.permutation(len(X))
    refit = PartitionEnsemble(n_partitions=k, model=model, random_state=0).fit(
        X[order], y[order], n_classes=train.n_classes)
    return int(refit.predict(x[None])[0])


@pytest.mark.parametrize("base", ["logreg", "1nn"])
def test_inserted_rows_never_flip_a_certified_prediction(digit_split: tuple[Dataset, Dataset],
                                                         base: str) -> None:
    """The certificate test: for test digits certified at radius r, insert r poisoned rows (near
    copies of the digit labelled as its strongest rival), each into a different partition that voted
    for the prediction, retrain everything on the shuffled set, and check the prediction holds.
    With 1-nearest-neighbour base models each insertion really moves one vote, so r+1 insertions
    must flip every such digit whose radius is tight: the attack is not vacuous."""
    train, test = digit_split
    k = 11
    model = "logreg" if base == "logreg" else KNeighborsClassifier(n_neighbors=1)
    ensemble = PartitionEnsemble(n_partitions=k, model=model, random_state=0).fit(
        train.X, train.y, n_classes=train.n_classes)
    P = ensemble.member_predictions(test.X[:120])
    counts = vote_counts(P, train.n_classes)
    pred, radius = certified_radius(counts)
    rng = np.random.default_rng(1)
    chosen = [i for r in (1, 2, 3, 4) for i in np.flatnonzero(radius == r)[:1]]
    assert len(chosen) >= 3
    flipped_at_r_plus_1 = 0
    for i in chosen:
        c_star, r = int(pred[i]), int(radius[i])
        rival_score = counts[i] + (np.arange(train.n_classes) < c_star)
        rival_score[c_star] = -1
        rival = int(np.argmax(rival_score))
        voters = [int(j) for j in np.flatnonzero(P[:, i] == c_star)]
        assert _attack_one(train, test.X[i], rival, k, voters[:r], model, rng) == c_star
        if base == "1nn":
            flipped_at_r_plus_1 += _attack_one(train, test.X[i], rival, k, voters[: r + 1],
                                               model, rng) != c_star
    if base == "1nn":
        assert flipped_at_r_plus_1 == len(chosen)


def test_removed_rows_never_flip_a_certified_prediction(digit_split: tuple[Dataset, Dataset]) -> None:
    """Remove r training rows from r partitions that voted for the prediction (every row of the
    predicted class there, nearest first) and retrain: a prediction certified at r holds."""
    train, test = digit_split
    k = 11
    ensemble = PartitionEnsemble(n_partitions=k, random_state=0).fit(train.X, train.y, n_classes=10)
    P = ensemble.member_predictions(test.X[:60])
    pred, radius = certified_radius(vote_counts(P, 10))
    for i in [int(i) for r in (2, 3) for i in np.flatnonzero(radius == r)[:1]]:
        c_star, r = int(pred[i]), int(radius[i])
        voters = np.flatnonzero(P[:, i] == c_star)[:r]
        drop = []
        for j in voters:
            rows = np.flatnonzero((ensemble.partition_ == j) & (train.y == c_star))
            dist = np.abs(train.X[rows] - test.X[i]).reshape(len(rows), -1).sum(axis=1)
            drop.append(int(rows[np.argmin(dist)]))
        keep = np.setdiff1d(np.arange(len(train)), drop)
        refit = PartitionEnsemble(n_partitions=k, random_state=0).fit(train.X[keep], train.y[keep],
                                                                      n_classes=10)
        assert int(refit.predict(test.X[i: i + 1])[0]) == c_star


def test_untouched_partitions_train_identical_models(digit_split: tuple[Dataset, Dataset]) -> None:
    train, _ = digit_split
    a = PartitionEnsemble(n_partitions=5, random_state=3).fit(train.X, train.y, n_classes=10)
    order = np.random.default_rng(0).permutation(len(train))
    b = PartitionEnsemble(n_partitions=5, random_state=3).fit(train.X[order], train.y[order],
                                                              n_classes=10)
    np.testing.assert_array_equal(a.member_predictions(train.X), b.member_predictions(train.X))


def test_parallel_training_matches_serial(digit_split: tuple[Dataset, Dataset]) -> None:
    train, test = digit_split
    a = PartitionEnsemble(n_partitions=6, random_state=0).fit(train.X, train.y, n_classes=10)
    b = PartitionEnsemble(n_partitions=6, random_state=0, n_jobs=2).fit(train.X, train.y, n_classes=10)
    np.testing.assert_array_equal(a.vote_counts(test.X), b.vote_counts(test.X))


def test_quality_on_digits(digit_split: tuple[Dataset, Dataset]) -> None:
    train, test = digit_split
    result = defend_partition(train, test=test, n_partitions=10)
    s = result.summary
    # Measured 2026-11-22 (digits 70/30, seed 0, k=10, logreg per partition): clean accuracy 0.948,
    # median certified radius 4, certified accuracy 0.813 at radius 3.
    assert s["clean_accuracy"] >= 0.93
    assert s["median_certified_radius"] >= 3
    radii = [c["radius"] for c in result.certified or []]
    assert radii == sorted(radii) and radii[0] == 0
    assert result.certified is not None and result.certified[0]["accuracy"] == s["clean_accuracy"]


def test_text_ensemble_round_trip(tmp_path: Path, spam_split: tuple[Dataset, Dataset]) -> None:
    train, test = spam_split
    train = train.subset(np.random.default_rng(0).choice(len(train), 600, replace=False))
    ensemble = PartitionEnsemble(n_partitions=8, model="nb-text").fit(train.X, train.y, n_classes=2)
    assert all(m.spec == "nb-text" for m in ensemble.members_)  # both classes in every partition
    folder = ensemble.save(tmp_path / "model", classes=train.classes)
    saved = load_ensemble(folder)
    assert saved.classes == train.classes and saved.spec == "partition:nb-text"
    X = test.X[:200]
    np.testing.assert_array_equal(saved.model.vote_counts(X), ensemble.vote_counts(X))
    np.testing.assert_array_equal(saved.model.certify(X)[1], ensemble.certify(X)[1])


def test_shared_word_counts_predict_like_each_member(spam_split: tuple[Dataset, Dataset]) -> None:
    from poisonlab.defend.partition import SharedCounts

    train, test = spam_split
    rows = np.random.default_rng(0).choice(len(train), 900, replace=False)  # the corpus is sorted
    ensemble = PartitionEnsemble(n_partitions=12, model="nb-text").fit(
        train.X[rows], train.y[rows], n_classes=2)
    X = np.concatenate([test.X[:300], np.array(["", "zqxj zqxj", "FREE money!!!"], dtype=object)])
    shared = SharedCounts.for_members(ensemble.members_, X)
    assert shared is not None
    for member in ensemble.members_:
        assert shared.handles(member)
        np.testing.assert_array_equal(shared.predict(member), member.predict(X))


def test_load_refuses_member_paths_outside_the_folder(tmp_path: Path, digit_split: tuple[Dataset, Dataset]) -> None:
    import json

    train, _ = digit_split
    folder = PartitionEnsemble(n_partitions=3).fit(train.X, train.y, n_classes=10).save(
        tmp_path / "m", classes=train.classes)
    manifest = json.loads((folder / "ensemble.json").read_text())
    manifest["members"][0] = "../evil.skops"
    (folder / "ensemble.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="refusing"):
        load_ensemble(folder)
    with pytest.raises(ModelError, match="not an ensemble"):
        load_ensemble(tmp_path)


def test_parameter_errors(digit_split: tuple[Dataset, Dataset]) -> None:
    train, _ = digit_split
    with pytest.raises(ParameterError, match="n_partitions"):
        PartitionEnsemble(n_partitions=0).fit(train.X, train.y)
    with pytest.raises(ParameterError, match="does not take"):
        defend_partition(train, n_partition=5)


def test_dask_cluster_trains_the_same_ensemble(digit_split: tuple[Dataset, Dataset]) -> None:
    distributed = pytest.importorskip("distributed")
    train, test = digit_split
    serial = PartitionEnsemble(n_partitions=4).fit(train.X, train.y, n_classes=10)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        on_cluster = PartitionEnsemble(n_partitions=4, scheduler=cluster.scheduler_address).fit(
            train.X, train.y, n_classes=10)
    np.testing.assert_array_equal(on_cluster.vote_counts(test.X), serial.vote_counts(test.X))
