"""ddnsagent side by side with ddclient and inadyn, on each Python interpreter given;
`benchmarks/run` starts this as root inside a network namespace that has only a loopback
interface, so nothing here can reach beyond this machine: every server is ours, on 127.0.0.1 or
on documentation addresses (203.0.113.0/24) in namespaces this script creates and removes.

Interpreters: BENCH_VENVS="KEY=VENV …" (made by benchmarks/run): `venv` the python3 found on
PATH, `debian` Debian's /usr/bin/python3 with the same dependency versions from PyPI,
`debian-libs` /usr/bin/python3 with Debian's own python3-* packages (kept only when a preflight
of the seed configuration works on it). The first is the one this script runs on.

Sections (each writes into one results dict, rendered by `results_md.py`):
  oneshot   whole processes, interleaved: notify-now --force with the daemon running
            (delegated) and without (local), status, check-config, hook ip-up, per
            interpreter; ddclient's and inadyn's one-shot
  imports   python -X importtime per command and interpreter; the local one-shot in detail
  rss       what each import adds to a bare interpreter's RSS, per interpreter
  daemons   RSS/PSS/private after 100 triggered syncs: the seed configuration (mydns + [relay]
            + a zonefile zone) and dyndns2 only, per interpreter; ddclient, inadyn; idle CPU
  many      1,000 hostnames on one dyndns2 server, ddnsagent vs ddclient (first interpreter)
  zones     ddnsagent.zones.edit_zone on a 100,000-record zone (first interpreter)
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from procfs import kib

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
RELAY_HOST = "relay.bench.example.net"
ZONE_ORIGIN = "bench.example.net"

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


def timed(cmd: list[str], timeout: float = 120.0, env: Mapping[str, str] | None = None) -> Run:
    out = WORK / "time.out"
    full = [TIME, "-f", "%e %M %U %S", "-o", str(out), *cmd]
    environ = {**os.environ, **env} if env else None
    start_mono = time.monotonic()
    t0 = time.perf_counter()
    p = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=environ)
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
    return kib(Path(f"/proc/{pid}/status"), key)


def rollup_kib(pid: int, key: str) -> int:
    """A field of /proc/PID/smaps_rollup: Pss shares shared pages out, Private_* are its own."""
    return kib(Path(f"/proc/{pid}/smaps_rollup"), key)


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


def seed_config(name: str, srv: Server, source: str) -> Path:
    """The seed's configuration: MyDNS (at the benchmark server's `/login.html`), the relay
    watchdog following a mail log, and one zone file kept in step (checked by named-checkzone
    when installed, reloaded by `/bin/true`). `flush = []`: there is no Postfix queue to flush
    here, and a flush after every address change (`settle`, 5 s, first) would make the next
    cycle's trigger find the sync still running."""
    secret = write(WORK / "secret", PASSWORD)
    zone_dir = WORK / f"{name}-zone"
    zone_dir.mkdir(mode=0o700, exist_ok=True)
    zone = write(
        zone_dir / f"db.{ZONE_ORIGIN}",
        f"""$TTL 300
@\tIN\tSOA\tns1.{ZONE_ORIGIN}. hostmaster.{ZONE_ORIGIN}. 1 3600 900 604800 300
@\tIN\tNS\tns1
ns1\tIN\tA\t203.0.113.53
@\tIN\tA\t203.0.113.8
mail\tIN\tA\t203.0.113.8
@\tIN\tMX\t10 mail
""",
    )
    mail_log = write(WORK / f"{name}-mail.log", "")
    return write(
        WORK / f"{name}.toml",
        f"""[agent]
interval = "5m"
jitter = "0s"
state_dir = "{WORK / (name + "-state")}"
log_level = "info"
control_socket = "{WORK / (name + ".sock")}"

[detect]
ipv4 = [{json.dumps(source)}]
accept = "any"

[[provider]]
name = "home"
type = "mydns"
master_id = "{name}"
password_file = "{secret}"
url_ipv4 = "http://{srv.hostport}/login.html"

[relay]
log = "{mail_log}"
host = "{RELAY_HOST}"
flush = []

[[zone]]
name = "local"
type = "zonefile"
path = "{zone}"
origin = "{ZONE_ORIGIN}"
names = ["@", "mail"]
ttl = 300
serial = "increment"
reload = ["/bin/true"]
""",
    )


def sent_line(n: int) -> str:
    """A Postfix delivery through the relay, as the watchdog reads them (nothing to act on)."""
    stamp = time.strftime("%b %d %H:%M:%S")
    return (
        f"{stamp} mail postfix/smtp[{1000 + n}]: 4Xb{n:08d}: to=<a@example.org>, "
        f"relay={RELAY_HOST}[198.51.100.1]:587, delay=0.2, delays=0.1/0/0.05/0.05, "
        f"dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4Xc{n:08d})\n"
    )


# -- interpreters ----------------------------------------------------------------------------------

KINDS = {
    "venv": "python3 from PATH, dependencies from PyPI",
    "debian": "Debian's /usr/bin/python3, the same dependency versions from PyPI",
    "debian-libs": "Debian's /usr/bin/python3 with Debian's python3-* packages",
}
PROBE = """
import importlib.metadata as m, json, os, platform, sys
names = ["httpx", "httpcore", "h11", "anyio", "APScheduler", "tenacity", "dnspython",
         "platformdirs"]
deps = {}
for n in names:
    try:
        deps[n] = m.version(n)
    except m.PackageNotFoundError:
        deps[n] = "missing"
print(json.dumps({"version": platform.python_version(),
                  "base": os.path.realpath(sys._base_executable), "dependencies": deps}))
"""


@dataclass
class Interp:
    key: str
    venv: Path
    version: str = "?"
    base: str = "?"
    dependencies: dict[str, str] = field(default_factory=dict)

    @property
    def py(self) -> str:
        return str(self.venv / "bin" / "python")

    @property
    def ddnsagent(self) -> str:
        return str(self.venv / "bin" / "ddnsagent")

    @property
    def label(self) -> str:
        return f"{self.key} (Python {self.version})"

    def describe(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "kind": KINDS.get(self.key, self.key),
            "version": self.version,
            "base": self.base,
            "venv": str(self.venv),
            "dependencies": self.dependencies,
        }


def interpreters() -> list[Interp]:
    spec = os.environ.get("BENCH_VENVS") or f"venv={VENV}"
    found = []
    for item in spec.split():
        key, _, path = item.partition("=")
        it = Interp(key, Path(path))
        p = subprocess.run([it.py, "-c", PROBE], capture_output=True, text=True, timeout=60)
        if p.returncode == 0:
            info = json.loads(p.stdout)
            it.version, it.base, it.dependencies = (
                info["version"],
                info["base"],
                info["dependencies"],
            )
        found.append(it)
    return found


def preflight(it: Interp, srv: Server) -> str | None:
    """None when the seed configuration runs on `it` (check-config, a local one-shot, the
    daemon's first sync); else why not, in one line."""
    cfg = seed_config(f"preflight-{it.key}", srv, f"command:/bin/echo {ONESHOT_ADDRESS}")
    for cmd in (
        [it.ddnsagent, "check-config", str(cfg)],
        [it.ddnsagent, "notify-now", "--local", "--force", "--config", str(cfg)],
    ):
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            tail = (p.stderr.strip() or p.stdout.strip()).splitlines()[-1:]
            return f"`{shlex.join(cmd[1:3])}` exit {p.returncode}: {' '.join(tail)[-300:]}"
    name = f"preflight-{it.key}-daemon"  # a state of its own: it has something to send
    cfg = seed_config(name, srv, f"command:/bin/echo {ONESHOT_ADDRESS}")
    mark = srv.mark()
    proc = spawn([it.ddnsagent, "run", "--config", str(cfg)], name)
    try:
        if srv.wait(for_host(name), 20, mark) is None:
            tail = (WORK / f"{name}.out").read_text().strip().splitlines()[-1:]
            return f"the daemon sent nothing within 20 s: {' '.join(tail)[-300:]}"
    finally:
        stop(proc)
    return None


# -- whole processes -------------------------------------------------------------------------------


@dataclass
class Delegate:
    """A running dyndns2-only daemon that `notify-now` hands its request to."""

    cfg: Path
    host: str
    out: Path
    proc: subprocess.Popen[bytes]

    def sent_lines(self) -> int:
        return self.out.read_text(errors="replace").count(f"IPv4 {ONESHOT_ADDRESS} sent")


@contextlib.contextmanager
def delegates(srv: Server, interps: list[Interp]) -> Iterator[dict[str, Delegate]]:
    """One daemon per interpreter, running while the whole-process and import sections do."""
    running: dict[str, Delegate] = {}
    try:
        for it in interps:
            host = f"ddnsagent-{it.key}.daemon.oneshot.bench.example.net"
            cfg = ddnsagent_config(
                f"delegate-{it.key}", srv.url, [host], f"command:/bin/echo {ONESHOT_ADDRESS}"
            )
            mark = srv.mark()
            proc = spawn([it.ddnsagent, "run", "--config", str(cfg)], f"delegate-{it.key}")
            if srv.wait(for_host(host, ONESHOT_ADDRESS), 30, mark) is None:
                raise RuntimeError(f"the {it.key} daemon sent no first update; see {WORK}")
            running[it.key] = Delegate(cfg, host, WORK / f"delegate-{it.key}.out", proc)
        time.sleep(1)
        yield running
    finally:
        for d in running.values():
            stop(d.proc)


@dataclass
class Row:
    """One whole-process command, run `runs` times interleaved with all others and checked."""

    tool: str  # ddnsagent, ddclient, inadyn
    interp: str  # interpreter key, "" for the peers
    what: str  # e.g. "notify-now --force, daemon running"
    cmd: list[str]
    check: str  # "request": one request for `host`; "delegated": that, done by the daemon;
    #             "quiet": no request at all, `expect` in the output
    host: str = ""
    expect: str = ""
    env: dict[str, str] = field(default_factory=dict)
    daemon: Delegate | None = None


HOOK_ENV = {"PPP_IFACE": "ppp0", "PPP_LOCAL": ONESHOT_ADDRESS, "PPP_REMOTE": "203.0.113.1"}
HOOK_ARGS = ["ppp0", "/dev/ttyS0", "0", ONESHOT_ADDRESS, "203.0.113.1", "bench"]


def ddnsagent_rows(it: Interp, srv: Server, d: Delegate | None) -> dict[str, Row]:
    a = ONESHOT_ADDRESS
    host = f"ddnsagent-{it.key}.local.oneshot.bench.example.net"
    cfg = str(ddnsagent_config(f"oneshot-{it.key}", srv.url, [host], "web"))
    k, bin_ = it.key, it.ddnsagent
    rows = {
        f"{k}/notify-local": Row(
            "ddnsagent",
            k,
            "notify-now --force, no daemon",
            [bin_, "notify-now", "--force", "--address", a, "--config", cfg],
            "request",
            host,
        ),
        f"{k}/status": Row(
            "ddnsagent", k, "status", [bin_, "status", "--config", cfg], "quiet", expect="bench ["
        ),
        f"{k}/check-config": Row(
            "ddnsagent",
            k,
            "check-config",
            [bin_, "check-config", cfg],
            "quiet",
            expect="configuration is valid",
        ),
    }
    if d is not None:
        dcfg = str(d.cfg)
        rows[f"{k}/notify-daemon"] = Row(
            "ddnsagent",
            k,
            "notify-now --force, daemon running",
            [bin_, "notify-now", "--force", "--address", a, "--config", dcfg],
            "delegated",
            d.host,
            daemon=d,
        )
        rows[f"{k}/hook"] = Row(
            "ddnsagent",
            k,
            "hook ip-up (pppd), daemon running",
            # pppd's arguments before the options: `hook ip-up --timeout 30 ARGS…` (as
            # packaging/ppp/0ddnsagent writes it) ends in argparse's "unrecognized arguments"
            [bin_, "hook", "ip-up", *HOOK_ARGS, "--timeout", "30", "--config", dcfg],
            "quiet",
            expect="daemon",
            env=HOOK_ENV,
        )
    return dict(sorted(rows.items(), key=lambda kv: ROW_ORDER.index(kv[0].split("/")[1])))


ROW_ORDER = ["notify-daemon", "notify-local", "status", "check-config", "hook"]


def peer_rows(srv: Server) -> dict[str, Row]:
    a = ONESHOT_ADDRESS
    dd_host, in_host = "ddclient.bench.example.net", "inadyn.bench.example.net"
    dd_cfg = ddclient_config("oneshot-ddclient", srv.hostport, [dd_host])
    in_cfg = inadyn_config(
        "oneshot-inadyn", srv.hostport, in_host, f'checkip-command = "/bin/echo {a}"'
    )
    (WORK / "inadyn-cache").mkdir(exist_ok=True)
    return {
        "ddclient": Row(
            "ddclient",
            "",
            "one-shot forced update",
            [
                *("ddclient", "-daemon=0", "-force", "-file", str(dd_cfg)),
                *("-cache", str(WORK / "oneshot-ddclient.cache"), "-use=ip", f"-ip={a}"),
            ],
            "request",
            dd_host,
        ),
        "inadyn": Row(
            "inadyn",
            "",
            "one-shot forced update",
            [
                *("inadyn", "--once", "--force", "-n", "--no-pidfile", "-f", str(in_cfg)),
                *("--cache-dir", str(WORK / "inadyn-cache"), "-l", "notice"),
            ],
            "request",
            in_host,
        ),
    }


def run_checked(srv: Server, name: str, row: Row) -> tuple[Run, float | None]:
    """One run of `row`, checked against the server's log (and the daemon's, when delegated);
    the time from the start to the request's arrival, when there is one."""
    mark = srv.mark()
    before = row.daemon.sent_lines() if row.daemon else 0
    r = timed(row.cmd, env=row.env or None)
    got = [e for e in srv.since(mark) if row.host and row.host in e["hosts"]]
    problem = ""
    if r.rc != 0:
        problem = f"exit {r.rc}"
    elif row.check == "quiet":
        if row.expect not in r.out:
            problem = f"no {row.expect!r} in its output"
        elif srv.since(mark):
            problem = f"a request reached the server: {srv.since(mark)}"
    elif len(got) != 1 or got[0]["answer"] not in ("good", "nochg"):
        problem = f"{len(got)} requests: {got}"
    elif row.daemon is not None:
        deadline = time.monotonic() + 5
        while row.daemon.sent_lines() != before + 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        if row.daemon.sent_lines() != before + 1:
            problem = "the daemon's log does not show the sync: it was not delegated"
    if problem:
        raise RuntimeError(f"{name} failed ({problem}): {r.out[-800:]}")
    return r, (got[0]["mono"] - r.start_mono) if got else None


def bench_oneshot(
    srv: Server, interps: list[Interp], daemons: Mapping[str, Delegate], runs: int
) -> dict[str, Any]:
    log(f"whole processes: 1 warm-up + {runs} runs per command, interleaved")
    rows: dict[str, Row] = {}
    for it in interps:
        rows.update(ddnsagent_rows(it, srv, daemons.get(it.key)))
    rows.update(peer_rows(srv))
    samples: dict[str, list[Run]] = {n: [] for n in rows}
    to_request: dict[str, list[float]] = {n: [] for n in rows}
    order = list(rows)
    for i in range(runs + 1):
        for name in order if i % 2 else reversed(order):
            r, t = run_checked(srv, name, rows[name])
            if i:
                samples[name].append(r)
                if t is not None:
                    to_request[name].append(t)
    floors: dict[str, dict[str, Any]] = {}
    for it in interps:
        cmds = {
            "python -c pass": [it.py, "-c", "pass"],
            "python -c 'import asyncio'": [it.py, "-c", "import asyncio"],
            "python -c 'import asyncio, httpx'": [it.py, "-c", "import asyncio, httpx"],
            "python -c 'import ddnsagent.cli'": [it.py, "-c", "import ddnsagent.cli"],
        }
        floors[it.key] = {n: summarize([timed(c) for _ in range(runs)]) for n, c in cmds.items()}
    floors[""] = {"perl -e 1": summarize([timed(["perl", "-e", "1"]) for _ in range(runs)])}
    return {
        "runs": runs,
        "rows": {
            n: {
                "tool": row.tool,
                "interp": row.interp,
                "what": row.what,
                "command": (" ".join(f"{k}={v}" for k, v in row.env.items()) + " ").lstrip()
                + shlex.join(row.cmd),
                **summarize(samples[n]),
                "to_request_s": median(to_request[n]) if to_request[n] else None,
            }
            for n, row in rows.items()
        },
        "floors": floors,
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


# Modules a lean command does without; the import table says which of them each command loaded.
HEAVY = (
    "asyncio",
    "ssl",
    "httpx",
    "tenacity",
    "apscheduler",
    "dns.zone",
    "dns.resolver",
    "lexicon",
    "apprise",
)


def importtime(cmd: list[str], runs: int, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The median run (by summed self time) of `python -X importtime` + `cmd`."""
    results = []
    environ = {**os.environ, **env} if env else None
    for _ in range(runs):
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=environ)
        if p.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd)} failed ({p.returncode}): {p.stderr[-800:]}")
        rows = parse_importtime(p.stderr)
        results.append((sum(r[0] for r in rows), rows))
    results.sort(key=lambda x: x[0])
    total, rows = results[len(results) // 2]
    names = {name for _s, _c, _d, name in rows}
    return {
        "total_us": total,
        "all_totals_us": [t for t, _ in results],
        "modules": len(rows),
        "heavy": [h for h in HEAVY if h in names],
        "rows": rows,
    }


def bench_imports(
    srv: Server, interps: list[Interp], daemons: Mapping[str, Delegate], runs: int
) -> dict[str, Any]:
    log(f"import time: {runs} runs per command and interpreter under -X importtime")
    per: dict[str, dict[str, Any]] = {}
    for it in interps:
        rows = ddnsagent_rows(it, srv, daemons.get(it.key))
        cmds: dict[str, tuple[list[str], dict[str, str]]] = {
            "--help": ([it.ddnsagent, "--help"], {})
        }
        for name, row in rows.items():
            cmds[name.split("/")[1]] = (row.cmd, row.env)
        per[it.key] = {}
        for name, (cmd, env) in cmds.items():
            full = [it.py, "-X", "importtime", *cmd]
            x = importtime(full, runs, env)
            del x["rows"]
            x["command"] = shlex.join(full)
            per[it.key][name] = x
    first = interps[0]
    local = ddnsagent_rows(first, srv, None)[f"{first.key}/notify-local"].cmd
    cmd = [first.py, "-X", "importtime", *local]
    detail = importtime(cmd, runs)
    rows_ = detail.pop("rows")
    groups: dict[str, int] = {}
    for self_us, _cum, _depth, name in rows_:
        groups[group_of(name)] = groups.get(group_of(name), 0) + self_us
    # Depth-0 entries are what the script itself or a function imported at run time: the
    # points where a lazy import would cut.
    top = sorted(((cum, name) for _s, cum, depth, name in rows_ if depth == 0), reverse=True)
    heavy = sorted(((cum, name) for _s, cum, _d, name in rows_), reverse=True)
    # importtime prints a module after everything it imported: its importer is the next line
    # with a smaller depth.
    importer: dict[str, str] = {}
    for i, (_s, _c, depth, name) in enumerate(rows_):
        for _s2, _c2, depth2, name2 in rows_[i + 1 :]:
            if depth2 < depth:
                importer.setdefault(name, name2)
                break
    site = [cum for _s, cum, _d, name in rows_ if name == "site"]
    return {
        "runs": runs,
        "commands": per,
        "detail": {
            **detail,
            "interp": first.key,
            "command": shlex.join(cmd),
            "site_us": site[0] if site else 0,
            "groups_us": dict(sorted(groups.items(), key=lambda kv: -kv[1])),
            "toplevel": [{"module": n, "cum_us": c} for c, n in top[:25]],
            "heaviest": [
                {"module": n, "cum_us": c, "importer": importer.get(n, "")}
                for c, n in heavy
                if c >= 1000
            ],
            "tls_context_ms": tls_context_ms(first, runs),
        },
    }


TLS_CONTEXT = """
import time, httpx
t = time.perf_counter()
httpx.create_ssl_context()
print((time.perf_counter() - t) * 1000)
"""


def tls_context_ms(it: Interp, runs: int) -> float:
    """What a verifying TLS context costs (CA bundle loaded), in a fresh interpreter."""
    times = []
    for _ in range(runs):
        p = subprocess.run([it.py, "-c", TLS_CONTEXT], capture_output=True, text=True, timeout=60)
        times.append(float(p.stdout))
    return median(times)


RSS_IMPORTS = [
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


def bench_rss(interps: list[Interp], runs: int) -> dict[str, Any]:
    log("RSS per import, per interpreter")
    # VmRSS after the imports (what a daemon keeps) and VmHWM (the peak on the way there),
    # read by the interpreter itself with nothing imported for it.
    show = (
        "status = open('/proc/self/status').read().split(chr(10))\n"
        "print(*[x.split()[1] for x in status if x.startswith(('VmRSS:', 'VmHWM:'))])"
    )
    out: dict[str, Any] = {}
    for it in interps:
        out[it.key] = {}
        for mod in RSS_IMPORTS:
            code = (f"import {mod}\n" if mod else "") + show
            rss, hwm = [], []
            for _ in range(runs):
                p = subprocess.run([it.py, "-c", code], capture_output=True, text=True, timeout=60)
                peak, now = (int(x) for x in p.stdout.split())  # VmHWM comes first in status
                rss.append(now)
                hwm.append(peak)
            out[it.key][mod or "(bare interpreter)"] = {
                "rss_kib": median(rss),
                "hwm_kib": median(hwm),
            }
    return out


@dataclass
class Daemon:
    tool: str
    interp: str
    config: str  # "seed", "dyndns2" or the peer's own
    host: str
    addr_file: Path
    cmd: list[str]
    trigger: signal.Signals
    how: str
    zone: Path | None = None
    mail_log: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    def check(self, srv: Server, address: str, mark: int, timeout: float) -> float | None:
        """Seconds from now-ish to the request; None when this cycle did not do all its work
        (the request; for the seed also the zone file carrying `address`)."""
        seed = self.zone is not None
        e = srv.wait(for_host(self.host, None if seed else address), timeout, mark)
        if e is None:
            return None
        if self.zone is not None:
            deadline = time.monotonic() + timeout
            record = re.compile(rf"^mail\s(.*\s)?A\s+{re.escape(address)}\s*$", re.M)
            while not record.search(self.zone.read_text()):
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.005)
        return float(e["mono"])


def bench_daemons(srv: Server, interps: list[Interp], cycles: int, idle_s: float) -> dict[str, Any]:
    log(f"daemons: {cycles} triggered sync cycles each, then {idle_s:.0f} s idle")
    first = "203.0.113.9"
    daemons = []
    for it in interps:
        for config in ("seed", "dyndns2"):
            name = f"daemon-{it.key}-{config}"
            host = f"ddnsagent-{it.key}-{config}.daemon.bench.example.net"
            addr_file = write(WORK / f"{name}.addr", first + "\n")
            cat = f"command:/bin/cat {addr_file}"
            zone = mail_log = None
            if config == "seed":
                host = name  # the MyDNS MasterID: what the server's log names
                cfg = seed_config(name, srv, cat)
                zone = WORK / f"{name}-zone" / f"db.{ZONE_ORIGIN}"
                mail_log = WORK / f"{name}-mail.log"
            else:
                cfg = ddnsagent_config(name, srv.url, [host], cat)
            cmd = [it.ddnsagent, "run", "--config", str(cfg)]
            daemons.append(
                Daemon(
                    "ddnsagent",
                    it.key,
                    config,
                    host,
                    addr_file,
                    cmd,
                    signal.SIGUSR1,
                    "SIGUSR1 (sync now)",
                    zone,
                    mail_log,
                )
            )
    for tool in ("ddclient", "inadyn"):
        host = f"{tool}-daemon.bench.example.net"
        addr_file = write(WORK / f"{tool}-daemon.addr", first + "\n")
        cat = f"/bin/cat {addr_file}"
        if tool == "ddclient":
            cfg = ddclient_config("daemon-ddclient", srv.hostport, [host], f"use=cmd, cmd='{cat}'")
            cmd = ["ddclient", "-daemon=300", "-foreground", "-force", "-file", str(cfg)]
            cmd += ["-cache", str(WORK / "daemon-ddclient.cache")]
            d = Daemon(
                tool, "", "dyndns2", host, addr_file, cmd, signal.SIGHUP, "SIGHUP (check now)"
            )
        else:
            cfg = inadyn_config("daemon-inadyn", srv.hostport, host, f'checkip-command = "{cat}"')
            cache = WORK / "daemon-inadyn-cache"
            cache.mkdir(exist_ok=True)
            cmd = ["inadyn", "-n", "-f", str(cfg), "--cache-dir", str(cache)]
            cmd += ["-P", str(WORK / "daemon-inadyn.pid"), "-l", "notice"]
            d = Daemon(
                tool, "", "dyndns2", host, addr_file, cmd, signal.SIGUSR1, "SIGUSR1 (forced)"
            )
        daemons.append(d)

    def key(d: Daemon) -> str:
        return f"{d.interp}/{d.config}" if d.interp else d.tool

    results: dict[str, Any] = {}
    try:
        for d in daemons:
            mark = srv.mark()
            d.proc = spawn(d.cmd, f"daemon-{key(d).replace('/', '-')}")
            if d.check(srv, first, mark, 30) is None:
                raise RuntimeError(f"{key(d)} daemon did not do its first sync; see {WORK}")
        time.sleep(2)
        for d in daemons:
            assert d.proc is not None
            pid = d.proc.pid
            r: dict[str, Any] = {
                "tool": d.tool,
                "interp": d.interp,
                "config": d.config,
                "command": shlex.join(d.cmd),
                "trigger": d.how,
                "rss_start_kib": status_kib(pid, "VmRSS"),
            }
            latencies, failures = [], 0
            cpu0, t_start = cpu_ticks(pid), time.monotonic()
            for i in range(1, cycles + 1):
                address = f"203.0.113.{100 + i % 150}"
                d.addr_file.write_text(address + "\n")
                if d.mail_log is not None:
                    with open(d.mail_log, "a") as f:
                        f.write(sent_line(i))
                mark = srv.mark()
                t0 = time.monotonic()
                os.kill(pid, d.trigger)
                arrived = d.check(srv, address, mark, 10)
                if arrived is None:
                    failures += 1
                else:
                    latencies.append(arrived - t0)
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
            results[key(d)] = r
            log(f"  {key(d)}: VmRSS {r['rss_after_kib'] / 1024:.1f} MiB after {cycles} cycles")
        time.sleep(5)
        pids = {key(d): d.proc.pid for d in daemons if d.proc is not None}
        start = {t: (cpu_ns(p), cpu_ticks(p)) for t, p in pids.items()}
        t0 = time.monotonic()
        time.sleep(idle_s)
        window = time.monotonic() - t0
        for name, pid in pids.items():
            ns0, ticks0 = start[name]
            used_ns, used_ticks = cpu_ns(pid) - ns0, cpu_ticks(pid) - ticks0
            results[name].update(
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


def bench_reaction(
    interps: list[Interp], agent_reps: int, peer_reps: int, fast_reps: int
) -> dict[str, Any]:
    daemon_src = (REPO / "ddnsagent" / "daemon.py").read_text()
    event_driven = "AddressWatcher" in daemon_src
    rng = random.Random(20240101)
    out: dict[str, Any] = {"ddnsagent_watcher_wired": event_driven, "tools": {}}
    with wan_lab():
        srv = Server("reaction", host=ISP_ADDRESS, port=SERVER_PORT, netns=ISP_NS)
        wan = Wan()
        try:
            # ddnsagent alone, per interpreter: interface:wan0, its shortest interval, no jitter.
            for it in interps:
                host = f"ddnsagent-{it.key}.home.bench.example.net"
                cfg = ddnsagent_config(
                    f"reaction-agent-{it.key}",
                    srv.url,
                    [host],
                    "interface:wan0",
                    interval="30s",
                    insecure_http=True,
                )
                cmd = in_home([it.ddnsagent, "run", "--config", str(cfg)])
                log(
                    f"reaction: ddnsagent on {it.key}, {agent_reps} changes "
                    f"({'watcher' if event_driven else 'polling, 30 s'})"
                )
                mark = srv.mark()
                proc = spawn(cmd, f"reaction-ddnsagent-{it.key}")
                if srv.wait(for_host(host, wan.address), 30, mark) is None:
                    raise RuntimeError(f"ddnsagent sent no first update in the lab; see {WORK}")
                time.sleep(1)
                pause = (0.3, 1.5) if event_driven else (0.0, 30.0)
                res = react(srv, wan, {"ddnsagent": (host, 30 + 15)}, agent_reps, rng, pause)
                stop(proc)
                out["tools"][f"ddnsagent {it.key}"] = {
                    "tool": "ddnsagent",
                    "interp": it.key,
                    "command": shlex.join(cmd),
                    "mode": "event-driven (AddressWatcher)"
                    if event_driven
                    else "polling every 30 s",
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
                "tool": "ddclient",
                "interp": "",
                "command": shlex.join(dd_cmd),
                "mode": "polling every 60 s (its minimum)",
                "samples": res["ddclient"],
            }
            out["tools"]["inadyn"] = {
                "tool": "inadyn",
                "interp": "",
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
                    "tool": "inadyn",
                    "interp": "",
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
        "ddnsagent": version([DDNSAGENT, "--version"], r"\S+$"),
        "ddclient": version(["dpkg-query", "-W", "-f", "${Version}", "ddclient"], r"\S+"),
        "inadyn": version(["dpkg-query", "-W", "-f", "${Version}", "inadyn"], r"\S+"),
        "gnu_time": version(["dpkg-query", "-W", "-f", "${Version}", "time"], r"\S+"),
        "git": version(["git", "-C", str(REPO), "describe", "--always", "--dirty"], r"\S+"),
        "named_checkzone": version(["dpkg-query", "-W", "-f", "${Version}", "bind9-utils"], r"\S+"),
    }


# The configurations RESULTS.md shows (the benchmark's dummy password masked); the other
# interpreters' files differ only in names.
CONFIGS_SHOWN = (
    "oneshot-venv.toml",
    "delegate-venv.toml",
    "oneshot-ddclient.conf",
    "oneshot-inadyn.conf",
    "daemon-venv-seed.toml",
    "daemon-venv-dyndns2.toml",
    "daemon-ddclient.conf",
    "daemon-inadyn.conf",
    "reaction-agent-venv.toml",
    "reaction-ddclient.conf",
    "reaction-inadyn.conf",
)


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
        data = json.loads(args.render.read_text())
        rendered.write_text(render(data))
        log(f"wrote {rendered}")
        write_headline(data, rendered)
        return 0
    if os.geteuid() != 0:
        print("bench.py: run through benchmarks/run as root", file=sys.stderr)
        return 2
    if not only_loopback():
        print("bench.py: refusing to run in a namespace with more than `lo`", file=sys.stderr)
        return 2
    q = args.quick
    base = Path(os.environ.get("BENCH_BASE", "/var/tmp/ddnsagent-bench"))
    WORK = base / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
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
        interps = []
        results["interpreters"] = {}
        given = interpreters()
        for it in given:
            why = preflight(it, srv)
            results["interpreters"][it.key] = {**it.describe(), "unavailable": why}
            if why is None:
                interps.append(it)
            else:
                log(f"interpreter {it.key} left out: {why}")
        if not interps or interps[0] is not given[0]:
            raise RuntimeError(f"the first interpreter does not run the benchmark; see {WORK}")
        log("interpreters: " + ", ".join(f"{it.key} {it.version}" for it in interps))
        if not wanted or wanted & {"oneshot", "imports"}:
            with delegates(srv, interps) as daemons:
                if on("oneshot"):
                    results["oneshot"] = bench_oneshot(srv, interps, daemons, 3 if q else 9)
                if on("imports"):
                    results["imports"] = bench_imports(srv, interps, daemons, 3 if q else 5)
        if on("rss"):
            results["rss"] = bench_rss(interps, 1 if q else 3)
        if on("daemons"):
            results["daemons"] = bench_daemons(srv, interps, 10 if q else 100, 10 if q else 60)
        if on("many"):
            results["many"] = bench_many(srv, 1000, 1 if q else 3)
        if on("zones"):
            results["zones"] = bench_zones(100_000, 2 if q else 5, 1 if q else 3)
        if on("reaction"):
            results["reaction"] = bench_reaction(
                interps, 3 if q else 20, 2 if q else 6, 2 if q else 6
            )
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
    write_headline(results, out)
    log(f"wrote {out} in {results['duration_s'] / 60:.1f} min")
    return 0


README = REPO / "README.md"
HEADLINE_START = "<!-- benchmarks/run writes this table: start -->"
HEADLINE_END = "<!-- benchmarks/run writes this table: end -->"


def write_headline(results: dict[str, Any], out: Path) -> None:
    """README's headline table from the same results: into README.md for the full run that
    writes benchmarks/RESULTS.md, beside `out` (HEADLINE.md) for any other run."""
    from results_md import headline

    table = headline(results)
    if out.resolve() != (HERE / "RESULTS.md").resolve() or results.get("quick"):
        (out.parent / "HEADLINE.md").write_text(table)
        log(f"wrote {out.parent / 'HEADLINE.md'} (README.md left alone)")
        return
    text = README.read_text()
    start, end = text.index(HEADLINE_START), text.index(HEADLINE_END)
    README.write_text(text[: start + len(HEADLINE_START)] + "\n" + table + text[end:])
    log(f"updated the headline table in {README}")


if __name__ == "__main__":
    sys.exit(main())
