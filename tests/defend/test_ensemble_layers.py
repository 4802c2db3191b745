"""The ensembles are models: saved by a defense, read back by the models layer alone, predicting the same.

``PartitionEnsemble`` and ``BaggingEnsemble`` live in :mod:`poisonlab.models.ensemble` (their
members, hashing and votes in :mod:`poisonlab.models.members`); :mod:`poisonlab.defend` trains and
measures them and re-exports them. These tests hold the three promises of that move: a folder a
defense saved loads through :func:`poisonlab.models.io.load_model` and predicts exactly like the
ensemble that was saved; reading it never imports a defense module; and the row digest the models
layer computes is the provenance content digest it copies.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from poisonlab.data import Dataset
from poisonlab.defend.bagging import defend_bagging
from poisonlab.defend.compare import DefenseResult, save_defense
from poisonlab.defend.partition import defend_partition
from poisonlab.models.ensemble import read_ensemble_folder
from poisonlab.models.io import load_model
from poisonlab.models.members import content_digests, predict_member
from poisonlab.provenance.hashing import hash_array, hash_text


@pytest.fixture(scope="module")
def digit_split(digits: Dataset) -> tuple[Dataset, Dataset]:
    return digits.split(test_size=0.3, random_state=0)


def _saved(result: DefenseResult, out: Path, classes: tuple[str, ...]) -> Path:
    """What ``poisonlab defend`` writes: ``out/model/`` (the ensemble folder) and ``out/summary.json``."""
    return Path(save_defense(result, out, classes=classes)["model_path"])


def test_partition_saved_by_defend_predicts_the_same(tmp_path: Path,
                                                     digit_split: tuple[Dataset, Dataset]) -> None:
    from poisonlab.defend import PartitionEnsemble as FromPackage
    from poisonlab.defend.partition import PartitionEnsemble as FromDefense
    from poisonlab.models.ensemble import PartitionEnsemble

    train, test = digit_split
    result = defend_partition(train, test=test, n_partitions=6)
    folder = _saved(result, tmp_path, train.classes)
    ensemble = result.model
    loaded = load_model(folder)
    assert loaded.spec == "partition:logreg" and loaded.classes == train.classes
    assert type(loaded.model) is PartitionEnsemble is FromDefense is FromPackage is type(ensemble)
    X = test.X
    np.testing.assert_array_equal(loaded.model.predict(X), ensemble.predict(X))
    np.testing.assert_array_equal(loaded.model.predict_proba(X), ensemble.predict_proba(X))
    for got, want in zip(loaded.model.certify(X), ensemble.certify(X), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(loaded.model.partition_sizes_, ensemble.partition_sizes_)

    read = read_ensemble_folder(folder)
    assert read.method == "partition" and read.n_classes == 10
    members = np.vstack([predict_member(m, X) for m in read.members])
    np.testing.assert_array_equal(members, ensemble.member_predictions(X))


def test_bagging_saved_by_defend_predicts_the_same(tmp_path: Path,
                                                   digit_split: tuple[Dataset, Dataset]) -> None:
    from poisonlab.defend import BaggingEnsemble as FromPackage
    from poisonlab.defend.bagging import BaggingEnsemble as FromDefense
    from poisonlab.models.ensemble import BaggingEnsemble

    train, test = digit_split
    result = defend_bagging(train, test=test, n_estimators=3, input_threshold=0.2)
    folder = _saved(result, tmp_path, train.classes)
    ensemble = result.model
    loaded = load_model(folder)
    assert loaded.spec == "bagging:logreg"
    assert type(loaded.model) is BaggingEnsemble is FromDefense is FromPackage is type(ensemble)
    X = test.X
    np.testing.assert_array_equal(loaded.model.predict(X), ensemble.predict(X))
    np.testing.assert_array_equal(loaded.model.predict_proba(X), ensemble.predict_proba(X))
    np.testing.assert_array_equal(loaded.model.disagreement(X), ensemble.disagreement(X))
    np.testing.assert_array_equal(loaded.model.flag_inputs(X), ensemble.flag_inputs(X))
    members = np.vstack([predict_member(m, X) for m in read_ensemble_folder(folder).members])
    np.testing.assert_array_equal(members, ensemble.member_predictions(X))


def _words(n: int, spam: tuple[str, ...]) -> Dataset:
    words = ["cash", "prize", "meeting", "noon", "pills", "lunch", "notes", "free", "project", "win"]
    rng = np.random.default_rng(0)
    X = np.empty(n, dtype=object)
    X[:] = [" ".join(rng.choice(words, size=4)) + f" n{i}" for i in range(n)]
    y = np.array([int(any(w in x.split() for w in spam)) for x in X])
    return Dataset(X=X, y=y, classes=("ham", "spam"), name="words")


def test_text_partition_with_shared_counts_round_trips(tmp_path: Path) -> None:
    # Twelve partitions of nb-text members, each with both classes: member_predictions takes the
    # SharedCounts path for every member, before and after the round trip.
    train = _words(240, ("cash", "prize"))
    result = defend_partition(train, model="nb-text", n_partitions=12)
    assert all(m.spec == "nb-text" for m in result.model.members_)
    folder = _saved(result, tmp_path, train.classes)
    loaded: Any = load_model(folder).model
    X = train.X
    np.testing.assert_array_equal(loaded.vote_counts(X), result.model.vote_counts(X))
    np.testing.assert_array_equal(loaded.certify(X)[1], result.model.certify(X)[1])


def test_members_missing_classes_round_trip(tmp_path: Path) -> None:
    # A member fitted on some of the classes (a one-class partition's constant model) kept integer
    # labels that index the ensemble's classes; the loader renumbered them 0..k-1 by position, so
    # after saving and loading the member voted for the wrong class.
    train = _words(240, ("cash", "prize", "pills", "free", "win"))  # mostly spam: one-class partitions
    result = defend_partition(train, model="nb-text", n_partitions=12)
    assert any(m.spec == "constant" for m in result.model.members_ if m is not None)
    loaded: Any = load_model(_saved(result, tmp_path, train.classes)).model
    np.testing.assert_array_equal(loaded.vote_counts(train.X), result.model.vote_counts(train.X))


def test_no_class_path_is_saved(tmp_path: Path, digit_split: tuple[Dataset, Dataset]) -> None:
    # A folder names its method, not a class: folders saved before the classes moved to
    # poisonlab.models.ensemble read the same as folders saved after.
    train, _ = digit_split
    folder = _saved(defend_partition(train, n_partitions=3), tmp_path, train.classes)
    manifest = json.loads((folder / "ensemble.json").read_text())
    assert manifest["method"] == "partition"
    for path in folder.iterdir():
        text = path.read_text() if path.suffix == ".json" else \
            zipfile.ZipFile(path).read("schema.json").decode()
        assert "Ensemble" not in text and "poisonlab.defend" not in text, path.name


def test_models_layer_reads_an_ensemble_without_the_defenses(
        tmp_path: Path, digit_split: tuple[Dataset, Dataset]) -> None:
    train, test = digit_split
    folder = _saved(defend_partition(train, n_partitions=4), tmp_path / "partition", train.classes)
    bagged = _saved(defend_bagging(train, n_estimators=2), tmp_path / "bagging", train.classes)
    np.save(tmp_path / "X.npy", test.X[:20])
    code = textwrap.dedent(f"""
        import sys
        import poisonlab
        before = sorted(m for m in sys.modules if m.startswith("poisonlab.defend"))
        import numpy as np
        import poisonlab.models.ensemble
        import poisonlab.models.members
        from poisonlab.models.io import load_model
        X = np.load({str(tmp_path / "X.npy")!r})
        for folder in ({str(folder)!r}, {str(bagged)!r}):
            load_model(folder).model.predict(X)
        after = sorted(m for m in sys.modules if m.startswith("poisonlab.defend"))
        print(before, after)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # `import poisonlab` imports the package poisonlab.defend (to make it callable), nothing below it.
    assert out.stdout.split() == ["['poisonlab.defend']", "['poisonlab.defend']"], out.stdout


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(), min_size=1, max_size=5))
def test_text_digest_is_the_provenance_digest(texts: list[str]) -> None:
    X = np.empty(len(texts) + 2, dtype=object)
    X[:] = [*texts, "e\u0301", "lone \ud800 surrogate"]
    assert content_digests(X) == [hash_text(x) for x in X]


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(st.sampled_from([np.dtype(t) for t in ("<f4", ">f4", "<f8", ">i8", "u1", "?", "<i2")]),
                  hnp.array_shapes(min_dims=1, max_dims=4, max_side=3)))
def test_array_digest_is_the_provenance_digest(X: np.ndarray) -> None:
    assert content_digests(X) == [hash_array(x) for x in X]
