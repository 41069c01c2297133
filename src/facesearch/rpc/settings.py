"""The typed settings of the four services, read once from the environment in each service's
``main.py`` (and by ``facesearch stack``, docker-compose and the Kubernetes manifests, which
set the same names).

Shared names: ``FACESEARCH_KAFKA_BOOTSTRAP`` (required), ``FACESEARCH_TOPIC_*``,
``FACESEARCH_KAFKA_MAX_MESSAGE_BYTES``, the core's ``FACESEARCH_*`` model and limit names,
``QDRANT_URL`` / ``QDRANT_PATH``. Per service ``<S>`` (DETECTOR, EMBEDDER, SEARCH, GATEWAY):
``FACESEARCH_<S>_HOST``, ``_GRPC_PORT``, ``_METRICS_PORT``, ``_DRAIN_SECONDS``, ``_TLS_CERT``,
``_TLS_KEY`` and ``_TLS_CLIENT_CA`` (``rpc.tls``), and for the three consumers ``_GROUP``;
``FACESEARCH_GRPC_MAX_MESSAGE_BYTES`` for every gRPC server (and the gateway's channels to the
others), and the gateway's ``FACESEARCH_INTERNAL_TLS_*`` for those channels.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from facesearch.errors import ConfigError
from facesearch.quotas import Limits
from facesearch.rpc.tls import ClientTls, ServerTls, read_client_tls, read_server_tls
from facesearch.settings import MAX_MESSAGE_BYTES, CoreSettings, EnvReader


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str
    images_topic: str = "facesearch.images.v1"
    faces_topic: str = "facesearch.faces.v1"
    embeddings_topic: str = "facesearch.embeddings.v1"
    audit_topic: str = "facesearch.audit.v1"  # the gateway's record of every call
    usage_topic: str = "facesearch.usage.v1"  # the gateway replicas' shared quota usage
    # The broker, producers and consumers all allow messages this large (the broker's own
    # default is 1 MiB).
    max_message_bytes: int = MAX_MESSAGE_BYTES

    @classmethod
    def read(cls, reader: EnvReader) -> "KafkaSettings":
        return cls(
            bootstrap=reader.required(
                "FACESEARCH_KAFKA_BOOTSTRAP", "the Kafka broker's HOST:PORT list"
            ),
            images_topic=reader.text("FACESEARCH_TOPIC_IMAGES", cls.images_topic),
            faces_topic=reader.text("FACESEARCH_TOPIC_FACES", cls.faces_topic),
            embeddings_topic=reader.text("FACESEARCH_TOPIC_EMBEDDINGS", cls.embeddings_topic),
            audit_topic=reader.text("FACESEARCH_TOPIC_AUDIT", cls.audit_topic),
            usage_topic=reader.text("FACESEARCH_TOPIC_USAGE", cls.usage_topic),
            max_message_bytes=reader.limit(
                "FACESEARCH_KAFKA_MAX_MESSAGE_BYTES", cls.max_message_bytes, int
            ),
        )


@dataclass(frozen=True)
class ServerSettings:
    """Where one service listens and how long it drains on SIGTERM."""

    name: str  # detector | embedder | search | gateway
    host: str
    grpc_port: int
    metrics_port: int
    drain_s: float
    group_id: str  # its Kafka consumer group ("" for the gateway, which consumes nothing)
    # The largest gRPC message it receives or sends (gRPC's own default is 4 MiB).
    max_message_bytes: int = MAX_MESSAGE_BYTES
    tls: ServerTls | None = None  # None: plaintext

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.grpc_port}"


def _server(reader: EnvReader, name: str, grpc_port: int, metrics_port: int) -> ServerSettings:
    prefix = f"FACESEARCH_{name.upper()}_"
    return ServerSettings(
        name=name,
        host=reader.text(prefix + "HOST", "0.0.0.0"),
        grpc_port=reader.number(prefix + "GRPC_PORT", grpc_port, int),
        metrics_port=reader.number(prefix + "METRICS_PORT", metrics_port, int),
        drain_s=reader.number(prefix + "DRAIN_SECONDS", 20.0, float),
        group_id=reader.text(prefix + "GROUP", f"facesearch-{name}") if name != "gateway" else "",
        max_message_bytes=reader.limit(
            "FACESEARCH_GRPC_MAX_MESSAGE_BYTES", ServerSettings.max_message_bytes, int
        ),
        tls=read_server_tls(reader, prefix.rstrip("_")),
    )


@dataclass(frozen=True)
class _ServiceSettings:
    """What every service's settings hold and share: where it listens, the broker, the core
    settings; reading them, and listing the names read. A subclass adds its own fields by
    overriding ``_own``."""

    NAME: ClassVar[str]
    PORTS: ClassVar[tuple[int, int]]  # default gRPC and metrics ports
    server: ServerSettings
    kafka: KafkaSettings
    core: CoreSettings

    @classmethod
    def read(cls, reader: EnvReader) -> Self:
        server = _server(reader, cls.NAME, *cls.PORTS)
        return cls(
            server, KafkaSettings.read(reader), CoreSettings.read(reader), **cls._own(reader)
        )

    @classmethod
    def _own(cls, reader: EnvReader) -> dict[str, Any]:
        return {}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        return cls.read(EnvReader(os.environ if env is None else env))

    @classmethod
    def env_names(cls) -> frozenset[str]:
        """Every variable the service reads (required ones given a placeholder to get past)."""
        reader = EnvReader(_Placeholders())
        cls.read(reader)
        return frozenset(reader.names_read)


class _Placeholders(dict[str, str]):
    def get(self, key: str, default: str | None = None) -> str:  # type: ignore[override]
        return (
            "localhost:1"
            if key.endswith(("_BOOTSTRAP", "_DETECTOR", "_EMBEDDER", "_SEARCH", "_KEYS_FILE"))
            else ""
        )


@dataclass(frozen=True)
class DetectorSettings(_ServiceSettings):
    NAME: ClassVar[str] = "detector"
    PORTS: ClassVar[tuple[int, int]] = (50052, 9102)


@dataclass(frozen=True)
class EmbedderSettings(_ServiceSettings):
    NAME: ClassVar[str] = "embedder"
    PORTS: ClassVar[tuple[int, int]] = (50053, 9103)
    max_batch: int = 16  # FacesEvents embedded together in one model call, at most
    max_wait_s: float = 0.05  # how long the first message of a batch waits for company

    @classmethod
    def _own(cls, reader: EnvReader) -> dict[str, Any]:
        return {
            "max_batch": max(1, reader.number("FACESEARCH_EMBEDDER_MAX_BATCH", cls.max_batch, int)),
            "max_wait_s": reader.number("FACESEARCH_EMBEDDER_MAX_WAIT_MS", 50, float) / 1000,
        }


@dataclass(frozen=True)
class SearchSettings(_ServiceSettings):
    """The core settings give QDRANT_URL, QDRANT_PATH and FACESEARCH_HOME."""

    NAME: ClassVar[str] = "search"
    PORTS: ClassVar[tuple[int, int]] = (50054, 9104)


@dataclass(frozen=True)
class GatewaySettings(_ServiceSettings):
    """The core settings give the image limits it enforces before anything is queued."""

    NAME: ClassVar[str] = "gateway"
    PORTS: ClassVar[tuple[int, int]] = (50051, 9101)
    # HOST:PORT of each internal service's gRPC server, or a comma-separated list of IPv4
    # HOST:PORTs of its replicas (the gateway spreads its calls over them).
    detector: str = ""
    embedder: str = ""
    search: str = ""
    deadline_s: float = 30.0  # for each call to the internal services
    max_images_per_call: int = 1000  # IndexRequests in one IndexImages stream
    # The API keys it accepts (access.KeyFile); None only with FACESEARCH_GATEWAY_AUTH=off,
    # a development stack where every caller may do everything.
    keys_file: Path | None = None
    # The quotas of a key that sets none (FACESEARCH_GATEWAY_DEFAULT_RPS and
    # _DEFAULT_SEARCHES_PER_DAY; 0: no limit).
    default_limits: Limits = field(default_factory=Limits)
    # How it reaches the internal services: FACESEARCH_INTERNAL_TLS_CA (their CA), _CERT and
    # _KEY (its client certificate, if they require one), _SERVER_NAME; None: plaintext.
    internal_tls: ClientTls | None = None

    @classmethod
    def _own(cls, reader: EnvReader) -> dict[str, Any]:
        def address(service: str) -> str:
            return reader.required(
                f"FACESEARCH_GATEWAY_{service.upper()}", f"the {service} service's HOST:PORT"
            )

        return {
            "detector": address("detector"),
            "embedder": address("embedder"),
            "search": address("search"),
            "deadline_s": reader.limit(
                "FACESEARCH_GATEWAY_DEADLINE_SECONDS", cls.deadline_s, float
            ),
            "max_images_per_call": reader.limit(
                "FACESEARCH_GATEWAY_MAX_IMAGES_PER_CALL", cls.max_images_per_call, int
            ),
            "keys_file": _keys_file(reader),
            "default_limits": Limits(
                reader.number("FACESEARCH_GATEWAY_DEFAULT_RPS", 0.0, float),
                reader.number("FACESEARCH_GATEWAY_DEFAULT_SEARCHES_PER_DAY", 0, int),
            ),
            "internal_tls": read_client_tls(reader, "FACESEARCH_INTERNAL_TLS"),
        }


def _keys_file(reader: EnvReader) -> Path | None:
    auth = reader.text("FACESEARCH_GATEWAY_AUTH", "keys").lower()
    if auth not in ("keys", "off"):
        raise ConfigError(f"FACESEARCH_GATEWAY_AUTH={auth!r} must be keys or off")
    path = reader.path("FACESEARCH_GATEWAY_KEYS_FILE")
    if auth == "off":
        return None
    if path is None:
        raise ConfigError(
            "FACESEARCH_GATEWAY_KEYS_FILE is not set: give the file of API keys made by "
            "`facesearch keys create --file FILE` (or FACESEARCH_GATEWAY_AUTH=off for a "
            "development stack open to every caller)"
        )
    return path


SERVICES: dict[str, type[_ServiceSettings]] = {
    s.NAME: s for s in (DetectorSettings, EmbedderSettings, SearchSettings, GatewaySettings)
}
