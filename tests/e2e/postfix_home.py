"""A real Postfix, the home mail server, running inside the lab's home namespace.

Each instance has its own configuration directory, queue, data directory and log file under one
work directory (`postfix -c DIR`), so it never touches /etc/postfix or a system Postfix, and its
master runs inside the namespace (started through `ip netns exec`), where 127.0.0.1:25 and the
WAN address are the namespace's own. All mail is relayed to `[198.51.100.1]:587` — no DNS
lookup is ever made for it — and timers are short so that deferrals and retries happen within a
test: connect timeout 5 s, back-off and queue runs every 10 s.

Postfix writes its log itself (`maillog_file`, Postfix ≥ 3.4): the `postlog` service in master.cf
runs postlogd, and `maillog_file_prefixes` must admit the work directory. These lines have
Postfix's own format (`Mon DD HH:MM:SS host postfix/smtp[pid]: …`, day zero-padded), the
format the relay watchdog follows.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.e2e.netlab import ISP_ADDRESS, Namespace

__all__ = ["HOSTNAME", "HomePostfix", "missing_requirements"]

HOSTNAME = "home.example.net"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
COMMAND_TIMEOUT = 30.0
_POSTFIX_DIRS = {
    "command_directory": "/usr/sbin",
    "daemon_directory": "/usr/lib/postfix/sbin",
    "meta_directory": "/etc/postfix",
    "shlib_directory": "/usr/lib/postfix",
}

# Every service the relay path needs, none chrooted (a chroot would need copies of /etc files in
# the queue directory). `postlog` is what makes `maillog_file` work.
MASTER_CF = """\
smtp      inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def missing_requirements() -> list[str]:
    """Why a home Postfix cannot run here (empty when it can)."""
    reasons = []
    if shutil.which("postfix") is None or not Path(_POSTFIX_DIRS["daemon_directory"]).is_dir():
        reasons.append("needs Postfix (Debian package postfix)")
    else:
        argv = ["postconf", "-d", "-h", "mail_version"]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
        version = done.stdout.strip()
        parts = tuple(int(p) for p in re.findall(r"\d+", version)[:2])
        if parts < (3, 4):
            reasons.append(f"needs Postfix >= 3.4 for maillog_file, found {version or '?'}")
    try:
        import pwd

        pwd.getpwnam("postfix")
    except KeyError:
        reasons.append("needs the postfix user (created by the Debian package)")
    return reasons


def main_cf(workdir: Path, relay: str, port: int, settings: Mapping[str, str]) -> str:
    values = {
        "compatibility_level": "3.6",
        **_POSTFIX_DIRS,
        "queue_directory": str(workdir / "queue"),
        "data_directory": str(workdir / "data"),
        "mail_owner": "postfix",
        "setgid_group": "postdrop",
        "myhostname": HOSTNAME,
        "mydomain": "example.net",
        "myorigin": "$myhostname",
        "mydestination": "",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "mynetworks": "127.0.0.0/8",
        "relayhost": f"[{relay}]:{port}",
        "smtpd_peername_lookup": "no",
        "alias_maps": "",
        "alias_database": "",
        "biff": "no",
        "smtp_tls_security_level": "none",
        "smtpd_tls_security_level": "none",
        "maillog_file": str(workdir / "maillog"),
        "maillog_file_prefixes": str(workdir),
        # Fast failures and retries, so that a test sees them within seconds.
        "smtp_connect_timeout": "5s",
        "smtp_helo_timeout": "10s",
        "smtp_mail_timeout": "10s",
        "smtp_rcpt_timeout": "10s",
        "smtp_data_init_timeout": "10s",
        "smtp_data_xfer_timeout": "20s",
        "smtp_data_done_timeout": "20s",
        "smtp_quit_timeout": "5s",
        "minimal_backoff_time": "10s",
        "maximal_backoff_time": "20s",
        "queue_run_delay": "10s",
        **settings,
    }
    return "".join(f"{key} = {value}\n" for key, value in values.items())


class HomePostfix:
    """One Postfix instance in `ns`, everything under `workdir`.

    `settings` adds or overrides main.cf parameters. Start with `start()` or as a context
    manager; `stop()` (never raises) stops the master and waits for it. `workdir` and the path to
    it must be searchable by the postfix user (the helpers in test_harness make it 0755).
    """

    def __init__(
        self,
        ns: Namespace,
        workdir: Path,
        *,
        relay: str = ISP_ADDRESS,
        port: int = 587,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.ns = ns
        self.workdir = workdir
        self.config_dir = workdir / "conf"
        self.queue_dir = workdir / "queue"
        self.data_dir = workdir / "data"
        self.maillog = workdir / "maillog"
        self.relay = relay
        self.port = port
        self.settings = dict(settings or {})
        self._started = False

    # -- life cycle ------------------------------------------------------------------------------

    def write_config(self) -> None:
        import pwd

        postfix = pwd.getpwnam("postfix")
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.queue_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chown(self.data_dir, postfix.pw_uid, postfix.pw_gid)  # master.lock lives there
        text = main_cf(self.workdir, self.relay, self.port, self.settings)
        (self.config_dir / "main.cf").write_text(text)
        (self.config_dir / "master.cf").write_text(MASTER_CF)

    def postfix(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """`postfix -c DIR ARGS…` inside the namespace; its output."""
        return self._command(["postfix", "-c", str(self.config_dir), *args], timeout)

    def _command(self, argv: Sequence[str], timeout: float = COMMAND_TIMEOUT) -> str:
        done = self.ns.run(argv, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)}: exit {done.returncode}\n{done.stderr.strip()}\n"
                f"--- maillog tail ---\n{''.join(self.maillog_lines()[-20:])}"
            )
        return done.stdout

    def start(self) -> Self:
        self.write_config()
        self.postfix("check")
        self._started = True
        self.postfix("start", timeout=START_TIMEOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._listening():
            if time.monotonic() > deadline:
                raise RuntimeError(f"Postfix not listening after {START_TIMEOUT:g}s")
            time.sleep(0.1)
        return self

    def _listening(self) -> bool:
        done = self.ns.run(["ss", "-Htln", "sport = :25"], check=False)
        return "127.0.0.1:25" in done.stdout

    def master_pid(self) -> int | None:
        try:
            pid = int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def stop(self) -> None:
        """Stop the instance: `postfix stop`, then `postfix abort`, then SIGKILL of the master.
        Never raises; bounded by about 2 × `STOP_TIMEOUT`."""
        if not self._started:
            return
        self._started = False
        for how in ("stop", "abort"):
            pid = self.master_pid()
            if pid is None:
                return
            with contextlib.suppress(Exception):
                self.postfix(how)
            if self._wait_gone(pid, STOP_TIMEOUT):
                return
        pid = self.master_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    @staticmethod
    def _wait_gone(pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.05)
        return False

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- mail ------------------------------------------------------------------------------------

    def submit(
        self,
        recipient: str = "bob@remote.example",
        *,
        sender: str = f"alice@{HOSTNAME}",
        subject: str = "test",
        body: str = "hello\n",
        message_id: str | None = None,
    ) -> str:
        """Queue one message with `sendmail -C DIR` (as a local program would); its Message-ID."""
        message_id = message_id or f"<{secrets.token_hex(8)}@{HOSTNAME}>"
        message = (
            f"From: {sender}\nTo: {recipient}\nSubject: {subject}\n"
            f"Message-ID: {message_id}\n\n{body}"
        )
        done = self.ns.run(
            ["sendmail", "-C", str(self.config_dir), "-f", sender, "-i", "--", recipient],
            input=message,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"sendmail: exit {done.returncode}: {done.stderr.strip()}")
        return message_id

    def submit_many(self, count: int, **kwargs: Any) -> list[str]:
        """Queue `count` messages (subjects `test 1`…); their Message-IDs, in order."""
        return [self.submit(subject=f"test {i + 1}", **kwargs) for i in range(count)]

    def flush(self) -> None:
        """`postqueue -f`: retry every deferred message now, forgetting dead destinations."""
        self._command(["postqueue", "-c", str(self.config_dir), "-f"])

    def queue(self) -> list[dict[str, Any]]:
        """`postqueue -j`: one object per queued message (queue_name, queue_id, recipients with
        delay_reason, …)."""
        out = self._command(["postqueue", "-c", str(self.config_dir), "-j"])
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def wait_queue(
        self, condition: Callable[[list[dict[str, Any]]], bool], what: str, timeout: float
    ) -> list[dict[str, Any]]:
        """Poll the queue (every 0.2 s, at most `timeout` s) until `condition(queue)` holds."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.queue()
            if condition(current):
                return current
            if time.monotonic() > deadline:
                raise AssertionError(f"queue: {what} not reached after {timeout:g}s: {current}")
            time.sleep(0.2)

    # -- the log ---------------------------------------------------------------------------------

    def maillog_lines(self) -> list[str]:
        """The whole log so far, complete lines only, newlines kept."""
        try:
            text = self.maillog.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        return text.splitlines(keepends=True)[: text.count("\n")]

    def wait_log(self, pattern: str, count: int = 1, timeout: float = 30.0) -> list[str]:
        """Wait until `count` log lines match the regular expression `pattern`; those lines."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.maillog_lines() if regex.search(line)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                tail = "".join(self.maillog_lines()[-30:])
                raise AssertionError(
                    f"{len(found)} of {count} log lines matching {pattern!r} after {timeout:g}s;"
                    f" log tail:\n{tail}"
                )
            time.sleep(0.1)
