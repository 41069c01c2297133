"""Shared test fixtures. Tiers: tests/unit (no network, no models) and tests/integration (the
real ONNX models, Qdrant in local mode on disk, the CLI as a subprocess)."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def face_data_if_present() -> Path | None:
    """The shared labelled face photos (../shared/data/faces, or $FACESEARCH_TEST_DATA), or
    None on a machine without them."""
    path = Path(os.environ.get("FACESEARCH_TEST_DATA", ROOT.parent / "shared" / "data" / "faces"))
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def face_data(face_data_if_present: Path | None) -> Path:
    """The shared labelled face photos; tests that need them skip without them."""
    path = face_data_if_present or ROOT.parent / "shared" / "data" / "faces"
    if face_data_if_present is None:
        # The photos live beside the repository, never in it (their README asks for a skip with
        # a clear reason, so the test command still passes on a machine without them).
        pytest.skip(
            f"face data folder {path} is absent (set FACESEARCH_TEST_DATA to run this test)"
        )
    return path
