"""Canonical hashes and the Merkle root, against hand-built references."""

from __future__ import annotations

import hashlib
import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poisonlab.data import encode_labels
from poisonlab.exceptions import DataError, ParameterError
from poisonlab.provenance import canonical_label, hash_array, hash_label, hash_text
from poisonlab.provenance.hashing import (
    _NODE,
    MerkleTree,
    check_digest_size,
    leaf_hash,
    merkle_root,
    rows_merkle_root,
)


def rfc6962_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, recursively: split at the largest power of two below n."""
    if not leaves:
        return hashlib.blake2b(b"", digest_size=32, person=_NODE).digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.blake2b(rfc6962_root(leaves[:k]) + rfc6962_root(leaves[k:]), digest_size=32,
                           person=_NODE).digest()


def test_text_hash_is_blake2b_of_nfc_utf8() -> None:
    expected = hashlib.blake2b("café".encode(), digest_size=16, person=b"poisonlab.text").digest()
    assert hash_text("café") == expected
    assert hash_text("cafe\u0301") == expected  # decomposed é: canonically equivalent
    assert len(hash_text("x", 32)) == 32


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.data())
def test_any_one_byte_change_changes_the_text_hash(raw: bytes, data: st.DataObject) -> None:
    text = raw.decode("latin-1")  # every byte value is one character
    i = data.draw(st.integers(0, len(raw) - 1))
    b = data.draw(st.integers(0, 255).filter(lambda v: v != raw[i]))
    changed = (raw[:i] + bytes([b]) + raw[i + 1:]).decode("latin-1")
    if text.isascii() and changed.isascii():  # NFC leaves ASCII alone: the hash must differ
        assert hash_text(text) != hash_text(changed)
    else:
        assert (hash_text(text) == hash_text(changed)) == (
            unicodedata.normalize("NFC", text)
            == unicodedata.normalize("NFC", changed))


def test_array_hash_covers_dtype_shape_and_bytes() -> None:
    a = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert hash_array(a) == hash_array(a.copy())
    assert hash_array(a) != hash_array(a.reshape(3, 2))
    assert hash_array(a) != hash_array(a.astype(np.int16))
    b = a.copy()
    b[1, 2] ^= 1
    assert hash_array(a) != hash_array(b)
    big_endian = a.astype(">i4")
    assert hash_array(big_endian) == hash_array(a.astype("<i4"))
    assert hash_array(np.asfortranarray(a)) == hash_array(a)
    with pytest.raises(DataError):
        hash_array(np.array(["a"], dtype=object))


def test_text_array_and_label_domains_never_collide() -> None:
    assert hash_text("spam") != hash_label("spam")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(-5, 5).map(str), st.sampled_from(
    [" 1", "1.0", "2e0", "ham", " spam ", "3.5", "-0", "+7", "x1"])), min_size=1, max_size=8))
def test_canonical_label_is_the_class_name_poisonlab_uses(raw: list[str]) -> None:
    try:
        y, classes = encode_labels(raw, where="t")
    except DataError:  # a column mixing numbers and names is refused by the readers
        return
    assert [canonical_label(v) for v in raw] == [classes[k] for k in y]


def test_canonical_label_of_json_values_and_missing() -> None:
    assert canonical_label(1) == canonical_label(1.0) == canonical_label("1") == "1"
    assert canonical_label(True) == "True"
    assert canonical_label(2.5) == "2.5"
    for missing in (None, "", "  ", "nan", "None", float("nan")):
        assert canonical_label(missing) is None


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 70))
def test_merkle_root_matches_rfc6962(n: int) -> None:
    rng = np.random.default_rng(n)
    content = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    codes = rng.integers(0, 3, size=n)
    labels = [hash_label(k) for k in "abc"]
    leaves = [leaf_hash(content[i].tobytes(), labels[codes[i]]) for i in range(n)]
    expected = rfc6962_root(leaves)
    assert merkle_root(leaves) == expected
    assert rows_merkle_root(content, codes, labels) == expected


def test_merkle_root_over_chunk_boundaries() -> None:
    rng = np.random.default_rng(0)
    n = (1 << 14) * 2 + 3  # two full level-by-level chunks and a partial one
    content = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    codes = rng.integers(0, 2, size=n)
    labels = [hash_label(k) for k in "ab"]
    leaves = [leaf_hash(content[i].tobytes(), labels[codes[i]]) for i in range(n)]
    assert rows_merkle_root(content, codes, labels) == rfc6962_root(leaves)
    tree = MerkleTree()
    tree.add(leaves[0])
    with pytest.raises(ValueError):
        tree.add_subtree(leaves[1], 1)


def test_digest_size_is_checked() -> None:
    check_digest_size(16)
    with pytest.raises(ParameterError, match=r"'digest_size'.*Got 20"):
        check_digest_size(20)
