"""ddnsagent side by side with ddclient and inadyn; `benchmarks/run` starts this as root inside
a network namespace that has only a loopback interface, so nothing here can reach beyond this
machine: every server is ours, on 127.0.0.1 or on documentation addresses (203.0.113.0/24) in
namespaces this script creates and removes.

Sections (each writes into one results dict, rendered by `results_md.py`):
  oneshot   one forced update as a whole process: wall, peak RSS, CPU
  imports   python -X importtime of the one-shot, grouped
  rss       what each import adds to a bare interpreter's peak RSS
  daemons   RSS after 100 triggered sync cycles; CPU per cycle; CPU while idle
  many      1,000 hostnames on one dyndns2 server, ddnsagent vs ddclient
  zones     ddnsagent.zones.edit_zone on a 100,000-record zone
  reaction  a WAN address change on wan0 → update received, in bench-home/bench-isp
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV = Path(os.environ.get("BENCH_VENV", REPO / ".venv"))
PY = str(VENV / "bin" / "python")
DDNSAGENT = str(VENV / "bin" / "ddnsagent")
TIME = "/usr/bin/time"
USER, PASSWORD = "bench", "bench-secret"
ONESHOT_ADDRESS = "203.0.113.7"
HOME_NS, ISP_NS = "bench-home", "bench-isp"
ISP_ADDRESS, SERVER_PORT = "203.0.113.1", 8245

WORK: Path = Path("/nonexistent")  # set in main()
PROCS: list[subprocess.Popen[bytes]] = []


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# -- processes -------------------------------------------------------------------------------------


@dataclass
class Run:
    wall: float  # seconds, perf_counter around the whole process (GNU time's own fork included)
    maxrss_kib: int  # GNU time %M
    cpu: float  # user + system seconds
    rc: int
    out: str
    start_mono: float  # CLOCK_MONOTONIC just before the process was started


def timed(cmd: list[str], timeout: float = 120.0) -> Run:
    out = WORK / "time.out"
    full = [TIME, "-f", "%e %M %U %S", "-o", str(out), *cmd]
    start_mono = time.monotonic()
    t0 = time.perf_counter()
    p = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    _e, rss, user, system = out.read_text().split()[-4:]
    cpu = float(user) + float(system)
    return Run(wall, int(rss), cpu, p.returncode, p.stdout + p.stderr, start_mono)


def spawn(cmd: list[str], name: str) -> subprocess.Popen[bytes]:
    with open(WORK / f"{name}.out", "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    PROCS.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if proc in PROCS:
        PROCS.remove(proc)


def sh(*cmd: str, check: bool = True, timeout: float = 30.0) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def rollup_kib(pid: int, key: str) -> int:
    """A field of /proc/PID/smaps_rollup: Pss shares shared pages out, Private_* are its own."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def cpu_ticks(pid: int) -> float:
    """utime + stime + cutime + cstime in seconds (10 ms ticks; children included)."""
    rest = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(x) for x in rest[11:15]) / os.sysconf("SC_CLK_TCK")


def cpu_ns(pid: int) -> float:
    """Time on CPU of the process's live threads, in seconds, from schedstat (ns resolution)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); honest for small samples."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


# -- the dyndns2 server ----------------------------------------------------------------------------


class Server:
    """benchmarks/dyndns2_server.py in a child process; its JSON-lines log is read back here."""

    def __init__(
        self,
        name: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_hosts: int = 20,
        netns: str | None = None,
    ) -> None:
        self.name = name
        self.log = WORK / f"{name}.jsonl"
        ready = WORK / f"{name}.port"
        cmd = [PY, str(HERE / "dyndns2_server.py"), "--host", host, "--port", str(port)]
        cmd += ["--log", str(self.log), "--ready", str(ready), "--max-hosts", str(max_hosts)]
        cmd += ["--user", USER, "--password", PASSWORD, "--max-seconds", "3600"]
        if netns:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        self.proc = spawn(cmd, f"server-{name}")
        deadline = time.monotonic() + 15
        while not ready.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"dyndns2 server {name} did not start; see {WORK}")
            time.sleep(0.02)
        self.port = int(ready.read_text())
        self.hostport = f"{host}:{self.port}"
        self.url = f"http://{self.hostport}/nic/update"
        self.entries: list[dict[str, Any]] = []
        self._offset = 0
        self._partial = b""

    def poll(self) -> list[dict[str, Any]]:
        with open(self.log, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        self.entries.extend(json.loads(line) for line in lines if line)
        return self.entries

    def mark(self) -> int:
        return len(self.poll())

    def since(self, mark: int) -> list[dict[str, Any]]:
        return self.poll()[mark:]

    def wait(
        self, match: Callable[[dict[str, Any]], bool], timeout: float, mark: int = 0
    ) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        seen = mark
        while True:
            entries = self.poll()
            for entry in entries[seen:]:
                if match(entry):
                    return entry
            seen = len(entries)
            if time.monotonic() > deadline:
                return None
            time.sleep(0.005)

    def stop(self) -> None:
        stop(self.proc)


def for_host(host: str, address: str | None = None) -> Callable[[dict[str, Any]], bool]:
    return lambda e: host in e["hosts"] and (address is None or e["myip"] == address)


# -- configurations --------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def ddnsagent_config(
    name: str,
    url: str,
    hosts: list[str],
    source: str,
    *,
    interval: str = "5m",
    insecure_http: bool = False,
) -> Path:
    secret = write(WORK / "secret", PASSWORD)
    hostnames = ", ".join(json.dumps(h) for h in hosts)
    insecure = "insecure_http = true\n" if insecure_http else ""
    return write(
        WORK / f"{name}.toml",
        f"""[agent]
interval = "{interval}"
jitter = "0s"
state_dir = "{WORK / (name + "-state")}"
log_level = "info"
control_socket = "{WORK / (name + ".sock")}"

[detect]
ipv4 = [{json.dumps(source)}]
accept = "any"

[[provider]]
name = "bench"
type = "dyndns2"
server = "{url}"
hostnames = [{hostnames}]
username = "{USER}"
password_file = "{secret}"
{insecure}""",
    )


def ddclient_config(name: str, hostport: str, hosts: list[str], use: str = "") -> Path:
    body = "\n".join(hosts)
    use_line = f"{use}\n" if use else ""
    return write(
        WORK / f"{name}.conf",
        f"ssl=no\n{use_line}protocol=dyndns2\nserver={hostport}\n"
        f"login={USER}\npassword={PASSWORD}\n{body}\n",
    )


def inadyn_config(name: str, hostport: str, host: str, detect: str, period: int = 300) -> Path:
    return write(
        WORK / f"{name}.conf",
        f"""period = {period}
verify-address = false
custom bench {{
    ssl = false
    username = {USER}
    password = {PASSWORD}
    ddns-server = {hostport}
    ddns-path = "/nic/update?hostname=%h&myip=%i"
    {detect}
    hostname = {host}
}}
""",
    )


# -- sections --------------------------------------------------------------------------------------


def oneshot_commands(srv: Server) -> dict[str, tuple[str, list[str]]]:
    """tool → (hostname, argv) for one forced update of ONESHOT_ADDRESS."""
    a = ONESHOT_ADDRESS
    agent_cfg = ddnsagent_config("oneshot-agent", srv.url, ["ddnsagent.bench.example.net"], "web")
    dd_cfg = ddclient_config("oneshot-ddclient", srv.hostport, ["ddclient.bench.example.net"])
    in_cfg = inadyn_config(
        "oneshot-inadyn",
        srv.hostport,
        "inadyn.bench.example.net",
        f'checkip-command = "/bin/echo {a}"',
    )
    (WORK / "inadyn-cache").mkdir(exist_ok=True)
    return {
        "ddnsagent": (
            "ddnsagent.bench.example.net",
            [DDNSAGENT, "notify-now", "--force", "--address", a, "--config", str(agent_cfg)],
        ),
        "ddclient": (
            "ddclient.bench.example.net",
            [
                *("ddclient", "-daemon=0", "-force", "-file", str(dd_cfg)),
                *("-cache", str(WORK / "oneshot-ddclient.cache"), "-use=ip", f"-ip={a}"),
            ],
        ),
        "inadyn": (
            "inadyn.bench.example.net",
            [
                *("inadyn", "--once", "--force", "-n", "--no-pidfile", "-f", str(in_cfg)),
                *("--cache-dir", str(WORK / "inadyn-cache"), "-l", "notice"),
            ],
        ),
    }


def bench_oneshot(srv: Server, runs: int) -> dict[str, Any]:
    log(f"one-shot: 1 warm-up + {runs} runs per tool, interleaved")
    commands = oneshot_commands(srv)
    samples: dict[str, list[Run]] = {t: [] for t in commands}
    to_request: dict[str, list[float]] = {t: [] for t in commands}
    for i in range(runs + 1):
        for tool, (host, cmd) in commands.items():
            mark = srv.mark()
            r = timed(cmd)
            got = [e for e in srv.since(mark) if host in e["hosts"]]
            if r.rc != 0 or len(got) != 1 or got[0]["answer"] not in ("good", "nochg"):
                raise RuntimeError(f"{tool} one-shot failed (rc {r.rc}, {got}): {r.out[-800:]}")
            if i:
                samples[tool].append(r)
                to_request[tool].append(got[0]["mono"] - r.start_mono)
    floors = {
        "python -c pass": [PY, "-c", "pass"],
        "perl -e 1": ["perl", "-e", "1"],
        "python -c 'import ssl, http.client'": [PY, "-c", "import ssl, http.client"],
        "python -c 'import asyncio'": [PY, "-c", "import asyncio"],
        "python -c 'import asyncio, httpx'": [PY, "-c", "import asyncio, httpx"],
        "python -c 'import ddnsagent.cli'": [PY, "-c", "import ddnsagent.cli"],
    }
    floor_runs = {name: [timed(cmd) for _ in range(runs)] for name, cmd in floors.items()}
    return {
        "runs": runs,
        "commands": {t: shlex.join(cmd) for t, (_h, cmd) in commands.items()},
        "tools": {
            t: {**summarize(rs), "to_request_s": median(to_request[t])} for t, rs in samples.items()
        },
        "floors": {n: summarize(rs) for n, rs in floor_runs.items()},
    }


def summarize(rs: list[Run]) -> dict[str, Any]:
    return {
        "wall_s": median([r.wall for r in rs]),
        "wall_min_s": min(r.wall for r in rs),
        "wall_max_s": max(r.wall for r in rs),
        "maxrss_kib": median([r.maxrss_kib for r in rs]),
        "cpu_s": median([r.cpu for r in rs]),
        "all_wall_s": [round(r.wall, 4) for r in rs],
    }


def parse_importtime(text: str) -> list[tuple[int, int, int, str]]:
    """(self µs, cumulative µs, depth, module) in the order Python printed them."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cum_us, raw = line[len("import time:") :].split("|", 2)
        name = raw.rstrip()
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append((int(self_us), int(cum_us), depth, name.strip()))
    return rows


def group_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "ddnsagent":
        return ".".join(parts[:2])
    return parts[0]


def bench_imports(srv: Server, runs: int) -> dict[str, Any]:
    log(f"import time: {runs} runs of the one-shot under -X importtime")
    _host, cmd = oneshot_commands(srv)["ddnsagent"]
    cmd = [PY, "-X", "importtime", *cmd]
    results = []
    for _ in range(runs):
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        rows = parse_importtime(p.stderr)
        results.append((sum(r[0] for r in rows), rows))
    results.sort(key=lambda x: x[0])
    total, rows = results[len(results) // 2]
    groups: dict[str, int] = {}
    for self_us, _cum, _depth, name in rows:
        groups[group_of(name)] = groups.get(group_of(name), 0) + self_us
    # Depth-0 entries are what the script itself or a function imported at run time: the
    # points where a lazy import would cut.
    top = sorted(((cum, name) for _s, cum, depth, name in rows if depth == 0), reverse=True)
    heavy = sorted(((cum, name) for _s, cum, _d, name in rows), reverse=True)

    cli = []
    for _ in range(runs):
        p = subprocess.run(
            [PY, "-X", "importtime", "-c", "import ddnsagent.cli"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        rows_cli = parse_importtime(p.stderr)
        cli.append(sum(r[0] for r in rows_cli))
    site = [cum for _s, cum, _d, name in rows if name == "site"]
    return {
        "command": shlex.join(cmd),
        "runs": runs,
        "total_us": total,
        "all_totals_us": [t for t, _ in results],
        "site_us": site[0] if site else 0,
        "groups_us": dict(sorted(groups.items(), key=lambda kv: -kv[1])),
        "toplevel": [{"module": n, "cum_us": c} for c, n in top[:25]],
        "heaviest": [{"module": n, "cum_us": c} for c, n in heavy if c >= 1000],
        "cli_only_us": median(cli),
        "modules": len(rows),
        "tls_context_ms": tls_context_ms(runs),
    }


TLS_CONTEXT = """
import time, httpx
t = time.perf_counter()
httpx.create_ssl_context()
print((time.perf_counter() - t) * 1000)
"""


def tls_context_ms(runs: int) -> float:
    """What ddnsagent.http._tls_context costs: a verifying context, the CA bundle loaded."""
    times = []
    for _ in range(runs):
        p = subprocess.run([PY, "-c", TLS_CONTEXT], capture_output=True, text=True, timeout=60)
        times.append(float(p.stdout))
    return median(times)


def bench_rss(runs: int) -> dict[str, Any]:
    log("RSS per import")
    imports = [
        "",
        "asyncio",
        "ssl",
        "httpx",
        "tenacity",
        "apscheduler.schedulers.asyncio",
        "dns.zone",
        "asyncio, ssl, httpx, tenacity, apscheduler.schedulers.asyncio",
        "asyncio, ssl, httpx, tenacity, apscheduler.schedulers.asyncio, dns.zone",
        "ddnsagent.cli",
        "ddnsagent.config",
        "ddnsagent.sync",
        "ddnsagent.daemon",
    ]
    # VmRSS after the imports (what a daemon keeps) and VmHWM (the peak on the way there),
    # read by the interpreter itself with nothing imported for it.
    show = (
        "status = open('/proc/self/status').read().split(chr(10))\n"
        "print(*[x.split()[1] for x in status if x.startswith(('VmRSS:', 'VmHWM:'))])"
    )
    out = {}
    for mod in imports:
        code = (f"import {mod}\n" if mod else "") + show
        rss, hwm = [], []
        for _ in range(runs):
            p = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60)
            peak, now = (int(x) for x in p.stdout.split())  # VmHWM comes first in status
            rss.append(now)
            hwm.append(peak)
        out[mod or "(bare interpreter)"] = {"rss_kib": median(rss), "hwm_kib": median(hwm)}
    return out


@dataclass
class Daemon:
    tool: str
    host: str
    addr_file: Path
    cmd: list[str]
    trigger: signal.Signals
    how: str
    proc: subprocess.Popen[bytes] | None = None


def bench_daemons(srv: Server, cycles: int, idle_s: float) -> dict[str, Any]:
    log(f"daemons: {cycles} triggered sync cycles each, then {idle_s:.0f} s idle")
    first = "203.0.113.9"
    daemons = []
    for tool in ("ddnsagent", "ddclient", "inadyn"):
        host = f"{tool}-daemon.bench.example.net"
        addr_file = write(WORK / f"{tool}-daemon.addr", first + "\n")
        cat = f"/bin/cat {addr_file}"
        if tool == "ddnsagent":
            cfg = ddnsagent_config("daemon-agent", srv.url, [host], f"command:{cat}")
            cmd = [DDNSAGENT, "run", "--config", str(cfg)]
            d = Daemon(tool, host, addr_file, cmd, signal.SIGUSR1, "SIGUSR1 (sync now)")
        elif tool == "ddclient":
            cfg = ddclient_config("daemon-ddclient", srv.hostport, [host], f"use=cmd, cmd='{cat}'")
            cmd = ["ddclient", "-daemon=300", "-foreground", "-force", "-file", str(cfg)]
            cmd += ["-cache", str(WORK / "daemon-ddclient.cache")]
            d = Daemon(tool, host, addr_file, cmd, signal.SIGHUP, "SIGHUP (re-read, check now)")
        else:
            cfg = inadyn_config("daemon-inadyn", srv.hostport, host, f'checkip-command = "{cat}"')
            cache = WORK / "daemon-inadyn-cache"
            cache.mkdir(exist_ok=True)
            cmd = ["inadyn", "-n", "-f", str(cfg), "--cache-dir", str(cache)]
            cmd += ["-P", str(WORK / "daemon-inadyn.pid"), "-l", "notice"]
            d = Daemon(tool, host, addr_file, cmd, signal.SIGUSR1, "SIGUSR1 (forced update)")
        daemons.append(d)

    results: dict[str, Any] = {}
    try:
        for d in daemons:
            mark = srv.mark()
            d.proc = spawn(d.cmd, f"daemon-{d.tool}")
            if srv.wait(for_host(d.host, first), 30, mark) is None:
                raise RuntimeError(f"{d.tool} daemon sent no first update; see {WORK}")
        time.sleep(2)
        for d in daemons:
            assert d.proc is not None
            pid = d.proc.pid
            r: dict[str, Any] = {
                "command": shlex.join(d.cmd),
                "trigger": d.how,
                "rss_start_kib": status_kib(pid, "VmRSS"),
            }
            latencies, failures = [], 0
            cpu0, t_start = cpu_ticks(pid), time.monotonic()
            for i in range(1, cycles + 1):
                address = f"203.0.113.{100 + i % 150}"
                d.addr_file.write_text(address + "\n")
                mark = srv.mark()
                t0 = time.monotonic()
                os.kill(pid, d.trigger)
                e = srv.wait(for_host(d.host, address), 10, mark)
                if e is None:
                    failures += 1
                else:
                    latencies.append(e["mono"] - t0)
                time.sleep(0.05)
            time.sleep(1)
            r.update(
                cycles=cycles,
                cycles_failed=failures,
                cycles_wall_s=time.monotonic() - t_start,
                cycle_latency_p50_s=median(latencies),
                cpu_per_cycle_ms=(cpu_ticks(pid) - cpu0) / cycles * 1000,
                rss_after_kib=status_kib(pid, "VmRSS"),
                hwm_after_kib=status_kib(pid, "VmHWM"),
                pss_after_kib=rollup_kib(pid, "Pss"),
                private_after_kib=rollup_kib(pid, "Private_Clean")
                + rollup_kib(pid, "Private_Dirty"),
                threads=status_kib(pid, "Threads"),
            )
            results[d.tool] = r
            log(f"  {d.tool}: VmRSS {r['rss_after_kib'] / 1024:.1f} MiB after {cycles} cycles")
        time.sleep(5)
        pids = {d.tool: d.proc.pid for d in daemons if d.proc is not None}
        start = {t: (cpu_ns(p), cpu_ticks(p)) for t, p in pids.items()}
        t0 = time.monotonic()
        time.sleep(idle_s)
        window = time.monotonic() - t0
        for tool, pid in pids.items():
            ns0, ticks0 = start[tool]
            used_ns, used_ticks = cpu_ns(pid) - ns0, cpu_ticks(pid) - ticks0
            results[tool].update(
                idle_window_s=window,
                idle_cpu_s=used_ns,
                idle_cpu_ticks_s=used_ticks,
                idle_cpu_s_per_hour=used_ns * 3600 / window,
                rss_after_idle_kib=status_kib(pid, "VmRSS"),
            )
    finally:
        for d in daemons:
            if d.proc is not None:
                stop(d.proc)
    return results


def bench_many(strict: Server, hosts_n: int, runs: int) -> dict[str, Any]:
    log(f"{hosts_n} hostnames: 1 warm-up + {runs} forced updates per tool")
    lenient = Server("many", max_hosts=0)
    try:
        hosts = [f"h{i:04d}.many.bench.example.net" for i in range(hosts_n)]

        def commands(srv: Server, tag: str) -> dict[str, Callable[[str], list[str]]]:
            agent_cfg = ddnsagent_config(f"many-agent-{tag}", srv.url, hosts, "web")
            dd_cfg = ddclient_config(f"many-ddclient-{tag}", srv.hostport, hosts)
            dd_cache = str(WORK / f"many-ddclient-{tag}.cache")
            return {
                "ddnsagent": lambda a: (
                    [DDNSAGENT, "notify-now", "--force", "--address", a, "--config", str(agent_cfg)]
                ),
                "ddclient": lambda a: (
                    [
                        *("ddclient", "-daemon=0", "-force", "-file", str(dd_cfg)),
                        *("-cache", dd_cache, "-use=ip", f"-ip={a}"),
                    ]
                ),
            }

        cmds = commands(lenient, "lenient")
        samples: dict[str, list[dict[str, Any]]] = {t: [] for t in cmds}
        for i in range(runs + 1):
            address = f"198.51.100.{10 + i}"  # a new address each run: every host answers good
            for tool, make in cmds.items():
                mark = lenient.mark()
                r = timed(make(address), timeout=300)
                got = lenient.since(mark)
                covered = {h for e in got for h in e["hosts"] if e["myip"] == address}
                answers = sorted({e["answer"] for e in got})
                if i:
                    samples[tool].append(
                        {
                            **asdict(r),
                            "out": None,
                            "requests": len(got),
                            "max_hosts_per_request": max((e["n"] for e in got), default=0),
                            "hosts_updated": len(covered),
                            "answers": answers,
                            "first_request_s": min(e["mono"] for e in got) - r.start_mono,
                            "last_request_s": max(e["mono"] for e in got) - r.start_mono,
                        }
                    )
                if len(covered) != hosts_n:
                    log(f"  {tool}: only {len(covered)} of {hosts_n} hosts updated: {answers}")
        out: dict[str, Any] = {"hosts": hosts_n, "runs": runs, "tools": {}}
        for tool, rs in samples.items():
            out["tools"][tool] = {
                "wall_s": median([r["wall"] for r in rs]),
                "all_wall_s": [round(r["wall"], 3) for r in rs],
                "maxrss_kib": median([r["maxrss_kib"] for r in rs]),
                "cpu_s": median([r["cpu"] for r in rs]),
                "first_request_s": median([r["first_request_s"] for r in rs]),
                "last_request_s": median([r["last_request_s"] for r in rs]),
                "requests": rs[-1]["requests"],
                "max_hosts_per_request": rs[-1]["max_hosts_per_request"],
                "hosts_updated": rs[-1]["hosts_updated"],
                "answers": rs[-1]["answers"],
                "rc": rs[-1]["rc"],
            }
        out["commands"] = {t: shlex.join(make(ONESHOT_ADDRESS)) for t, make in cmds.items()}
        # The same configurations against a server that keeps the protocol's 20-name limit.
        strict_cmds = commands(strict, "strict")
        out["strict"] = {}
        for tool, make in strict_cmds.items():
            address = "198.51.100.99"
            mark = strict.mark()
            r = timed(make(address), timeout=300)
            got = strict.since(mark)
            out["strict"][tool] = {
                "rc": r.rc,
                "wall_s": r.wall,
                "requests": len(got),
                "answers": sorted({e["answer"] for e in got}),
                "hosts_updated": len(
                    {
                        h
                        for e in got
                        for h in e["hosts"]
                        if e["answer"] in ("good", "nochg") and e["myip"] == address
                    }
                ),
            }
        return out
    finally:
        lenient.stop()


def bench_zones(records: int, repeat_scan: int, repeat_full: int) -> dict[str, Any]:
    log(f"zones: edit_zone on {records} records (none, scan, full)")
    out = {}
    for mode, repeat in (("none", repeat_scan), ("scan", repeat_scan), ("full", repeat_full)):
        cmd = [PY, str(HERE / "zonebench.py"), "--records", str(records)]
        cmd += ["--validate", mode, "--repeat", str(repeat)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"zonebench {mode} failed: {p.stdout} {p.stderr[-2000:]}")
        out[mode] = json.loads(p.stdout)
        out[mode]["command"] = shlex.join(cmd)
    return out


# -- reaction -------------------------------------------------------------------------------------


@contextlib.contextmanager
def wan_lab() -> Iterator[None]:
    """bench-home (wan0, 203.0.113.10/24) ⇄ veth ⇄ bench-isp (isp0, 203.0.113.1/24)."""
    for ns in (HOME_NS, ISP_NS):
        sh("ip", "netns", "del", ns, check=False)
    try:
        for ns in (HOME_NS, ISP_NS):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", "wan0", "netns", HOME_NS, "type", "veth", "peer", "name", "isp0")
        sh("ip", "link", "set", "isp0", "netns", ISP_NS)
        sh("ip", "-n", ISP_NS, "addr", "add", f"{ISP_ADDRESS}/24", "dev", "isp0")
        sh("ip", "-n", ISP_NS, "link", "set", "isp0", "up")
        sh("ip", "-n", HOME_NS, "addr", "add", "203.0.113.10/24", "dev", "wan0")
        sh("ip", "-n", HOME_NS, "link", "set", "wan0", "up")
        yield
    finally:
        for ns in (HOME_NS, ISP_NS):
            sh("ip", "netns", "del", ns, check=False)


class Wan:
    def __init__(self) -> None:
        self.address = "203.0.113.10"
        self.next = 11

    def change(self) -> tuple[str, float]:
        """Move wan0 to a new address (del + add in one `ip -batch`); the time before it runs."""
        new = f"203.0.113.{self.next}"
        self.next += 1
        batch = f"addr del {self.address}/24 dev wan0\naddr add {new}/24 dev wan0\n"
        t0 = time.monotonic()
        subprocess.run(
            ["ip", "-n", HOME_NS, "-batch", "-"], input=batch, text=True, check=True, timeout=10
        )
        self.address = new
        return new, t0


def in_home(cmd: list[str]) -> list[str]:
    return ["ip", "netns", "exec", HOME_NS, *cmd]


def react(
    srv: Server,
    wan: Wan,
    clients: Mapping[str, tuple[str, float]],
    reps: int,
    rng: random.Random,
    pause: tuple[float, float],
) -> dict[str, list[float | None]]:
    """`clients`: tool → (hostname, timeout). Each rep changes wan0 once and waits for all.

    Before each change a random pause from `pause` (seconds): for a client that polls, a pause
    spread over its whole interval puts the change at a random phase of its polls, as a real
    address change would be; without it every change would follow the previous update by the
    same delay, and every reaction would last the same, nearly whole, interval.
    """
    out: dict[str, list[float | None]] = {t: [] for t in clients}
    for rep in range(reps):
        time.sleep(rng.uniform(*pause))
        mark = srv.mark()
        new, t0 = wan.change()
        line = []
        for tool, (host, timeout) in clients.items():
            left = max(0.0, t0 + timeout - time.monotonic())
            e = srv.wait(for_host(host, new), left, mark)
            out[tool].append(None if e is None else e["mono"] - t0)
            shown = "timeout" if e is None else f"{e['mono'] - t0:.3f}s"
            line.append(f"{tool} {shown}")
        log(f"  rep {rep + 1}/{reps} → {new}: " + ", ".join(line))
    return out


def bench_reaction(agent_reps: int, peer_reps: int, fast_reps: int) -> dict[str, Any]:
    daemon_src = (REPO / "ddnsagent" / "daemon.py").read_text()
    event_driven = "AddressWatcher" in daemon_src
    rng = random.Random(20240101)
    out: dict[str, Any] = {"ddnsagent_watcher_wired": event_driven, "tools": {}}
    with wan_lab():
        srv = Server("reaction", host=ISP_ADDRESS, port=SERVER_PORT, netns=ISP_NS)
        wan = Wan()
        try:
            # ddnsagent alone: interface:wan0, the shortest interval it allows, no jitter.
            host = "ddnsagent.home.bench.example.net"
            cfg = ddnsagent_config(
                "reaction-agent",
                srv.url,
                [host],
                "interface:wan0",
                interval="30s",
                insecure_http=True,
            )
            cmd = in_home([DDNSAGENT, "run", "--config", str(cfg)])
            log(
                f"reaction: ddnsagent, {agent_reps} changes "
                f"({'watcher' if event_driven else 'polling, 30 s'})"
            )
            proc = spawn(cmd, "reaction-ddnsagent")
            if srv.wait(for_host(host, wan.address), 30) is None:
                raise RuntimeError(f"ddnsagent sent no first update in the lab; see {WORK}")
            time.sleep(1)
            pause = (0.3, 1.5) if event_driven else (0.0, 30.0)
            res = react(srv, wan, {"ddnsagent": (host, 30 + 15)}, agent_reps, rng, pause)
            stop(proc)
            out["tools"]["ddnsagent"] = {
                "command": shlex.join(cmd),
                "mode": "event-driven (AddressWatcher)" if event_driven else "polling every 30 s",
                "samples": res["ddnsagent"],
            }

            # ddclient and inadyn together, each at the shortest interval it accepts.
            dd_host, in_host = "ddclient.home.bench.example.net", "inadyn.home.bench.example.net"
            dd_cfg = ddclient_config(
                "reaction-ddclient", srv.hostport, [dd_host], "use=if, if=wan0"
            )
            dd_cmd = in_home(["ddclient", "-daemon=60", "-foreground", "-file", str(dd_cfg)])
            dd_cmd += ["-cache", str(WORK / "reaction-ddclient.cache")]
            cache = WORK / "reaction-inadyn-cache"
            cache.mkdir(exist_ok=True)
            ip_show = f'checkip-command = "{shutil.which("ip")} -4 addr show wan0"'
            in_cfg = inadyn_config("reaction-inadyn", srv.hostport, in_host, ip_show, 30)
            in_cmd = in_home(["inadyn", "-n", "-f", str(in_cfg), "--cache-dir", str(cache)])
            in_cmd += ["-P", str(WORK / "reaction-inadyn.pid"), "-l", "notice"]
            log(
                f"reaction: ddclient (daemon=60) and inadyn (period=30) together, "
                f"{peer_reps} changes"
            )
            mark = srv.mark()
            procs = [spawn(dd_cmd, "reaction-ddclient"), spawn(in_cmd, "reaction-inadyn")]
            for h in (dd_host, in_host):
                if srv.wait(for_host(h, wan.address), 30, mark) is None:
                    raise RuntimeError(f"no first update for {h} in the lab; see {WORK}")
            time.sleep(1)
            peers = {"ddclient": (dd_host, 60 + 15), "inadyn": (in_host, 30 + 15)}
            res = react(srv, wan, peers, peer_reps, rng, (0.0, 60.0))
            for p in procs:
                stop(p)
            out["tools"]["ddclient"] = {
                "command": shlex.join(dd_cmd),
                "mode": "polling every 60 s (its minimum)",
                "samples": res["ddclient"],
            }
            out["tools"]["inadyn"] = {
                "command": shlex.join(in_cmd),
                "mode": "polling every 30 s (its documented minimum)",
                "samples": res["inadyn"],
            }

            # inadyn's clamp to 30 s is not applied by 2.10.0: period = 1 polls every second.
            if fast_reps:
                fast_host = "inadyn1.home.bench.example.net"
                cache1 = WORK / "reaction-inadyn1-cache"
                cache1.mkdir(exist_ok=True)
                cfg1 = inadyn_config("reaction-inadyn1", srv.hostport, fast_host, ip_show, 1)
                cmd1 = in_home(["inadyn", "-n", "-f", str(cfg1), "--cache-dir", str(cache1)])
                cmd1 += ["-P", str(WORK / "reaction-inadyn1.pid"), "-l", "notice"]
                log(f"reaction: inadyn period=1, {fast_reps} changes")
                mark = srv.mark()
                p1 = spawn(cmd1, "reaction-inadyn1")
                if srv.wait(for_host(fast_host, wan.address), 30, mark) is None:
                    raise RuntimeError(f"no first update for {fast_host}; see {WORK}")
                time.sleep(1)
                fast = {"inadyn-1s": (fast_host, 15.0)}
                res = react(srv, wan, fast, fast_reps, rng, (0.3, 1.5))
                idle0 = cpu_ns(p1.pid)
                time.sleep(10)
                idle_per_hour = (cpu_ns(p1.pid) - idle0) * 360
                stop(p1)
                out["tools"]["inadyn-1s"] = {
                    "command": shlex.join(cmd1),
                    "mode": "polling every 1 s (below its documented 30 s minimum, accepted)",
                    "samples": res["inadyn-1s"],
                    "idle_cpu_s_per_hour": idle_per_hour,
                }
        finally:
            srv.stop()
    for r in out["tools"].values():
        got = [s for s in r["samples"] if s is not None]
        r.update(
            reps=len(r["samples"]),
            timeouts=len(r["samples"]) - len(got),
            p50_s=percentile(got, 50),
            p95_s=percentile(got, 95),
            max_s=max(got, default=float("nan")),
            mean_s=statistics.fmean(got) if got else float("nan"),
        )
    return out


# -- machine --------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])

    def version(cmd: list[str], pattern: str = r"[\d.]+") -> str:
        try:
            text = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
        except OSError:
            return "?"
        m = re.search(pattern, text)
        return m.group(0) if m else text.strip()[:40]

    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "debian": Path("/etc/debian_version").read_text().strip(),
        "python": version([PY, "--version"]),
        "ddnsagent": version([DDNSAGENT, "--version"], r"\S+$"),
        "ddclient": version(["dpkg-query", "-W", "-f", "${Version}", "ddclient"], r"\S+"),
        "inadyn": version(["dpkg-query", "-W", "-f", "${Version}", "inadyn"], r"\S+"),
        "gnu_time": version(["dpkg-query", "-W", "-f", "${Version}", "time"], r"\S+"),
        "git": version(["git", "-C", str(REPO), "describe", "--always", "--dirty"], r"\S+"),
        "venv": str(VENV),
        "dependencies": json.loads(
            subprocess.run([PY, "-c", DEPENDENCY_VERSIONS], capture_output=True, text=True).stdout
        ),
    }


# The configurations RESULTS.md shows (the benchmark's dummy password masked).
CONFIGS_SHOWN = (
    "oneshot-agent.toml",
    "oneshot-ddclient.conf",
    "oneshot-inadyn.conf",
    "daemon-agent.toml",
    "daemon-ddclient.conf",
    "daemon-inadyn.conf",
    "reaction-agent.toml",
    "reaction-ddclient.conf",
    "reaction-inadyn.conf",
)

DEPENDENCY_VERSIONS = """
import importlib.metadata as m, json
names = ["httpx", "httpcore", "h11", "anyio", "APScheduler", "tenacity", "dnspython"]
print(json.dumps({n: m.version(n) for n in names}))
"""


def loadavg() -> float:
    """The 1-minute load average: other work on this machine shows up here."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def only_loopback() -> bool:
    """True when this process's network namespace has nothing but `lo`."""
    links = sh("ip", "-o", "link", "show").splitlines()
    return all(line.split(":")[1].strip().split("@")[0] == "lo" for line in links)


def main() -> int:
    global WORK
    p = argparse.ArgumentParser(description="run by benchmarks/run; see there")
    p.add_argument("--quick", action="store_true", help="few repetitions: a smoke test")
    p.add_argument(
        "--out",
        type=Path,
        help="default: benchmarks/RESULTS.md for a full run, the work directory otherwise",
    )
    p.add_argument("--only", default="", help="comma-separated sections (default: all)")
    p.add_argument("--render", type=Path, help="only write RESULTS.md again from this results.json")
    args = p.parse_args()
    if args.render:
        from results_md import render

        rendered: Path = args.out or args.render.parent / "RESULTS.md"
        rendered.write_text(render(json.loads(args.render.read_text())))
        log(f"wrote {rendered}")
        return 0
    if os.geteuid() != 0:
        print("bench.py: run through benchmarks/run as root", file=sys.stderr)
        return 2
    if not only_loopback():
        print("bench.py: refusing to run in a namespace with more than `lo`", file=sys.stderr)
        return 2
    q = args.quick
    WORK = Path(f"/var/tmp/ddnsagent-bench/run-{time.strftime('%Y%m%d-%H%M%S')}")
    for old in WORK.parent.glob("run-*"):  # earlier runs' work files; this run's stay
        shutil.rmtree(old, ignore_errors=True)
    WORK.mkdir(mode=0o700, parents=True)
    log(f"work files in {WORK}")
    wanted = set(filter(None, args.only.split(",")))
    results: dict[str, Any] = {"machine": machine(), "quick": q}

    def on(section: str) -> bool:
        if wanted and section not in wanted:
            return False
        results.setdefault("load", []).append([section, loadavg()])
        return True

    started = time.monotonic()
    srv = Server("main")
    try:
        if on("oneshot"):
            results["oneshot"] = bench_oneshot(srv, 3 if q else 9)
        if on("imports"):
            results["imports"] = bench_imports(srv, 3 if q else 7)
        if on("rss"):
            results["rss"] = bench_rss(1 if q else 3)
        if on("daemons"):
            results["daemons"] = bench_daemons(srv, 10 if q else 100, 10 if q else 60)
        if on("many"):
            results["many"] = bench_many(srv, 1000, 1 if q else 3)
        if on("zones"):
            results["zones"] = bench_zones(100_000, 2 if q else 5, 1 if q else 3)
        if on("reaction"):
            results["reaction"] = bench_reaction(3 if q else 20, 2 if q else 6, 2 if q else 6)
    finally:
        srv.stop()
        for proc in list(PROCS):
            stop(proc)
    results.setdefault("load", []).append(["end", loadavg()])
    results["duration_s"] = time.monotonic() - started
    results["configs"] = {
        path.name: path.read_text().replace(PASSWORD, "********")
        for name in CONFIGS_SHOWN
        for path in WORK.glob(name)
    }
    (WORK / "results.json").write_text(json.dumps(results, indent=2))
    from results_md import render

    out: Path = args.out or (WORK if (q or wanted) else HERE) / "RESULTS.md"
    out.write_text(render(results))
    (out.parent / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {out} in {results['duration_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
