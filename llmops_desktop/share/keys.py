"""The user's Ed25519 key pair, colleagues' trusted public keys, and manifest signatures.

The key pair is made on first use under ``<home>/keys/``: ``id_ed25519`` (PKCS#8 PEM,
mode 0600, in a 0700 folder) and ``id_ed25519.pub`` (one OpenSSH line, the file to give
colleagues). A fingerprint is written as OpenSSH does (``SHA256:`` + base64 of the
key blob's sha256), so ``ssh-keygen -lf id_ed25519.pub`` shows the same text and two
people can compare it over the phone. The trust list is ``keys/trusted.json``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops_desktop.catalog.catalog import current_user, utcnow
from llmops_desktop.paths import Home
from llmops_desktop.share.errors import KeyFileError, SignatureError

PRIVATE_NAME = "id_ed25519"
PUBLIC_NAME = "id_ed25519.pub"
TRUST_NAME = "trusted.json"
SIGNATURE_ALGORITHM = "ed25519"


def keys_dir(home: Home) -> Path:
    return home.root / "keys"


def _public_line(public_key: Any, comment: str) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.OpenSSH,
                                  serialization.PublicFormat.OpenSSH).decode("ascii")
    return f"{raw} {comment}".strip()


def fingerprint_of_line(line: str) -> str:
    """``SHA256:…`` of an OpenSSH public key line, as ``ssh-keygen -l`` prints it."""
    parts = line.split()
    if len(parts) < 2:
        raise KeyFileError("Not an OpenSSH public key line (expected 'ssh-ed25519 AAAA…').")
    blob = base64.b64decode(parts[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def load_public_line(text: str) -> tuple[Any, str, str]:
    """(public key, normalized OpenSSH line, comment) from a key file's text.

    Accepts an OpenSSH ``ssh-ed25519`` line (what ``keys export-public`` writes) or a
    PEM ``PUBLIC KEY`` block."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
            comment = ""
        else:
            first = next((ln for ln in text.splitlines() if ln.strip()
                          and not ln.lstrip().startswith("#")), "")
            parts = first.split(None, 2)
            if len(parts) < 2:
                raise ValueError("no key on the first line")
            key = serialization.load_ssh_public_key(f"{parts[0]} {parts[1]}".encode())
            comment = parts[2].strip() if len(parts) > 2 else ""
    except (ValueError, TypeError, binascii.Error, UnicodeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(
            f"This is not a public key file ({exc}). Ask your colleague for the file that "
            "'llmops keys export-public' (or Settings → Export public key…) writes.") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError("Only Ed25519 public keys are accepted (the key is of another "
                           "type). Ask for the file 'llmops keys export-public' writes.")
    return key, _public_line(key, comment), comment


@dataclass(frozen=True)
class KeyPair:
    private_key: Any
    public_line: str

    @property
    def fingerprint(self) -> str:
        return fingerprint_of_line(self.public_line)

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)


def _write_private(path: Path, data: bytes) -> bool:
    """Create ``path`` (mode 0600) complete or not at all, unless it exists: written to a
    private temporary file, then hard-linked into place, so a second process making its
    key at the same moment either wins or reads the finished winner."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


def ensure_keypair(home: Home) -> KeyPair:
    """This user's key pair, made now if there is none yet."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = keys_dir(home)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_path = folder / PRIVATE_NAME
    if not private_path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        _write_private(private_path, pem)
    try:
        key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise KeyFileError(f"Your private key {private_path} cannot be read ({exc}). Move it "
                           "aside to make a new one (colleagues must then trust the new "
                           "public key).") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{private_path} is not an Ed25519 key. Move it aside to make one.")
    mode = private_path.stat().st_mode & 0o777
    if mode & 0o077:
        os.chmod(private_path, 0o600)
    line = _public_line(key.public_key(), f"{current_user()}@{socket.gethostname()}")
    public_path = folder / PUBLIC_NAME
    if not public_path.exists() or public_path.read_text(encoding="utf-8").split()[:2] != \
            line.split()[:2]:
        _atomic_write(public_path, line + "\n", mode=0o644)
    return KeyPair(key, line)


def export_public_key(home: Home, dest: Path) -> Path:
    """Write this user's public key (one OpenSSH line) to ``dest``."""
    pair = ensure_keypair(home)
    dest = Path(dest).expanduser()
    if dest.is_dir():
        dest = dest / f"{current_user()}-{PUBLIC_NAME}"
    _atomic_write(dest, pair.public_line + "\n", mode=0o644)
    return dest


def _atomic_write(path: Path, text: str, *, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---- the trust list ----------------------------------------------------------------------------

@dataclass(frozen=True)
class TrustedKey:
    name: str
    fingerprint: str
    public_line: str
    added_at: str
    added_by: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def trusted_keys(home: Home) -> list[TrustedKey]:
    path = keys_dir(home) / TRUST_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"The trust list {path} is unreadable ({exc}). Fix or remove it, "
                           "then trust your colleagues' keys again.") from None
    out = []
    for item in raw.get("keys", []) if isinstance(raw, dict) else []:
        try:
            out.append(TrustedKey(str(item["name"]), str(item["fingerprint"]),
                                  str(item["public_line"]), str(item.get("added_at", "")),
                                  str(item.get("added_by", ""))))
        except (KeyError, TypeError):
            continue
    return out


def _save_trusted(home: Home, keys: list[TrustedKey]) -> None:
    folder = keys_dir(home)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _atomic_write(folder / TRUST_NAME, json.dumps(
        {"keys": [k.to_json() for k in keys]}, indent=2) + "\n", mode=0o644)


def trust_key(home: Home, name: str, key_file: Path | str) -> TrustedKey:
    """Add a colleague's public key file to the trust list under ``name``."""
    name = name.strip()
    if not name:
        raise KeyFileError("Give the key a name (whose key it is), e.g. 'alice'.")
    path = Path(key_file).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"Cannot read the key file {path} ({exc}).") from None
    _, line, _ = load_public_line(text)
    fp = fingerprint_of_line(line)
    keys = trusted_keys(home)
    for k in keys:
        if k.fingerprint == fp:
            raise KeyFileError(f"This key ({fp}) is already trusted as {k.name!r}.")
        if k.name == name:
            raise KeyFileError(f"A key named {name!r} is already trusted ({k.fingerprint}). "
                               "Choose another name, or remove that one first.")
    entry = TrustedKey(name, fp, line, utcnow(), current_user())
    _save_trusted(home, [*keys, entry])
    return entry


def untrust_key(home: Home, name_or_fingerprint: str) -> TrustedKey:
    keys = trusted_keys(home)
    for k in keys:
        if name_or_fingerprint in (k.name, k.fingerprint):
            _save_trusted(home, [x for x in keys if x is not k])
            return k
    raise KeyFileError(f"No trusted key named {name_or_fingerprint!r}. 'llmops keys list' "
                       "shows them.")


def trusted_name(home: Home, fingerprint: str) -> str | None:
    for k in trusted_keys(home):
        if k.fingerprint == fingerprint:
            return k.name
    return None


# ---- signatures --------------------------------------------------------------------------------

def sign_manifest(home: Home, manifest: bytes) -> bytes:
    """The detached signature member's bytes for ``manifest`` (signed with this user's key)."""
    pair = ensure_keypair(home)
    return (json.dumps({
        "algorithm": SIGNATURE_ALGORITHM, "public_key": pair.public_line,
        "fingerprint": pair.fingerprint,
        "signature": base64.b64encode(pair.sign(manifest)).decode("ascii"),
    }, indent=2) + "\n").encode()


@dataclass(frozen=True)
class SignatureCheck:
    """What a package's signature says: valid (always, or it raised), who signed it."""

    fingerprint: str
    public_line: str
    trusted_as: str | None  # the trust list's name for the key, None when unknown

    @property
    def signer(self) -> str:
        parts = self.public_line.split(None, 2)
        return parts[2] if len(parts) > 2 else ""


def verify_signature(home: Home | None, manifest: bytes,
                     signature_member: bytes) -> SignatureCheck:
    """Check the signature over ``manifest``; raise :class:`SignatureError` if it fails.
    With a ``home``, a trusted key is named from its trust list."""
    from cryptography.exceptions import InvalidSignature

    try:
        sig = json.loads(signature_member)
        if sig.get("algorithm") != SIGNATURE_ALGORITHM:
            raise SignatureError(f"The package is signed with {sig.get('algorithm')!r}; this "
                                 "app verifies ed25519 signatures only.")
        key, line, _ = load_public_line(str(sig["public_key"]))
        signature = base64.b64decode(sig["signature"], validate=True)
    except SignatureError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, KeyFileError):
        raise SignatureError("The package's signature member is malformed; the package was "
                             "damaged or tampered with. Nothing was imported.") from None
    try:
        key.verify(signature, manifest)
    except InvalidSignature:
        raise SignatureError(
            "The package's signature does not match its manifest: the manifest was changed "
            "after it was signed (tampered with or damaged). Nothing was imported; ask the "
            "sender for a fresh copy.") from None
    fp = fingerprint_of_line(line)
    return SignatureCheck(fp, line, trusted_name(home, fp) if home is not None else None)
