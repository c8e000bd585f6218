"""Bearer tokens for the tuning service.

Two kinds: the one in EMBER_SERVICE_TOKEN (the simple case; its owner is called "env"), and named
tokens made by `ember service token create NAME`. A named token is shown once and stored only as
its SHA-256 digest: tokens are 256 random bits, so a fast hash is enough and a stolen database
reveals none of them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from ember.autotune.service.queue import JobQueue
from ember.errors import UsageError

__all__ = ["ENV_OWNER", "authenticate", "create_token", "digest"]

ENV_OWNER = "env"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def digest(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(queue: JobQueue, name: str) -> str:
    """Make a named token, store its digest, and return it (it cannot be shown again)."""
    if not _NAME.fullmatch(name) or name == ENV_OWNER:
        raise UsageError(
            f"token name {name!r}: use 1-64 letters, digits, '.', '_' or '-' "
            f"(and not {ENV_OWNER!r}, the name of EMBER_SERVICE_TOKEN)"
        )
    token = f"ember_{secrets.token_urlsafe(32)}"
    if not queue.add_token(name, digest(token)):
        raise UsageError(f"a token named {name!r} exists already: choose another name")
    return token


def authenticate(queue: JobQueue, header: str | None, env_token: str | None) -> str | None:
    """The owner of the request's `Authorization: Bearer TOKEN`, or None when it is missing or
    matches no token."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    if env_token is not None and hmac.compare_digest(token.encode(), env_token.encode()):
        return ENV_OWNER
    return queue.token_name(digest(token))
