"""Participant tokens: made once, shown once, stored as a SHA-256 digest, compared in constant time.

A token is ``hsb_<key id>_<secret>``: the key id (public, random) finds the participant's row, and
the secret (32 random bytes) is checked against the stored digest with :func:`hmac.compare_digest`.
A token is 256 bits of randomness, so a fast hash is the right one (a password hash protects guessable
secrets); the database never holds a token, only its digest. Tokens never appear in a URL or a log.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX = "hsb"
_TOKEN = re.compile(rf"{PREFIX}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{43}})")


def new_token() -> tuple[str, str, str]:
    """A fresh token: ``(token, key_id, digest)``; only ``key_id`` and ``digest`` are stored."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return f"{PREFIX}_{key_id}_{secret}", key_id, digest(secret)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def split(token: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a well-formed token, else None."""
    m = _TOKEN.fullmatch(token.strip())
    return (m.group(1), m.group(2)) if m else None


def matches(secret: str, stored_digest: str) -> bool:
    """Whether ``secret`` is the one whose digest was stored, in time independent of where they differ."""
    return hmac.compare_digest(digest(secret), stored_digest)
