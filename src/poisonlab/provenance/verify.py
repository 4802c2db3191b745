"""Check a data file against its manifest: every row's features, label, id, source and labeler."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poisonlab.data.dataset import Dataset
from poisonlab.provenance.diff import ManifestDiff, diff_manifests
from poisonlab.provenance.hashing import file_digests
from poisonlab.provenance.manifest import Manifest, hash_rows, load_manifest
from poisonlab.provenance.rows import RowStream
from poisonlab.provenance.signing import SignatureCheck, check_signature, load_public_key

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


@dataclass(frozen=True, eq=False)
class VerifyReport:
    """The outcome of :func:`verify_manifest`.

    ``ok`` is True when every row matches the manifest exactly, in order (and, with ``strict``,
    the file's bytes too). ``diff`` says what differs, from the manifest (old) to the data (new).
    ``file_matches`` compares the data file's SHA-256 with the one recorded (``None`` when there is
    no file to compare): a file can differ in bytes (quoting, line endings, columns the manifest
    does not cover) while every row still matches.
    """

    manifest: Manifest
    current: Manifest
    diff: ManifestDiff
    signature: SignatureCheck
    file_matches: bool | None
    strict: bool = False

    @property
    def ok(self) -> bool:
        """True when every row matches the manifest, in order; with ``strict``, False too when the file's
        SHA-256 differs from the one recorded.
        """
        if self.strict and self.file_matches is False:
            return False
        return self.diff.is_identical

    def to_dict(self, limit: int | None = None) -> dict[str, object]:
        """A JSON-ready report: the verdict, both sides' row counts and Merkle roots, the file and signature
        checks and the diff's rows per category (``limit`` caps the rows listed per category; counts stay
        exact).
        """
        diff = self.diff.to_dict(limit)
        return {
            "ok": self.ok,
            "manifest": self.manifest.where,
            "data": self.current.where,
            "n_rows_manifest": self.manifest.n_rows,
            "n_rows_data": self.current.n_rows,
            "merkle_root_manifest": self.manifest.merkle_root,
            "merkle_root_data": self.current.merkle_root,
            "file_matches": self.file_matches,
            "signature": self.signature.to_dict(),
            "matched_by": diff["matched_by"],
            "counts": diff["counts"],
            **{k: diff[k] for k in ("added", "removed", "modified", "relabeled", "reattributed",
                                    "moved")},
        }


def verify_manifest(
    data: str | Path | Dataset,
    manifest: Manifest | str | Path,
    *,
    public_key: Ed25519PublicKey | str | Path | None = None,
    strict: bool = False,
) -> VerifyReport:
    """Hash ``data`` with the columns and digest size ``manifest`` records and compare row by row.

    A bad signature, a manifest that does not parse, or data that lacks the manifest's columns
    raise :class:`~poisonlab.exceptions.DataError`; any difference in the rows is reported in
    the returned :class:`VerifyReport` (``ok`` False).
    """
    m = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    key = load_public_key(public_key) if isinstance(public_key, (str, Path)) else public_key
    signature = check_signature(m, key)
    stream = RowStream(data, layout=m.layout)
    current = hash_rows(stream, m.digest_size)
    file_matches: bool | None = None
    info: dict[str, Any] | None = None
    if stream.path is not None:
        info = {"name": stream.path.name, "format": stream.format, **file_digests(stream.path)}
        if m.data is not None and "sha256" in m.data:
            file_matches = info["sha256"] == m.data["sha256"]
    current = replace(current, data=info, poisonlab_version=m.poisonlab_version,
                      where=stream.where)
    diff = diff_manifests(m, current, match="id" if m.ids is not None else "content")
    return VerifyReport(manifest=m, current=current, diff=diff, signature=signature,
                        file_matches=file_matches, strict=strict)
