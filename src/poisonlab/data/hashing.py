"""The content digest of one row: text in Unicode NFC, or a numeric array with its dtype and shape.

The one definition that provenance (row hashes in manifests) and the partition defense (which
partition a row falls in) share, in the lowest layer that both may import.
"""

from __future__ import annotations

import hashlib
import unicodedata

import numpy as np

from poisonlab.exceptions import DataError

DEFAULT_DIGEST_SIZE = 16
TEXT_PERSON = b"poisonlab.text"
"""BLAKE2b personalization of a text row's digest (manifests hash batches of text with it too)."""
ARRAY_PERSON = b"poisonlab.array"
"""BLAKE2b personalization of a numeric row's digest."""


def hash_text(text: str, digest_size: int = DEFAULT_DIGEST_SIZE) -> bytes:
    """The digest of ``text`` in Unicode NFC, encoded as UTF-8 (lone surrogates kept as is)."""
    data = unicodedata.normalize("NFC", text).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=digest_size, person=TEXT_PERSON).digest()


def hash_array(array: np.ndarray, digest_size: int = DEFAULT_DIGEST_SIZE) -> bytes:
    """The digest of a numeric array: its dtype (little-endian), its shape and its C-order bytes."""
    a = np.asarray(array)
    if a.dtype.hasobject:
        raise DataError(f"cannot hash an array of dtype {a.dtype}; rows must be text or numeric.")
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    a = np.ascontiguousarray(a)
    header = f"{a.dtype.str}:{','.join(str(s) for s in a.shape)}\0".encode("ascii")
    h = hashlib.blake2b(header, digest_size=digest_size, person=ARRAY_PERSON)
    h.update(a.tobytes())
    return h.digest()
