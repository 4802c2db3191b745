"""verify: exact match passes; any one change in the data file is named; bad inputs fail clearly."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from manifest_helpers import MAIL_HEADER, mail_rows, write_csv

from poisonlab.data import Columns, load_dataset
from poisonlab.exceptions import DataError
from poisonlab.provenance import create_manifest, verify_manifest

COLUMNS = Columns(source="source", labeler="labeler")


@pytest.fixture()
def mail(tmp_path: Path) -> tuple[Path, Path]:
    data = write_csv(tmp_path / "mail.csv", MAIL_HEADER, mail_rows(12))
    return data, create_manifest(data, COLUMNS).save(tmp_path / "mail.json")


def test_unchanged_data_verifies(mail: tuple[Path, Path]) -> None:
    data, manifest = mail
    report = verify_manifest(data, manifest)
    assert report.ok and report.file_matches is True and report.signature.status == "unsigned"
    assert report.to_dict()["counts"]["unchanged"] == 12


def test_same_rows_in_another_format_verify_with_a_note(tmp_path: Path,
                                                        mail: tuple[Path, Path]) -> None:
    data, manifest = mail
    rows = list(csv.reader(io.StringIO(data.read_text())))
    quoted = tmp_path / "quoted.csv"
    with quoted.open("w", newline="") as handle:
        csv.writer(handle, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows(rows)
    report = verify_manifest(quoted, manifest)
    assert report.ok and report.file_matches is False
    assert not verify_manifest(quoted, manifest, strict=True).ok
    # the rows of a Dataset loaded from the file verify too
    assert verify_manifest(load_dataset(data, COLUMNS), manifest).ok


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_any_one_byte_change_in_the_file_is_named(data: st.DataObject) -> None:
    rows = mail_rows(8)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_csv(Path(tmp) / "d.csv", MAIL_HEADER, rows)
        manifest = create_manifest(path, COLUMNS)
        row = data.draw(st.integers(0, 7), label="row")
        text = rows[row][1]
        pos = data.draw(st.integers(0, len(text) - 1), label="position")
        char = data.draw(st.characters(min_codepoint=33, max_codepoint=126).filter(
            lambda c: c != text[pos]), label="byte")
        rows[row][1] = text[:pos] + char + text[pos + 1:]
        write_csv(path, MAIL_HEADER, rows)
        report = verify_manifest(path, manifest)
    assert not report.ok and report.file_matches is False
    counts = {k: v for k, v in report.diff.counts.items() if v and k != "unchanged"}
    assert counts == {"modified": 1}
    [change] = report.diff.changes("modified")
    assert (change.old_row, change.new_row, change.id) == (row, row, rows[row][0])


def test_label_and_labeler_changes_are_named(tmp_path: Path, mail: tuple[Path, Path]) -> None:
    data, manifest = mail
    rows = mail_rows(12)
    rows[4][2] = "spam" if rows[4][2] == "ham" else "ham"
    rows[7][4] = "ann-9"
    write_csv(data, MAIL_HEADER, rows)
    diff = verify_manifest(data, manifest).diff
    assert [c.old_row for c in diff.changes("relabeled")] == [4]
    assert [(c.old_labeler, c.new_labeler) for c in diff.changes("reattributed")] == [
        ("ann-1", "ann-9")]


@pytest.mark.parametrize(("header", "message"), [
    (["id", "body", "label", "source", "labeler"], "no column 'text', which the manifest hashed"),
    (["id", "text", "label", "origin", "labeler"], "no column 'source', which the manifest"),
    (["key", "text", "label", "source", "labeler"], "no column 'id'"),
])
def test_columns_that_do_not_match_the_manifest(mail: tuple[Path, Path], header: list[str],
                                                message: str) -> None:
    data, manifest = mail
    write_csv(data, header, mail_rows(12))
    with pytest.raises(DataError, match=message) as info:
        verify_manifest(data, manifest)
    assert str(info.value).startswith(str(data)) and "\n" not in str(info.value)


def test_data_of_another_kind(tmp_path: Path, mail: tuple[Path, Path]) -> None:
    _, manifest = mail
    import numpy as np

    np.savez(tmp_path / "x.npz", X=np.zeros((3, 2, 2)), y=np.array([0, 1, 0]))
    with pytest.raises(DataError, match="holds image rows but the manifest describes text"):
        verify_manifest(tmp_path / "x.npz", manifest)
