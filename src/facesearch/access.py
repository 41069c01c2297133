"""API keys: who may call a gateway, for what (scopes) and on which collections.

A key reads ``fs_<id>_<secret>``: the id (12 hex digits) names its record and is what logs,
audit records and ``keys list`` show; the secret (43 URL-safe characters, 256 random bits)
proves it. Only a salted SHA-256 of the secret is stored. Against 256 random bits a slow hash
buys nothing, and a fast one keeps the check on every call cheap. The digests are compared in
constant time.

The records are a JSON-lines file, one key a line: the gateway's
``FACESEARCH_GATEWAY_KEYS_FILE``. In the local stack it is ``<data dir>/keys.jsonl``; in a
cluster, a Kubernetes Secret that every gateway replica mounts, so the replicas share it.
``KeyTable`` reads the file again whenever it changes, so a key created or revoked reaches
every replica once the file does. A revoked key keeps its record, so its caller is told it
was revoked, and the id is never given out again.
"""

import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from facesearch.errors import (
    ConfigError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from facesearch.quotas import Limits

logger = logging.getLogger(__name__)

SCOPES = ("index", "search", "delete", "admin")  # admin may do everything
PREFIX = "fs_"
ID_HEX = 12
SECRET_CHARS = 43  # secrets.token_urlsafe(32)
KEY_PATTERN = re.compile(rf"{PREFIX}([0-9a-f]{{{ID_HEX}}})_([A-Za-z0-9_-]{{{SECRET_CHARS}}})")
KEY_SHAPE = f"{PREFIX}<{ID_HEX} hex digits>_<{SECRET_CHARS} characters>"
MAX_NAME = 200


@dataclass(frozen=True)
class ApiKey:
    """One key's record: never the key itself, only its salted digest."""

    id: str
    name: str
    scopes: tuple[str, ...]
    collections: tuple[str, ...]  # empty: every collection
    salt: str  # hex
    digest: str  # hex sha256(salt || secret)
    created: str  # ISO 8601, UTC
    revoked: str = ""  # ISO 8601, UTC, once revoked
    # Quotas (quotas.Limits): None takes the gateway's default, 0 is no limit.
    rps: float | None = None
    searches_per_day: int | None = None

    def limits(self, default: Limits) -> Limits:
        return Limits(
            default.rps if self.rps is None else self.rps,
            default.searches_per_day if self.searches_per_day is None else self.searches_per_day,
        )

    def proves(self, secret: str) -> bool:
        return hmac.compare_digest(_digest(self.salt, secret), self.digest)

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def covers(self, collection: str) -> bool:
        return not self.collections or collection in self.collections

    def describe(self) -> str:
        """``key <id> ("<name>")``, as messages name a key."""
        return f'key {self.id} ("{self.name}")' if self.name else f"key {self.id}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def public_json(self) -> dict[str, Any]:
        """What ``keys list`` shows: everything but the salt and the digest."""
        return {k: v for k, v in self.to_json().items() if k not in ("salt", "digest")}

    @classmethod
    def from_json(cls, data: Any) -> "ApiKey":
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        key = cls(
            id=_text(data, "id"),
            name=_text(data, "name"),
            scopes=tuple(_texts(data, "scopes")),
            collections=tuple(_texts(data, "collections")),
            salt=_text(data, "salt"),
            digest=_text(data, "digest"),
            created=_text(data, "created"),
            revoked=_text(data, "revoked") if "revoked" in data else "",
            rps=_number(data, "rps", float),
            searches_per_day=_number(data, "searches_per_day", int),
        )
        if not re.fullmatch(f"[0-9a-f]{{{ID_HEX}}}", key.id):
            raise ValueError(f"id {key.id!r} is not {ID_HEX} hex digits")
        check_scopes(key.scopes, key.collections)
        return key


def _text(data: dict[str, Any], field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str):
        raise ValueError(f"{field!r} is missing or not a string")
    return value


def _texts(data: dict[str, Any], field: str) -> list[str]:
    value = data.get(field)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{field!r} is missing or not a list of strings")
    return value


def _number(data: dict[str, Any], field: str, kind: type) -> Any:
    value = data.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{field!r} must be a number of at least 0, or null")
    return kind(value)


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_scopes(scopes: Iterable[str], collections: Iterable[str]) -> None:
    """Refuse (ValueError, saying why) scopes that are not known, none at all, or an admin key
    limited to collections (admin covers what has no collection: keys, Stats, opt-outs)."""
    scopes = list(scopes)
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}, not {scopes}")
    if "admin" in scopes and list(collections):
        raise ValueError("an admin key cannot be limited to collections")


def require_scope(key: ApiKey, scopes: tuple[str, ...], method: str) -> None:
    """PermissionDeniedError unless ``key`` has one of ``scopes`` (admin has them all)."""
    if not any(key.allows(scope) for scope in scopes):
        needed = " or ".join(scopes)
        raise PermissionDeniedError(
            f"{key.describe()} may not call {method}: it needs the {needed} scope, and the key "
            f"has {', '.join(key.scopes)}",
            "scope",
        )


def require_collection(key: ApiKey, collection: str, method: str) -> None:
    """PermissionDeniedError unless ``key`` covers ``collection`` ("" is every collection,
    which only a key for every collection covers)."""
    if key.covers(collection) and (collection or not key.collections):
        return
    allowed = ", ".join(key.collections)
    what = f"collection {collection!r}" if collection else "every collection"
    raise PermissionDeniedError(
        f"{key.describe()} may not call {method} on {what}: it is limited to {allowed}",
        "collection",
    )


def parse_key(presented: str) -> tuple[str, str]:
    """(id, secret) of a presented key, or UnauthenticatedError saying what is wrong with it."""
    if not presented:
        raise UnauthenticatedError("the API key is empty", "malformed_key")
    found = KEY_PATTERN.fullmatch(presented)
    if found is None:
        raise UnauthenticatedError(
            f"malformed API key ({len(presented)} characters): a facesearch key reads {KEY_SHAPE}",
            "malformed_key",
        )
    return found.group(1), found.group(2)


def new_key(
    name: str,
    scopes: Iterable[str],
    collections: Iterable[str],
    taken: Iterable[str] = (),
    limits: tuple[float | None, int | None] = (None, None),
) -> tuple[ApiKey, str]:
    """A new key's record and the key itself (shown once, never stored)."""
    scopes, collections = sorted(set(scopes)), sorted(set(collections))
    check_scopes(scopes, collections)
    if len(name) > MAX_NAME:
        raise ValueError(f"a key's name is at most {MAX_NAME} characters")
    taken = set(taken)
    key_id = secrets.token_hex(ID_HEX // 2)
    while key_id in taken:
        key_id = secrets.token_hex(ID_HEX // 2)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    rps, per_day = limits
    record = ApiKey(
        key_id,
        name,
        tuple(scopes),
        tuple(collections),
        salt,
        _digest(salt, secret),
        _now(),
        rps=rps,
        searches_per_day=per_day,
    )
    return record, f"{PREFIX}{key_id}_{secret}"


class KeyFile:
    """The JSON-lines file of key records. Changes are written to a new file that replaces the
    old one (a reader never sees half a file), under a lock (two ``keys`` commands at once
    lose nothing). It holds no secret (a digest of 256 random bits tells nothing of them), so
    it is readable by all: a gateway in a container runs as another user."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, ApiKey]:
        """The records by id; {} for a file not made yet; ConfigError for one that is
        malformed, naming the line."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the keys file {self.path}: {exc}") from exc
        keys: dict[str, ApiKey] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                key = ApiKey.from_json(json.loads(line))
            except ValueError as exc:  # json's errors are ValueErrors too
                raise ConfigError(f"keys file {self.path}, line {number}: {exc}") from exc
            keys[key.id] = key
        return keys

    def create(
        self,
        name: str,
        scopes: Iterable[str],
        collections: Iterable[str],
        limits: tuple[float | None, int | None] = (None, None),
    ) -> tuple[ApiKey, str]:
        """A new key (``limits``: its requests a second and searches a day, None for the
        gateway's defaults) and the key itself, shown once."""
        with self._changing() as keys:
            record, key = new_key(name, scopes, collections, keys, limits)
            keys[record.id] = record
        return record, key

    def revoke(self, key_id: str) -> ApiKey:
        """Mark a key revoked (again: no change); NotFoundError for an id never given out."""
        with self._changing() as keys:
            if key_id not in keys:
                raise NotFoundError(f"no key {key_id} in {self.path}")
            if not keys[key_id].revoked:
                keys[key_id] = replace(keys[key_id], revoked=_now())
            return keys[key_id]

    @contextmanager
    def _changing(self) -> Iterator[dict[str, ApiKey]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        with lock.open("a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            keys = self.read()
            yield keys
            self._write(keys.values())

    def _write(self, keys: Iterable[ApiKey]) -> None:
        fresh = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.writelines(json.dumps(k.to_json(), sort_keys=True) + "\n" for k in keys)
            out.flush()
            os.fsync(out.fileno())
        os.replace(fresh, self.path)


class KeyTable:
    """The keys a gateway accepts: the key file, read again when it changes (checked on each
    call: one stat). A file that turns malformed keeps the last good table (and is logged),
    so a bad edit does not lock every caller out; ``on_bad_file`` is told each time."""

    def __init__(self, path: Path, on_bad_file: Callable[[], None] = lambda: None) -> None:
        self.file = KeyFile(path)
        self.on_bad_file = on_bad_file
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._keys = self.file.read()  # a malformed file stops the start: ConfigError
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            found = self.file.path.stat()
        except FileNotFoundError:
            return None
        return found.st_ino, found.st_mtime_ns, found.st_size

    def keys(self) -> dict[str, ApiKey]:
        stamp = self._stat()
        if stamp == self._stamp:
            return self._keys
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._keys = self.file.read()
                except ConfigError as exc:
                    self.on_bad_file()
                    logger.error("keeping the keys read before: %s", exc)
                self._stamp = stamp
        return self._keys

    def verify(self, presented: str) -> ApiKey:
        """The record a presented key proves, revoked or not; UnauthenticatedError for a
        malformed or unknown one."""
        key_id, secret = parse_key(presented)
        record = self.keys().get(key_id)
        if record is None or not record.proves(secret):
            raise UnauthenticatedError(
                f"unknown API key {key_id}: ask the gateway's owner for one", "unknown_key"
            )
        return record

    def authenticate(self, presented: str) -> ApiKey:
        """The record of a presented key in force; UnauthenticatedError for a malformed,
        unknown or revoked one (the message says which)."""
        return require_active(self.verify(presented))


def require_active(record: ApiKey) -> ApiKey:
    if record.revoked:
        raise UnauthenticatedError(
            f"{record.describe()} was revoked at {record.revoked}", "revoked_key"
        )
    return record
