"""API keys (facesearch.access) and how the gateway reads them from a call's metadata: keys are
stored only as salted digests, checked for shape, scope, collection and revocation, and the
key file is read again when it changes (a broken edit keeps the keys read before)."""

import json
import os
from pathlib import Path

import pytest

from facesearch.access import (
    KeyFile,
    KeyTable,
    parse_key,
    require_collection,
    require_scope,
)
from facesearch.errors import (
    ConfigError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from facesearch_services.gateway.access import presented_key


@pytest.fixture
def keys(tmp_path: Path) -> KeyFile:
    return KeyFile(tmp_path / "keys.jsonl")


def test_a_key_is_stored_only_as_a_salted_digest_and_proves_itself(keys: KeyFile) -> None:
    record, key = keys.create("app", ["search"], [])
    _, again = keys.create("app", ["search"], [])
    text = keys.path.read_text()
    assert key not in text and key.split("_", 2)[2] not in text
    assert record.proves(key.split("_", 2)[2]) and not record.proves(again.split("_", 2)[2])
    assert KeyTable(keys.path).authenticate(key) == record
    digests = [json.loads(line)["digest"] for line in text.splitlines()]
    assert len(set(digests)) == 2  # each its own salt and secret


@pytest.mark.parametrize(
    ("presented", "reason"),
    [
        ("", "the API key is empty"),
        ("fs_0123456789ab_short", "malformed API key (21 characters)"),
        ("Bearer fs_x", "malformed API key"),
        ("fs_0123456789ab_" + "A" * 43, "unknown API key 0123456789ab"),
    ],
)
def test_a_malformed_or_unknown_key_is_unauthenticated_saying_which(
    keys: KeyFile, presented: str, reason: str
) -> None:
    keys.create("app", ["search"], [])
    with pytest.raises(UnauthenticatedError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        KeyTable(keys.path).authenticate(presented)


def test_the_right_id_with_another_secret_is_unknown(keys: KeyFile) -> None:
    record, key = keys.create("app", ["search"], [])
    forged = key[:-1] + ("A" if key[-1] != "A" else "B")
    with pytest.raises(UnauthenticatedError, match=f"unknown API key {record.id}") as caught:
        KeyTable(keys.path).authenticate(forged)
    assert caught.value.reason == "unknown_key"


def test_a_revoked_key_is_refused_at_once_by_a_table_already_open(keys: KeyFile) -> None:
    record, key = keys.create("ci", ["index"], [])
    table = KeyTable(keys.path)
    assert table.authenticate(key).id == record.id
    keys.revoke(record.id)
    with pytest.raises(UnauthenticatedError, match=r'key \w+ \("ci"\) was revoked at ') as caught:
        table.authenticate(key)
    assert caught.value.reason == "revoked_key"
    assert keys.revoke(record.id).revoked == keys.read()[record.id].revoked  # again: unchanged
    with pytest.raises(NotFoundError, match="no key 000000000000"):
        keys.revoke("000000000000")


def test_a_key_made_after_the_table_opened_is_taken(keys: KeyFile) -> None:
    table = KeyTable(keys.path)  # no file yet: no key
    _, key = keys.create("late", ["search"], [])
    assert table.authenticate(key).name == "late"


def test_a_broken_edit_keeps_the_keys_read_before_and_is_reported(keys: KeyFile) -> None:
    _, key = keys.create("app", ["search"], [])
    bad: list[int] = []
    table = KeyTable(keys.path, lambda: bad.append(1))
    keys.path.write_text(keys.path.read_text() + "{not json\n")
    os.utime(keys.path, ns=(1, 1))
    assert table.authenticate(key).name == "app"
    assert bad == [1]
    with pytest.raises(ConfigError, match=r"keys\.jsonl, line 2"):
        KeyTable(keys.path)  # at start, a broken file stops the gateway


def test_scopes_and_collections_decide_what_a_key_may_call(keys: KeyFile) -> None:
    searcher, _ = keys.create("s", ["search"], ["shop"])
    admin, _ = keys.create("a", ["admin"], [])
    require_scope(searcher, ("index", "search"), "GetImage")
    require_scope(admin, ("delete",), "Delete")
    with pytest.raises(PermissionDeniedError, match="may not call Delete: it needs the delete"):
        require_scope(searcher, ("delete",), "Delete")
    require_collection(searcher, "shop", "Search")
    require_collection(admin, "", "Delete")
    for collection, what in (("other", "collection 'other'"), ("", "every collection")):
        with pytest.raises(PermissionDeniedError, match=f"on {what}: it is limited to shop"):
            require_collection(searcher, collection, "Search")


@pytest.mark.parametrize(
    ("scopes", "collections", "problem"),
    [
        (["read"], [], "scopes must be some of"),
        ([], [], "scopes must be some of"),
        (["admin"], ["shop"], "an admin key cannot be limited to collections"),
    ],
)
def test_keys_that_make_no_sense_are_not_made(
    keys: KeyFile, scopes: list[str], collections: list[str], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        keys.create("x", scopes, collections)
    assert not keys.path.exists()


def test_the_key_in_the_metadata_is_read_from_either_header() -> None:
    assert presented_key([("authorization", "Bearer k1")]) == "k1"
    assert presented_key([("authorization", "bearer  k1 ")]) == "k1"
    assert presented_key([("x-api-key", "k2"), ("user-agent", "x")]) == "k2"
    assert presented_key([("x-api-key", "k"), ("authorization", "Bearer k")]) == "k"
    assert presented_key([("user-agent", "x")]) is None
    with pytest.raises(UnauthenticatedError, match="two different API keys"):
        presented_key([("x-api-key", "k1"), ("authorization", "Bearer k2")])
    with pytest.raises(UnauthenticatedError, match="authorization must read 'Bearer <key>'"):
        presented_key([("authorization", "Basic dXNlcjpwYXNz")])


def test_parse_key_splits_id_and_secret() -> None:
    assert parse_key("fs_0123456789ab_" + "x" * 43) == ("0123456789ab", "x" * 43)
