"""API keys through the local stack (issue 14): every public method refuses a call without a
key, with a key of another scope and with a revoked key, saying which, and counts each
refusal; a key revoked in the middle of an IndexImages stream stops it after the images
before; a key limited to a collection stays in it; bad key metadata gets a clear status and
disturbs nothing; the CLI sends the key it is given (or the stack's own) and says what is
wrong with a bad one.

One stack (``Stack.up`` in this process) serves the module: it takes a minute or more to start
on two cores."""

import io
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from gateway_checks import gateway_stub, settled
from kafka import KafkaConsumer, TopicPartition
from PIL import Image

from facesearch.access import KeyFile
from facesearch.audit import AuditRecord
from facesearch.devstack.broker import free_port, jars_ready
from facesearch.devstack.keys import keys_path
from facesearch.devstack.stack import SERVICES, Stack
from facesearch.ids import image_id
from facesearch.metrics import scrape
from facesearch.proto.v1 import api_pb2, api_pb2_grpc
from facesearch.rpc.settings import GatewaySettings
from facesearch.stream.audit import read_audit_topic
from facesearch_services.gateway.access import METHOD_SCOPES

UP_S = 600.0
REFUSED = "facesearch_gateway_refused_total"
# A scope that does not allow each method (admin allows everything).
OTHER_SCOPE = {
    "IndexImages": "search",
    "GetImage": "delete",
    "Search": "index",
    "Compare": "index",
    "Delete": "search",
    "Stats": "search",
    "OptOut": "delete",
    "ListOptOuts": "search",
    "RemoveOptOut": "delete",
}


@dataclass
class KeyedStack:
    stack: Stack
    env: dict[str, str]
    gateway: str
    metrics_port: int

    @property
    def keys(self) -> KeyFile:
        return KeyFile(keys_path(self.stack.home))

    def key(self, *scopes: str, collections: tuple[str, ...] = ()) -> str:
        return self.keys.create("test", scopes, collections)[1]

    def images_queued(self) -> int:
        """Messages on the images topic so far."""
        return self.topic_end("facesearch.images.v1")

    def topic_end(self, topic: str) -> int:
        """Messages on ``topic`` so far, over its partitions."""
        consumer = KafkaConsumer(bootstrap_servers=self.stack.broker().bootstrap)
        try:
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            return sum(consumer.end_offsets(parts).values())
        finally:
            consumer.close()

    def refused(self, method: str, reason: str, **labels: str) -> float:
        return scrape(self.metrics_port, REFUSED, method=method, reason=reason, **labels)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedStack]:
    if not jars_ready():
        pytest.fail("the Kafka jars are missing: run scripts/setup")
    home = tmp_path_factory.mktemp("access") / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACESEARCH_", "QDRANT_"))}
    env["FACESEARCH_HOME"] = str(home)
    for name in SERVICES:
        env[f"FACESEARCH_{name.upper()}_GRPC_PORT"] = str(free_port())
        env[f"FACESEARCH_{name.upper()}_METRICS_PORT"] = str(free_port())
    stack = Stack(home, env=env, kafka_port=free_port(), controller_port=free_port())
    try:
        stack.up(UP_S)
        server = GatewaySettings.from_env(stack.compose_env(stack.broker().bootstrap)).server
        yield KeyedStack(stack, env, f"127.0.0.1:{server.grpc_port}", server.metrics_port)
    finally:
        stack.down()


def requests(demo: dict[str, Path]) -> dict[str, Callable[[api_pb2_grpc.FaceSearchStub], Any]]:
    """One valid call of every public method (in this order: each RemoveOptOut that succeeds
    removes the last opt-out an OptOut made; the two faces alternate, each its own entry)."""
    photo = demo["gdp"].read_bytes()
    mirrored = io.BytesIO()
    Image.open(demo["yaoming"]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored, "PNG")
    faces = [demo["yaoming"].read_bytes(), mirrored.getvalue()]
    added: list[str] = []

    def opt_out(stub: api_pb2_grpc.FaceSearchStub) -> None:
        request = api_pb2.OptOutRequest(image=faces[len(added) % 2])
        added.append(stub.OptOut(request).entry.optout_id)

    def remove(stub: api_pb2_grpc.FaceSearchStub) -> Any:
        last = added[-1] if added else "00000000-0000-0000-0000-000000000000"  # refused anyway
        answer = stub.RemoveOptOut(api_pb2.RemoveOptOutRequest(optout_id=last))
        added.pop()
        return answer

    return {
        "IndexImages": lambda s: s.IndexImages(iter([api_pb2.IndexRequest(data=photo)])),
        "GetImage": lambda s: s.GetImage(api_pb2.GetImageRequest(image_id=image_id(photo))),
        "Search": lambda s: s.Search(api_pb2.SearchRequest(image=photo)),
        "Compare": lambda s: s.Compare(api_pb2.CompareRequest(image_a=photo, image_b=photo)),
        "Delete": lambda s: s.Delete(api_pb2.DeleteRequest(label="nobody-at-all")),
        "Stats": lambda s: s.Stats(api_pb2.StatsRequest()),
        "OptOut": opt_out,
        "ListOptOuts": lambda s: s.ListOptOuts(api_pb2.ListOptOutsRequest()),
        "RemoveOptOut": remove,
    }


def status(call: Callable[[api_pb2_grpc.FaceSearchStub], Any], stub: Any) -> tuple[Any, str]:
    try:
        call(stub)
    except grpc.RpcError as exc:
        return exc.code(), str(exc.details())
    return grpc.StatusCode.OK, ""


def test_every_method_refuses_no_key_another_scope_and_a_revoked_key_saying_which(
    keyed: KeyedStack, demo: dict[str, Path]
) -> None:
    calls = requests(demo)
    assert set(calls) == set(METHOD_SCOPES)  # every public method is covered
    revoked = keyed.key(*{"index", "search", "delete"})
    keyed.keys.revoke(revoked.split("_")[1])
    admin = keyed.stack.admin_key()
    for method, call in calls.items():
        before = {r: keyed.refused(method, r) for r in ("no_key", "scope", "revoked_key")}
        other = keyed.key(OTHER_SCOPE[method])
        with gateway_stub(keyed.gateway, None) as anonymous:
            code, details = status(call, anonymous)
        assert code == grpc.StatusCode.UNAUTHENTICATED, (method, details)
        assert details.startswith(f"unauthenticated: {method} needs an API key"), details
        with gateway_stub(keyed.gateway, other) as stub:
            code, details = status(call, stub)
        assert code == grpc.StatusCode.PERMISSION_DENIED, (method, details)
        assert f"may not call {method}: it needs the" in details, details
        with gateway_stub(keyed.gateway, revoked) as stub:
            code, details = status(call, stub)
        assert code == grpc.StatusCode.UNAUTHENTICATED, (method, details)
        assert "was revoked at" in details, details
        after = {r: keyed.refused(method, r) for r in before}
        assert after == {r: n + 1 for r, n in before.items()}, method
        with gateway_stub(keyed.gateway, admin) as stub:
            assert status(call, stub) == (grpc.StatusCode.OK, ""), method
        check_exhausted(keyed, method, call)


def check_exhausted(keyed: KeyedStack, method: str, call: Callable[..., Any]) -> None:
    """A key allowed one request in 100 s: its second call of ``method`` is refused with
    RESOURCE_EXHAUSTED, the time to retry in the message and in the trailing metadata."""
    slow = keyed.keys.create("slow", ["admin"], [], (0.01, None))[1]
    with gateway_stub(keyed.gateway, slow) as stub:
        assert status(call, stub) == (grpc.StatusCode.OK, ""), method
        with pytest.raises(grpc.RpcError) as caught:
            call(stub)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, method
    details = str(caught.value.details())
    assert "has used its quota of 0.01 requests a second: retry in " in details, details
    trailing = {m.key: m.value for m in caught.value.trailing_metadata() or ()}
    assert 90_000 < int(trailing["retry-after-ms"]) <= 100_000, trailing
    assert keyed.refused(method, "quota_rps", key_id=slow.split("_")[1]) == 1


def test_a_key_revoked_mid_stream_stops_index_images_after_the_images_before(
    keyed: KeyedStack, demo: dict[str, Path]
) -> None:
    key = keyed.key("index")
    photos = [demo[name].read_bytes() for name in ("players", "t1", "yaoming")]

    queued = keyed.images_queued()

    def stream() -> Iterator[api_pb2.IndexRequest]:
        yield api_pb2.IndexRequest(data=photos[0], collection="midstream")
        # gRPC takes requests from here ahead of the server: revoke once the first is queued.
        deadline = time.monotonic() + 60
        while keyed.images_queued() == queued and time.monotonic() < deadline:
            time.sleep(0.05)
        keyed.keys.revoke(key.split("_")[1])
        yield from (api_pb2.IndexRequest(data=p, collection="midstream") for p in photos[1:])

    with gateway_stub(keyed.gateway, key) as stub, pytest.raises(grpc.RpcError) as caught:
        stub.IndexImages(stream())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "was revoked at" in str(caught.value.details())
    with gateway_stub(keyed.gateway, keyed.stack.admin_key()) as admin:
        first = settled(admin, image_id(photos[0]))
        assert first.status == api_pb2.IMAGE_STATUS_INDEXED
        assert first.image.meta.collection == "midstream"
        later = status(
            lambda s: s.GetImage(api_pb2.GetImageRequest(image_id=image_id(photos[2]))), admin
        )
        assert later[0] == grpc.StatusCode.NOT_FOUND, later


def test_a_key_limited_to_a_collection_stays_in_it(
    keyed: KeyedStack, demo: dict[str, Path]
) -> None:
    key = keyed.key("index", "search", "delete", collections=("shop",))
    photo, other = demo["t1"].read_bytes(), demo["players"].read_bytes()
    denied = grpc.StatusCode.PERMISSION_DENIED
    with gateway_stub(keyed.gateway, keyed.stack.admin_key()) as admin:
        admin.IndexImages(iter([api_pb2.IndexRequest(data=other, collection="elsewhere")]))
        assert settled(admin, image_id(other)).status == api_pb2.IMAGE_STATUS_INDEXED
    with gateway_stub(keyed.gateway, key) as stub:
        stub.IndexImages(iter([api_pb2.IndexRequest(data=photo, collection="shop")]))
        assert settled(stub, image_id(photo)).status == api_pb2.IMAGE_STATUS_INDEXED
        shop = api_pb2.Filters(collection="shop")
        elsewhere = api_pb2.GetImageRequest(image_id=image_id(other))
        assert stub.Search(api_pb2.SearchRequest(image=photo, filters=shop)).faces
        refusals = {
            "index elsewhere": lambda s: s.IndexImages(
                iter([api_pb2.IndexRequest(data=photo, collection="elsewhere")])
            ),
            "search everywhere": lambda s: s.Search(api_pb2.SearchRequest(image=photo)),
            "read elsewhere": lambda s: s.GetImage(elsewhere),
            "delete": lambda s: s.Delete(api_pb2.DeleteRequest(label="x")),
        }
        for what, call in refusals.items():
            code, details = status(call, stub)
            assert code == denied and "it is limited to shop" in details, (what, details)


def test_bad_key_metadata_gets_a_clear_status_and_disturbs_nothing(
    keyed: KeyedStack, demo: dict[str, Path]
) -> None:
    call = requests(demo)["Stats"]
    unauthenticated = grpc.StatusCode.UNAUTHENTICATED
    cases = {
        "empty": ((("x-api-key", ""),), "the API key is empty"),
        "short": ((("x-api-key", "fs_abc"),), "malformed API key (6 characters)"),
        "long": ((("x-api-key", "fs_" + "a" * 2000),), "malformed API key (2003 characters)"),
        "basic": ((("authorization", "Basic dXNlcjpwYXNz"),), "authorization must read 'Bearer"),
        "two": ((("x-api-key", "a"), ("authorization", "Bearer b")), "two different API keys"),
    }
    before = keyed.refused("Stats", "malformed_key")
    with grpc.insecure_channel(keyed.gateway) as channel:
        stub = api_pb2_grpc.FaceSearchStub(channel)
        for name, (metadata, message) in cases.items():
            with pytest.raises(grpc.RpcError) as caught:
                stub.Stats(api_pb2.StatsRequest(), metadata=metadata)
            assert caught.value.code() == unauthenticated, name
            assert message in str(caught.value.details()), (name, caught.value.details())
        # Beyond gRPC's limit on metadata: refused by gRPC itself, before the gateway's code.
        with pytest.raises(grpc.RpcError) as huge:
            stub.Stats(api_pb2.StatsRequest(), metadata=(("x-api-key", "x" * 100_000),))
        assert huge.value.code() != grpc.StatusCode.OK
    assert keyed.refused("Stats", "malformed_key") == before + len(cases)
    with gateway_stub(keyed.gateway, keyed.stack.admin_key()) as admin:
        assert status(call, admin) == (grpc.StatusCode.OK, "")


def test_the_cli_sends_its_key_and_says_what_is_wrong_with_a_bad_one(
    keyed: KeyedStack, run_with_env: Callable[..., Any]
) -> None:
    env, gateway = keyed.env, keyed.gateway
    own = run_with_env(env, "stats", "--gateway", gateway, "--json")  # the stack's own key
    assert own.returncode == 0, own.stderr
    made = run_with_env(env, "keys", "create", "--scopes", "search", "--name", "cli", "--json")
    assert made.returncode == 0, made.stderr
    searcher = made.stdout.split('"key": "')[1].split('"')[0]
    refused = run_with_env(env, "stats", "--gateway", gateway, "--api-key", searcher)
    assert refused.returncode == 1
    assert "key has search" in refused.stderr and "needs the admin scope" in refused.stderr
    unknown = run_with_env({**env, "FACESEARCH_API_KEY": "fs_000000000000_" + "A" * 43},
                           "stats", "--gateway", gateway)  # fmt: skip
    assert unknown.returncode == 1
    assert "unknown API key 000000000000: ask the gateway's owner for one" in unknown.stderr
    listed = run_with_env(env, "keys", "list")
    assert '"cli": search on every collection' in listed.stdout and "digest" not in listed.stdout
    # The stack's key goes only to its own gateway: another address gets no key.
    elsewhere = run_with_env(env, "stats", "--gateway", gateway.replace("127.0.0.1", "localhost"))
    assert elsewhere.returncode == 1 and "needs an API key" in elsewhere.stderr


def test_the_audit_topic_holds_one_record_per_call_refused_ones_included(
    keyed: KeyedStack, demo: dict[str, Path], run_with_env: Callable[..., Any]
) -> None:
    since = datetime.now(UTC)
    admin = keyed.stack.admin_key()
    assert admin is not None
    admin_id = admin.split("_")[1]
    revoked = keyed.key("search")
    keyed.keys.revoke(revoked.split("_")[1])
    expected: list[tuple[str, str, str, str]] = []  # (method, key id, status, reason)
    calls = requests(demo)
    for method, call in calls.items():
        other = keyed.key(OTHER_SCOPE[method])
        for key, outcome in (
            (admin, ("OK", "")),
            (None, ("UNAUTHENTICATED", "no_key")),
            (other, ("PERMISSION_DENIED", "scope")),
            (revoked, ("UNAUTHENTICATED", "revoked_key")),
            ("fs_bad", ("UNAUTHENTICATED", "malformed_key")),
        ):
            with gateway_stub(keyed.gateway, key) as stub:
                status(call, stub)
            key_id = "" if key in (None, "fs_bad") else key.split("_")[1]
            expected.append((method, key_id, *outcome))
        slow = keyed.keys.create("slow", ["admin"], [], (0.01, None))[1]
        with gateway_stub(keyed.gateway, slow) as stub:
            status(call, stub)
            status(call, stub)
        expected.append((method, slow.split("_")[1], "OK", ""))
        expected.append((method, slow.split("_")[1], "RESOURCE_EXHAUSTED", "quota_rps"))
    shop = keyed.key("search", collections=("shop",))
    with gateway_stub(keyed.gateway, shop) as stub:
        status(calls["Search"], stub)  # every collection: not this key's
    expected.append(("Search", shop.split("_")[1], "PERMISSION_DENIED", "collection"))
    with gateway_stub(keyed.gateway, admin) as stub:
        status(lambda s: s.Search(api_pb2.SearchRequest(image=b"not an image")), stub)
        expected.append(("Search", admin_id, "INVALID_ARGUMENT", "bad_image"))
        for _ in range(2):
            status(calls["Search"], stub)
            expected.append(("Search", admin_id, "OK", ""))
    records = audit_records(keyed, since, len(expected))
    got = [(r.method, r.key_id, r.status, r.reason) for r in records]
    assert sorted(got) == sorted(expected)
    searches = [r for r in records if r.method == "Search" and r.status == "OK"]
    searches = [r for r in searches if r.key_id == admin_id]
    assert len(searches) == 3
    assert all(r.query_faces == len(r.face_hashes) >= 1 and r.results >= 1 for r in searches)
    assert len({tuple(r.face_hashes) for r in searches}) == 1  # the same faces, the same hashes
    assert all(len(h) == 64 for r in searches for h in r.face_hashes)
    assert all(sum(r.decisions.values()) == r.results for r in searches)
    assert all(r.peer.startswith("ipv4:127.0.0.1:") and r.source for r in records)
    text = str([r.to_json() for r in records])
    assert admin not in text and revoked not in text and "data" not in text
    # `facesearch audit --kafka` reads the same records.
    shown = run_with_env(keyed.env, "audit", "--kafka", keyed.stack.broker().bootstrap,
                         "--since", since.isoformat(), "--key", admin_id, "--json")  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    listed = json.loads(shown.stdout)["records"]
    assert len(listed) == sum(e[1] == admin_id for e in expected)


def audit_records(keyed: KeyedStack, since: datetime, count: int) -> list[AuditRecord]:
    """The audit topic's records from ``since`` on, once there are ``count`` (the gateway
    produces them in the background), or what there is after a while."""
    deadline = time.monotonic() + 30
    while True:
        found = list(read_audit_topic(keyed.stack.broker().bootstrap, since=since))
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_the_embedded_cli_keeps_its_audit_trail_in_the_data_folder(
    run_cli: Callable[..., Any], home: Path, demo: dict[str, Path]
) -> None:
    assert run_cli("index", demo["players"]).returncode == 0
    assert run_cli("search", demo["yaoming"]).returncode == 0
    assert run_cli("search", demo["players"].parent / "nothing.jpg").returncode != 0
    assert run_cli("delete", "--label", "nobody").returncode == 0
    shown = run_cli("audit", "--json")
    assert shown.returncode == 0, shown.stderr
    records = json.loads(shown.stdout)["records"]
    assert [(r["method"], r["status"], r["key_id"]) for r in records] == [
        ("IndexImages", "OK", "owner"),
        ("Search", "OK", "owner"),
        ("Delete", "OK", "owner"),
    ]
    assert records[1]["query_faces"] == 1 and records[1]["decisions"] == {"match": 1}
    assert records[0]["images"] == 1 and records[0]["results"] == 1
    only = run_cli("audit", "--method", "search", "--since", "1h")
    assert only.stdout.count("Search") == 1, only.stdout


def test_a_quota_holds_across_two_gateway_replicas(
    keyed: KeyedStack, demo: dict[str, Path], start_service: Callable[..., Any]
) -> None:
    env = keyed.stack.compose_env(keyed.stack.broker().bootstrap)
    env["FACESEARCH_GATEWAY_GRPC_PORT"] = str(free_port())
    env["FACESEARCH_GATEWAY_METRICS_PORT"] = str(free_port())
    second = start_service("gateway", env).target
    key = keyed.keys.create("shared", ["search"], [], (None, 4))[1]  # 4 searches a day
    search = requests(demo)["Search"]
    exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED
    ok = (grpc.StatusCode.OK, "")
    for target in (keyed.gateway, keyed.gateway, second, second):
        with gateway_stub(target, key) as stub:
            assert status(search, stub) == ok, target
        shared(keyed)
    for target in (second, keyed.gateway):  # each replica counts the other's searches
        with gateway_stub(target, key) as stub:
            code, details = status(search, stub)
        assert code == exhausted and "quota of 4 searches a day: retry in" in details, details
    with gateway_stub(second, key) as stub:  # other methods are not searches
        assert status(requests(demo)["Compare"], stub) == ok


def shared(keyed: KeyedStack) -> None:
    """Wait until the gateways' quota usage so far is on the usage topic, and a moment more
    for the replicas to read it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        before = keyed.topic_end("facesearch.usage.v1")
        time.sleep(0.5)
        if keyed.topic_end("facesearch.usage.v1") == before:
            break
    time.sleep(1.0)


def test_a_stream_of_images_takes_one_call_of_the_quota(
    keyed: KeyedStack, demo: dict[str, Path]
) -> None:
    key = keyed.keys.create("uploader", ["index"], [], (0.01, None))[1]  # one call in 100 s
    photos = [demo[name].read_bytes() for name in ("players", "t1", "yaoming")]
    with gateway_stub(keyed.gateway, key) as stub:
        results = stub.IndexImages(iter([api_pb2.IndexRequest(data=p) for p in photos])).results
        assert [r.image_id for r in results] == [image_id(p) for p in photos]
        code, details = status(lambda s: s.IndexImages(iter([api_pb2.IndexRequest()])), stub)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "0.01 requests a second" in details
