"""The findings as the user reads them: a line each (with its fix), JSON, and the exit code."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, TextIO

from ddnsagent.doctor.finding import STATUSES, Finding

MARK = {"pass": "pass", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def exit_code(findings: Sequence[Finding]) -> int:
    """0 when nothing warns or fails, else 1."""
    return 1 if any(f.status in ("warn", "fail") for f in findings) else 0


def as_dict(findings: Sequence[Finding]) -> dict[str, Any]:
    counts = {s: sum(1 for f in findings if f.status == s) for s in STATUSES}
    return {
        "ok": exit_code(findings) == 0,
        "counts": counts,
        "checks": [asdict(f) for f in findings],
    }


def print_findings(findings: Sequence[Finding], out: TextIO) -> None:
    for f in findings:
        out.write(f"{MARK[f.status]}  {f.check} {f.subject}: {f.message}\n")
        if f.fix and f.status != "pass":
            out.write(f"      fix: {f.fix}\n")
    counts = as_dict(findings)["counts"]
    out.write(", ".join(f"{counts[s]} {s}" for s in STATUSES) + "\n")
