"""Time `ddnsagent.zones.edit_zone` on a generated zone of N records; prints one JSON object.

Run as its own process per validation mode, so `ru_maxrss` is that mode's peak alone:
`python zonebench.py --records 100000 --validate scan --repeat 5`.

The zone is deterministic: SOA, two NS, their glue, then a mix of A (60 %), AAAA (20 %),
TXT (10 %) and CNAME (10 %) records under documentation addresses, with the one managed name
`home` (A 203.0.113.7) in the middle. Each run moves `home` to 203.0.113.8.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import resource
import statistics
import sys
import time

ORIGIN = "bench.example."
OLD, NEW = "203.0.113.7", "203.0.113.8"


def make_zone(records: int) -> str:
    lines = [
        f"$ORIGIN {ORIGIN}",
        "$TTL 3600",
        "@ IN SOA ns1 hostmaster 2024010101 7200 3600 1209600 3600",
        "@ IN NS ns1",
        "@ IN NS ns2",
        "ns1 IN A 198.51.100.1",
        "ns2 IN A 198.51.100.2",
    ]
    rest = records - 6  # the SOA, NS and glue above, and `home`
    for i in range(rest):
        if i == rest // 2:
            lines.append(f"home 300 IN A {OLD}  ; managed by ddnsagent")
        kind = i % 10
        name = f"h{i:06d}"
        if kind < 6:
            lines.append(f"{name} IN A 198.51.100.{i % 250 + 3}")
        elif kind < 8:
            lines.append(f"{name} IN AAAA 2001:db8::{i >> 16:x}:{i & 0xFFFF:x}")
        elif kind == 8:
            lines.append(f'{name} IN TXT "bench record {i}"')
        else:
            lines.append(f"{name} IN CNAME h{i - 1:06d}")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--validate", choices=["none", "scan", "full"], default="scan")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()

    t0 = time.perf_counter()
    from ddnsagent.zones.edit.editor import edit_zone

    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    text = make_zone(args.records)
    make_s = time.perf_counter() - t0
    records = sum(1 for line in text.splitlines() if " IN " in line)
    times = []
    result = None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = edit_zone(
            text,
            ORIGIN,
            ["home"],
            {4: [ipaddress.IPv4Address(NEW)]},
            today=datetime.date(2026, 1, 2),
            now=1767312000,
            validate=args.validate,
        )
        times.append(time.perf_counter() - t0)
    assert result is not None
    edited_home = [line for line in result.text.splitlines() if line.startswith("home ")]
    same_size = len(result.text.splitlines()) == len(text.splitlines())
    ok = result.changed and edited_home == [f"home 300 IN A {NEW}  ; managed by ddnsagent"]
    json.dump(
        {
            "validate": args.validate,
            "records": records,
            "bytes": len(text.encode()),
            "import_s": import_s,
            "generate_s": make_s,
            "times_s": times,
            "median_s": statistics.median(times),
            "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "ok": ok and same_size,
            "changes": result.changes,
            "serial": [result.old_serial, result.new_serial],
        },
        sys.stdout,
    )
    print()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
