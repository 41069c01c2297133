"""The services' settings from the environment: defaults as in docs/architecture.md, overrides, the
required broker and gateway addresses refused by name, and the list of names each reads."""

from pathlib import Path

import pytest

from facesearch.errors import ConfigError
from facesearch.rpc.settings import (
    SERVICES,
    DetectorSettings,
    EmbedderSettings,
    GatewaySettings,
    SearchSettings,
)

BROKER = {"FACESEARCH_KAFKA_BOOTSTRAP": "kafka:9092"}
GATEWAY = {
    **BROKER,
    "FACESEARCH_GATEWAY_DETECTOR": "detector:50052",
    "FACESEARCH_GATEWAY_EMBEDDER": "embedder:50053",
    "FACESEARCH_GATEWAY_SEARCH": "search:50054",
    "FACESEARCH_GATEWAY_KEYS_FILE": "/etc/facesearch/keys/keys.jsonl",
}


def test_defaults_follow_the_design_table() -> None:
    ports = {
        name: (s.server.grpc_port, s.server.metrics_port, s.server.group_id)
        for name, s in (
            ("gateway", GatewaySettings.from_env(GATEWAY)),
            ("detector", DetectorSettings.from_env(BROKER)),
            ("embedder", EmbedderSettings.from_env(BROKER)),
            ("search", SearchSettings.from_env(BROKER)),
        )
    }
    assert ports == {
        "gateway": (50051, 9101, ""),
        "detector": (50052, 9102, "facesearch-detector"),
        "embedder": (50053, 9103, "facesearch-embedder"),
        "search": (50054, 9104, "facesearch-search"),
    }
    kafka = DetectorSettings.from_env(BROKER).kafka
    assert (kafka.images_topic, kafka.faces_topic, kafka.embeddings_topic) == (
        "facesearch.images.v1",
        "facesearch.faces.v1",
        "facesearch.embeddings.v1",
    )
    assert kafka.max_message_bytes == 64 * 1024 * 1024


def test_overrides_are_read_per_service() -> None:
    env = {
        **BROKER,
        "FACESEARCH_EMBEDDER_HOST": "127.0.0.1",
        "FACESEARCH_EMBEDDER_GRPC_PORT": "6000",
        "FACESEARCH_EMBEDDER_METRICS_PORT": "6001",
        "FACESEARCH_EMBEDDER_DRAIN_SECONDS": "2.5",
        "FACESEARCH_EMBEDDER_GROUP": "g",
        "FACESEARCH_EMBEDDER_MAX_BATCH": "32",
        "FACESEARCH_EMBEDDER_MAX_WAIT_MS": "10",
        "FACESEARCH_TOPIC_FACES": "faces.test",
        "FACESEARCH_DETECTOR_GRPC_PORT": "7000",  # another service's: no effect here
    }
    settings = EmbedderSettings.from_env(env)
    assert settings.server.grpc_address == "127.0.0.1:6000"
    assert (settings.server.metrics_port, settings.server.drain_s) == (6001, 2.5)
    assert settings.server.group_id == "g"
    assert (settings.max_batch, settings.max_wait_s) == (32, 0.01)
    assert settings.kafka.faces_topic == "faces.test"


def test_a_missing_broker_address_is_refused_by_name() -> None:
    for settings in SERVICES.values():
        with pytest.raises(ConfigError, match="FACESEARCH_KAFKA_BOOTSTRAP is not set"):
            settings.from_env({})


def test_the_gateway_needs_every_internal_address() -> None:
    for name in ("DETECTOR", "EMBEDDER", "SEARCH"):
        env = {k: v for k, v in GATEWAY.items() if k != f"FACESEARCH_GATEWAY_{name}"}
        with pytest.raises(ConfigError, match=f"FACESEARCH_GATEWAY_{name} is not set"):
            GatewaySettings.from_env(env)
    assert GatewaySettings.from_env(GATEWAY).embedder == "embedder:50053"


def test_a_bad_number_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="FACESEARCH_SEARCH_GRPC_PORT"):
        SearchSettings.from_env({**BROKER, "FACESEARCH_SEARCH_GRPC_PORT": "fifty"})


def test_env_names_list_what_each_service_reads() -> None:
    assert "FACESEARCH_EMBEDDER_MAX_BATCH" in EmbedderSettings.env_names()
    assert "FACESEARCH_EMBEDDER_MAX_BATCH" not in DetectorSettings.env_names()
    assert {"QDRANT_URL", "QDRANT_PATH"} <= SearchSettings.env_names()
    assert "FACESEARCH_GATEWAY_SEARCH" in GatewaySettings.env_names()
    for settings in SERVICES.values():
        assert "FACESEARCH_KAFKA_BOOTSTRAP" in settings.env_names()


def test_the_gateway_checks_keys_unless_told_off_and_then_needs_no_keys_file() -> None:
    assert GatewaySettings.from_env(GATEWAY).keys_file == Path("/etc/facesearch/keys/keys.jsonl")
    unkeyed = {k: v for k, v in GATEWAY.items() if k != "FACESEARCH_GATEWAY_KEYS_FILE"}
    with pytest.raises(ConfigError, match=r"FACESEARCH_GATEWAY_KEYS_FILE is not set.*AUTH=off"):
        GatewaySettings.from_env(unkeyed)
    assert GatewaySettings.from_env({**GATEWAY, "FACESEARCH_GATEWAY_AUTH": "off"}).keys_file is None
    with pytest.raises(ConfigError, match="FACESEARCH_GATEWAY_AUTH='maybe' must be keys or off"):
        GatewaySettings.from_env({**GATEWAY, "FACESEARCH_GATEWAY_AUTH": "maybe"})
