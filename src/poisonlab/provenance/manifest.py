"""Manifests: per-row content and label hashes, ids, sources, labelers and a Merkle root.

A manifest is one JSON file meant to be committed next to the data it describes. Its per-row
columns are stored compactly (a million rows of 16-byte digests is 21 MB of base64, plus the ids),
everything else is readable: the data file's name, size, SHA-256 and MD5 (the MD5 is the hash DVC
records in a ``.dvc`` file), the columns read, the class names, sources and labelers, the Merkle
root, the poisonlab version and the schema version. Writing is deterministic: the same data gives
the same bytes, so an unchanged dataset leaves no change to commit.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import unicodedata
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.data.hashing import TEXT_PERSON
from poisonlab.data.readers import Columns
from poisonlab.exceptions import DataError
from poisonlab.provenance.hashing import (
    DEFAULT_DIGEST_SIZE,
    DIGEST_SIZES,
    HASH_ALGORITHM,
    check_digest_size,
    file_digests,
    hash_array,
    hash_label,
    rows_merkle_root,
)
from poisonlab.provenance.rows import Kind, Layout, RowStream, check_unique_ids

FORMAT = "poisonlab-manifest"
SCHEMA_VERSION = 1
HASHING = {
    "algorithm": HASH_ALGORITHM,
    "text": "utf-8 of unicode nfc",
    "array": "dtype, shape and c-order bytes",
    "label": "class name",
    "tree": "rfc6962, blake2b-256 leaf(content || label)",
}
_CODE_DTYPES: dict[str, np.dtype[Any]] = {
    "uint8": np.dtype("<u1"), "uint16": np.dtype("<u2"), "uint32": np.dtype("<u4"),
}


@dataclass(frozen=True, eq=False)
class Manifest:
    """What a manifest file holds, with the per-row columns as arrays.

    ``content`` is the N×d array of feature digests; ``label_codes`` index ``labels`` (class names
    in sorted order); ``ids`` are the row ids when the data has an id column; ``source_codes`` and
    ``labeler_codes`` index ``sources`` and ``labelers`` where the data names them.
    """

    layout: Layout
    digest_size: int
    content: np.ndarray
    labels: tuple[str, ...]
    label_codes: np.ndarray
    merkle_root: str
    ids: list[str] | None = None
    sources: tuple[str, ...] | None = None
    source_codes: np.ndarray | None = None
    labelers: tuple[str, ...] | None = None
    labeler_codes: np.ndarray | None = None
    data: dict[str, object] | None = None
    poisonlab_version: str = ""
    schema_version: int = SCHEMA_VERSION
    signature: dict[str, str] | None = None
    extra: dict[str, object] = field(default_factory=dict)
    where: str = "manifest"

    # ------------------------------------------------------------------ per-row views
    @property
    def n_rows(self) -> int:
        """The number of rows the manifest covers."""
        return int(self.content.shape[0])

    @property
    def kind(self) -> Kind:
        """``"text"``, ``"tabular"`` or ``"image"``, from the layout."""
        return self.layout.kind

    @property
    def has_ids(self) -> bool:
        """True when the data had an id column and the manifest records each row's id."""
        return self.ids is not None

    def label_digests(self) -> list[bytes]:
        """The digest of each class name, in the order of ``labels``."""
        return [hash_label(name, self.digest_size) for name in self.labels]

    def row_labels(self) -> np.ndarray:
        """Each row's class name (an object array of ``str``)."""
        return _decode(self.labels, self.label_codes)

    def row_sources(self) -> np.ndarray | None:
        """Each row's source, or ``None`` when the data has no source column."""
        if self.sources is None or self.source_codes is None:
            return None
        return _decode(self.sources, self.source_codes)

    def row_labelers(self) -> np.ndarray | None:
        """Each row's labeler, or ``None`` when the data has no labeler column."""
        if self.labelers is None or self.labeler_codes is None:
            return None
        return _decode(self.labelers, self.labeler_codes)

    def content_keys(self) -> list[bytes]:
        """Each row's feature digest as ``bytes`` (hashable, for matching rows)."""
        d = self.digest_size
        flat = self.content.tobytes()
        return [flat[i:i + d] for i in range(0, len(flat), d)]

    # ------------------------------------------------------------------ JSON
    def to_dict(self, *, signature: bool = True) -> dict[str, object]:
        """The manifest as JSON-ready data (what :meth:`save` writes)."""
        out: dict[str, Any] = {
            "format": FORMAT,
            "schema_version": self.schema_version,
            "poisonlab_version": self.poisonlab_version,
            "data": self.data,
            "kind": self.kind,
            "columns": self.layout.to_dict(),
            "hashing": {**HASHING, "digest_size": self.digest_size},
            "n_rows": self.n_rows,
            "merkle_root": self.merkle_root,
            "labels": {"names": list(self.labels),
                       "digests": [d.hex() for d in self.label_digests()]},
            "sources": None if self.sources is None else list(self.sources),
            "labelers": None if self.labelers is None else list(self.labelers),
            **self.extra,
            "rows": {
                "content": base64.b64encode(self.content.tobytes()).decode("ascii"),
                "label": _pack_codes(self.label_codes),
                "source": None if self.source_codes is None else _pack_codes(self.source_codes),
                "labeler": None if self.labeler_codes is None else _pack_codes(self.labeler_codes),
                "id": self.ids,
            },
        }
        if signature and self.signature is not None:
            out["signature"] = dict(self.signature)
        return out

    def body_digest(self) -> bytes:
        """SHA-256 of the canonical JSON of everything but the signature: what a signature signs."""
        body = json.dumps(self.to_dict(signature=False), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False)
        return hashlib.sha256(body.encode("utf-8", "surrogatepass")).digest()

    def save(self, path: str | Path) -> Path:
        """Write the manifest as JSON (to a temporary name, then moved into place)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        try:
            with tmp.open("w", encoding="utf-8", newline="\n") as handle:
                _write(handle, self.to_dict())
            tmp.replace(path)
        except BaseException:  # an error or Ctrl-C: no half-written manifest left behind
            tmp.unlink(missing_ok=True)
            raise
        return path

    def with_signature(self, signature: dict[str, str] | None) -> Manifest:
        """A copy carrying ``signature`` (``None`` removes it)."""
        return replace(self, signature=signature)

    def __repr__(self) -> str:
        signed = ", signed" if self.signature else ""
        ids = f", ids from {self.layout.id!r}" if self.ids is not None else ""
        return (f"Manifest({self.kind}, N={self.n_rows}, root={self.merkle_root[:16]}…{ids}"
                f"{signed})")


# ---------------------------------------------------------------------------------- create
def create_manifest(
    data: str | Path | Dataset,
    columns: Columns | None = None,
    *,
    digest_size: int = DEFAULT_DIGEST_SIZE,
) -> Manifest:
    """Hash every row of ``data`` (a file path or a :class:`Dataset`) into a :class:`Manifest`.

    Files are read as a stream: memory grows with the number of rows (digests and ids), not with
    the size of the text. Columns are picked as :func:`poisonlab.data.load_dataset` picks them.
    Sign the result with :func:`poisonlab.provenance.sign_manifest`.
    """
    from poisonlab.version import __version__

    check_digest_size(digest_size)
    stream = RowStream(data, columns)
    info: dict[str, Any] | None = None
    if stream.path is not None:
        info = {"name": stream.path.name, "format": stream.format, **file_digests(stream.path)}
    built = hash_rows(stream, digest_size)
    return replace(built, data=info, poisonlab_version=__version__, where=stream.where)


def hash_rows(stream: RowStream, digest_size: int) -> Manifest:
    """The manifest of a row stream: one digest per row, unsigned (what ``verify`` recomputes)."""
    layout = stream.layout
    content = bytearray()
    labels: dict[str, int] = {}
    label_codes = array("I")
    ids: list[str] | None = [] if layout.id is not None else None
    sources: dict[str, int] | None = {} if layout.source is not None else None
    source_codes = array("I")
    labelers: dict[str, int] | None = {} if layout.labeler is not None else None
    labeler_codes = array("I")
    blake2b = hashlib.blake2b
    normalize = unicodedata.normalize
    text = layout.kind == "text"
    for features, label, rid, src, who in stream:
        if text:
            data = normalize("NFC", features).encode("utf-8", "surrogatepass")
            content += blake2b(data, digest_size=digest_size, person=TEXT_PERSON).digest()
        else:
            content += hash_array(features, digest_size)
        code = labels.get(label)
        if code is None:
            code = labels[label] = len(labels)
        label_codes.append(code)
        if ids is not None:
            ids.append(rid)  # type: ignore[arg-type]
        if sources is not None:
            code = sources.get(src)  # type: ignore[arg-type]
            if code is None:
                code = sources[src] = len(sources)  # type: ignore[index]
            source_codes.append(code)
        if labelers is not None:
            code = labelers.get(who)  # type: ignore[arg-type]
            if code is None:
                code = labelers[who] = len(labelers)  # type: ignore[index]
            labeler_codes.append(code)
    n = len(label_codes)
    if ids is not None:
        check_unique_ids(ids, stream.where, layout.id)
    digests = np.frombuffer(bytes(content), dtype=np.uint8).reshape(n, digest_size)
    names, codes = _sorted_codes(labels, label_codes, numeric=True)
    src_names, src_codes = (None, None) if sources is None else _sorted_codes(sources, source_codes)
    who_names, who_codes = (None, None) if labelers is None else _sorted_codes(labelers,
                                                                               labeler_codes)
    root = rows_merkle_root(digests, codes, [hash_label(k, digest_size) for k in names])
    return Manifest(
        layout=layout, digest_size=digest_size, content=digests, labels=names,
        label_codes=codes, merkle_root=root.hex(), ids=ids, sources=src_names,
        source_codes=src_codes, labelers=who_names, labeler_codes=who_codes,
    )


def _sorted_codes(
    table: dict[str, int], codes: array[int], *, numeric: bool = False
) -> tuple[tuple[str, ...], np.ndarray]:
    """Names in sorted order (integers numerically, as class names sort) and codes into them."""
    names = list(table)
    if numeric and all(_is_int(n) for n in names):
        order = sorted(names, key=int)
    else:
        order = sorted(names)
    remap = np.empty(len(names), dtype=np.int64)
    for new, name in enumerate(order):
        remap[table[name]] = new
    raw = np.frombuffer(codes, dtype=np.uint32) if len(codes) else np.zeros(0, np.uint32)
    return tuple(order), _narrow(remap[raw])


def _is_int(name: str) -> bool:
    try:
        int(name)
    except ValueError:
        return False
    return True


def _narrow(codes: np.ndarray) -> np.ndarray:
    top = int(codes.max()) if codes.size else 0
    dtype = np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.uint32
    return codes.astype(dtype)


def _decode(names: Sequence[str], codes: np.ndarray) -> np.ndarray:
    table = np.empty(len(names), dtype=object)
    table[:] = list(names)
    return table[codes]


def _pack_codes(codes: np.ndarray) -> dict[str, str]:
    codes = _narrow(np.asarray(codes))
    dtype = codes.dtype.name
    return {"dtype": dtype,
            "base64": base64.b64encode(codes.astype(_CODE_DTYPES[dtype]).tobytes()).decode("ascii")}


def _write(handle: TextIO, obj: dict[str, Any]) -> None:
    """Readable JSON for the metadata, one line for each of the large per-row columns."""
    handle.write("{")
    for n, (key, value) in enumerate(obj.items()):
        handle.write(f"{',' if n else ''}\n  {json.dumps(key)}: ")
        if key == "rows":
            handle.write("{")
            for m, (k, v) in enumerate(value.items()):
                handle.write(f"{',' if m else ''}\n    {json.dumps(k)}: ")
                handle.write(json.dumps(v, ensure_ascii=False))
            handle.write("\n  }")
        else:
            handle.write(json.dumps(value, ensure_ascii=False, indent=2).replace("\n", "\n  "))
    handle.write("\n}\n")


# ---------------------------------------------------------------------------------- load
def load_manifest(path: str | Path, *, check: bool = True) -> Manifest:
    """Read a manifest file; a truncated, edited or newer-schema file is one clear error.

    With ``check`` (the default) the Merkle root is recomputed from the rows and must match.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such manifest file.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a manifest (not UTF-8 text at byte {exc.start}).") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        complete = text.rstrip().endswith("}")
        hint = "the file is corrupted" if complete else "the file is truncated"
        raise DataError(
            f"{path}: not a complete JSON manifest ({exc.msg} at line {exc.lineno}, column "
            f"{exc.colno}); {hint}."
        ) from None
    del text
    return manifest_from_dict(obj, where=str(path), check=check)


def manifest_from_dict(obj: object, *, where: str = "manifest", check: bool = True) -> Manifest:
    """Validate parsed manifest JSON and turn it into a :class:`Manifest`."""
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise DataError(f"{where}: not a poisonlab manifest (no \"format\": \"{FORMAT}\").")
    version = obj.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise DataError(f"{where}: schema_version is {version!r}; expected a positive integer.")
    if version > SCHEMA_VERSION:
        raise DataError(
            f"{where}: manifest schema version {version} is newer than this poisonlab reads "
            f"(up to {SCHEMA_VERSION}); upgrade poisonlab to read it."
        )
    get = _Fields(obj, where)
    hashing = get.mapping("hashing")
    digest_size = hashing.get("digest_size")
    if hashing.get("algorithm") != HASH_ALGORITHM or digest_size not in DIGEST_SIZES or any(
        hashing.get(k) != v for k, v in HASHING.items()
    ):
        raise DataError(f"{where}: unsupported hashing {hashing!r}.")
    n = get.integer("n_rows")
    columns = get.mapping("columns")
    kind = get.string("kind")
    if kind not in ("text", "tabular", "image"):
        raise DataError(f"{where}: kind is {kind!r}; expected text, tabular or image.")
    try:
        features = columns.get("features")
        layout = Layout(
            kind=kind,  # type: ignore[arg-type]
            label=str(columns["label"]),
            text=_opt_str(columns.get("text")),
            features=None if features is None else tuple(str(c) for c in features),
            id=_opt_str(columns.get("id")),
            source=_opt_str(columns.get("source")),
            labeler=_opt_str(columns.get("labeler")),
        )
    except (KeyError, TypeError):
        raise DataError(f"{where}: field 'columns' is malformed.") from None
    labels_obj = get.mapping("labels")
    names: list[str] = labels_obj.get("names")  # type: ignore[assignment]
    digests: list[str] = labels_obj.get("digests")  # type: ignore[assignment]
    if not _str_list(names) or not _str_list(digests) or len(names) != len(digests):
        raise DataError(f"{where}: field 'labels' is malformed.")
    expected = [hash_label(k, digest_size).hex() for k in names]
    if digests != expected:
        bad = next(k for k, d, e in zip(names, digests, expected, strict=True) if d != e)
        raise DataError(f"{where}: the digest of label {bad!r} does not match its name "
                        "(edited by hand or corrupted).")
    rows = get.mapping("rows")
    content = _unpack_digests(rows.get("content"), n, digest_size, where)
    label_codes = _unpack_codes(rows.get("label"), n, len(names), "label", where)
    sources = _opt_names(obj.get("sources"), "sources", where)
    labelers = _opt_names(obj.get("labelers"), "labelers", where)
    source_codes = None if sources is None else _unpack_codes(
        rows.get("source"), n, len(sources), "source", where)
    labeler_codes = None if labelers is None else _unpack_codes(
        rows.get("labeler"), n, len(labelers), "labeler", where)
    ids = rows.get("id")
    if ids is not None:
        if not _str_list(ids) or len(ids) != n:
            raise DataError(f"{where}: rows.id must be a list of {n} strings "
                            "(truncated or corrupted).")
        if len(set(ids)) != n:
            raise DataError(f"{where}: rows.id holds a repeated id.")
    root = get.string("merkle_root")
    data = obj.get("data")
    if data is not None and not isinstance(data, dict):
        raise DataError(f"{where}: field 'data' is malformed.")
    signature = obj.get("signature")
    if signature is not None and not (
        isinstance(signature, dict) and all(isinstance(v, str) for v in signature.values())
    ):
        raise DataError(f"{where}: field 'signature' is malformed.")
    known = {"format", "schema_version", "poisonlab_version", "data", "kind", "columns", "hashing",
             "n_rows", "merkle_root", "labels", "sources", "labelers", "rows", "signature"}
    manifest = Manifest(
        layout=layout, digest_size=int(digest_size), content=content, labels=tuple(names),
        label_codes=label_codes, merkle_root=root, ids=ids, sources=sources,
        source_codes=source_codes, labelers=labelers, labeler_codes=labeler_codes, data=data,
        poisonlab_version=str(obj.get("poisonlab_version", "")), schema_version=version,
        signature=signature, extra={k: v for k, v in obj.items() if k not in known}, where=where,
    )
    if check:
        actual = rows_merkle_root(content, label_codes, [bytes.fromhex(d) for d in digests]).hex()
        if actual != root:
            raise DataError(f"{where}: merkle_root does not match the rows it covers (edited by "
                            "hand or corrupted).")
    return manifest


class _Fields:
    def __init__(self, obj: dict[str, Any], where: str) -> None:
        self.obj = obj
        self.where = where

    def _get(self, key: str, kind: type, name: str) -> Any:
        value = self.obj.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise DataError(f"{self.where}: field {key!r} is missing or not {name} (truncated or "
                            "edited by hand?).")
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        value: dict[str, Any] = self._get(key, dict, "an object")
        return value

    def integer(self, key: str) -> int:
        value: int = self._get(key, int, "an integer")
        return value

    def string(self, key: str) -> str:
        value: str = self._get(key, str, "a string")
        return value


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _opt_names(value: object, key: str, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not _str_list(value):
        raise DataError(f"{where}: field {key!r} must be a list of strings.")
    return tuple(value)  # type: ignore[arg-type]


def _b64(value: object, key: str, where: str) -> bytes:
    if not isinstance(value, str):
        raise DataError(f"{where}: rows.{key} is missing (truncated or edited by hand?).")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise DataError(
            f"{where}: rows.{key} is not valid base64 (truncated or corrupted)."
        ) from None


def _unpack_digests(value: object, n: int, digest_size: int, where: str) -> np.ndarray:
    raw = _b64(value, "content", where)
    if len(raw) != n * digest_size:
        raise DataError(
            f"{where}: rows.content holds {len(raw) / digest_size:g} digests but n_rows is {n} "
            "(truncated or corrupted)."
        )
    return np.frombuffer(raw, dtype=np.uint8).reshape(n, digest_size)


def _unpack_codes(value: object, n: int, n_names: int, key: str, where: str) -> np.ndarray:
    if not isinstance(value, dict) or value.get("dtype") not in _CODE_DTYPES:
        raise DataError(f"{where}: rows.{key} is missing or malformed.")
    dtype = _CODE_DTYPES[value["dtype"]]
    raw = _b64(value.get("base64"), key, where)
    if len(raw) != n * dtype.itemsize:
        raise DataError(
            f"{where}: rows.{key} holds {len(raw) // dtype.itemsize} codes but n_rows is {n} "
            "(truncated or corrupted)."
        )
    codes = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
    if codes.size and int(codes.max()) >= n_names:
        raise DataError(f"{where}: rows.{key} refers to name {int(codes.max())} of {n_names}.")
    return codes
