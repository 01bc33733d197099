"""Participant ids: HMAC-SHA256 of a key (browser token, account, persona identity) with a secret salt.

The salt comes from ``RLLI_ID_SALT`` or is generated once into ``<data_dir>/id-salt`` (mode 0600, created
atomically so concurrent first starts agree). Without the salt an id cannot be traced back to its key;
the key itself (an IP, a name) is never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SALT_FILE = "id-salt"


def load_salt(data_dir: Path, configured: str = "") -> bytes:
    if configured:
        return configured.encode("utf-8")
    path = Path(data_dir) / SALT_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{SALT_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if another process won the race: then its salt is the salt
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    salt = path.read_text().strip()
    if len(salt) < 32:
        raise ValueError(f"{path} holds no usable salt (under 32 characters); delete it only if no ids exist yet")
    return salt.encode("utf-8")


def participant_id(salt: bytes, kind: str, key: str) -> str:
    """A stable 32-hex-digit id for (kind, key) under this salt."""
    return hmac.new(salt, f"{kind}\x00{key}".encode(), hashlib.sha256).hexdigest()[:32]
