"""API keys: read from the keys file, re-read on SIGHUP, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

from codegraph.settings import ConfigError

log = logging.getLogger("codegraph.auth")
PRIMARY = "CODEGRAPH_API_KEY"
PREVIOUS = "CODEGRAPH_API_KEYS_PREVIOUS"  # comma-separated, still accepted during a rotation


def parse_keys_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines as in an .env file; comments, blanks and `export ` allowed."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        if sep:
            values[name.strip()] = value.strip().strip("'\"")
    return values


class ApiKeys:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._keys: tuple[bytes, ...] = ()
        self.load()

    def load(self) -> int:
        """Read the file; keep the old keys and raise if it is unusable. Returns the key count."""
        try:
            values = parse_keys_file(self.path.read_text())
        except OSError as error:
            raise ConfigError(f"auth.keys_file {self.path}: {error.strerror}") from None
        primary = values.get(PRIMARY, "")
        if not primary:
            raise ConfigError(f"auth.keys_file {self.path}: no {PRIMARY}= line")
        previous = [key.strip() for key in values.get(PREVIOUS, "").split(",") if key.strip()]
        self._keys = tuple(key.encode() for key in [primary, *previous])
        return len(self._keys)

    def reload(self) -> bool:
        try:
            count = self.load()
        except ConfigError as error:
            log.error("keys not reloaded, the previous keys stay in force: %s", error)
            return False
        log.info("API keys reloaded (%d accepted)", count)
        return True

    def check(self, authorization: bytes | None) -> bool:
        """True if the Authorization header carries an accepted key."""
        token = bearer_token(authorization)
        if token is None:
            return False
        matched = False
        for key in self._keys:  # no early exit: the time taken does not tell which key
            matched |= hmac.compare_digest(token, key)
        return matched


def bearer_token(authorization: bytes | None) -> bytes | None:
    """The key an Authorization header carries (the scheme is case-insensitive, as
    RFC 9110 says), or None when it is not a Bearer one."""
    if not authorization or authorization[:7].lower() != b"bearer ":
        return None
    return authorization[7:].strip()


def key_scope(authorization: bytes | None) -> str:
    """The identity of the API key a request was sent with, for scoping its
    Idempotency-Key: the same key however the client spells the scheme. (The hash of
    "Bearer <key>", so a scope is the same as the releases before this one computed for
    the usual spelling: a retry across a rolling deploy still finds its first answer.)"""
    token = bearer_token(authorization)
    normal = b"Bearer " + token if token is not None else (authorization or b"")
    return hashlib.sha256(normal).hexdigest()[:16]
