"""Ed25519 signatures: a valid one passes, any change or another key fails with its own message."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from manifest_helpers import manifest_of

from poisonlab.exceptions import DataError, ParameterError
from poisonlab.provenance import (
    check_signature,
    generate_key,
    key_id,
    load_manifest,
    load_private_key,
    load_public_key,
    sign_manifest,
    write_keypair,
)


@pytest.fixture()
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return write_keypair(tmp_path / "signer.key")


def test_keygen_writes_a_private_and_a_public_pem(keys: tuple[Path, Path]) -> None:
    private, public = keys
    assert public.name == "signer.key.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes() and b"PUBLIC KEY" in public.read_bytes()
    assert key_id(load_private_key(private).public_key()) == key_id(load_public_key(public))
    with pytest.raises(ParameterError, match="already exists; pass --force"):
        write_keypair(private)
    assert write_keypair(private, overwrite=True)[0] == private


def test_signed_manifest_survives_a_file_round_trip(tmp_path: Path, keys: tuple[Path, Path]
                                                    ) -> None:
    private, public = keys
    m = sign_manifest(manifest_of(["a", "b"], ["x", "y"], ids=["1", "2"]),
                      load_private_key(private))
    loaded = load_manifest(m.save(tmp_path / "m.json"))
    check = check_signature(loaded, load_public_key(public))
    assert check.status == "valid" and check.key_id == key_id(load_public_key(public))
    assert check_signature(loaded).status == "self-consistent"
    assert check_signature(manifest_of(["a"], ["x"])).status == "unsigned"


@pytest.mark.parametrize("edit", [
    lambda o: o["rows"].update(id=["1", "3"]),
    lambda o: o["data"].update(name="other.csv") if o["data"] else o.update(data={"name": "x"}),
    lambda o: o.update(note="a field added after signing"),
    lambda o: o.update(poisonlab_version="9.9"),
])
def test_any_change_after_signing_is_a_bad_signature(tmp_path: Path, keys: tuple[Path, Path],
                                                     edit: object) -> None:
    private, public = keys
    m = sign_manifest(manifest_of(["a", "b"], ["x", "y"], ids=["1", "2"]),
                      load_private_key(private))
    path = m.save(tmp_path / "m.json")
    obj = json.loads(path.read_text())
    edit(obj)  # type: ignore[operator]
    path.write_text(json.dumps(obj))
    with pytest.raises(DataError, match="bad signature: the manifest was changed after it was"):
        check_signature(load_manifest(path), load_public_key(public))


def test_signature_by_another_key_or_missing(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    _, public = keys
    m = sign_manifest(manifest_of(["a"], ["x"]), generate_key())
    with pytest.raises(DataError, match=r"bad signature: signed by key [0-9a-f]{16}, not by the "
                                        r"trusted key"):
        check_signature(m, load_public_key(public))
    with pytest.raises(DataError, match="not signed, but --public-key"):
        check_signature(manifest_of(["a"], ["x"]), load_public_key(public))


def test_key_files_that_cannot_be_used(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    private, public = keys
    with pytest.raises(DataError, match="this is a private key; pass the public key"):
        load_public_key(private)
    with pytest.raises(DataError, match="not a PEM or OpenSSH private key"):
        load_private_key(public)
    with pytest.raises(DataError, match="no such key file"):
        load_private_key(tmp_path / "none.key")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    encrypted = generate_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"))
    (tmp_path / "enc.key").write_bytes(encrypted)
    with pytest.raises(DataError, match="encrypted"):
        load_private_key(tmp_path / "enc.key")
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    (tmp_path / "ec.key").write_bytes(other)
    with pytest.raises(DataError, match="Ed25519"):
        load_private_key(tmp_path / "ec.key")


def test_openssh_public_key(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = generate_key()
    (tmp_path / "id.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH))
    assert key_id(load_public_key(tmp_path / "id.pub")) == key_id(key.public_key())
