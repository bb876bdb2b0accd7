"""API keys per person: made once, kept only as salted hashes, checked in constant time.

A key reads ``llmops-<key id>-<secret>``. The key id (8 hex digits) is not secret: it
finds the row. The secret is never stored: the row holds ``scrypt(secret, salt)`` with a
salt of its own, and a presented key is checked with :func:`hmac.compare_digest`. Each key
has a scope (comma-separated globs over model names), optional limits (requests and tokens
per minute), an optional expiry date, and usage counters the gateway adds to.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from llmops_desktop.catalog import Catalog, utcnow
from llmops_desktop.errors import ConflictError, InvalidInputError, NotFoundError

KEY_PREFIX = "llmops-"
_KEY = re.compile(r"^llmops-([0-9a-f]{8})-([A-Za-z0-9_-]{20,100})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$")
SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def hash_secret(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode("ascii"), salt=salt, **SCRYPT)


@dataclass(frozen=True)
class ApiKey:
    """One person's key as the catalog knows it (never the key itself)."""

    id: int
    name: str
    key_id: str
    models: str
    rpm: int | None
    tpm: int | None
    expires_at: str | None
    created_at: str
    revoked_at: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    last_used_at: str | None

    @property
    def globs(self) -> list[str]:
        return [g.strip() for g in self.models.split(",") if g.strip()] or ["*"]

    def allows(self, *names: str) -> bool:
        """Whether any of a model's names (NAME@VERSION, NAME) is in this key's scope."""
        return any(fnmatch.fnmatchcase(n, g) for g in self.globs for n in names if n)

    def expired(self, now: datetime | None = None) -> bool:
        if not self.expires_at:
            return False
        return (now or datetime.now(timezone.utc)) >= _parse_date(self.expires_at)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "key_id": self.key_id, "models": self.models,
                "rpm": self.rpm, "tpm": self.tpm, "expires_at": self.expires_at,
                "created_at": self.created_at, "revoked_at": self.revoked_at,
                "requests": self.requests, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "tokens": self.prompt_tokens + self.completion_tokens,
                "last_used_at": self.last_used_at}


_COLUMNS = ("id", "name", "key_id", "models", "rpm", "tpm", "expires_at", "created_at",
            "revoked_at", "requests", "prompt_tokens", "completion_tokens", "last_used_at")


def _parse_date(text: str) -> datetime:
    """``YYYY-MM-DD`` (the start of that day, UTC) or an ISO date and time."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(f"Not a date: {text!r}; write YYYY-MM-DD or "
                                "YYYY-MM-DDTHH:MM.") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _row(row: sqlite3.Row | tuple) -> ApiKey:
    return ApiKey(**dict(zip(_COLUMNS, row)))


def create_key(catalog: Catalog, name: str, *, models: str = "*", rpm: int | None = None,
               tpm: int | None = None, expires: str | None = None) -> tuple[ApiKey, str]:
    """A new key for ``name``: its record, and the key itself (shown once, kept nowhere)."""
    name = name.strip()
    if not _NAME.match(name):
        raise InvalidInputError(f"Key name {name!r}: letters, digits and _ . @ + -, at most "
                                "64, starting with a letter or digit (a person or an app).")
    for label, value in (("--rpm", rpm), ("--tpm", tpm)):
        if value is not None and value < 1:
            raise InvalidInputError(f"{label} must be at least 1 (leave it out for no limit).")
    expires_at = None
    if expires:
        when = _parse_date(expires)
        if when <= datetime.now(timezone.utc):
            raise InvalidInputError(f"--expires {expires} is in the past.")
        expires_at = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    models = ",".join(g.strip() for g in (models or "*").split(",") if g.strip()) or "*"
    if catalog.conn.execute("SELECT 1 FROM api_keys WHERE name = ?", (name,)).fetchone():
        raise ConflictError(f"There is already a key named {name!r} (revoked keys keep their "
                            "name for the record): pick another name.")
    key_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    with catalog.transaction() as conn:
        conn.execute("INSERT INTO api_keys (name, key_id, salt, key_hash, models, rpm, tpm, "
                     "expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (name, key_id, salt, hash_secret(secret, salt), models, rpm, tpm,
                      expires_at, utcnow()))
        catalog.audit("apikey_create", details={"name": name, "key_id": key_id,
                                                "models": models, "rpm": rpm, "tpm": tpm,
                                                "expires_at": expires_at})
    return get_key(catalog, name), f"{KEY_PREFIX}{key_id}-{secret}"


def get_key(catalog: Catalog, name: str) -> ApiKey:
    row = catalog.conn.execute(f"SELECT {','.join(_COLUMNS)} FROM api_keys WHERE name = ?",
                               (name,)).fetchone()
    if row is None:
        raise NotFoundError(f"No API key named {name!r}; see 'llmops apikey list'.")
    return _row(row)


def list_keys(catalog: Catalog) -> list[ApiKey]:
    rows = catalog.conn.execute(f"SELECT {','.join(_COLUMNS)} FROM api_keys ORDER BY name")
    return [_row(r) for r in rows]


def revoke_key(catalog: Catalog, name: str) -> ApiKey:
    """Revoke at once: a running gateway reads the row on every request."""
    key = get_key(catalog, name)
    if key.revoked_at:
        return key
    with catalog.transaction() as conn:
        conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (utcnow(), key.id))
        catalog.audit("apikey_revoke", details={"name": name, "key_id": key.key_id})
    return get_key(catalog, name)


def keys_required(catalog: Catalog) -> bool:
    """Whether any key was ever made here: from then on every request needs one."""
    return catalog.conn.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone() is not None


def usable_keys(catalog: Catalog) -> list[ApiKey]:
    return [k for k in list_keys(catalog) if not k.revoked_at and not k.expired()]


class KeyRefused(Exception):
    """A key that is missing, unknown, revoked or expired (HTTP 401)."""


class KeyRing:
    """Checks presented keys against the catalog, row by row on every request (so a
    revocation applies at once). scrypt runs once per key and gateway run: a key that
    matched is remembered by its SHA-256 in this process's memory only."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._matched: dict[tuple[str, bytes], bytes] = {}  # (key id, key hash) -> sha256

    def check(self, token: str) -> ApiKey:
        """The key ``token`` is, if it may be used now; raises KeyRefused."""
        key, secret, salt, stored, digest = self._lookup(token)
        if not self._matches(key, digest, stored) and not self._remember(
                key, digest, stored, hash_secret(secret, salt)):
            raise KeyRefused("Incorrect API key.")
        return self._usable(key)

    async def check_async(self, token: str) -> ApiKey:
        """:meth:`check`, with the first scrypt of a key in a worker thread, so other
        requests go on meanwhile."""
        import asyncio

        key, secret, salt, stored, digest = self._lookup(token)
        if not self._matches(key, digest, stored) and not self._remember(
                key, digest, stored, await asyncio.to_thread(hash_secret, secret, salt)):
            raise KeyRefused("Incorrect API key.")
        return self._usable(key)

    def _lookup(self, token: str) -> tuple[ApiKey, str, bytes, bytes, bytes]:
        match = _KEY.match(token)
        if not match:
            raise KeyRefused("Incorrect API key." if token else
                             "This gateway needs an API key: send 'Authorization: Bearer "
                             "<key>' (the openai client's api_key).")
        row = self.catalog.conn.execute(
            f"SELECT {','.join(_COLUMNS)}, salt, key_hash FROM api_keys WHERE key_id = ?",
            (match[1],)).fetchone()
        if row is None:
            raise KeyRefused("Incorrect API key.")
        digest = hashlib.sha256(token.encode("ascii")).digest()
        return _row(row[:-2]), match[2], row[-2], row[-1], digest

    def _matches(self, key: ApiKey, digest: bytes, stored: bytes) -> bool:
        seen = self._matched.get((key.key_id, stored))
        return seen is not None and hmac.compare_digest(seen, digest)

    def _remember(self, key: ApiKey, digest: bytes, stored: bytes, computed: bytes) -> bool:
        if not hmac.compare_digest(computed, stored):
            return False
        self._matched[(key.key_id, stored)] = digest
        return True

    @staticmethod
    def _usable(key: ApiKey) -> ApiKey:
        if key.revoked_at:
            raise KeyRefused(f"This API key ({key.name}) was revoked.")
        if key.expired():
            raise KeyRefused(f"This API key ({key.name}) expired on {key.expires_at}.")
        return key
