"""The sentence-embedding text models: the vectors are WordLlama's, cached by content, the specs
train and save like the others, and a missing package is one clear error."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from poisonlab.data import Dataset
from poisonlab.exceptions import MissingExtraError
from poisonlab.models import embed, make_model
from poisonlab.models.embed import SentenceEmbedder
from poisonlab.models.io import load_model, save_model


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POISONLAB_CACHE", str(tmp_path / "cache"))
    embed._MEMORY.clear()


def test_vectors_are_wordllamas_own(spamassassin: Dataset) -> None:
    import wordllama
    from wordllama import WordLlama

    texts = [str(t)[:2000] for t in spamassassin.X[:64]]
    reference = WordLlama.load(config="l2_supercat", dim=256, disable_download=True,
                               cache_dir=Path(wordllama.__file__).parent).embed(texts)
    ours = SentenceEmbedder(max_tokens=10**9, cache=False).fit(texts).transform(texts)
    assert ours.shape == (64, 256) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)


def test_the_cache_gives_back_the_same_vectors(tmp_path: Path, spamassassin: Dataset) -> None:
    texts = [str(t) for t in spamassassin.X[:300]] + ["same", "same", ""]
    first = SentenceEmbedder().fit(texts).transform(texts)
    assert (tmp_path / "cache" / "embeddings.sqlite").is_file()
    embed._MEMORY.clear()
    again = SentenceEmbedder().transform(texts)          # from disk
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first[-3], first[-2])
    assert not first[-1].any()                            # an empty text embeds to zeros
    cut = SentenceEmbedder(max_tokens=4, cache=False).transform(texts[:5])
    assert not np.allclose(cut, first[:5])                # another max_tokens, another key


@pytest.mark.slow
def test_embedding_specs_train_and_round_trip(tmp_path: Path, spamassassin: Dataset) -> None:
    rng = np.random.default_rng(0)
    rows = rng.choice(len(spamassassin), 1500, replace=False)
    data = spamassassin.subset(rows)
    train, test = data.subset(range(1000)), data.subset(range(1000, 1500))
    # measured 2026-12-03 (this split, 1000 train / 500 test): embed-text 0.954, embed-mlp-text 0.958
    # (logreg-text and nb-text 0.970 on the same split)
    for spec, floor in [("embed-text", 0.93), ("embed-mlp-text", 0.93)]:
        model = make_model(spec, random_state=0).fit(train.X, train.y, n_classes=2)
        accuracy = float(np.mean(model.predict(test.X) == test.y))
        assert accuracy >= floor, (spec, accuracy)
        path = save_model(model, tmp_path / spec, classes=data.classes, spec=spec)
        saved = load_model(path)      # through the allow-list: no pickle, no code
        np.testing.assert_allclose(saved.model.predict_proba(test.X[:50]), model.predict_proba(test.X[:50]))
        assert model.features(test.X[:5]).shape == (5, 256)


def test_without_the_package_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embed, "_LOADED", {})
    monkeypatch.setitem(sys.modules, "wordllama", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'poisonlab\[embed\]'"):
        SentenceEmbedder().fit(["a text"])
