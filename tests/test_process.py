"""process.py: the one process runner. A line longer than LINE_LIMIT (a queue listing inflated by
a message with thousands of recipients, which any local user can submit) is skipped without
stalling the reader, and the lines after it still arrive."""

from __future__ import annotations

import asyncio
import sys
import time

from ddnsagent import process


def test_an_over_long_line_is_skipped_and_the_next_lines_still_arrive() -> None:
    big = process.LINE_LIMIT * 3
    script = (
        "import sys\n"
        f"sys.stdout.write('x' * {big} + '\\n')\n"
        'sys.stdout.write(\'{"queue_id": "A1"}\\n\')\n'
        "sys.stdout.write('tail without newline')\n"
    )
    seen: list[str] = []
    started = time.monotonic()
    outcome = asyncio.run(
        process.run_async([sys.executable, "-c", script], 20, on_line=seen.append)
    )
    assert outcome.ok and not outcome.timed_out
    assert seen == ['{"queue_id": "A1"}', "tail without newline"]
    assert len(outcome.output) <= process.OUTPUT_CAP
    assert time.monotonic() - started < 15


def test_the_whole_process_group_is_killed_at_the_limit() -> None:
    started = time.monotonic()
    outcome = asyncio.run(process.run_async(["sh", "-c", "sleep 60 & sleep 60"], 0.5))
    assert outcome.timed_out and outcome.returncode is None
    assert time.monotonic() - started < process.KILL_GRACE + 5
