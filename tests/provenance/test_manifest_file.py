"""Manifest files: round trip, determinism, compactness, and every kind of bad manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from manifest_helpers import MAIL_HEADER, mail_rows, manifest_of, text_dataset, write_csv

from poisonlab import __version__
from poisonlab.data import Columns
from poisonlab.exceptions import DataError, ParameterError
from poisonlab.provenance import SCHEMA_VERSION, create_manifest, load_manifest


@pytest.fixture()
def mail(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "mail.csv", MAIL_HEADER, mail_rows(12))


@pytest.fixture()
def saved(tmp_path: Path, mail: Path) -> Path:
    m = create_manifest(mail, Columns(source="source", labeler="labeler"))
    return m.save(tmp_path / "mail.manifest.json")


def test_manifest_records_what_the_issue_asks_for(mail: Path, saved: Path) -> None:
    obj = json.loads(saved.read_text())
    assert obj["schema_version"] == SCHEMA_VERSION and obj["poisonlab_version"] == __version__
    assert obj["n_rows"] == 12 and len(obj["merkle_root"]) == 64
    import hashlib

    assert obj["data"]["sha256"] == hashlib.sha256(mail.read_bytes()).hexdigest()
    assert obj["data"]["md5"] == hashlib.md5(mail.read_bytes()).hexdigest()  # what DVC records
    assert obj["columns"] == {"label": "label", "text": "text", "features": None, "id": "id",
                              "source": "source", "labeler": "labeler"}
    assert obj["labels"]["names"] == ["ham", "spam"]
    assert obj["sources"] == ["feed-0", "feed-1"] and obj["labelers"] == ["ann-0", "ann-1", "ann-2"]
    assert obj["rows"]["id"] == [f"m{i:03d}" for i in range(12)]


def test_round_trip_and_deterministic_bytes(tmp_path: Path, mail: Path, saved: Path) -> None:
    m = load_manifest(saved)
    again = create_manifest(mail, Columns(source="source", labeler="labeler"))
    assert again.save(tmp_path / "again.json").read_bytes() == saved.read_bytes()
    assert m.merkle_root == again.merkle_root and m.ids == again.ids
    assert np.array_equal(m.content, again.content)
    assert list(m.row_labels()) == list(again.row_labels())
    assert list(m.row_sources()) == list(again.row_sources())  # type: ignore[arg-type]
    assert m.to_dict() == json.loads(saved.read_text())


def test_manifest_is_compact() -> None:
    n = 2000
    texts, labels = [f"row {i}" for i in range(n)], ["a", "b"] * (n // 2)
    size = len(json.dumps(manifest_of(texts, labels).to_dict()))
    assert size < n * 24 + 2000  # 16-byte digests in base64 plus 1-byte label codes
    dataset = text_dataset(texts, labels)
    assert create_manifest(dataset, digest_size=32).content.shape == (n, 32)
    with pytest.raises(ParameterError, match="digest_size"):
        create_manifest(dataset, digest_size=8)


def _edit(saved: Path, edit: object) -> Path:
    obj = json.loads(saved.read_text())
    edit(obj)  # type: ignore[operator]
    saved.write_text(json.dumps(obj))
    return saved


def test_truncated_manifest(saved: Path) -> None:
    raw = saved.read_bytes()
    for cut in (len(raw) // 2, len(raw) - 5, 10):
        saved.write_bytes(raw[:cut])
        with pytest.raises(DataError, match="truncated") as info:
            load_manifest(saved)
        assert str(info.value).startswith(str(saved)) and "\n" not in str(info.value)


def test_newer_schema_version(saved: Path) -> None:
    _edit(saved, lambda o: o.update(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(DataError, match=f"schema version {SCHEMA_VERSION + 1} is newer.*upgrade"):
        load_manifest(saved)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda o: o.update(format="something"), "not a poisonlab manifest"),
    (lambda o: o.update(schema_version="1"), "schema_version"),
    (lambda o: o.pop("n_rows"), "field 'n_rows' is missing"),
    (lambda o: o.update(n_rows=13), "holds 12 digests but n_rows is 13"),
    (lambda o: o["rows"].update(content=o["rows"]["content"][:-8]), "rows.content"),
    (lambda o: o["rows"].update(id=o["rows"]["id"][:-1]), "rows.id"),
    (lambda o: o["rows"]["label"].update(base64="AAEC"), "rows.label holds 3 codes"),
    (lambda o: o["labels"].update(names=["ham", "eggs"]), "digest of label 'eggs'"),
    (lambda o: o.update(merkle_root="0" * 64), "merkle_root does not match"),
    (lambda o: o["hashing"].update(digest_size=20), "unsupported hashing"),
    (lambda o: o.update(kind="audio"), "kind is 'audio'"),
])
def test_edited_or_corrupted_manifest(saved: Path, edit: object, message: str) -> None:
    _edit(saved, edit)
    with pytest.raises(DataError, match=message) as info:
        load_manifest(saved)
    assert "\n" not in str(info.value)


def test_edited_row_hash_breaks_the_merkle_root(saved: Path) -> None:
    import base64

    def flip(o: dict) -> None:  # type: ignore[type-arg]
        raw = bytearray(base64.b64decode(o["rows"]["content"]))
        raw[40] ^= 1
        o["rows"]["content"] = base64.b64encode(bytes(raw)).decode()

    _edit(saved, flip)
    with pytest.raises(DataError, match="merkle_root"):
        load_manifest(saved)
    assert load_manifest(saved, check=False).n_rows == 12


def test_not_json_and_missing(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_bytes(b"\xff\x00")
    with pytest.raises(DataError, match="not UTF-8"):
        load_manifest(tmp_path / "x.json")
    with pytest.raises(DataError, match="no such manifest"):
        load_manifest(tmp_path / "nope.json")


def test_rows_are_hashed_as_hash_text_and_hash_label_say() -> None:
    from poisonlab.provenance import hash_label, hash_text

    m = manifest_of(["café", "b"], ["x", "y"])
    assert m.content[0].tobytes() == hash_text("café")
    assert [bytes.fromhex(d) for d in m.to_dict()["labels"]["digests"]] == [
        hash_label("x"), hash_label("y")]
    # canonically equivalent text (NFC) gives the same manifest; any other change does not
    assert manifest_of(["cafe\u0301", "b"], ["x", "y"]).merkle_root == m.merkle_root
    assert manifest_of(["cafe", "b"], ["x", "y"]).merkle_root != m.merkle_root
    assert manifest_of(["café", "b"], ["x", "x"]).merkle_root != m.merkle_root
