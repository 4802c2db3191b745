"""Provenance: know that the data you train on is the data that was reviewed, and who touched it.

- :func:`create_manifest` hashes every row of a data file (streamed) or a :class:`Dataset`:
  features and label separately, with ids, sources, labelers and a Merkle root;
  :meth:`Manifest.save` / :func:`load_manifest` write and read the JSON file.
- :func:`sign_manifest`, :func:`check_signature`, :func:`write_keypair`: Ed25519 signatures.
- :func:`verify_manifest` checks data against a manifest; :func:`diff_manifests` compares two
  versions (added, removed, modified, relabeled, reattributed, moved), by source and labeler.
- :func:`contributions_by_group` counts an audit's flagged rows per source and labeler.
"""

from __future__ import annotations

from poisonlab.provenance.contributions import contributions_by_group
from poisonlab.provenance.diff import ManifestDiff, RowChange, diff_manifests
from poisonlab.provenance.hashing import canonical_label, hash_array, hash_label, hash_text
from poisonlab.provenance.manifest import (
    SCHEMA_VERSION,
    Manifest,
    create_manifest,
    load_manifest,
    manifest_from_dict,
)
from poisonlab.provenance.rows import Layout, RowStream
from poisonlab.provenance.signing import (
    SignatureCheck,
    check_signature,
    generate_key,
    key_id,
    load_private_key,
    load_public_key,
    sign_manifest,
    write_keypair,
)
from poisonlab.provenance.verify import VerifyReport, verify_manifest

__all__ = [
    "SCHEMA_VERSION",
    "Layout",
    "Manifest",
    "ManifestDiff",
    "RowChange",
    "RowStream",
    "SignatureCheck",
    "VerifyReport",
    "canonical_label",
    "check_signature",
    "contributions_by_group",
    "create_manifest",
    "diff_manifests",
    "generate_key",
    "hash_array",
    "hash_label",
    "hash_text",
    "key_id",
    "load_manifest",
    "load_private_key",
    "load_public_key",
    "manifest_from_dict",
    "sign_manifest",
    "verify_manifest",
    "write_keypair",
]
