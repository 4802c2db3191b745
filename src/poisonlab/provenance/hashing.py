"""Canonical hashes of rows, labels and files, and the Merkle root over a dataset's rows.

Every hash is BLAKE2b with a personalization string per domain, so that a text, an array, a label, a
Merkle leaf and a Merkle node can never hash alike:

- text: the UTF-8 bytes of its Unicode NFC form (canonically equivalent spellings hash alike);
- arrays (image or tabular rows): dtype (little-endian), shape and C-order bytes;
- labels: the class name as a string, exactly (no normalization beyond what
  :func:`canonical_label` does to match :func:`poisonlab.data.encode_labels`);
- the Merkle tree follows RFC 6962 (Certificate Transparency): leaf ``H(content || label)``, node
  ``H(left || right)``, an odd node carried up unchanged, both with 32-byte digests.

Per-row digests are truncated to ``digest_size`` bytes (16 by default, 32 at most).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from poisonlab.data.hashing import DEFAULT_DIGEST_SIZE as DEFAULT_DIGEST_SIZE
from poisonlab.data.hashing import hash_array as hash_array
from poisonlab.data.hashing import hash_text as hash_text
from poisonlab.exceptions import check_param

HASH_ALGORITHM = "blake2b"
DIGEST_SIZES = (16, 32)
TREE_DIGEST_SIZE = 32

_LABEL = b"poisonlab.label"
_LEAF = b"poisonlab.leaf"
_NODE = b"poisonlab.node"
_CHUNK_HEIGHT = 14  # rows_merkle_root hashes 2**14 leaves at a time, level by level
_MISSING_LABELS = ("", "nan", "NaN", "None")


def check_digest_size(digest_size: int, owner: str = "create_manifest") -> None:
    """Raise :class:`~poisonlab.exceptions.ParameterError` unless ``digest_size`` is supported."""
    check_param("digest_size", owner, digest_size in DIGEST_SIZES,
                f"one of {list(DIGEST_SIZES)} (bytes per row hash)", digest_size)


def hash_label(label: str, digest_size: int = DEFAULT_DIGEST_SIZE) -> bytes:
    """The digest of a class name (hashed exactly as given: call :func:`canonical_label` first)."""
    return hashlib.blake2b(label.encode("utf-8", "surrogatepass"), digest_size=digest_size,
                           person=_LABEL).digest()


def canonical_label(value: object) -> str | None:
    """A raw label as poisonlab names its class, or ``None`` where the label is missing.

    Matches :func:`poisonlab.data.encode_labels`: surrounding spaces are dropped and an integer
    written as ``1``, ``1.0`` or ``1e0`` is the class ``"1"``; any other string is kept exactly.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        text = str(value)
    elif isinstance(value, (int, np.integer)):
        return str(int(value))
    elif isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        text = repr(float(value))
    else:
        text = str(value).strip()
    if text in _MISSING_LABELS:
        return None
    if text[:1].isdigit() or text[:1] in "+-.":
        try:
            return str(int(text))
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return text
            if number.is_integer():
                return str(int(number))
    return text


def leaf_hash(content: bytes, label: bytes) -> bytes:
    """The Merkle leaf of one row: ``H(content digest || label digest)``."""
    return hashlib.blake2b(content + label, digest_size=TREE_DIGEST_SIZE, person=_LEAF).digest()


class MerkleTree:
    """An RFC 6962 Merkle tree built one leaf at a time in O(log n) memory.

    The stack holds the roots of the perfect subtrees so far (one per set bit of the leaf count);
    adding a leaf merges as many as the count has trailing one bits. :meth:`root` folds the stack
    from the right, which is RFC 6962's split at the largest power of two below ``n``.
    """

    def __init__(self) -> None:
        self._stack: list[bytes] = []
        self.n_leaves = 0

    def add(self, leaf: bytes) -> None:
        """Append one leaf."""
        self.add_subtree(leaf, 0)

    def add_subtree(self, node: bytes, height: int) -> None:
        """Append the root of a perfect subtree of ``2**height`` leaves.

        The leaf count so far must be a multiple of ``2**height``.
        """
        if self.n_leaves % (1 << height):
            raise ValueError("a subtree must start at a multiple of its size")
        k = self.n_leaves >> height
        stack = self._stack
        while k & 1:
            node = hashlib.blake2b(stack.pop() + node, digest_size=TREE_DIGEST_SIZE,
                                   person=_NODE).digest()
            k >>= 1
        stack.append(node)
        self.n_leaves += 1 << height

    def root(self) -> bytes:
        """The RFC 6962 root of the leaves added so far (``H("")`` with the node personalization for none)."""
        if not self._stack:
            return hashlib.blake2b(b"", digest_size=TREE_DIGEST_SIZE, person=_NODE).digest()
        node = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            node = hashlib.blake2b(left + node, digest_size=TREE_DIGEST_SIZE, person=_NODE).digest()
        return node


def merkle_root(leaves: Iterable[bytes]) -> bytes:
    """The RFC 6962 Merkle tree hash over ``leaves`` (already leaf-hashed); empty: ``H("")``."""
    tree = MerkleTree()
    for leaf in leaves:
        tree.add(leaf)
    return tree.root()


def rows_merkle_root(content: np.ndarray, label_codes: np.ndarray,
                     label_digests: Sequence[bytes]) -> bytes:
    """The Merkle root of rows: an N×d digest array, and label codes into ``label_digests``."""
    n, d = content.shape
    blake2b = hashlib.blake2b
    tree = MerkleTree()
    chunk = 1 << _CHUNK_HEIGHT
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        flat = content[start:stop].tobytes()
        level = [
            blake2b(flat[i:i + d] + label_digests[k], digest_size=TREE_DIGEST_SIZE,
                    person=_LEAF).digest()
            for i, k in zip(range(0, len(flat), d), label_codes[start:stop].tolist(), strict=True)
        ]
        if len(level) < chunk:  # the last, partial chunk: leaf by leaf
            for leaf in level:
                tree.add(leaf)
            break
        while len(level) > 1:  # a perfect subtree, level by level
            level = [blake2b(level[i] + level[i + 1], digest_size=TREE_DIGEST_SIZE,
                             person=_NODE).digest() for i in range(0, len(level), 2)]
        tree.add_subtree(level[0], _CHUNK_HEIGHT)
    return tree.root()


def file_digests(path: str | Path, chunk_size: int = 1 << 20) -> dict[str, object]:
    """Size, SHA-256 and MD5 of a file's bytes (MD5 is what DVC records for a file)."""
    path = Path(path)
    sha = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": sha.hexdigest(), "md5": md5.hexdigest()}
