"""Checks on a finished ``facesearch`` run, shared by the test modules that run the CLI
(importable because pyproject puts tests/integration on pytest's pythonpath)."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

FACESEARCH = Path(sys.executable).parent / "facesearch"  # the console script of this venv


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """The run, after checking it exited 0 without a traceback."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a successful run printed."""
    return json.loads(ok(result).stdout)
