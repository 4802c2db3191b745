"""Helpers for the provenance tests: small datasets and data files written on the fly."""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from poisonlab.data import Dataset
from poisonlab.provenance import Manifest, create_manifest


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def text_dataset(texts: Sequence[str], labels: Sequence[str], *, ids: Sequence[str] | None = None,
                 sources: Sequence[str] | None = None,
                 labelers: Sequence[str] | None = None) -> Dataset:
    classes = tuple(sorted(set(labels)))
    X = np.empty(len(texts), dtype=object)
    X[:] = list(texts)
    return Dataset(
        X=X, y=np.array([classes.index(v) for v in labels], dtype=np.int64), classes=classes,
        ids=None if ids is None else np.array(ids, dtype=object),
        source=None if sources is None else np.array(sources, dtype=object),
        labeler=None if labelers is None else np.array(labelers, dtype=object),
    )


def manifest_of(texts: Sequence[str], labels: Sequence[str], **kwargs: Sequence[str] | None
                ) -> Manifest:
    return create_manifest(text_dataset(texts, labels, **kwargs))  # type: ignore[arg-type]


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def mail_rows(n: int = 12) -> list[list[str]]:
    """Rows of (id, text, label, source, labeler)."""
    words = ["invoice", "meeting", "prize", "lunch", "urgent", "report", "winner", "agenda"]
    return [[f"m{i:03d}", f"{words[i % 8]} {words[(3 * i) % 8]} number {i}",
             "spam" if i % 3 == 0 else "ham", f"feed-{i % 2}", f"ann-{i % 3}"] for i in range(n)]


MAIL_HEADER = ["id", "text", "label", "source", "labeler"]
