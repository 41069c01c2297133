"""The local stack's own admin key: its gateway checks keys as any other does, and the stack
hands its owner (the facesearch CLI of the same data folder, tests, benchmarks) an admin key
for it.

``stack/admin-key.json`` (readable by the owner only) holds the key and the gateway address it
is for. The CLI sends it only to that address, never to another gateway.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from facesearch.access import KeyFile, KeyTable
from facesearch.errors import ConfigError, FaceSearchError

ADMIN_KEY_NAME = "local stack"
ADMIN_KEY_FILE = "admin-key.json"


@dataclass(frozen=True)
class StackKey:
    key: str
    gateway: str  # HOST:PORT


def keys_path(home: Path) -> Path:
    """Where a data folder keeps its keys file (the local stack's gateway reads it, and
    ``facesearch keys`` edits it by default)."""
    return home / "keys.jsonl"


def admin_key_path(home: Path) -> Path:
    return home / "stack" / ADMIN_KEY_FILE


def read_stack_key(home: Path) -> StackKey | None:
    """The stack's admin key, if it made one and the file is readable."""
    try:
        data = json.loads(admin_key_path(home).read_text(encoding="utf-8"))
        return StackKey(str(data["key"]), str(data["gateway"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ensure_admin_key(home: Path, keys_file: Path, gateway: str) -> StackKey:
    """The stack's admin key for ``gateway``: the one it made before while that still works
    there, else a new one added to ``keys_file``."""
    known = read_stack_key(home)
    if known is not None:
        try:
            KeyTable(keys_file).authenticate(known.key)
        except FaceSearchError:
            pass  # revoked, or made for another keys file: make another
        else:
            held = StackKey(known.key, gateway)
            _write(admin_key_path(home), held)
            return held
    try:
        _, key = KeyFile(keys_file).create(ADMIN_KEY_NAME, ["admin"], [])
    except OSError as exc:
        raise ConfigError(f"cannot write the keys file {keys_file}: {exc}") from exc
    held = StackKey(key, gateway)
    _write(admin_key_path(home), held)
    return held


def _write(path: Path, held: StackKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"key": held.key, "gateway": held.gateway}, out)
