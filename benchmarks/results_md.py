"""RESULTS.md (and README's headline table) from the results dict that bench.py gathers. Every
figure in the text is computed from the data of the same run; the sentences that explain a miss
say which part of the measurement bounds it, with that run's figures."""

from __future__ import annotations

import math
from typing import Any

MIB = 1024.0
STACK = "asyncio, ssl, httpx, tenacity, apscheduler.schedulers.asyncio"
BARE = "(bare interpreter)"


def ms(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "–"
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


def interps(r: dict[str, Any]) -> list[str]:
    """The keys of the interpreters that ran, first one first."""
    return [k for k, v in r.get("interpreters", {}).items() if not v.get("unavailable")]


def label(r: dict[str, Any], key: str) -> str:
    return str(r["interpreters"][key]["label"]) if key else "—"


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
        "Raw figures of the same run: `results.json` beside this file. Every client talked only "
        "to the benchmark's own server (`benchmarks/dyndns2_server.py`: dyndns2 `/nic/update` "
        "with Basic auth, `good`/`nochg` per host, `numhost` past 20 names, and MyDNS.JP's "
        "`/login.html`; one JSON line per request with its arrival time) on 127.0.0.1 inside a "
        "network namespace that has nothing but `lo`, or on 203.0.113.1 across a veth pair "
        "between two namespaces the script creates and removes.\n"
    )
    add("## Machine, versions and interpreters\n")
    add(
        table(
            ["", ""],
            [
                ["CPU", f"{m['cpu']} — {m['nproc']} CPUs"],
                ["RAM", f"{m['ram_gib']} GiB"],
                ["kernel", m["kernel"]],
                ["Debian", m["debian"]],
                ["ddnsagent", f"{m['ddnsagent']} (git {m['git']}), a wheel of this tree"],
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
    add(interpreter_table(r) + "\n")
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


def interpreter_table(r: dict[str, Any]) -> str:
    rows = []
    for key, v in r.get("interpreters", {}).items():
        deps = ", ".join(f"{k} {x}" for k, x in v["dependencies"].items())
        state = f"**left out**: {v['unavailable']}" if v.get("unavailable") else "measured"
        rows.append([f"`{key}`", v["kind"], f"{v['version']} (`{v['base']}`)", deps, state])
    first = interps(r)[0] if interps(r) else "?"
    return (
        "### Interpreters\n\n"
        "ddnsagent is the same wheel in each venv; the interpreter (and for `debian-libs` the "
        "libraries) is the only difference. Rows and columns name the interpreter they were "
        f"measured on. Sections 4 and 5 (many hostnames, zones) ran on `{first}` only: they "
        "measure our own code's work, not the start.\n\n"
        + table(["key", "what", "Python", "dependencies", ""], rows)
        + "\n"
    )


def _row(r: dict[str, Any], key: str, what: str) -> dict[str, Any] | None:
    rows: dict[str, Any] = r.get("oneshot", {}).get("rows", {})
    return rows.get(f"{key}/{what}")


def _imp(r: dict[str, Any], key: str, what: str) -> dict[str, Any] | None:
    cmds: dict[str, Any] = r.get("imports", {}).get("commands", {}).get(key, {})
    return cmds.get(what)


def _floor(r: dict[str, Any], key: str, name: str) -> float | None:
    f = r.get("oneshot", {}).get("floors", {}).get(key, {}).get(name)
    return None if f is None else float(f["wall_s"])


def _imports_said(r: dict[str, Any], key: str, what: str) -> str:
    i = _imp(r, key, what)
    if i is None:
        return ""
    heavy = ", ".join(i["heavy"]) or "none of asyncio/ssl/httpx/tenacity/APScheduler/dns.zone"
    return f"its imports take {i['total_us'] / 1000:.0f} ms ({i['modules']} modules; loads {heavy})"


TIME_TARGETS = (
    ("notify-daemon", "`notify-now --force`, daemon running, whole process", 1.0),
    ("notify-local", "`notify-now --force`, no daemon, whole process", 2.5),
    ("status", "`status`, whole process", 1.0),
    ("check-config", "`check-config`, whole process", 1.0),
)
RSS_TARGET_MIB = 28.0


def targets(r: dict[str, Any]) -> str:
    rows = []
    dd = r.get("oneshot", {}).get("rows", {}).get("ddclient")
    for what, name, limit in TIME_TARGETS if dd else ():
        for key in interps(r):
            row = _row(r, key, what)
            if row is None:
                continue
            a, d = row["wall_s"], dd["wall_s"]
            met = a <= limit * d
            why = "met" if met else f"**missed** — {time_bound(r, key, what, row)}"
            rows.append(
                [
                    f"{name} ≤ {limit:.1f}× ddclient",
                    f"`{key}`",
                    f"{ms(a)} vs {ms(d)}",
                    ratio(a, d),
                    why,
                ]
            )
    for key in interps(r):
        seed = r.get("daemons", {}).get(f"{key}/seed")
        if seed is None:
            continue
        a = seed["rss_after_kib"]
        dd_daemon = r["daemons"].get("ddclient")
        met = a <= RSS_TARGET_MIB * MIB
        why = "met" if met else f"**missed** — {rss_bound(r, key, seed)}"
        rows.append(
            [
                f"daemon RSS after {seed['cycles']} syncs, seed configuration ≤ "
                f"{RSS_TARGET_MIB:.0f} MiB",
                f"`{key}`",
                f"{mib(a)} (PSS {mib(seed['pss_after_kib'])}, private "
                f"{mib(seed['private_after_kib'])})",
                ratio(a, dd_daemon["rss_after_kib"]) if dd_daemon else "–",
                why,
            ]
        )
    react = r.get("reaction", {}).get("tools", {})
    dd_react = react.get("ddclient")
    for key in interps(r):
        a = react.get(f"ddnsagent {key}")
        if a is None:
            continue
        met = a["p95_s"] < 0.5 and a["timeouts"] == 0
        if met:
            why = "met"
        elif not r["reaction"]["ddnsagent_watcher_wired"]:
            why = (
                "**missed** — bounded by the daemon's 30 s polling: the AddressWatcher is not "
                "wired into the daemon in this build, so a change waits for the next poll"
            )
        else:
            why = f"**missed** — {a['timeouts']} timeouts; see §3"
        rows.append(
            [
                "reaction p95 < 0.5 s (keep)",
                f"`{key}`",
                secs(a["p95_s"]),
                ratio(a["p95_s"], dd_react["p95_s"]) if dd_react else "–",
                why,
            ]
        )
    if "many" in r:
        t = r["many"]["tools"]
        a, d = t["ddnsagent"]["wall_s"], t["ddclient"]["wall_s"]
        why = "met"
        if d / a < 10:
            first = t["ddnsagent"]["first_request_s"]
            strict = r["many"]["strict"]["ddclient"]
            why = (
                f"**missed** ({d / a:.2f}× as fast) — ddnsagent's process needs {ms(first)} "
                f"before its first request, more than a tenth of ddclient's whole run "
                f"({ms(d / 10)}), so no sending strategy can reach 10×; its "
                f"{t['ddnsagent']['requests']} requests of ≤ 20 names take "
                f"{ms(t['ddnsagent']['last_request_s'] - first)} from the first to the last. "
                f"ddclient sends all {t['ddclient']['max_hosts_per_request']} names in "
                f"{t['ddclient']['requests']} request, which a server keeping the protocol's "
                f"20-name limit refuses (`{'/'.join(strict['answers'])}`, "
                f"{strict['hosts_updated']} hosts updated)"
            )
        rows.append(
            [
                "1,000 hostnames ≥ 10× faster than ddclient (issue 9)",
                f"`{interps(r)[0]}`",
                f"{ms(a)} vs {ms(d)}",
                ratio(a, d),
                why,
            ]
        )
    return (
        "## Targets (issue 15)\n\n"
        "One row per target and interpreter; *÷ ddclient* is ddnsagent's figure divided by "
        "ddclient's in the same run (its one-shot for the command rows, its daemon for memory, "
        "its reaction for the reaction).\n\n"
        + table(["target", "interpreter", "ddnsagent (vs ddclient)", "÷ ddclient", "status"], rows)
    )


def time_bound(r: dict[str, Any], key: str, what: str, row: dict[str, Any]) -> str:
    """What a whole-process time is made of, from the same run's floors and import times."""
    parts = []
    bare = _floor(r, key, "python -c pass")
    if bare is not None:
        parts.append(f"a bare interpreter (`python -c pass`) takes {ms(bare)}")
    said = _imports_said(r, key, what)
    if said:
        parts.append(said)
    if what == "notify-local":
        stack = _floor(r, key, "python -c 'import asyncio, httpx'")
        if stack is not None:
            parts.append(f"`python -c 'import asyncio, httpx'` alone takes {ms(stack)}")
    if row.get("to_request_s") is not None:
        parts.append(
            f"the request reaches the server {ms(row['to_request_s'])} after the start, the "
            f"process ends {ms(row['wall_s'] - row['to_request_s'])} later"
        )
    dd = r["oneshot"]["rows"]["ddclient"]
    parts.append(f"ddclient's whole run (perl) takes {ms(dd['wall_s'])}")
    return "; ".join(parts) + " (§1, §1b)"


def rss_bound(r: dict[str, Any], key: str, seed: dict[str, Any]) -> str:
    parts = []
    rs = {k: v["rss_kib"] for k, v in r.get("rss", {}).get(key, {}).items()}
    if rs:
        parts.append(
            f"a bare interpreter holds {mib(rs[BARE])}, `import ddnsagent.daemon` "
            f"{mib(rs['ddnsagent.daemon'])}, the third-party stack ({STACK}) "
            f"{mib(rs[STACK])}, with dns.zone {mib(rs[STACK + ', dns.zone'])} (§6)"
        )
    plain = r.get("daemons", {}).get(f"{key}/dyndns2")
    if plain:
        parts.append(
            f"the dyndns2-only daemon holds {mib(plain['rss_after_kib'])}, so mydns + relay + "
            f"zonefile add {(seed['rss_after_kib'] - plain['rss_after_kib']) / MIB:+.1f} MiB"
        )
    parts.append(f"its own pages (private) are {mib(seed['private_after_kib'])} (§2)")
    return "; ".join(parts)


def oneshot(r: dict[str, Any]) -> str:
    o = r["oneshot"]
    dd = o["rows"]["ddclient"]
    rows = []
    for s in o["rows"].values():
        rows.append(
            [
                s["tool"],
                f"`{s['interp']}`" if s["interp"] else "—",
                s["what"],
                ms(s["wall_s"]),
                f"{ms(s['wall_min_s'])}–{ms(s['wall_max_s'])}",
                ms(s["to_request_s"]),
                mib(s["maxrss_kib"]),
                ms(s["cpu_s"]),
                ratio(s["wall_s"], dd["wall_s"]),
            ]
        )
    floors = [
        [f"`{key}`" if key else "—", name, ms(s["wall_s"]), mib(s["maxrss_kib"]), ms(s["cpu_s"])]
        for key, group in o["floors"].items()
        for name, s in group.items()
    ]
    cmds = "\n".join(f"    {s['command']}" for s in o["rows"].values())
    return (
        "## 1. Commands as whole processes\n\n"
        f"Median of {o['runs']} runs per command after one warm-up, all commands interleaved "
        "(the order reversed every other round). Each run was checked: exit code 0; a "
        "`notify-now` and the peers' one-shots sent exactly one request that the server "
        "answered `good`/`nochg`; a `notify-now` with the daemon running also had to show up "
        "as a sync in that daemon's log (so it was delegated, not done locally); `status`, "
        "`check-config` and `hook ip-up` (whose address the daemon already had) printed what "
        "they should and sent nothing. The daemons answering `notify-now` run the dyndns2-only "
        "configuration, one per interpreter. Wall time is measured around `/usr/bin/time` (so "
        "it includes that wrapper's fork, the same for all); RSS is GNU time's `%M` (peak), CPU "
        "its user + system; *start → request* is the time from starting the process to the "
        "server's receipt of its request.\n\n"
        + table(
            [
                "tool",
                "interpreter",
                "command",
                "wall (median)",
                "min–max",
                "start → request",
                "peak RSS",
                "CPU",
                "÷ ddclient wall",
            ],
            rows,
        )
        + "\n\nFloors, for scale (same method):\n\n"
        + table(["interpreter", "process", "wall", "peak RSS", "CPU"], floors)
        + f"\n\nCommands (inside the loopback-only namespace):\n\n{cmds}\n"
    )


def imports(r: dict[str, Any]) -> str:
    i = r["imports"]
    keys = [k for k in interps(r) if k in i["commands"]]
    names = list(next(iter(i["commands"].values())))
    rows = []
    for name in names:
        row = [f"`{name}`"]
        for key in keys:
            x = i["commands"][key].get(name)
            row.append(f"{x['total_us'] / 1000:.0f} ms, {x['modules']}" if x else "–")
        heavy = i["commands"][keys[0]].get(name, {}).get("heavy", [])
        row.append(", ".join(heavy) or "—")
        rows.append(row)
    cmds = "\n".join(f"    {x['command']}" for key in keys[:1] for x in i["commands"][key].values())
    return (
        "## 1b. Import time per command: `python -X importtime`\n\n"
        f"The import budget of each command: the median of {i['runs']} runs (by the sum of "
        "self times) of `python -X importtime` running the command as in §1 (the daemon up for "
        "the delegating `notify-now` and `hook ip-up`). Each cell: milliseconds of imports, "
        f"modules imported. The last column lists which heavy modules `{keys[0]}` loaded for "
        "it.\n\n"
        + table(
            ["command", *(f"`{k}` imports, modules" for k in keys), "heavy modules loaded"], rows
        )
        + f"\n\nCommands on `{keys[0]}` (the others differ in the venv's path):\n\n{cmds}\n\n"
        + detail(i["detail"], r)
    )


def detail(i: dict[str, Any], r: dict[str, Any]) -> str:
    row = _row(r, i["interp"], "notify-local")
    share = f" of the {ms(row['wall_s'])} whole process (§1)" if row else ""
    groups = [[g, f"{us / 1000:.1f} ms"] for g, us in list(i["groups_us"].items())[:18]]
    top = [[f"`{x['module']}`", f"{x['cum_us'] / 1000:.1f} ms"] for x in i["toplevel"][:14]]
    return (
        f"### Where the local one-shot's import time goes (`{i['interp']}`)\n\n"
        f"`{i['command']}`: **{i['total_us'] / 1000:.0f} ms of imports**{share} "
        f"({i['modules']} modules; `site` {i['site_us'] / 1000:.0f} ms of it). A verifying TLS "
        f"context (CA bundle loaded) costs {i['tls_context_ms']:.0f} ms in a fresh interpreter "
        "where one is built.\n\n"
        "Self time summed per top-level package (ddnsagent per module):\n\n"
        + table(["package", "self time"], groups)
        + "\n\nImports made by the script or from inside functions at run time (depth 0 in the "
        "importtime tree), with everything they pulled in — the places a lazy import cuts:\n\n"
        + table(["import", "cumulative"], top)
        + "\n\nSelected subtrees (cumulative) and the module that imported them first:\n\n"
        + table(["module", "cumulative", "imported by"], subtrees(i))
        + "\n"
    )


NOTABLE = (
    "asyncio",
    "ssl",
    "httpx",
    "httpcore",
    "urllib.request",
    "h11",
    "anyio",
    "tenacity",
    "apscheduler",
    "dns.name",
    "dns.zone",
    "dns.resolver",
    "concurrent.futures",
    "email",
    "platformdirs",
)


def subtrees(i: dict[str, Any]) -> list[list[str]]:
    found = {x["module"]: x for x in i.get("heaviest", [])}
    return [
        [
            f"`{name}`",
            f"{found[name]['cum_us'] / 1000:.1f} ms",
            f"`{found[name]['importer']}`" if found[name].get("importer") else "(the script)",
        ]
        for name in NOTABLE
        if name in found
    ]


def daemons(r: dict[str, Any]) -> str:
    d = r["daemons"]
    dd = d.get("ddclient")
    rows = []
    for s in d.values():
        rows.append(
            [
                s["tool"],
                f"`{s['interp']}`" if s["interp"] else "—",
                s["config"],
                s["trigger"],
                mib(s["rss_start_kib"]),
                mib(s["rss_after_kib"]),
                mib(s["hwm_after_kib"]),
                mib(s["pss_after_kib"]),
                mib(s["private_after_kib"]),
                ratio(s["rss_after_kib"], dd["rss_after_kib"]) if dd else "–",
                f"{s['cpu_per_cycle_ms']:.1f} ms",
                secs(s["cycle_latency_p50_s"]),
                f"{s['idle_cpu_s_per_hour']:.3f} s",
                f"{s['cycles'] - s['cycles_failed']}/{s['cycles']}",
            ]
        )
    cmds = "\n".join(f"    {s['command']}" for s in d.values())
    first = next(iter(d.values()))
    window, cycles = first["idle_window_s"], first["cycles"]
    return (
        f"## 2. The daemons: memory after {cycles} sync cycles, CPU per cycle and while idle\n\n"
        "Each daemon reads its address from a file (`command:/bin/cat FILE`, ddclient "
        "`use=cmd`, inadyn `checkip-command`), runs with a 5-minute interval, and is triggered "
        f"{cycles} times with its own signal; before each trigger the file gets a new address, "
        "so every cycle detects and sends. ddnsagent runs two configurations per interpreter: "
        "**seed** — a `mydns` provider (at the benchmark server's `/login.html`), `[relay]` "
        "following a mail log that gets one Postfix `status=sent` line through the relay per "
        "cycle (`flush = []`: no Postfix queue to flush here), and one `zonefile` zone (two "
        "names, checked by named-checkzone, reloaded by "
        "`/bin/true`) — and **dyndns2** only. A cycle counts when the server received the "
        "request (and, for the seed, the zone file carries the new address); the server's "
        "arrival time gives the trigger → request latency. ddclient needs `-force`: without "
        "it, its `min-interval` (30 s) refuses a second update within 30 s. VmRSS/VmHWM come "
        "from `/proc/PID/status` after the cycles, PSS and private (USS) from "
        "`/proc/PID/smaps_rollup` — RSS counts every shared library page the process touched "
        "(libpython, libcrypto, perl), PSS divides shared pages by their sharers, private "
        "counts only the process's own; CPU per cycle is utime+stime of the daemon and its "
        f"children over the cycles ÷ {cycles}. Idle CPU: all daemons left alone together for "
        f"{window:.0f} s after the cycles; on-CPU time of their threads from "
        "`/proc/PID/task/*/schedstat` (ns resolution), × 3600 / window.\n\n"
        + table(
            [
                "tool",
                "interpreter",
                "configuration",
                "trigger",
                "RSS at start",
                f"RSS after {cycles}",
                "VmHWM",
                "PSS",
                "private",
                "÷ ddclient RSS",
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
    for s in x["tools"].values():
        rows.append(
            [
                s["tool"],
                f"`{s['interp']}`" if s["interp"] else "—",
                s["mode"],
                str(s["reps"]),
                secs(s["p50_s"]),
                secs(s["p95_s"]),
                secs(s["max_s"]),
                str(s["timeouts"]),
            ]
        )
    ratios = []
    first = next((s for s in x["tools"].values() if s["tool"] == "ddnsagent"), None)
    for tool in ("ddclient", "inadyn"):
        if tool in x["tools"] and first:
            s = x["tools"][tool]
            ratios.append(
                f"{tool} p50 {ratio(s['p50_s'], first['p50_s'])}, "
                f"p95 {ratio(s['p95_s'], first['p95_s'])}"
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
    first_key = f" ({first['interp']})" if first else ""
    return (
        "## 3. Reaction to a WAN address change\n\n"
        "Namespace `bench-home` holds `wan0` (veth, 203.0.113.x/24); its peer `isp0` "
        "(203.0.113.1/24) is in `bench-isp` with the dyndns2 server on port 8245. One repetition: "
        "`ip -n bench-home -batch` deletes wan0's address and adds the next one; the time runs "
        "from just before that command to the server's arrival time (CLOCK_MONOTONIC, shared "
        "by the namespaces) of the request carrying the new address. Before each change a random "
        "pause: 0.3–1.5 s for an event-driven client, up to the whole interval for polling "
        "ones, so that a change falls at a random phase of their polls. Percentiles are "
        f"nearest-rank. {state} ddnsagent ran once per interpreter. ddclient (`use=if, "
        "if=wan0`) clamps `daemon=` to at least 60 s; inadyn runs "
        '`checkip-command = "ip -4 addr show wan0"` (its own `iface = wan0` picked wan0\'s IPv6 '
        "link-local address here). The peers are bounded by their interval, so "
        "they ran together, with fewer repetitions."
        + fast_note
        + "\n\n"
        + table(
            ["tool", "interpreter", "how it notices", "reps", "p50", "p95", "max", "timeouts"],
            rows,
        )
        + (
            f"\n\nPeer time ÷ ddnsagent{first_key} time: " + "; ".join(ratios) + "."
            if ratios
            else ""
        )
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
    keys = [k for k in interps(r) if k in x]
    rows = []
    for mod in x[keys[0]]:
        row = [f"`{mod}`" if not mod.startswith("(") else mod]
        for key in keys:
            v = x[key][mod]
            bare = x[key][BARE]["rss_kib"]
            row.append(f"{mib(v['rss_kib'])} (+{(v['rss_kib'] - bare) / MIB:.1f})")
        rows.append(row)
    tail = []
    for key in keys:
        seed = r.get("daemons", {}).get(f"{key}/seed")
        if seed:
            tail.append(
                f"`{key}`'s seed daemon held {mib(seed['rss_start_kib'])} after its first sync "
                f"and {mib(seed['rss_after_kib'])} after {seed['cycles']}"
            )
    return (
        "## 6. What bounds the daemon's memory: `python -c 'import X'`\n\n"
        "VmRSS after the imports (what a daemon keeps; in brackets what it adds to a bare "
        "interpreter), read from `/proc/self/status` by the interpreter itself; median of the "
        "runs, each a fresh interpreter of that venv."
        + (" For comparison (§2): " + "; ".join(tail) + "." if tail else "")
        + "\n\n"
        + table(["import", *(f"`{k}` VmRSS (+ over bare, MiB)" for k in keys)], rows)
        + "\n"
    )


def headline(r: dict[str, Any]) -> str:
    """README's table: the figures people feel, ddnsagent per interpreter beside the peers."""
    keys = interps(r)
    o = r.get("oneshot", {}).get("rows", {})
    d = r.get("daemons", {})
    react = r.get("reaction", {}).get("tools", {})
    dd, ind = o.get("ddclient"), o.get("inadyn")
    cycles = next(iter(d.values()), {}).get("cycles", 100)

    def cmd(what: str) -> list[str]:
        cells = []
        for key in keys:
            row = o.get(f"{key}/{what}")
            cells.append(
                f"{ms(row['wall_s'])} ({ratio(row['wall_s'], dd['wall_s'])})" if row and dd else "–"
            )
        return cells

    def mem(config: str) -> list[str]:
        cells = []
        for key in keys:
            s = d.get(f"{key}/{config}")
            cells.append(f"{mib(s['rss_after_kib'])} / {mib(s['private_after_kib'])}" if s else "–")
        return cells

    def peer_mem(tool: str) -> str:
        s = d.get(tool)
        return f"{mib(s['rss_after_kib'])} / {mib(s['private_after_kib'])}" if s else "–"

    def peer_react(tool: str) -> str:
        s = react.get(tool)
        return f"{secs(s['p95_s'])} ({s['mode']})" if s else "–"

    rows = [
        [
            "reaction to a WAN address change, p95",
            *(
                secs(react[f"ddnsagent {k}"]["p95_s"]) if f"ddnsagent {k}" in react else "–"
                for k in keys
            ),
            peer_react("ddclient"),
            peer_react("inadyn"),
        ],
        [
            "`notify-now --force`, daemon running (÷ ddclient)",
            *cmd("notify-daemon"),
            ms(dd["wall_s"]) if dd else "–",
            ms(ind["wall_s"]) if ind else "–",
        ],
        ["`notify-now --force`, no daemon (÷ ddclient)", *cmd("notify-local"), "", ""],
        ["`status` (÷ ddclient's one-shot)", *cmd("status"), "", ""],
        ["`check-config` (÷ ddclient's one-shot)", *cmd("check-config"), "", ""],
        [
            f"daemon after {cycles} syncs, seed config (RSS / private)",
            *mem("seed"),
            peer_mem("ddclient"),
            peer_mem("inadyn"),
        ],
        [f"daemon after {cycles} syncs, dyndns2 only (RSS / private)", *mem("dyndns2"), "", ""],
    ]
    if "ddclient" in d:
        rows.append(
            [
                "idle CPU per hour",
                *(
                    f"{d[f'{k}/seed']['idle_cpu_s_per_hour']:.3f} s" if f"{k}/seed" in d else "–"
                    for k in keys
                ),
                f"{d['ddclient']['idle_cpu_s_per_hour']:.3f} s",
                f"{d['inadyn']['idle_cpu_s_per_hour']:.3f} s" if "inadyn" in d else "–",
            ]
        )
    m = r["machine"]
    head = [
        "measure",
        *(f"ddnsagent, {label(r, k)}" for k in keys),
        f"ddclient {m['ddclient']}",
        f"inadyn {m['inadyn']}",
    ]
    quick = " **QUICK RUN: not for comparison.**" if r.get("quick") else ""
    return (
        table(head, rows)
        + f"\n\nFrom one run of `sudo benchmarks/run` on {m['date']} (git {m['git']}); the "
        "interpreters are described in benchmarks/RESULTS.md." + quick + "\n"
    )
