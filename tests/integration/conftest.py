"""Fixtures of the integration tier: the real ONNX models (loaded once), Qdrant in local mode in
a temporary folder, the ``facesearch`` console script run as a subprocess, and the photos that
the installed packages ship.

Test modules do not import from here (two conftest.py files share one module name); everything
they need comes as a fixture."""

import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facesearch.cli import demo_photos
from facesearch.models import FaceModels
from facesearch.pipeline import AnalyzedImage, analyze, embed
from facesearch.settings import CoreSettings

FACESEARCH = Path(sys.executable).parent / "facesearch"
CLI_TIMEOUT_S = 180


@pytest.fixture(scope="session")
def settings() -> CoreSettings:
    """Default settings, as the CLI has them with no FACESEARCH_* variable set."""
    return CoreSettings()


@pytest.fixture(scope="session")
def face_models(settings: CoreSettings) -> FaceModels:
    """The bundled buffalo_s detector and recognizer, loaded once for the whole session."""
    return FaceModels(settings.models)


@pytest.fixture(scope="session")
def demo() -> dict[str, Path]:
    """The sample photos of the installed packages: players, gdp, t1 (the gallery the demo
    indexes) and yaoming (its query)."""
    gallery, query = demo_photos()
    photos = {path.stem: path for path in (*gallery, query)}
    assert sorted(photos) == ["gdp", "players", "t1", "yaoming"]
    for path in photos.values():
        assert path.is_file(), f"{path} is missing from the installed packages"
    return photos


@pytest.fixture(scope="session")
def analyzed(
    demo: dict[str, Path], face_models: FaceModels, settings: CoreSettings
) -> dict[str, tuple[AnalyzedImage, np.ndarray]]:
    """Each demo photo through decode, detect, align and embed (done once): its faces and
    their embeddings, by photo name."""
    result = {}
    for name, path in demo.items():
        image = analyze(path.read_bytes(), face_models, settings)
        result[name] = (image, embed(face_models, image))
    return result


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """This test's FACESEARCH_HOME (the CLI keeps its index in home/qdrant)."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def run_cli(home: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the ``facesearch`` console script with ARGS, FACESEARCH_HOME set to ``home`` and no
    other FACESEARCH_* or QDRANT_* variable; ``stdin`` is bytes fed to standard input."""

    def run(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FACESEARCH_", "QDRANT_"))}
        env["FACESEARCH_HOME"] = str(home)
        done = subprocess.run(
            [str(FACESEARCH), *(str(a) for a in args)],
            input=stdin,
            capture_output=True,
            env=env,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )
        return subprocess.CompletedProcess(
            done.args,
            done.returncode,
            done.stdout.decode("utf-8", "replace"),
            done.stderr.decode("utf-8", "replace"),
        )

    return run


@pytest.fixture(scope="session")
def grey_jpeg() -> Callable[[Path], Path]:
    """Write a plain grey 200x200 JPEG (a valid image without a face) at a path."""

    def write(path: Path) -> Path:
        buffer = io.BytesIO()
        Image.new("RGB", (200, 200), (128, 128, 128)).save(buffer, format="JPEG")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buffer.getvalue())
        return path

    return write
