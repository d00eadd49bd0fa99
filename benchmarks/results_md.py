"""RESULTS.md from the results dict that bench.py gathers. Every figure in the text is computed
from the data of the same run; the sentences that explain a miss say which part of the
measurement bounds it."""

from __future__ import annotations

import math
from typing import Any

MIB = 1024.0
STACK = "asyncio, ssl, httpx, tenacity, apscheduler.schedulers.asyncio"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def secs(seconds: float) -> str:
    if math.isnan(seconds):
        return "–"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def mib(kib: float) -> str:
    return f"{kib / MIB:.1f} MiB"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "–"


def table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    out: list[str] = []
    add = out.append
    add("# ddnsagent benchmarks: against ddclient and inadyn\n")
    if r.get("quick"):
        add("**QUICK RUN (`--quick`): too few repetitions to compare; run `benchmarks/run`.**\n")
    add(
        f"Written by `benchmarks/run` on {m['date']} "
        f"(the run took {r['duration_s'] / 60:.1f} min). "
        "Raw figures of the same run: `benchmarks/results.json`. Every client talked only to the "
        "benchmark's own dyndns2 server (`benchmarks/dyndns2_server.py`: Basic auth, "
        "`good`/`nochg` per host, `numhost` past 20 names, one JSON line per request with its "
        "arrival time) on 127.0.0.1 inside a network namespace that has nothing but `lo`, or "
        "on 203.0.113.1 across a veth pair between two namespaces the script creates and "
        "removes.\n"
    )
    add("## Machine and versions\n")
    add(
        table(
            ["", ""],
            [
                ["CPU", f"{m['cpu']} — {m['nproc']} CPUs"],
                ["RAM", f"{m['ram_gib']} GiB"],
                ["kernel", m["kernel"]],
                ["Debian", m["debian"]],
                ["Python", m["python"]],
                [
                    "ddnsagent",
                    f"{m['ddnsagent']} (git {m['git']}), `pip install .` into {m['venv']}",
                ],
                ["its dependencies", ", ".join(f"{k} {v}" for k, v in m["dependencies"].items())],
                ["ddclient", f"{m['ddclient']} (Debian package)"],
                ["inadyn", f"{m['inadyn']} (Debian package)"],
                ["GNU time", m["gnu_time"]],
                [
                    "1-min load average",
                    ", ".join(f"{name} {load:.2f}" for name, load in r.get("load", [])),
                ],
            ],
        )
        + "\n\nThe load average is sampled as each section starts: the machine is shared, and "
        "anything else running shows up there and in the wall times (CPU times are less "
        "affected).\n"
    )
    add(targets(r) + "\n")
    if "oneshot" in r:
        add(oneshot(r) + "\n")
    if "imports" in r:
        add(imports(r) + "\n")
    if "daemons" in r:
        add(daemons(r) + "\n")
    if "reaction" in r:
        add(reaction(r) + "\n")
    if "many" in r:
        add(many(r) + "\n")
    if "zones" in r:
        add(zones(r) + "\n")
    if "rss" in r:
        add(rss(r) + "\n")
    if r.get("configs"):
        add(configs(r) + "\n")
    return "\n".join(out).rstrip() + "\n"


def targets(r: dict[str, Any]) -> str:
    rows = []
    if "reaction" in r:
        a = r["reaction"]["tools"]["ddnsagent"]
        met = a["p95_s"] < 0.5 and a["timeouts"] == 0
        why = (
            "met"
            if met
            else (
                "**missed** — bounded by the daemon's 30 s polling: the AddressWatcher is not "
                "wired into the daemon in this build, so a change waits for the next poll"
                if not r["reaction"]["ddnsagent_watcher_wired"]
                else "**missed** — see §3"
            )
        )
        rows.append(["reaction p95 < 0.5 s", secs(a["p95_s"]), why])
    if "oneshot" in r:
        t = r["oneshot"]["tools"]
        a, d = t["ddnsagent"]["wall_s"], t["ddclient"]["wall_s"]
        floor = r["oneshot"]["floors"]["python -c pass"]["wall_s"]
        imp = r.get("imports", {}).get("total_us", 0) / 1e6
        why = (
            "met"
            if a <= d
            else f"**missed** ({ratio(a, d)}) — its request leaves "
            f"{ms(t['ddnsagent']['to_request_s'])} after the start, ddclient's whole run "
            f"takes {ms(d)}; a bare interpreter starts in "
            f"{ms(floor)}, the imports take {ms(imp)} (§1b)"
        )
        rows.append(["one-shot wall ≤ 1.0× ddclient", f"{ms(a)} vs {ms(d)}", why])
    if "daemons" in r:
        a = r["daemons"]["ddnsagent"]
        rs = {k: v["rss_kib"] for k, v in r.get("rss", {}).items()}
        met = a["rss_after_kib"] <= 23 * MIB
        why = "met"
        if not met:
            why = "**missed**"
            if rs:
                why += (
                    f" — a bare interpreter holds {mib(rs['(bare interpreter)'])}, one that "
                    f"imported httpx {mib(rs['httpx'])}, the daemon's third-party stack "
                    f"(asyncio, ssl, httpx, tenacity, APScheduler) "
                    f"{mib(rs[STACK])}, with dnspython {mib(rs[STACK + ', dns.zone'])}; "
                    f"`import ddnsagent.daemon` {mib(rs['ddnsagent.daemon'])} (§6)"
                )
        rows.append(["daemon RSS ≤ 23 MiB (after 100 cycles)", mib(a["rss_after_kib"]), why])
    if "many" in r:
        t = r["many"]["tools"]
        a, d = t["ddnsagent"]["wall_s"], t["ddclient"]["wall_s"]
        met = d / a >= 10
        why = "met"
        if not met:
            first = t["ddnsagent"]["first_request_s"]
            strict = r["many"]["strict"]["ddclient"]
            why = (
                f"**missed** ({d / a:.2f}× as fast) — ddnsagent's process needs {ms(first)} "
                f"before its first request, more than a tenth of ddclient's whole run "
                f"({ms(d / 10)}), so no sending strategy can reach 10×; its "
                f"{t['ddnsagent']['requests']} requests of ≤ 20 names take "
                f"{ms(t['ddnsagent']['last_request_s'] - first)} from the first to the last. "
                f"ddclient sends all "
                f"{t['ddclient']['max_hosts_per_request']} names in {t['ddclient']['requests']} "
                f"request, which a server keeping the protocol's 20-name limit refuses "
                f"(`{'/'.join(strict['answers'])}`, {strict['hosts_updated']} hosts updated)"
            )
        rows.append(["1,000 hostnames ≥ 10× faster than ddclient", f"{ms(a)} vs {ms(d)}", why])
    return "## Targets\n\n" + table(["target", "ddnsagent (vs peer)", "status"], rows)


def oneshot(r: dict[str, Any]) -> str:
    o = r["oneshot"]
    t = o["tools"]
    base = t["ddnsagent"]
    rows = []
    for tool, s in t.items():
        rows.append(
            [
                tool,
                ms(s["wall_s"]),
                f"{ms(s['wall_min_s'])}–{ms(s['wall_max_s'])}",
                ms(s["to_request_s"]),
                mib(s["maxrss_kib"]),
                ms(s["cpu_s"]),
                ratio(base["wall_s"], s["wall_s"]),
                ratio(base["maxrss_kib"], s["maxrss_kib"]),
            ]
        )
    floors = [
        [name, ms(s["wall_s"]), mib(s["maxrss_kib"]), ms(s["cpu_s"])]
        for name, s in o["floors"].items()
    ]
    cmds = "\n".join(f"    {c}" for c in o["commands"].values())
    return (
        f"## 1. One forced update as a whole process\n\n"
        f"Median of {o['runs']} runs per tool after one warm-up, the tools interleaved; each run "
        f"was checked to have sent exactly one request that the server answered (`nochg` after "
        f"the first). Wall time is measured around `/usr/bin/time` (so it includes that "
        f"wrapper's fork, the same for all); RSS is GNU time's `%M` (peak), CPU its user + "
        f"system; *start → request* is the time from starting the process to the server's "
        f"receipt of its request.\n\n"
        + table(
            [
                "tool",
                "wall (median)",
                "min–max",
                "start → request",
                "peak RSS",
                "CPU",
                "ddnsagent/tool wall",
                "ddnsagent/tool RSS",
            ],
            rows,
        )
        + "\n\nFloors, for scale (same method):\n\n"
        + table(["process", "wall", "peak RSS", "CPU"], floors)
        + f"\n\nCommands (inside the loopback-only namespace):\n\n{cmds}\n"
    )


def imports(r: dict[str, Any]) -> str:
    i = r["imports"]
    wall = r.get("oneshot", {}).get("tools", {}).get("ddnsagent", {}).get("wall_s")
    share = f" of the {ms(wall)} one-shot" if wall else ""
    groups = [[g, f"{us / 1000:.1f} ms"] for g, us in list(i["groups_us"].items())[:18]]
    top = [[f"`{x['module']}`", f"{x['cum_us'] / 1000:.1f} ms"] for x in i["toplevel"][:14]]
    return (
        "## 1b. Where the one-shot's time goes: imports\n\n"
        f"`{i['command']}` — median of {i['runs']} runs: **{i['total_us'] / 1000:.0f} ms of "
        f"imports**{share} ({i['modules']} modules; `site` {i['site_us'] / 1000:.0f} ms of "
        f"it). `python -X importtime -c 'import ddnsagent.cli'` "
        f"alone: {i['cli_only_us'] / 1000:.0f} ms. Besides imports, `ddnsagent.http` builds a "
        f"verifying TLS context (CA bundle loaded) for every run, also for plain-http URLs like "
        f"this benchmark's: {i['tls_context_ms']:.0f} ms in a fresh interpreter.\n\n"
        "Self time summed per top-level package (ddnsagent per module):\n\n"
        + table(["package", "self time"], groups)
        + "\n\nImports made by the script or from inside functions at run time (depth 0 in the "
        "importtime tree), with everything they pulled in — the places a lazy import cuts:\n\n"
        + table(["import", "cumulative"], top)
        + "\n\nSelected subtrees (cumulative, wherever they were first imported):\n\n"
        + table(["module", "cumulative", "comes with"], subtrees(i))
        + "\n"
    )


NOTABLE = {
    "asyncio": "the event loop (asyncio.run in cli)",
    "ssl": "asyncio, httpx",
    "ddnsagent.zones": "config._parse_zones, even without [[zone]]",
    "dns.name": "ddnsagent.zones → dnspython",
    "dns._features": "dnspython's feature probe (importlib.metadata)",
    "dns.zone": "ddnsagent.zones.zonefile",
    "httpx": "config parsing loads providers/dyndns2.py, which imports httpx",
    "httpcore": "httpx.AsyncClient (lazily)",
    "urllib.request": "httpx._auth (email, http.client come with it)",
    "h11": "httpcore's HTTP/1.1",
    "anyio._core._sockets": "httpcore's async backend",
    "tenacity": "agent._send_with_retries",
    "concurrent.futures": "asyncio",
}


def subtrees(i: dict[str, Any]) -> list[list[str]]:
    found = {x["module"]: x["cum_us"] for x in i.get("heaviest", [])}
    return [
        [f"`{name}`", f"{found[name] / 1000:.1f} ms", why]
        for name, why in NOTABLE.items()
        if name in found
    ]


def daemons(r: dict[str, Any]) -> str:
    d = r["daemons"]
    base = d["ddnsagent"]
    rows = []
    for tool, s in d.items():
        rows.append(
            [
                tool,
                s["trigger"],
                mib(s["rss_start_kib"]),
                mib(s["rss_after_kib"]),
                mib(s["hwm_after_kib"]),
                ratio(base["rss_after_kib"], s["rss_after_kib"]),
                mib(s["pss_after_kib"]) if "pss_after_kib" in s else "–",
                mib(s["private_after_kib"]) if "private_after_kib" in s else "–",
                f"{s['cpu_per_cycle_ms']:.1f} ms",
                secs(s["cycle_latency_p50_s"]),
                f"{s['idle_cpu_s_per_hour']:.3f} s",
                f"{s['cycles'] - s['cycles_failed']}/{s['cycles']}",
            ]
        )
    cmds = "\n".join(f"    {s['command']}" for s in d.values())
    window = next(iter(d.values()))["idle_window_s"]
    return (
        "## 2. The daemons: memory after 100 sync cycles, CPU per cycle and while idle\n\n"
        "Each daemon reads its address from a file (`command:/bin/cat FILE`, ddclient "
        "`use=cmd`, inadyn `checkip-command`), runs with a 5-minute interval, and is triggered "
        "100 times with its own signal; before each trigger the file gets a new address, so "
        "every cycle detects, sends one request and gets `good` (checked at the server, which "
        "also gives the trigger → request latency). ddclient needs `-force` for that: without "
        "it, its `min-interval` (30 s, not lowerable) refuses a second update within 30 s. "
        "VmRSS/VmHWM come from `/proc/PID/status` after the cycles, PSS and private (USS) "
        "from `/proc/PID/smaps_rollup` — RSS counts every shared library page the process "
        "touched (libpython, libcrypto, perl), PSS divides shared pages by their sharers, "
        "private counts only the process's own; CPU per cycle is "
        "utime+stime of the daemon and its children over the cycles ÷ 100. Idle CPU: the "
        f"three daemons left alone together for {window:.0f} s after the cycles; on-CPU time of "
        "their threads from `/proc/PID/task/*/schedstat` (ns resolution), × 3600 / window. No "
        "scheduled check falls in the window (5-minute intervals): it is the cost of waiting. "
        "A daemon checking every 5 min adds 12 × (CPU per cycle) per hour at most (a check "
        "that finds nothing new costs less than these sending cycles).\n\n"
        + table(
            [
                "tool",
                "trigger",
                "RSS at start",
                "RSS after 100",
                "VmHWM",
                "ddnsagent/tool RSS",
                "PSS",
                "private",
                "CPU per cycle",
                "trigger→request p50",
                "idle CPU per hour",
                "cycles ok",
            ],
            rows,
        )
        + "\n\nCross-check with utime+stime over the same window (10 ms ticks, threads that "
        "ended included): "
        + ", ".join(f"{t} {s['idle_cpu_ticks_s']:.2f} s" for t, s in d.items())
        + f".\n\nCommands:\n\n{cmds}\n"
    )


def reaction(r: dict[str, Any]) -> str:
    x = r["reaction"]
    rows = []
    for tool, s in x["tools"].items():
        rows.append(
            [
                tool,
                s["mode"],
                str(s["reps"]),
                secs(s["p50_s"]),
                secs(s["p95_s"]),
                secs(s["max_s"]),
                str(s["timeouts"]),
            ]
        )
    a = x["tools"]["ddnsagent"]
    ratios = []
    for tool in ("ddclient", "inadyn"):
        if tool in x["tools"]:
            s = x["tools"][tool]
            ratios.append(
                f"{tool} p50 {ratio(s['p50_s'], a['p50_s'])}, p95 {ratio(s['p95_s'], a['p95_s'])}"
            )
    cmds = "\n".join(f"    {s['command']}" for s in x["tools"].values())
    wired = x["ddnsagent_watcher_wired"]
    state = (
        "The daemon of this build wires `AddressWatcher` (rtnetlink events), so a change "
        "triggers a sync at once."
        if wired
        else "**The daemon of this build does not use `AddressWatcher` yet**: it polls the "
        "interface every `interval` (30 s, its minimum; jitter 0), so its reaction is the wait "
        "for the next poll, like the peers'."
    )
    fast = x["tools"].get("inadyn-1s")
    fast_note = (
        f" inadyn 2.10.0 documents a 30 s minimum period (`DDNS_MIN_PERIOD`) but does not apply "
        f"it: with `period = 1` it polls every second (row `inadyn-1s`), at "
        f"{fast['idle_cpu_s_per_hour']:.1f} CPU-seconds per hour of polling."
        if fast
        else ""
    )
    return (
        "## 3. Reaction to a WAN address change\n\n"
        "Namespace `bench-home` holds `wan0` (veth, 203.0.113.x/24); its peer `isp0` "
        "(203.0.113.1/24) is in `bench-isp` with the dyndns2 server on port 8245. One repetition: "
        "`ip -n bench-home -batch` deletes wan0's address and adds the next one; the time runs "
        "from just before that command to the server's arrival time (CLOCK_MONOTONIC, shared "
        "by the namespaces) of the request carrying the new address. Before each change a random "
        "pause: 0.3–1.5 s for an event-driven client, up to the whole interval for polling "
        "ones, so that a change falls at a random phase of their polls (the expected wait is "
        "then half the interval, the worst the whole). Percentiles are nearest-rank. "
        f"{state} ddclient (`use=if, if=wan0`) clamps `daemon=` to at least 60 s; inadyn runs "
        '`checkip-command = "ip -4 addr show wan0"` (its own `iface = wan0` picked wan0\'s IPv6 '
        "link-local address here). The peers are bounded by their interval, so "
        "they ran together, with fewer repetitions."
        + fast_note
        + "\n\n"
        + table(["tool", "how it notices", "reps", "p50", "p95", "max", "timeouts"], rows)
        + ("\n\nPeer time ÷ ddnsagent time: " + "; ".join(ratios) + "." if ratios else "")
        + f"\n\nCommands:\n\n{cmds}\n"
    )


def many(r: dict[str, Any]) -> str:
    x = r["many"]
    t = x["tools"]
    rows = [
        [
            tool,
            ms(s["wall_s"]),
            ms(s["first_request_s"]),
            ms(s["last_request_s"]),
            str(s["requests"]),
            str(s["max_hosts_per_request"]),
            f"{s['hosts_updated']}/{x['hosts']}",
            mib(s["maxrss_kib"]),
            ms(s["cpu_s"]),
        ]
        for tool, s in t.items()
    ]
    strict = [
        [
            tool,
            str(s["rc"]),
            str(s["requests"]),
            "/".join(s["answers"]),
            f"{s['hosts_updated']}/{x['hosts']}",
            ms(s["wall_s"]),
        ]
        for tool, s in x["strict"].items()
    ]
    cmds = "\n".join(f"    {c}" for c in x["commands"].values())
    a, d = t["ddnsagent"]["wall_s"], t["ddclient"]["wall_s"]
    return (
        f"## 4. {x['hosts']:,} hostnames on one dyndns2 server\n\n"
        f"One forced update of {x['hosts']:,} names of one account, a new address each run "
        f"(so every name answers `good`); median of {x['runs']} runs after a warm-up, the "
        "server's name limit lifted so that both can finish:\n\n"
        + table(
            [
                "tool",
                "wall",
                "start → first request",
                "start → last request",
                "requests",
                "names per request",
                "updated",
                "peak RSS",
                "CPU",
            ],
            rows,
        )
        + f"\n\nddnsagent/ddclient wall: {ratio(a, d)} (ddclient/ddnsagent: {d / a:.2f}).\n\n"
        "The same configurations against the server keeping the protocol's limit of 20 names "
        "per request (what Dyn and No-IP enforce, answering `numhost`):\n\n"
        + table(["tool", "exit code", "requests", "answers", "updated", "wall"], strict)
        + f"\n\nCommands (address varies per run):\n\n{cmds}\n"
    )


def zones(r: dict[str, Any]) -> str:
    z = r["zones"]
    rows = [
        [
            f"`{mode}`",
            ms(s["median_s"]),
            ", ".join(f"{t:.3f}" for t in s["times_s"]),
            mib(s["maxrss_kib"]),
            "yes" if s["ok"] else "NO",
        ]
        for mode, s in z.items()
    ]
    first = next(iter(z.values()))
    cmd = first["command"].replace("--validate none", "--validate MODE")
    return (
        "## 5. Zones: an address change in a 100,000-record zone (ddnsagent only)\n\n"
        f"`ddnsagent.zones.edit_zone` on a generated zone of {first['records']:,} records "
        f"({first['bytes'] / 1e6:.1f} MB: A, AAAA, TXT, CNAME), moving `home` from 203.0.113.7 to "
        "203.0.113.8 and advancing the SOA serial; in-process time of the call only (zone text "
        "already in memory), one process per validation mode. No peer edits zone files.\n\n"
        + table(["validate", "median", "runs (s)", "peak RSS of the process", "edit checked"], rows)
        + f"\n\nCommand: `{cmd}`\n"
    )


def configs(r: dict[str, Any]) -> str:
    parts = ["## Configurations used\n", "Written by `bench.py` into the run's work directory:\n"]
    for name, text in r["configs"].items():
        parts.append(f"`{name}`:\n\n```\n{text.rstrip()}\n```\n")
    return "\n".join(parts)


def rss(r: dict[str, Any]) -> str:
    x = r["rss"]
    bare = x["(bare interpreter)"]["rss_kib"]
    rows = [
        [
            f"`{k}`" if not k.startswith("(") else k,
            mib(v["rss_kib"]),
            f"+{(v['rss_kib'] - bare) / MIB:.1f} MiB",
            mib(v["hwm_kib"]),
        ]
        for k, v in x.items()
    ]
    daemon = r.get("daemons", {}).get("ddnsagent")
    tail = (
        f" The daemon itself held {mib(daemon['rss_start_kib'])} after its first sync and "
        f"{mib(daemon['rss_after_kib'])} after 100 (§2)."
        if daemon
        else ""
    )
    return (
        "## 6. What bounds the daemon's memory: `python -c 'import X'`\n\n"
        "VmRSS after the imports (what a daemon keeps) and VmHWM (the peak on the way), read "
        "from `/proc/self/status` by the interpreter itself; median of the runs, each a fresh "
        f"interpreter of the benchmark's venv.{tail}\n\n"
        + table(["import", "VmRSS", "over bare", "VmHWM"], rows)
        + "\n"
    )
