"""CoreSettings.from_env: defaults, overrides, and clear errors naming the variable."""

from pathlib import Path

import pytest

from facesearch.errors import ConfigError
from facesearch.images import ImageLimits
from facesearch.settings import CoreSettings, HnswSettings, ModelSettings


def test_defaults_from_an_empty_environment() -> None:
    settings = CoreSettings.from_env({})
    assert settings.home == Path("~/.local/share/facesearch").expanduser()
    assert settings.home.is_absolute()
    assert settings.qdrant_path == settings.home / "qdrant"
    assert settings.qdrant_url == ""
    assert settings.models == ModelSettings()
    assert settings.models.providers == ("auto",)
    assert settings.models.det_max_side == 640
    assert settings.limits == ImageLimits()
    assert settings.limits.max_bytes == 50 * 1024 * 1024
    assert settings.limits.max_pixels == 50_000_000
    assert settings.max_faces_per_image == 100
    assert settings.store == "edge"
    assert settings.hnsw == HnswSettings(m=16, ef_construct=128, ef=2048)
    assert settings.edge_path == settings.home / "edge"


def test_blank_values_mean_the_default() -> None:
    env = {"FACESEARCH_HOME": "  ", "FACESEARCH_THREADS": "", "FACESEARCH_PROVIDERS": " "}
    assert CoreSettings.from_env(env) == CoreSettings.from_env({})


def test_facesearch_home_is_honoured(tmp_path: Path) -> None:
    settings = CoreSettings.from_env({"FACESEARCH_HOME": str(tmp_path / "index")})
    assert settings.home == tmp_path / "index"
    assert settings.qdrant_path == tmp_path / "index" / "qdrant"


def test_facesearch_home_expands_the_user() -> None:
    settings = CoreSettings.from_env({"FACESEARCH_HOME": "~/faces"})
    assert settings.home == Path("~/faces").expanduser()
    assert "~" not in str(settings.home)


def test_with_home_overrides_only_when_given(tmp_path: Path) -> None:
    settings = CoreSettings.from_env({})
    assert settings.with_home(None) is settings
    moved = settings.with_home(tmp_path)
    assert moved.home == tmp_path
    assert moved.limits == settings.limits


def test_every_variable_is_read() -> None:
    env = {
        "FACESEARCH_MODEL_PACK": "buffalo_l",
        "FACESEARCH_DETECTOR_MODEL": "/m/det.onnx",
        "FACESEARCH_RECOGNIZER_MODEL": "/m/rec.onnx",
        "FACESEARCH_PROVIDERS": "CUDAExecutionProvider, CPUExecutionProvider",
        "FACESEARCH_THREADS": "4",
        "FACESEARCH_DET_THRESHOLD": "0.65",
        "FACESEARCH_DET_MAX_SIDE": "1024",
        "FACESEARCH_MAX_IMAGE_BYTES": "1000",
        "FACESEARCH_MAX_IMAGE_PIXELS": " 2000 ",
        "FACESEARCH_MAX_FACES_PER_IMAGE": "7",
        "QDRANT_URL": "http://localhost:6333",
    }
    settings = CoreSettings.from_env(env)
    assert settings.models == ModelSettings(
        pack="buffalo_l",
        detector="/m/det.onnx",
        recognizer="/m/rec.onnx",
        providers=("CUDAExecutionProvider", "CPUExecutionProvider"),
        threads=4,
        det_threshold=0.65,
        det_max_side=1024,
    )
    assert settings.limits == ImageLimits(max_bytes=1000, max_pixels=2000)
    assert settings.max_faces_per_image == 7
    assert settings.qdrant_url == "http://localhost:6333"


def test_empty_entries_in_the_provider_list_are_dropped() -> None:
    env = {"FACESEARCH_PROVIDERS": "CUDAExecutionProvider, ,CPUExecutionProvider,"}
    settings = CoreSettings.from_env(env)
    assert settings.models.providers == ("CUDAExecutionProvider", "CPUExecutionProvider")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FACESEARCH_MAX_IMAGE_PIXELS", "lots"),
        ("FACESEARCH_MAX_IMAGE_PIXELS", "1e6"),
        ("FACESEARCH_MAX_IMAGE_BYTES", "10MB"),
        ("FACESEARCH_THREADS", "2.5"),
        ("FACESEARCH_DET_THRESHOLD", "high"),
        ("FACESEARCH_MAX_FACES_PER_IMAGE", "ten"),
    ],
)
def test_non_numeric_value_is_a_config_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        CoreSettings.from_env({name: value})
    assert name in str(caught.value)
    assert value in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FACESEARCH_MAX_IMAGE_PIXELS", "-1"),
        ("FACESEARCH_MAX_IMAGE_BYTES", "-100"),
        ("FACESEARCH_THREADS", "-2"),
        ("FACESEARCH_DET_THRESHOLD", "-0.5"),
    ],
)
def test_negative_value_is_rejected(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match="must not be negative") as caught:
        CoreSettings.from_env({name: value})
    assert name in str(caught.value)


def test_zero_is_accepted() -> None:
    settings = CoreSettings.from_env({"FACESEARCH_THREADS": "0"})
    assert settings.models.threads == 0


def test_qdrant_path_wins_over_home_but_not_over_an_explicit_data_dir(tmp_path: Path) -> None:
    env = {"FACESEARCH_HOME": str(tmp_path / "home"), "QDRANT_PATH": str(tmp_path / "index")}
    settings = CoreSettings.from_env(env)
    assert settings.qdrant_path == tmp_path / "index"
    assert settings.with_home(tmp_path / "other").qdrant_path == tmp_path / "other" / "qdrant"


def test_video_sampling_is_part_of_the_core_settings() -> None:
    assert CoreSettings.from_env({}).video.fps == 2.0
    assert CoreSettings.from_env({"FACESEARCH_VIDEO_FPS": "0.5"}).video.fps == 0.5
    with pytest.raises(ConfigError, match="FACESEARCH_VIDEO_FPS"):
        CoreSettings.from_env({"FACESEARCH_VIDEO_FPS": "0"})


def test_the_embedded_store_and_its_hnsw_settings_are_read(tmp_path: Path) -> None:
    env = {
        "FACESEARCH_STORE": " Local ",
        "FACESEARCH_HNSW_M": "32",
        "FACESEARCH_HNSW_EF_CONSTRUCT": "200",
        "FACESEARCH_HNSW_EF": "64",
        "QDRANT_PATH": str(tmp_path / "index" / "qdrant"),
    }
    settings = CoreSettings.from_env(env)
    assert settings.store == "local"
    assert settings.hnsw == HnswSettings(m=32, ef_construct=200, ef=64)
    assert settings.edge_path == tmp_path / "index" / "edge"  # beside local mode's folder


@pytest.mark.parametrize("value", ["server", "qdrant", "edge2"])
def test_an_unknown_store_is_a_config_error_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="edge, local") as caught:
        CoreSettings.from_env({"FACESEARCH_STORE": value})
    assert f"FACESEARCH_STORE={value!r}" in str(caught.value)


@pytest.mark.parametrize(
    "name", ["FACESEARCH_HNSW_M", "FACESEARCH_HNSW_EF", "FACESEARCH_HNSW_EF_CONSTRUCT"]
)
@pytest.mark.parametrize("value", ["0", "-4", "many"])
def test_a_bad_hnsw_setting_is_a_config_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        CoreSettings.from_env({name: value})
