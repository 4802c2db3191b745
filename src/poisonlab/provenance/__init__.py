"""Provenance: know that the data you train on is the data that was reviewed, and who touched it.

- :func:`create_manifest` hashes every row of a data file (streamed) or a :class:`Dataset`:
  features and label separately, with ids, sources, labelers and a Merkle root;
  :meth:`Manifest.save` / :func:`load_manifest` write and read the JSON file.
- :func:`sign_manifest`, :func:`check_signature`, :func:`write_keypair`: Ed25519 signatures.
- :func:`verify_manifest` checks data against a manifest; :func:`diff_manifests` compares two
  versions (added, removed, modified, relabeled, reattributed, moved), by source and labeler.
- :func:`contributions_by_group` counts an audit's flagged rows per source and labeler.
- :func:`read_annotations` reads several labels per row (long or wide tables);
  :func:`labeler_reliability` computes consensus labels (CROWDLAB, Dawid-Skene, majority vote),
  each annotator's confusion matrix with intervals, and a test for targeted flipping.
"""

from __future__ import annotations

from poisonlab.provenance.annotations import (
    AnnotationColumns,
    Annotations,
    annotations_from_labelers,
    read_annotations,
)
from poisonlab.provenance.contributions import contributions_by_group
from poisonlab.provenance.diff import ManifestDiff, RowChange, diff_manifests
from poisonlab.provenance.hashing import canonical_label, hash_array, hash_label, hash_text
from poisonlab.provenance.labelers import (
    CrowdlabResult,
    DawidSkeneResult,
    FlipTest,
    ReliabilityReport,
    crowdlab,
    dawid_skene,
    flip_test,
    labeler_reliability,
    majority_vote,
)
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
from poisonlab.provenance.stats import adjust_p_values, wilson_interval
from poisonlab.provenance.verify import VerifyReport, verify_manifest

__all__ = [
    "SCHEMA_VERSION",
    "AnnotationColumns",
    "Annotations",
    "CrowdlabResult",
    "DawidSkeneResult",
    "FlipTest",
    "Layout",
    "Manifest",
    "ManifestDiff",
    "ReliabilityReport",
    "RowChange",
    "RowStream",
    "SignatureCheck",
    "VerifyReport",
    "adjust_p_values",
    "annotations_from_labelers",
    "canonical_label",
    "check_signature",
    "contributions_by_group",
    "create_manifest",
    "crowdlab",
    "dawid_skene",
    "diff_manifests",
    "flip_test",
    "generate_key",
    "hash_array",
    "hash_label",
    "hash_text",
    "key_id",
    "labeler_reliability",
    "load_manifest",
    "load_private_key",
    "load_public_key",
    "majority_vote",
    "manifest_from_dict",
    "read_annotations",
    "sign_manifest",
    "verify_manifest",
    "wilson_interval",
    "write_keypair",
]
