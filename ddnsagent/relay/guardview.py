"""The bounce guard in `status` (text and the `bounce_guard` key of `--json`): pure and light,
so `status` loads no process or asyncio code (relay/guard.py does the work)."""

from __future__ import annotations

import time
from typing import Any

from ddnsagent.store import Guard


def status_json(limit: int, record: Guard | None) -> dict[str, Any]:
    """The `bounce_guard` object of `status --json` (README: "Bounce guard")."""
    g = record or Guard()
    return {
        "limit": limit,
        "enabled": limit > 0,
        "active": g.since is not None,
        "since": g.since,
        "held": g.held,
        "top_domains": list(g.domains),
        "notice": g.notice or None,
        "problem": g.problem,
        "time": g.time or None,
    }


def status_lines(shown: dict[str, Any]) -> list[str]:
    """The text `status` prints for the guard."""
    if not shown["enabled"]:
        return ["bounce guard: off ([relay] bounce_limit = 0)"]
    limit = shown["limit"]
    if shown["active"]:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(shown["since"]))
        head = f"bounce guard: ON since {since}: past {limit} bounces an hour, bounces go on hold"
    else:
        head = f"bounce guard: watching (holds bounces past {limit} an hour)"
    lines = [head]
    if shown["held"]:
        domains = ", ".join(shown["top_domains"])
        lines.append(
            f"  {shown['held']} bounces on hold"
            + (f" (top recipient domains: {domains})" if domains else "")
            + "; `ddnsagent bounces list`, `ddnsagent bounces release --all`"
        )
    if shown["active"] and shown["notice"]:
        lines.append(f"  {shown['notice']}")
    if shown["problem"]:
        lines.append(f"  the last hold failed: {shown['problem']}")
    return lines
