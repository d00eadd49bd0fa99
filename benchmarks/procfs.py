"""One reader for the /proc files the benchmarks take memory figures from."""

from __future__ import annotations

from pathlib import Path


def kib(path: Path, key: str) -> int:
    """A ``Key:   123 kB`` field of /proc/PID/status or /proc/PID/smaps_rollup, in KiB."""
    for line in path.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(f"{key} not in {path}")
