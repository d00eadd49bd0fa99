"""`ddnsagent check-config`: the pre-flight. The file is parsed first (config.load refuses every
mistake of syntax or value); then each section is summarised and every path, command and secret
it names is checked — as the user the service runs as, with `--as-service`, or by default when
root checks the file the installed unit runs. Each problem comes with its fix; exit 2 when
something cannot work.

Why a package of its own and not part of `doctor`: the doctor looks at the mail system around
the agent (resolver, wildcards, MX, Postfix) and changes its answer with the network; the
pre-flight looks at the agent's own configuration and the unit that runs it, needs no network,
and must stay as light as `check-config` always was (no DNS or HTTP code; tests/test_imports.py).

Checking as another user: root forks a child that drops to the unit's uid, gid and supplementary
groups (setgroups, setresgid, setresuid — the order that leaves no way back), takes the PATH
systemd gives a service, runs the checks there and sends the findings back through a pipe as
JSON; the parent waits at most `CHILD_LIMIT` seconds. What only root can see — the unit's files,
the credential files systemd reads as root, polkit's and sudo's rules — is gathered before the
fork. What the sandbox changes and a plain process cannot feel (ProtectSystem=, ProtectHome=,
ProtectProc=, NoNewPrivileges=) is judged from the unit's settings (`unit.Unit`).
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ddnsagent.preflight import monitoring
from ddnsagent.preflight import unit as units
from ddnsagent.preflight.checks import Context, Finding, check, mode_problem, placeholders

CHILD_LIMIT = 30.0  # seconds the checks may take as the service's user
_READ_LIMIT = 1 << 20  # bytes of findings read from the child
POLKIT_RULES = (
    Path("/etc/polkit-1/rules.d/50-ddnsagent-reconnect.rules"),
    Path("/usr/share/polkit-1/rules.d/50-ddnsagent-reconnect.rules"),
)
BOUNCE_POLKIT_RULES = tuple(p.with_name("50-ddnsagent-bounce-hold.rules") for p in POLKIT_RULES)
SUDOERS = Path("/etc/sudoers.d/ddnsagent")
_SUDOERS_LIMIT = 65536  # bytes of the sudoers drop-in read
# systemd.exec(5), LoadCredential=: a relative source is looked up in the credential stores.
CREDSTORES = (Path("/etc/credstore"), Path("/run/credstore"), Path("/usr/lib/credstore"))
_LABEL = {"note": "note", "placeholder": "PLACEHOLDER", "warn": "warning", "fail": "FAIL"}


def service_unit(
    cfg: Any, as_service: bool, unit_file: Path | None, dirs: tuple[Path, ...] = units.UNIT_DIRS
) -> units.Unit | None:
    """The unit to check as, or None for a check as this process.

    `--as-service` (or `--unit FILE`): the given unit, else the installed one, else the shipped
    unit's values. Without it: the installed unit when root checks the very file it runs."""
    if unit_file is not None:  # with the drop-ins of its own directory only
        return units.read(unit_file, (unit_file.parent,))
    installed = units.find(units.UNIT, dirs)
    if as_service:
        return units.read(installed, dirs) if installed else units.SHIPPED
    if installed is None or os.geteuid() != 0:
        return None
    unit = units.read(installed, dirs)
    runs = unit.config_file
    if runs is not None and runs.resolve() == Path(cfg.file).resolve():
        return unit
    return None


def run(
    cfg: Any,
    out: TextIO,
    as_service: bool = False,
    unit_file: Path | None = None,
    dirs: tuple[Path, ...] = units.UNIT_DIRS,
) -> int:
    """Print the pre-flight of `cfg`; the exit code (0, or 2 when something cannot work)."""
    unit = service_unit(cfg, as_service, unit_file, dirs)
    if unit is None:
        me = _user_name(os.getuid())
        ctx = Context(user=me, path=os.environ.get("PATH", os.defpath))
        findings = placeholders(cfg) + every_check(cfg, ctx)
        header = f"checked as user {me}, in this environment (not as the service)"
    else:
        header, findings = _as_service(cfg, unit, dirs)
        findings = placeholders(cfg) + findings
    return report(cfg, header, findings, strict=unit is not None, out=out)


def every_check(cfg: Any, ctx: Context) -> list[Finding]:
    """The sections in file order: the agent's own, then the outside watchers'."""
    return check(cfg, ctx) + monitoring.check(cfg, ctx)


def report(cfg: Any, header: str, findings: list[Finding], strict: bool, out: TextIO) -> int:
    """The findings, in order, then one verdict line. `strict`: a placeholder cannot work for
    the service either, so it counts as a failure."""
    fails = [f for f in findings if f.status == "fail"]
    marked = [f for f in findings if f.status == "placeholder"]
    broken = len(fails) + (len(marked) if strict else 0)
    if fails:
        print(f"{cfg.file}: the file is well-formed, but some of it cannot work", file=out)
    else:
        print(f"{cfg.file}: configuration is valid", file=out)
    print(f"  {header}", file=out)
    for f in findings:
        if f.status == "ok":
            print(f"  {f.section} {f.message}", file=out)
            continue
        print(f"  {_LABEL[f.status]}: {f.section}: {f.message}", file=out)
        if f.fix:
            print(f"      fix: {f.fix}", file=out)
    warns = sum(f.status == "warn" for f in findings)
    if broken:
        what = f"{len(fails)} problem(s)" + (
            f" and {len(marked)} placeholder(s)" if strict and marked else ""
        )
        print(f"not ready: {what} above — each with its fix", file=out)
        return 2
    if marked:
        print(
            f"not ready: {len(marked)} placeholder(s) from the starter to fill in before "
            "a real run",
            file=out,
        )
    elif warns:
        print(f"ready, with {warns} warning(s) above", file=out)
    else:
        print("ready", file=out)
    return 0


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _as_service(cfg: Any, unit: units.Unit, dirs: tuple[Path, ...]) -> tuple[str, list[Finding]]:
    """The findings as the unit's user sees them (forked and dropped when we are root)."""
    where = f"unit: {unit.source}"
    try:
        user = (
            pwd.getpwnam(unit.user) if not unit.user.isdecimal() else pwd.getpwuid(int(unit.user))
        )
    except KeyError:
        return where, [
            Finding(
                "fail",
                "unit",
                f"User={unit.user} does not exist, so the unit cannot start",
                "create it: install packaging/sysusers/ddnsagent.conf into /etc/sysusers.d/ "
                "and run systemd-sysusers",
            )
        ]
    problems: list[Finding] = []
    gids: list[int] = []
    primary = user.pw_gid
    for name in ([unit.group] if unit.group else []) + list(unit.groups):
        try:
            gid = grp.getgrnam(name).gr_gid
        except KeyError:
            problems.append(
                Finding(
                    "fail",
                    "unit",
                    f"group {name} (Group=/SupplementaryGroups=) does not exist: the unit "
                    "would not start (status 216/GROUP)",
                    "create the group, or drop it with `systemctl edit ddnsagent`",
                )
            )
            continue
        if name == unit.group:
            primary = gid
        else:
            gids.append(gid)
    names = ", ".join(_group_name(g) for g in dict.fromkeys([primary, *gids]))
    header = f"checked as user {user.pw_name} (groups {names}) with the sandbox of the {where}"
    reconnect_file = units.find(units.RECONNECT_UNIT, dirs)
    hold_file = units.find(units.BOUNCE_HOLD_UNIT, dirs)
    ctx = Context(
        user=user.pw_name,
        path=units.SERVICE_PATH,
        unit=unit,
        reconnect_unit=str(reconnect_file) if reconnect_file else None,
        reconnect_timeout=units.timeout_start(reconnect_file, dirs),
        polkit_rule=any(p.is_file() for p in POLKIT_RULES),
        sudoers=SUDOERS.is_file(),
        sudoers_units=sudoers_units(SUDOERS),
        bounce_hold_unit=str(hold_file) if hold_file else None,
        bounce_hold_timeout=units.timeout_start(hold_file, dirs),
        bounce_polkit_rule=any(p.is_file() for p in BOUNCE_POLKIT_RULES),
        credentials={n: _credential_problem(p) for n, p in unit.credentials.items()},
        heartbeat=_heartbeat_credential(cfg, unit),
    )
    if os.geteuid() != 0:
        if os.getuid() != user.pw_uid:
            problems.append(
                Finding(
                    "fail",
                    "unit",
                    f"checking as user {user.pw_name} needs root",
                    "run: sudo ddnsagent check-config --as-service",
                )
            )
            return header, problems
        return header, problems + every_check(cfg, ctx)
    return header, problems + _in_child(cfg, ctx, user.pw_uid, primary, [primary, *gids])


def sudoers_units(path: Path) -> frozenset[str] | None:
    """The units a sudoers drop-in lets its user `systemctl start` (root reads it: 0440);
    None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            text = f.read(_SUDOERS_LIMIT).decode("utf-8", "replace")
    except OSError:
        return None
    found = set()
    for line in text.splitlines():
        words = line.split("#", 1)[0].replace(",", " ").split()
        for i, word in enumerate(words[:-2]):
            if word.endswith("/systemctl") and words[i + 1] == "start":
                found.add(words[i + 2])
    return frozenset(found)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _credential_problem(source: str) -> str:
    path = _credential_path(source)
    if path is None:
        return f"{source} is in none of {', '.join(map(str, CREDSTORES))}"
    return mode_problem(path)


def _credential_path(source: str) -> Path | None:
    """The file LoadCredential=NAME:SOURCE reads (a relative SOURCE: in a credential store)."""
    path = Path(source)
    if path.is_absolute():
        return path
    return next((store / source for store in CREDSTORES if (store / source).exists()), None)


def _heartbeat_credential(cfg: Any, unit: units.Unit) -> Finding | None:
    """[heartbeat] url_file = "cred:NAME": the URL's preset, read by root from the file the
    unit's LoadCredential= names, as systemd will hand it over (the child cannot read it)."""
    hb = getattr(cfg, "heartbeat", None)
    if hb is None or not hb.url.origin.startswith("credential "):
        return None
    source = unit.credentials.get(hb.url.origin.removeprefix("credential "))
    path = _credential_path(source) if source else None
    return monitoring.credential_url_finding(path, hb) if path else None


def _in_child(cfg: Any, ctx: Context, uid: int, gid: int, groups: list[int]) -> list[Finding]:
    """`check(cfg, ctx)` in a forked child that runs as uid/gid/groups; bounded in time."""
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop, check, report, exit — never return into the caller
        code = 0
        try:
            os.close(r)
            os.setgroups(list(dict.fromkeys(groups)))
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            os.environ["PATH"] = ctx.path
            os.environ.pop("CREDENTIALS_DIRECTORY", None)
            data = [f.__dict__ for f in every_check(cfg, ctx)]
        except BaseException as exc:  # report anything, never unwind into the parent's code
            data = [{"status": "fail", "section": "check", "message": f"the check failed: {exc!r}"}]
            code = 1
        payload = json.dumps(data).encode()
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(w, view[:65536]) :]
        finally:
            os._exit(code)
    os.close(w)
    chunks: list[bytes] = []
    deadline = time.monotonic() + CHILD_LIMIT
    size = 0
    try:
        while size < _READ_LIMIT:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                return [
                    Finding(
                        "fail",
                        "check",
                        f"the checks as user {ctx.user} took longer than {CHILD_LIMIT:g}s "
                        "(a path on a hung network mount?)",
                    )
                ]
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    try:
        items = json.loads(b"".join(chunks))
        return [Finding(i["status"], i["section"], i["message"], i.get("fix")) for i in items]
    except (ValueError, KeyError, TypeError):
        return [Finding("fail", "check", f"the checks as user {ctx.user} gave no answer")]
