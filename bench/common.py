"""Helpers shared by the benchmarks: resident memory, image lists, the shared data folder."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(
    os.environ.get("FACESEARCH_TEST_DATA", ROOT.parent / "shared" / "data" / "faces")
)


def rss_mib() -> float:
    """Current resident set size of this process, MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_parts_mib(pid: int | str = "self") -> dict[str, float]:
    """Resident memory now: anonymous (the heap) and file-backed (mapped files in RAM), MiB."""
    parts = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("RssAnon", "RssFile"):
            parts[name] = int(value.split()[0]) / 1024
    return parts


def peak_rss_mib(pid: int | str = "self") -> float:
    """The peak resident set size of a process (this one by default), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def lfw_images(folder: Path) -> list[Path]:
    images = sorted(folder.glob("*/*.jpg"))
    if not images:
        raise SystemExit(f"no images under {folder}: pass --data DIR (the lfw-devtest folder)")
    return images
