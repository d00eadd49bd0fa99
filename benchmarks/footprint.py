"""Import time and daemon memory of ddnsagent at two or more git revisions, side by side.

    benchmarks/footprint.py [REV ...] [--runs N] [--out FILE.md]

Each revision is exported with `git archive` and installed (non-editable) into its own venv in
/var/tmp, reused while the commit is the same. The revisions take turns run by run (the order
alternates), so machine load hits all alike; each figure is the median of --runs runs. Traffic
goes only to 127.0.0.1: a benchmarks/dyndns2_server.py child serves the daemon's updates.
Exit code 1 when a measure failed for some revision (the table says which and why).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from procfs import kib

HERE = Path(__file__).resolve().parent
USER, PASSWORD = "bench", "bench-secret"
SYNCS = 100
FIRST_ADDRESS = "203.0.113.9"
# VmRSS read by the interpreter itself, with nothing imported for it
SHOW_RSS = "print([x.split()[1] for x in open('/proc/self/status') if x[:6] == 'VmRSS:'][0])"


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run(cmd: list[str], cwd: Path, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def checked(cmd: list[str], cwd: Path, expect: str = "") -> subprocess.CompletedProcess[str]:
    """run(), raising with the output's tail unless it exits 0 (and prints `expect`)."""
    p = run(cmd, cwd)
    if p.returncode != 0 or expect not in p.stdout:
        reason = f"exit {p.returncode}" + (f", no '{expect}' in its output" if expect else "")
        last = (p.stderr.strip() or p.stdout.strip()).splitlines()[-1:]
        raise RuntimeError(f"{reason}: {' '.join(last)[-300:]}")
    return p


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@dataclass
class Rev:
    label: str
    commit: str
    venv: Path
    work: Path
    samples: dict[str, list[float]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    groups: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        short = self.commit[:7]
        return self.label if self.label.startswith(short) else f"{self.label} ({short})"

    def bin(self, program: str) -> str:
        return str(self.venv / "bin" / program)


def ensure_venv(repo: Path, commit: str, python: str) -> Path:
    """One venv per commit (and interpreter), installed from a `git archive` of it."""
    version = run([python, "-c", "import sys; print('%d%d' % sys.version_info[:2])"], repo)
    venv = Path(f"/var/tmp/ddnsagent-footprint-{commit[:12]}-py{version.stdout.strip()}")
    if (venv / "footprint-installed").exists():
        return venv
    log(f"installing {commit[:12]} into {venv}")
    shutil.rmtree(venv, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="ddnsagent-src-") as src:
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", commit], capture_output=True, check=True, timeout=60
        )
        subprocess.run(["tar", "-x", "-C", src], input=archive.stdout, check=True, timeout=60)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-input", src]
        for cmd, timeout in (([python, "-m", "venv", str(venv)], 120), (pip, 900)):
            p = run(cmd, repo, timeout)
            if p.returncode != 0:
                sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    (venv / "footprint-installed").write_text(commit + "\n")
    return venv


class Server:
    """benchmarks/dyndns2_server.py on 127.0.0.1; its JSON-lines log is read back here."""

    def __init__(self, work: Path) -> None:
        self.log, ready = work / "server.jsonl", work / "server.port"
        cmd = [sys.executable, str(HERE / "dyndns2_server.py"), "--host", "127.0.0.1"]
        cmd += ["--log", str(self.log), "--ready", str(ready), "--max-seconds", "14400"]
        cmd += ["--user", USER, "--password", PASSWORD]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        for _ in range(300):  # 15 s
            if ready.exists() or self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if not ready.exists():
            self.proc.kill()
            raise RuntimeError("the dyndns2 server did not start within 15 s")
        self.url = f"http://127.0.0.1:{int(ready.read_text())}/nic/update"
        self.offset, self.partial = 0, b""

    def new_entries(self) -> list[dict[str, Any]]:
        """The requests logged since the last call (the server flushes whole lines)."""
        with open(self.log, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        return [json.loads(line) for line in lines if line]

    def wait(
        self, host: str, address: str, timeout: float, sender: subprocess.Popen[bytes]
    ) -> bool:
        """True once a request for `host` with `address` arrived since the last wait."""
        for _ in range(int(timeout / 0.01) + 1):
            if any(host in e["hosts"] and e["myip"] == address for e in self.new_entries()):
                return True
            if sender.poll() is not None:
                break
            time.sleep(0.01)
        return False

    def stop(self) -> None:
        stop(self.proc)


def write_config(d: Path, url: str, host: str, source: str, interval: str = "5m") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "secret").write_text(PASSWORD)
    (d / "secret").chmod(0o600)
    cfg = d / "config.toml"
    cfg.write_text(
        f'[agent]\ninterval = "{interval}"\njitter = "0s"\nstate_dir = "{d / "state"}"\n'
        f'control_socket = "{d / "control.sock"}"\nlog_level = "info"\n\n'
        f'[detect]\nipv4 = [{json.dumps(source)}]\naccept = "any"\n\n'
        f'[[provider]]\nname = "bench"\ntype = "dyndns2"\nserver = "{url}"\n'
        f'hostnames = ["{host}"]\nusername = "{USER}"\npassword_file = "{d / "secret"}"\n'
    )
    cfg.chmod(0o600)
    return cfg


def measure_import(rev: Rev, module: str, keep: bool) -> dict[str, float]:
    p = checked([rev.bin("python"), "-X", "importtime", "-c", f"import {module}"], rev.work)
    lines = [x[12:].split("|") for x in p.stderr.splitlines() if x.startswith("import time:")]
    rows = [(int(r[0]), r[2].strip()) for r in lines[1:]]  # lines[0] is the header
    per_group: dict[str, float] = {}
    for self_us, name in rows:  # ddnsagent's modules one by one, the others by package
        group = name if name.startswith("ddnsagent") else name.split(".")[0]
        per_group[group] = per_group.get(group, 0.0) + self_us / 1000
    if keep:
        groups = rev.groups.setdefault(module, {})
        for group, ms in per_group.items():
            groups.setdefault(group, []).append(ms)
    return {
        f"import {module}: self times summed (ms)": sum(us for us, _ in rows) / 1000,
        f"import {module}: ddnsagent modules": sum(n.split(".")[0] == "ddnsagent" for _, n in rows),
        f"import {module}: modules in all": len(rows),
    }


def measure_command(rev: Rev, what: str, argv: list[str], expect: str) -> dict[str, float]:
    t0 = time.perf_counter()
    checked([rev.bin("ddnsagent"), *argv], rev.work, expect)
    return {f"{what} (ms)": (time.perf_counter() - t0) * 1000}


def measure_bare_rss(rev: Rev) -> dict[str, float]:
    p = checked([rev.bin("python"), "-c", "import ddnsagent.daemon\n" + SHOW_RSS], rev.work)
    return {"import ddnsagent.daemon: VmRSS (MiB)": int(p.stdout) / 1024}


def measure_daemon(rev: Rev, srv: Server, run_no: int) -> dict[str, float]:
    d = rev.work / f"daemon-{run_no}"
    host = f"{rev.commit[:12]}-{run_no}.footprint.example.net"
    addr = d / "address"
    cfg = write_config(d, srv.url, host, f"command:/bin/cat {addr}", interval="1h")
    addr.write_text(FIRST_ADDRESS + "\n")
    daemon = [rev.bin("ddnsagent"), "run", "--config", str(cfg)]
    with open(d / "daemon.log", "wb") as out:
        proc = subprocess.Popen(daemon, cwd=d, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        if not srv.wait(host, FIRST_ADDRESS, 30, proc):
            last = (d / "daemon.log").read_text(errors="replace").strip().splitlines()[-1:]
            raise RuntimeError(f"no first update (in 30 s, or it exited): {' '.join(last)[-300:]}")
        missed = 0
        for i in range(1, SYNCS + 1):
            address = f"203.0.113.{10 + i % 200}"
            (d / "address.tmp").write_text(address + "\n")
            os.replace(d / "address.tmp", addr)
            os.kill(proc.pid, signal.SIGUSR1)
            missed += not srv.wait(host, address, 10, proc)
            time.sleep(0.05)  # the sync saves its state after the request; let it finish
        if missed > SYNCS // 10 or proc.poll() is not None:
            raise RuntimeError(f"{missed} of {SYNCS} syncs never reached the server (or it died)")
        time.sleep(1)
        status, rollup = Path(f"/proc/{proc.pid}/status"), Path(f"/proc/{proc.pid}/smaps_rollup")
        private = kib(rollup, "Private_Clean") + kib(rollup, "Private_Dirty")
        return {
            f"daemon after {SYNCS} syncs: VmRSS (MiB)": kib(status, "VmRSS") / 1024,
            f"daemon after {SYNCS} syncs: Pss (MiB)": kib(rollup, "Pss") / 1024,
            f"daemon after {SYNCS} syncs: Private_Clean+Private_Dirty (MiB)": private / 1024,
            f"daemon: syncs that reached the server (of {SYNCS})": SYNCS - missed,
        }
    finally:
        stop(proc)


def attempt(rev: Rev, what: str, keep: bool, fn: Callable[[], dict[str, float]]) -> None:
    """One measure of one revision; a failure is recorded once and the measure then skipped."""
    if what in rev.failed:
        return
    try:
        values = fn()
    except (OSError, RuntimeError, ValueError, KeyError, subprocess.SubprocessError) as exc:
        why = str(exc).replace(str(rev.work), "TMP").replace("|", "/").replace("\n", " ")
        rev.failed[what] = why[:300]
        log(f"FAILED {rev.name}: {what}: {rev.failed[what]}")
        return
    ROWS.setdefault(what, [])
    for key, value in values.items():
        if key not in ROWS[what]:
            ROWS[what].append(key)
        if keep:  # run 0 is a warm-up
            rev.samples.setdefault(key, []).append(value)


ROWS: dict[str, list[str]] = {}  # measure → its table rows, in the order first seen


def one_run(rev: Rev, srv: Server, run_no: int) -> None:
    keep = run_no > 0
    for module in ("ddnsagent.cli", "ddnsagent.daemon"):
        attempt(rev, f"import {module}", keep, partial(measure_import, rev, module, keep))
    cfg = str(rev.work / "config.toml")
    for argv, expect in (
        (["--help"], ""),
        (["check-config", "--config", cfg], "configuration is valid"),
        (["status", "--config", cfg], ""),
        (["notify-now", "--dry-run", "--config", cfg], ""),
    ):
        what = "ddnsagent " + " ".join("CFG" if a == cfg else a for a in argv)
        attempt(rev, what, keep, partial(measure_command, rev, what, argv, expect))
    attempt(rev, "bare import ddnsagent.daemon", keep, partial(measure_bare_rss, rev))
    if keep:  # 100 syncs are their own warm-up
        attempt(rev, "daemon", keep, partial(measure_daemon, rev, srv, run_no))


def fmt(value: float) -> str:
    if value == int(value):
        return f"{value:,.0f}"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"


def table(revs: list[Rev], runs: int) -> str:
    first, last = revs[0], revs[-1]
    head = [f"measure (median of {runs})", *(r.name for r in revs), f"{last.label}/{first.label}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    measures = list(dict.fromkeys([*ROWS, *(w for r in revs for w in r.failed)]))
    for what in measures:
        for key in ROWS.get(what) or [what]:
            cells, medians = [], []
            for r in revs:
                values = r.samples.get(key)
                medians.append(statistics.median(values) if values else None)
                failed = f"failed: {r.failed[what][:120]}" if what in r.failed else "—"
                cells.append(failed if medians[-1] is None else fmt(medians[-1]))
            a, b = medians[0], medians[-1]
            cells.append(f"{b / a:.3f}" if a and b is not None else "—")
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def top_groups(rev: Rev, module: str, n: int = 8) -> dict[str, float]:
    med = {g: statistics.median(v) for g, v in rev.groups.get(module, {}).items()}
    return {g: round(ms, 2) for g, ms in sorted(med.items(), key=lambda kv: -kv[1])[:n]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("revs", nargs="*", default=["033155e", "HEAD"], help="two or more revisions")
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--out", type=Path, help="write the table here, and the raw numbers as .json")
    p.add_argument("--repo", type=Path, default=HERE.parent)
    p.add_argument("--python", default="python3", help="interpreter for the venvs")
    args = p.parse_args()
    if len(args.revs) < 2 or args.runs < 1:
        p.error("give two or more revisions and --runs >= 1")
    revs: list[Rev] = []
    with tempfile.TemporaryDirectory(prefix="ddnsagent-footprint-") as tmp:
        work = Path(tmp)
        for i, label in enumerate(args.revs):
            git = ["git", "-C", str(args.repo), "rev-parse", "--verify", "-q", label + "^{commit}"]
            commit = run(git, work).stdout.strip()
            if not commit:
                p.error(f"{label}: not a revision of {args.repo}")
            venv = ensure_venv(args.repo, commit, args.python)
            revs.append(Rev(label, commit, venv, work / f"r{i}"))
        srv = Server(work)
        load0 = os.getloadavg()
        try:
            for r in revs:
                echo = "command:/bin/echo 203.0.113.7"
                write_config(r.work, srv.url, "cmd.footprint.example.net", echo)
            for run_no in range(args.runs + 1):
                log(f"run {run_no}/{args.runs}" + (" (warm-up)" if run_no == 0 else ""))
                for r in revs if run_no % 2 else revs[::-1]:
                    one_run(r, srv, run_no)
        finally:
            srv.stop()
    freeze = [revs[0].bin("python"), "-m", "pip", "freeze", "--exclude", "ddnsagent"]
    deps = {r.name: run([r.bin("python"), *freeze[1:]], r.venv).stdout.split() for r in revs}
    version = run([freeze[0], "-VV"], revs[0].venv).stdout.strip()
    notes = [
        f"{version}, {os.cpu_count()} CPUs, load average "
        f"{load0[0]:.2f} at the start and {os.getloadavg()[0]:.2f} at the end; the daemon got "
        f"{SYNCS} SIGUSR1 syncs, each a new address sent to a dyndns2 server on 127.0.0.1."
    ]
    if len({tuple(v) for v in deps.values()}) > 1:
        notes.append("WARNING: the venvs hold different dependency versions (see the JSON).")
    for module in ("ddnsagent.cli", "ddnsagent.daemon"):
        for r in revs:
            top = ", ".join(f"{g} {ms:.1f}" for g, ms in top_groups(r, module).items())
            notes.append(f"Largest self times (ms) in `import {module}` at {r.name}: {top}.")
    text = table(revs, args.runs) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
        raw = {"runs": args.runs, "notes": notes, "dependencies": deps}
        raw["revisions"] = [asdict(r) for r in revs]  # samples per run; groups: self ms per run
        args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    return 1 if any(r.failed for r in revs) else 0


if __name__ == "__main__":
    sys.exit(main())
