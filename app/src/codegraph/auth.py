"""API keys: read from the keys file, re-read on SIGHUP, compared in constant time."""

from __future__ import annotations

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
        if not authorization or authorization[:7].lower() != b"bearer ":
            return False
        token = authorization[7:].strip()
        matched = False
        for key in self._keys:  # no early exit: the time taken does not tell which key
            matched |= hmac.compare_digest(token, key)
        return matched
