"""Ed25519 signatures on manifests (the ``cryptography`` package).

A signature covers the SHA-256 of the manifest's canonical JSON (sorted keys, no spaces) without
its ``signature`` field: every row hash, id, source, labeler, the Merkle root and the data file's
hashes. The signature block names the public key that made it; only a check against a public key
the reader trusts (``verify --public-key``) says who signed.

Keys are PEM files (PKCS#8 private key, SubjectPublicKeyInfo public key); OpenSSH ``ssh-ed25519``
keys are read as well.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poisonlab.exceptions import DataError, MissingExtraError, ParameterError
from poisonlab.provenance.manifest import Manifest

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

SIGNATURE_ALGORITHM = "ed25519"
_CONTEXT = b"poisonlab manifest signature v1\n"


@dataclass(frozen=True)
class SignatureCheck:
    """The outcome of checking a manifest's signature.

    ``status`` is ``"valid"`` (checked against the trusted public key given), ``"self-consistent"``
    (valid for the key the manifest names, but no trusted key was given, so anyone could have made
    it) or ``"unsigned"``. A signature that does not verify raises instead.
    """

    status: str
    key_id: str | None = None

    def to_dict(self) -> dict[str, object]:
        """The check as a JSON-ready dict: ``status`` and ``key_id``."""
        return {"status": self.status, "key_id": self.key_id}


def _ed25519() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:
        raise MissingExtraError(
            "Signing manifests needs the 'cryptography' package: pip install cryptography"
        ) from exc
    return ed25519


def _serialization() -> Any:
    _ed25519()
    from cryptography.hazmat.primitives import serialization

    return serialization


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    return hashlib.sha256(_raw_public(public_key)).hexdigest()[:16]


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    ser = _serialization()
    raw: bytes = public_key.public_bytes(encoding=ser.Encoding.Raw, format=ser.PublicFormat.Raw)
    return raw


def generate_key() -> Ed25519PrivateKey:
    """A new Ed25519 private key."""
    key: Ed25519PrivateKey = _ed25519().Ed25519PrivateKey.generate()
    return key


def write_keypair(path: str | Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write a new private key to ``path`` (mode 0600) and its public key to ``path.pub``."""
    ser = _serialization()
    private_path = Path(path)
    public_path = private_path.with_name(private_path.name + ".pub")
    for p in (private_path, public_path):
        if p.exists() and not overwrite:
            raise ParameterError(f"{p}: already exists; pass --force to replace it.")
    key = generate_key()
    private_pem = key.private_bytes(
        encoding=ser.Encoding.PEM, format=ser.PrivateFormat.PKCS8,
        encryption_algorithm=ser.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        encoding=ser.Encoding.PEM, format=ser.PublicFormat.SubjectPublicKeyInfo
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_pem)
    os.chmod(private_path, 0o600)
    public_path.write_bytes(public_pem)
    return private_path, public_path


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM (PKCS#8) or OpenSSH file without a passphrase."""
    ed25519 = _ed25519()
    ser = _serialization()
    path = Path(path)
    data = _read_key_file(path)
    key: Any = None
    for loader in (ser.load_pem_private_key, ser.load_ssh_private_key):
        try:
            key = loader(data, password=None)
            break
        except TypeError:
            raise DataError(f"{path}: the private key is encrypted; poisonlab reads only keys "
                            "without a passphrase (make one with 'poisonlab manifest keygen')."
                            ) from None
        except Exception:
            continue
    if key is None:
        raise DataError(f"{path}: not a PEM or OpenSSH private key.")
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise DataError(f"{path}: a {type(key).__name__.lstrip('_')}; manifests are signed with "
                        "Ed25519 keys.")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM, OpenSSH (``ssh-ed25519 ...``) or raw base64 file."""
    ed25519 = _ed25519()
    ser = _serialization()
    path = Path(path)
    data = _read_key_file(path)
    key: Any = None
    for loader in (ser.load_pem_public_key, ser.load_ssh_public_key):
        try:
            key = loader(data)
            break
        except Exception:
            continue
    if key is None:
        try:
            raw = base64.b64decode(data.strip(), validate=True)
            if len(raw) == 32:
                key = ed25519.Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            pass
    if key is None:
        if b"PRIVATE KEY" in data:
            raise DataError(f"{path}: this is a private key; pass the public key ({path}.pub).")
        raise DataError(f"{path}: not a PEM, OpenSSH or base64 Ed25519 public key.")
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise DataError(f"{path}: not an Ed25519 public key; manifests are signed with Ed25519.")
    return key


def _read_key_file(path: Path) -> bytes:
    if not path.exists():
        raise DataError(f"{path}: no such key file.")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a key file.")
    return path.read_bytes()


def sign_manifest(manifest: Manifest, private_key: Ed25519PrivateKey) -> Manifest:
    """A copy of ``manifest`` carrying an Ed25519 signature over all of its content."""
    digest = manifest.body_digest()
    public = private_key.public_key()
    signature = private_key.sign(_CONTEXT + digest)
    return manifest.with_signature({
        "algorithm": SIGNATURE_ALGORITHM,
        "key_id": key_id(public),
        "public_key": base64.b64encode(_raw_public(public)).decode("ascii"),
        "signed_sha256": digest.hex(),
        "value": base64.b64encode(signature).decode("ascii"),
    })


def check_signature(
    manifest: Manifest, public_key: Ed25519PublicKey | None = None
) -> SignatureCheck:
    """Check ``manifest``'s signature; raise :class:`DataError` with the reason when it fails.

    With ``public_key`` the manifest must be signed, by that key. Without it a signature is checked
    against the key the manifest names (``"self-consistent"``): it proves the manifest was not
    changed after signing, not who signed it.
    """
    ed25519 = _ed25519()
    from cryptography.exceptions import InvalidSignature

    where = manifest.where
    block = manifest.signature
    if block is None:
        if public_key is not None:
            raise DataError(f"{where}: the manifest is not signed, but --public-key asks for a "
                            "signature.")
        return SignatureCheck(status="unsigned")
    if block.get("algorithm") != SIGNATURE_ALGORITHM:
        raise DataError(f"{where}: signature algorithm {block.get('algorithm')!r} is not supported "
                        f"(only {SIGNATURE_ALGORITHM}).")
    try:
        embedded = ed25519.Ed25519PublicKey.from_public_bytes(
            base64.b64decode(block.get("public_key", ""), validate=True))
        value = base64.b64decode(block.get("value", ""), validate=True)
    except ValueError:
        raise DataError(f"{where}: bad signature: the signature block is malformed.") from None
    if public_key is not None and _raw_public(public_key) != _raw_public(embedded):
        raise DataError(
            f"{where}: bad signature: signed by key {key_id(embedded)}, not by the trusted key "
            f"{key_id(public_key)}."
        )
    digest = manifest.body_digest()
    try:
        embedded.verify(value, _CONTEXT + digest)
    except InvalidSignature:
        raise DataError(
            f"{where}: bad signature: the manifest was changed after it was signed by key "
            f"{key_id(embedded)}."
        ) from None
    status = "valid" if public_key is not None else "self-consistent"
    return SignatureCheck(status=status, key_id=key_id(embedded))
