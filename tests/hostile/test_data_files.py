"""Broken and hostile data files: one clear line each (a DataError), through the library and the CLI."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from poisonlab.cli import app
from poisonlab.data import load_dataset
from poisonlab.exceptions import DataError


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


GOOD = {"X": np.zeros((4, 8, 8), dtype=np.uint8), "y": np.array([0, 1, 0, 1])}


def _flip_in_x_data() -> bytes:
    raw = bytearray(_npz_bytes(X=np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8), y=GOOD["y"]))
    raw[raw.index(b"\x93NUMPY") + 200] ^= 0xFF  # inside X's data: the zip CRC no longer matches
    return bytes(raw)


def _huge_claim() -> bytes:
    out = io.BytesIO()
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 100000, 100000), }"
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("X.npy", b"\x93NUMPY\x01\x00" + len(header.ljust(118) + b"\n").to_bytes(2, "little")
                         + header.ljust(118) + b"\n")
        archive.writestr("y.npy", _npz_bytes(y=GOOD["y"])[:0])
    return out.getvalue()


CASES: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "npz-empty": ("data.npz", lambda: b"", "the file is empty (0 bytes)"),
    "npz-truncated": ("data.npz", lambda: _npz_bytes(**GOOD)[:300], "not an NPZ archive (truncated"),
    "npz-bad-crc": ("data.npz", _flip_in_x_data, "a damaged NPZ archive (Bad CRC-32"),
    "npz-object-array": ("data.npz", lambda: _npz_bytes(X=np.array([{"a": 1}] * 4, dtype=object), y=GOOD["y"]),
                         "array 'X' holds Python objects (a pickle)"),
    "npz-object-labels": ("data.npz", lambda: _npz_bytes(X=GOOD["X"], y=np.array([None, 1, 2, 3], dtype=object)),
                          "array 'y' holds Python objects"),
    "npz-huge-claim": ("data.npz", _huge_claim, "claims shape (100000, 100000, 100000)"),
    "npz-no-pixels": ("data.npz", lambda: _npz_bytes(X=np.zeros((0, 8, 8)), y=np.zeros(0)), "no pixels"),
    "npz-not-a-zip": ("data.npz", lambda: b"hello, world", "not an NPZ archive"),
    "csv-empty": ("data.csv", lambda: b"", "the file is empty"),
    "csv-blank-lines": ("data.csv", lambda: b"\n\n  \n\r\n", "the file is empty (no header, no rows)"),
    "csv-header-only": ("data.csv", lambda: b"text,label\n", "has a header ('text', 'label') but no rows"),
    "csv-not-utf8": ("data.csv", lambda: "text,label\ncaf\u00e9,x\n".encode("latin-1"), "not UTF-8 text (byte 0xe9"),
    "tsv-not-utf8": ("data.tsv", lambda: b"text\tlabel\n\xff\xfe\tx\n", "not UTF-8 text"),
    "csv-nul": ("data.csv", lambda: b"text,label\na\x00b,x\nc,y\n", "holds a NUL byte"),
    "csv-binary": ("data.csv", lambda: bytes(range(256)) * 4, "not UTF-8 text"),
    "jsonl-bad-line": ("data.jsonl", lambda: b'{"text": "a", "label": "x"}\n{"text": "b", "label": \n',
                       "line 2 is not valid JSON (Expecting value at column 24): "),
    "jsonl-not-utf8": ("data.jsonl", lambda: b'{"text": "\xff", "label": "x"}\n', "not UTF-8 text (byte 0xff"),
    "jsonl-blank": ("data.jsonl", lambda: b"\n \n", "the file is empty"),
    "jsonl-not-objects": ("data.jsonl", lambda: b"[1, 2]\n", "line 1 is not a JSON object"),
    "parquet-not-parquet": ("data.parquet", lambda: b"text,label\na,b\n", "not a readable Parquet file"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_data_file_is_one_line(case: str, tmp_path: Path) -> None:
    name, make, expected = CASES[case]
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    path = tmp_path / name
    path.write_bytes(make())
    with pytest.raises(DataError) as info:
        load_dataset(str(path))
    message = str(info.value)
    assert expected in message, message
    assert "\n" not in message
    result = CliRunner().invoke(app, ["train", str(path), "--out", str(tmp_path / "model")])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "Aborted" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not list(tmp_path.glob("model*"))


def test_a_jsonl_message_shows_where_a_long_line_breaks(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    path.write_text('{"text": "' + "a" * 500 + '", "label": }\n')
    with pytest.raises(DataError) as info:
        load_dataset(str(path))
    message = str(info.value)
    # the 500 a's are shortened with a visible "...", and the part where the JSON breaks is shown
    assert "(Expecting value at column 523): ...'aaa" in message
    assert message.endswith("\"label\": }'.")
    assert len(message) < len(str(path)) + 200


def test_a_csv_with_one_huge_field_loads(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    path.write_text("text,label\n" + "word " * 400_000 + ",spam\nshort,ham\n")  # a 2 MB field
    ds = load_dataset(str(path))
    assert len(ds) == 2
    assert len(ds.X[0]) == 2_000_000


def test_a_damaged_corpus_cache_is_read_again_not_a_traceback(tmp_path: Path) -> None:
    import gzip

    from poisonlab.data import corpora

    n = sum(corpora.EXPECTED_COUNTS.values())
    wrong_shape = tmp_path / "wrong.jsonl.gz"
    wrong_shape.write_bytes(gzip.compress(b"[1, 2]\n" * n))
    assert corpora._read_cache(wrong_shape) is None
    raw = bytearray(gzip.compress(b'{"id": "x", "text": "y", "group": "ham"}\n' * n))
    for i in range(20, len(raw) - 20, 97):
        raw[i] ^= 0x5A
    damaged = tmp_path / "damaged.jsonl.gz"
    damaged.write_bytes(bytes(raw))
    assert corpora._read_cache(damaged) is None


def test_a_damaged_corpus_archive_is_one_line(tmp_path: Path) -> None:
    import tarfile

    from poisonlab.data import corpora

    archive = tmp_path / "20030228_easy_ham.tar.gz"
    member = tmp_path / "00001.7c53336b37003a9286aba55d2945844c"
    member.write_bytes(b"From: a@b\n\nhello " * 5000)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(member, arcname="easy_ham/" + member.name)
    raw = bytearray(archive.read_bytes())
    for i in range(len(raw) // 3, len(raw) - 20, 41):
        raw[i] ^= 0x5A
    archive.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="not a readable archive") as info:
        list(corpora._messages_in_tar(archive))
    assert "\n" not in str(info.value)
