"""The daemon's memory with the seed's configuration, after N syncs against local fakes.

    benchmarks/memory.py [--venv DIR] [--syncs 100] [--tracemalloc] [--env KEY=VALUE ...]

The seed's configuration (issue 13): a mydns provider (tests/fakes/mydns.py on 127.0.0.1, plain
http), the [relay] watchdog following a mail log, and one zonefile zone (checked with
named-checkzone when it is installed). Detection is `command:/bin/cat FILE`; each sync gets a new
address in FILE and a SIGUSR1, and counts once the fake MyDNS has the notification. The daemon
is `DIR/bin/ddnsagent run` (default: the venv this interpreter belongs to), so two revisions
installed in two venvs are measured by the same script.

Reported: VmRSS, VmHWM, Pss, Private_Clean+Private_Dirty (smaps_rollup), the threads and their
names. With --tracemalloc the daemon runs a second time under `-X tracemalloc=25`, and a snapshot
taken after the first sync is compared with one after the last: the top allocations by file held
at the end, and what grew. Those figures are tracemalloc's (Python objects only, and inflated by
tracing); the RSS figures come from the untraced run. Traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from procfs import kib  # noqa: E402

from tests.fakes.mydns import MyDNSServer  # noqa: E402

HEAVY = {"lexicon", "apprise", "click", "rich", "pygments", "yaml", "requests", "urllib3"}
MASTER_ID, PASSWORD = "mydns123456", "seed-secret"
ZONE = """$TTL 300
@ IN SOA ns.example.net. hostmaster.example.net. ( 2024010101 3600 600 86400 300 )
@ IN NS ns.example.net.
ns IN A 192.0.2.1
@ IN A 192.0.2.1
mail IN A 192.0.2.1
@ IN MX 10 mail.example.net.
"""

# Run in the daemon's interpreter under -X tracemalloc: SIGUSR2 writes a snapshot to the file
# named in DDNSAGENT_BENCH_SNAPSHOT (numbered), then the daemon runs as `ddnsagent run` would.
TRACED = """
import os, signal, sys, tracemalloc
count = [0]
def dump(*_):
    count[0] += 1
    name = os.environ["DDNSAGENT_BENCH_SNAPSHOT"] + str(count[0])
    tracemalloc.take_snapshot().dump(name)
    with open(name + ".modules", "w") as f:
        f.write("\\n".join(sorted(sys.modules)))
signal.signal(signal.SIGUSR2, dump)
from ddnsagent.cli import main
sys.exit(main(sys.argv[1:]))
"""


def write_seed(d: Path, url: str) -> Path:
    """The seed's configuration in `d`, sending to `url`; returns the config file."""
    (d / "zones").mkdir(parents=True)
    (d / "zones" / "db.example.net").write_text(ZONE)
    (d / "mail.log").write_text("")
    (d / "secret").write_text(PASSWORD)
    (d / "secret").chmod(0o600)
    (d / "address").write_text("203.0.113.9\n")
    cfg = d / "config.toml"
    cfg.write_text(
        f'[agent]\ninterval = "1h"\njitter = "0s"\nstate_dir = "{d / "state"}"\n'
        f'control_socket = "{d / "control.sock"}"\nlog_level = "info"\n\n'
        f'[detect]\nipv4 = ["command:/bin/cat {d / "address"}"]\nipv6 = []\naccept = "any"\n\n'
        f'[[provider]]\nname = "home"\ntype = "mydns"\nmaster_id = "{MASTER_ID}"\n'
        f'password_file = "{d / "secret"}"\nurl_ipv4 = "{url}"\ninsecure_http = true\n\n'
        f'[relay]\nlog = "{d / "mail.log"}"\nhost = "auth.gate-on.net"\nflush = []\n\n'
        f'[[zone]]\nname = "local"\ntype = "zonefile"\npath = "{d / "zones" / "db.example.net"}"\n'
        f'origin = "example.net"\nnames = ["@", "mail"]\nttl = 300\n'
    )
    cfg.chmod(0o600)
    return cfg


@contextmanager
def seed_daemon(
    venv: Path, work: Path, env: dict[str, str], traced: bool = False
) -> Iterator[tuple[subprocess.Popen[bytes], MyDNSServer, Path]]:
    """A fake MyDNS and the daemon on the seed's configuration, up and past its first sync."""
    server = MyDNSServer({MASTER_ID: PASSWORD}).start()
    cfg = write_seed(work, server.notify_url)
    if traced:
        cmd = [str(venv / "bin" / "python"), "-X", "tracemalloc=25", "-c", TRACED]
    else:
        cmd = [str(venv / "bin" / "ddnsagent")]
    cmd += ["run", "--config", str(cfg)]
    full_env = {**os.environ, **env, "DDNSAGENT_BENCH_SNAPSHOT": str(work / "snapshot")}
    full_env.pop("NOTIFY_SOCKET", None)
    with open(work / "daemon.log", "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=work, env=full_env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    try:
        if not wait_for(lambda: server.notify_count(MASTER_ID) >= 1, 60, proc):
            tail = (work / "daemon.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"no first notification within 60 s: {' / '.join(tail)}")
        wait_for(lambda: (work / "control.sock").exists(), 10, proc)
        time.sleep(0.5)
        yield proc, server, cfg
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        server.stop()


def wait_for(done: object, seconds: float, proc: subprocess.Popen[bytes]) -> bool:
    for _ in range(int(seconds / 0.01) + 1):
        if done():  # type: ignore[operator]
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def sync_n(proc: subprocess.Popen[bytes], server: MyDNSServer, work: Path, n: int) -> int:
    """n syncs, each for a new address; the number that reached the fake MyDNS."""
    reached = 0
    for i in range(1, n + 1):
        before = server.notify_count(MASTER_ID)
        (work / "address.tmp").write_text(f"203.0.113.{10 + i % 200}\n")
        os.replace(work / "address.tmp", work / "address")
        os.kill(proc.pid, signal.SIGUSR1)
        reached += wait_for(lambda b=before: server.notify_count(MASTER_ID) > b, 10, proc)
        time.sleep(0.05)  # the zone apply and the state save follow the request
    time.sleep(1.0)
    return reached


def measure(venv: Path, syncs: int, env: dict[str, str]) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="ddnsagent-memory-") as tmp:
        work = Path(tmp)
        with seed_daemon(venv, work, env) as (proc, server, _):
            status, rollup = (
                Path(f"/proc/{proc.pid}/status"),
                Path(f"/proc/{proc.pid}/smaps_rollup"),
            )
            at_start = kib(status, "VmRSS")
            reached = sync_n(proc, server, work, syncs)
            threads = sorted(
                Path(f"/proc/{proc.pid}/task/{t}/comm").read_text().strip()
                for t in os.listdir(f"/proc/{proc.pid}/task")
            )
            private = kib(rollup, "Private_Clean") + kib(rollup, "Private_Dirty")
            modules = subprocess.run(  # what the same interpreter loads for the daemon module
                [
                    str(venv / "bin" / "python"),
                    "-c",
                    "import sys, ddnsagent.daemon; print(len(sys.modules))",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, **env},
            ).stdout.strip()
            return {
                "syncs reached": f"{reached}/{syncs}",
                "VmRSS after first sync (MiB)": round(at_start / 1024, 1),
                "VmRSS (MiB)": round(kib(status, "VmRSS") / 1024, 1),
                "VmHWM (MiB)": round(kib(status, "VmHWM") / 1024, 1),
                "Pss (MiB)": round(kib(rollup, "Pss") / 1024, 1),
                "Private (MiB)": round(private / 1024, 1),
                "Anonymous (MiB)": round(kib(rollup, "Anonymous") / 1024, 1),
                "threads": threads,
                "modules after `import ddnsagent.daemon`": modules,
            }


def traced(venv: Path, syncs: int, env: dict[str, str], top: int) -> dict[str, object]:
    import tracemalloc

    with tempfile.TemporaryDirectory(prefix="ddnsagent-memory-") as tmp:
        work = Path(tmp)
        with seed_daemon(venv, work, env, traced=True) as (proc, server, _):
            snap = work / "snapshot"
            os.kill(proc.pid, signal.SIGUSR2)
            wait_for(lambda: Path(f"{snap}1").exists(), 30, proc)
            reached = sync_n(proc, server, work, syncs)
            os.kill(proc.pid, signal.SIGUSR2)
            wait_for(lambda: Path(f"{snap}2").exists(), 30, proc)
            time.sleep(0.5)
            first = tracemalloc.Snapshot.load(f"{snap}1")
            last = tracemalloc.Snapshot.load(f"{snap}2")
            modules = Path(f"{snap}2.modules").read_text().split()

    def short(name: str) -> str:
        return re.sub(r".*/(site-packages|python3\.\d+)/", "", name)

    held = last.statistics("filename")
    grew = last.compare_to(first, "filename")
    # where the largest growth was allocated (the innermost frames of ours or the caller's)
    growth = last.compare_to(first, "traceback")[:3]
    return {
        "modules in the daemon at the end": len(modules),
        "heavy modules in the daemon": [m for m in modules if m.split(".")[0] in HEAVY],
        "modules by package": dict(Counter(m.split(".")[0] for m in modules).most_common(top * 2)),
        "syncs reached": f"{reached}/{syncs}",
        "traced total at the end (KiB)": round(sum(s.size for s in held) / 1024),
        "traced total after the first sync (KiB)": round(
            sum(s.size for s in first.statistics("filename")) / 1024
        ),
        "held at the end, top by file (KiB)": [
            (short(s.traceback[0].filename), round(s.size / 1024)) for s in held[:top]
        ],
        "grew over the syncs, top by file (KiB)": [
            (short(s.traceback[0].filename), round(s.size_diff / 1024, 1)) for s in grew[:top]
        ],
        "largest growth, where allocated": [
            {
                "KiB": round(s.size_diff / 1024, 1),
                "count": s.count_diff,
                "stack": [f"{short(f.filename)}:{f.lineno}" for f in s.traceback][:12],
            }
            for s in growth
        ],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_venv = Path(sys.executable).parent.parent
    p.add_argument("--venv", type=Path, default=default_venv, help="venv holding the daemon")
    p.add_argument("--syncs", type=int, default=100)
    p.add_argument("--tracemalloc", action="store_true", help="also a traced run")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    if not 1 <= args.syncs <= 10000:
        p.error("--syncs: 1 to 10000")
    env = dict(e.split("=", 1) for e in args.env)
    out: dict[str, object] = {"venv": str(args.venv), "env": env}
    out["untraced"] = measure(args.venv, args.syncs, env)
    if args.tracemalloc:
        out["traced"] = traced(args.venv, args.syncs, env, args.top)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
