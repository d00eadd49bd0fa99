"""The pre-flight's checks: each section summarised, then every path, command and secret the
configuration names, looked at by the process that runs them — so run as the service's user
(see `preflight.run`), they answer for the daemon.

Pure of output: every check returns `Finding`s; nothing here prints, forks or starts a program.
A check never opens a path in a way that can block (FIFOs are opened non-blocking) and reads at
most a few KiB.
"""

from __future__ import annotations

import errno
import grp
import os
import re
import shutil
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ddnsagent.durations import format_duration
from ddnsagent.errors import SecretUnavailable
from ddnsagent.preflight.unit import BOUNCE_HOLD_UNIT, RECONNECT_UNIT, Unit

Status = Literal["ok", "note", "placeholder", "warn", "fail"]

# Programs that need root to change the WAN link: pppd's front ends, ifupdown, the link itself.
ROOT_ONLY = ("pon", "poff", "pppd", "ifup", "ifdown", "ip", "plog")
# A reconnect script calling one of these needs root too (the shipped ppp-reconnect-pon does).
_ROOT_WORDS = re.compile(r"\b(pon|poff|pppd|ifup|ifdown|ip\s+link)\b")
_PLACEHOLDER_LINE = re.compile(r"^\s*([A-Za-z0-9_]+)\s*=\s*(.+?)\s*#\s*placeholder\b")
# How long the relay watch waits for `[relay] bounce_hold` (relay/watch.py HOLD_TIMEOUT; a test
# keeps the two equal): the oneshot's TimeoutStartSec= must stay under it.
BOUNCE_HOLD_WAIT = 90.0
SCRIPT_PEEK = 4096  # bytes of a reconnect script read to see whether it needs root
# Debian 12's unbound: remote-control.conf sets `control-interface: /run/unbound.ctl`, a socket
# unbound 1.17 makes root:unbound 0660 (seen on this project's test machine).
UNBOUND_SOCKET = Path("/run/unbound.ctl")


@dataclass(frozen=True)
class Finding:
    status: Status
    section: str  # "[relay]", "[[zone]] local", …
    message: str
    fix: str | None = None


@dataclass(frozen=True)
class Context:
    """Who the checks answer for, and the facts only root could gather before dropping to that
    user (the unit's files, the credential files systemd reads as root)."""

    user: str  # whose view the checks take
    path: str  # PATH the daemon's programs are looked up in
    unit: Unit | None = None  # None: not as the service (by hand, in this environment)
    reconnect_unit: str | None = None  # the installed ddnsagent-reconnect.service, if any
    reconnect_timeout: float | None = None  # its TimeoutStartSec=
    polkit_rule: bool = False  # 50-ddnsagent-reconnect.rules installed
    sudoers: bool = False  # /etc/sudoers.d/ddnsagent installed
    # the units its lines let the user `systemctl start` (None: not read)
    sudoers_units: frozenset[str] | None = None
    bounce_hold_unit: str | None = None  # the installed ddnsagent-bounce-hold.service, if any
    bounce_hold_timeout: float | None = None  # its TimeoutStartSec=
    bounce_polkit_rule: bool = False  # 50-ddnsagent-bounce-hold.rules installed
    credentials: dict[str, str] = field(default_factory=dict)  # name → problem ("" = fine)
    # [heartbeat] with url_file = "cred:NAME": the URL's preset, judged by root from the file
    # LoadCredential= names (the dropped child cannot read it)
    heartbeat: Finding | None = None


def check(cfg: Any, ctx: Context) -> list[Finding]:
    """Every finding about `cfg` from `ctx.user`'s point of view, in file order. Placeholders
    are found apart (`placeholders`), by the process that could read the file."""
    out: list[Finding] = []
    out += _config_file(cfg, ctx)
    out += _agent(cfg, ctx)
    out += _detect(cfg)
    for s in cfg.providers:
        out += _provider(s, ctx)
    out += _relay(cfg, ctx)
    out += _bounce_hold(cfg, ctx)
    out += _reconnect(cfg, ctx)
    for z in cfg.zones:
        out += _zone(z, cfg, ctx)
    return out


# -- helpers -----------------------------------------------------------------------------------


def why_unreadable(path: Path, ctx: Context | None = None) -> str | None:
    """None when this process (as the service, with `ctx`) can open `path` for reading; else
    why not. Never blocks on a FIFO and reads nothing."""
    hidden = _hidden(path, ctx)
    if hidden:
        return hidden
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return "does not exist"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "is not readable"
        return f"cannot be opened: {exc.strerror}"
    os.close(fd)
    return None


def _hidden(path: Path, ctx: Context | None) -> str | None:
    by = ctx.unit.hidden_by(path) if ctx is not None and ctx.unit is not None else None
    return f"is hidden from the service by the unit's {by}" if by else None


def _why_not_writable(directory: Path, ctx: Context) -> str | None:
    hidden = _hidden(directory, ctx)
    if hidden:
        return hidden
    if ctx.unit is not None and not ctx.unit.may_write(directory):
        return (
            f"is read-only under the unit's ProtectSystem={ctx.unit.protect_system}"
            " (not in ReadWritePaths=)"
        )
    if not directory.is_dir():
        return "does not exist"
    if not os.access(directory, os.W_OK):
        return "is not writable"
    return None


def _program(argv0: str, ctx: Context) -> tuple[Path | None, str | None]:
    """Where `argv0` is found and None, or None and why it cannot be run."""
    if "/" in argv0:
        path: Path | None = Path(argv0)
    else:
        found = shutil.which(argv0, path=ctx.path)
        path = Path(found) if found else None
    if path is None:
        return None, f"{argv0!r} is not found in PATH ({ctx.path})"
    hidden = _hidden(path, ctx)
    if hidden:
        return None, f"{path} {hidden}"
    if not path.exists():
        return None, f"{path} does not exist"
    if not path.is_file() or not os.access(path, os.X_OK):
        return None, f"{path} is not executable by {ctx.user}"
    return path, None


def who(ctx: Context) -> str:
    return f"user {ctx.user}" + (" under the unit" if ctx.unit else "")


def _argv_text(argv: tuple[str, ...]) -> str:
    return " ".join(argv)


def _in_group(name: str) -> bool:
    if os.geteuid() == 0:
        return True
    try:
        gid = grp.getgrnam(name).gr_gid
    except KeyError:
        return False
    return gid in os.getgroups() or gid == os.getegid()


# -- the sections ------------------------------------------------------------------------------


def _config_file(cfg: Any, ctx: Context) -> list[Finding]:
    if ctx.unit is None:
        return []
    out = []
    runs = ctx.unit.config_file
    if runs is not None and runs.resolve() != Path(cfg.file).resolve():
        out.append(
            Finding(
                "warn",
                "unit",
                f"the unit runs --config {runs}, not this file",
                f"check that file: ddnsagent check-config --as-service {runs}",
            )
        )
    why = why_unreadable(Path(cfg.file), ctx)
    if why:
        out.append(
            Finding(
                "fail",
                "unit",
                f"{cfg.file} {why} by user {ctx.user}: the daemon cannot start",
                'keep secrets out of it (password_file = "cred:NAME") and run: '
                f"chmod 644 {cfg.file}",
            )
        )
    return out


def _agent(cfg: Any, ctx: Context) -> list[Finding]:
    a = cfg.agent
    out = [
        Finding(
            "ok",
            "[agent]",
            f"every {format_duration(a.interval)} ± {format_duration(a.jitter)}; "
            f"state in {a.state_dir}; log_level {a.log_level}",
        )
    ]
    state = Path(a.state_dir)
    if ctx.unit is not None and state in ctx.unit.state_directories:
        return out  # systemd makes it and gives it to the user at every start
    if not state.exists():
        if ctx.unit is None:
            return out  # made at the first run
        why: str | None = "does not exist, and systemd makes only StateDirectory="
    else:
        why = _why_not_writable(state, ctx)
    if why:
        out.append(
            Finding(
                "fail",
                "[agent]",
                f"state_dir {state} {why} for {who(ctx)}",
                "leave state_dir unset (the unit's StateDirectory=, /var/lib/ddnsagent)"
                if ctx.unit
                else f"set state_dir to a directory {ctx.user} may write",
            )
        )
    return out


def _detect(cfg: Any) -> list[Finding]:
    out = []
    for fam in (4, 6):
        sources = cfg.detect.sources(fam)
        shown = ", ".join(s.text for s in sources) or "off"
        out.append(Finding("ok", "[detect]", f"IPv{fam}: {shown}"))
        for s in sources:
            if s.kind == "interface" and not Path("/sys/class/net", s.arg).exists():
                out.append(
                    Finding(
                        "note",
                        "[detect]",
                        f"there is no interface {s.arg} now (fine while the link is down)",
                        "check the name with `ip link` once the link is up",
                    )
                )
    return out


def placeholders(cfg: Any) -> list[Finding]:
    """Values the starter (`ddnsagent init`) marks `# placeholder` and that are still there,
    with or without the comment; and lines the user marked `# placeholder` themselves."""
    try:
        text = Path(cfg.file).read_text(encoding="utf-8")
    except OSError:
        return []
    out = []
    starter = starter_placeholders()
    section = ""
    seen: set[tuple[str, str]] = set()
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped.split("#")[0].strip()
            continue
        match = _PLACEHOLDER_LINE.match(line)
        key = value = None
        if match and match.group(1) not in starter:  # a placeholder of the user's own
            key, value = match.group(1), match.group(2)
        else:  # the starter's: reported while its value is still there, comment or not
            plain = re.match(r"^\s*([A-Za-z0-9_]+)\s*=\s*(.+?)\s*(#.*)?$", line)
            if plain and plain.group(1) in starter:
                parsed = _value(plain.group(2))
                if parsed is not None and parsed == starter[plain.group(1)]:
                    key, value = plain.group(1), plain.group(2)
        if key is None or (section, key) in seen:
            continue
        seen.add((section, key))
        out.append(
            Finding(
                "placeholder",
                section or "top",
                f"line {number}: {key} = {value} is the starter's placeholder",
                f"write your own {key} (and drop the `# placeholder` comment)",
            )
        )
    return out


def starter_placeholders() -> dict[str, Any]:
    """key → value of each line of the shipped starter marked `# placeholder`."""
    from importlib.resources import files  # lazy: only the pre-flight reads the starter

    text = (files("ddnsagent") / "data" / "config.example.toml").read_text(encoding="utf-8")
    out = {}
    for line in text.splitlines():
        match = _PLACEHOLDER_LINE.match(line)
        if match:
            parsed = _value(match.group(2))
            if parsed is not None:
                out[match.group(1)] = parsed
    return out


def _value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return None


def _provider(s: Any, ctx: Context) -> list[Finding]:
    section = f"[[provider]] {s.name}"
    fams = "+".join(f"IPv{f}" for f in s.families()) or "no family"
    extra = ""
    if getattr(s, "hostnames", None):
        extra = f" for {', '.join(s.hostnames)}"
    out = [Finding("ok", section, f"{s.type}, {fams}{extra}")]
    for secret in s.secrets():
        out += secret_findings(secret, section, ctx)
    return out


def secret_findings(secret: Any, section: str, ctx: Context) -> list[Finding]:
    """Where `secret` comes from, checked as `ctx.user` sees it (a provider's password, the
    heartbeat's URL): the file, the credential with its LoadCredential= line, the variable."""
    origin: str = secret.origin
    key: str = secret.key
    file_key = f"{_base_key(key)}_file"
    if origin.startswith("credential "):
        name = origin.removeprefix("credential ")
        return _credential(name, key, section, ctx)
    if origin.startswith("environment variable ") and ctx.unit is not None:
        var = origin.removeprefix("environment variable ")
        if var not in ctx.unit.environment:
            return [
                Finding(
                    "fail",
                    section,
                    f"{key}: ${var} never reaches the service (no Environment={var}=… in the unit)",
                    f'keep the secret in a root-only file, write {file_key} = "cred:NAME" '
                    "and add LoadCredential=NAME:FILE with `systemctl edit ddnsagent` "
                    '(README, "Secrets")',
                )
            ]
    if origin.startswith("file ") and ctx.unit is not None:
        path = Path(origin.removeprefix("file "))
        if _hidden(path, ctx):
            return [
                Finding(
                    "fail",
                    section,
                    f"{key}: {path} {_hidden(path, ctx)}",
                    f'use {file_key} = "cred:NAME" with LoadCredential=NAME:{path}',
                )
            ]
    try:
        secret.reveal()
    except SecretUnavailable as exc:
        if origin.startswith("environment variable "):
            var = origin.removeprefix("environment variable ")
            return [
                Finding(
                    "warn",
                    section,
                    f"{key}: ${var} is not set here",
                    f"export {var}=… for a run by hand; the service never sees your shell's "
                    f'environment: there use {file_key} = "cred:NAME" with LoadCredential=',
                )
            ]
        fix = _secret_fix(origin, ctx, file_key)
        return [Finding("fail", section, f"{exc} (read as {who(ctx)})", fix)]
    return [Finding("ok", section, f"{key}: readable from {origin} by {who(ctx)}")]


def _base_key(key: str) -> str:
    """`password` of `provider.home.password_env`, `url` of `heartbeat.url_file`."""
    last = key.rsplit(".", 1)[-1]
    for suffix in ("_env", "_file"):
        last = last.removesuffix(suffix)
    return last


def _secret_fix(origin: str, ctx: Context, file_key: str = "password_file") -> str:
    if not origin.startswith("file "):
        return "set the secret where the message says"
    path = origin.removeprefix("file ")
    if ctx.unit is not None:
        return (
            f'keep {path} root\'s and hand it over: {file_key} = "cred:NAME" with '
            f"LoadCredential=NAME:{path} in `systemctl edit ddnsagent`"
        )
    return f"write the secret into {path} (mode 0600, owned by {ctx.user})"


def _credential(name: str, key: str, section: str, ctx: Context) -> list[Finding]:
    try_it = (
        f"sudo systemd-run -p LoadCredential={name}:/etc/ddnsagent/{name}.secret "
        "--pipe --wait ddnsagent check-config --config FILE"
    )
    if ctx.unit is None:
        base = os.environ.get("CREDENTIALS_DIRECTORY")
        if not base:
            return [
                Finding(
                    "note",
                    section,
                    f"{key}: cred:{name} is read from systemd's $CREDENTIALS_DIRECTORY, which "
                    "only the unit has (LoadCredential=); not checked here",
                    f"check it as the service sees it: sudo ddnsagent check-config --as-service; "
                    f"or try it by hand: {try_it}",
                )
            ]
        why = why_unreadable(Path(base) / name)
        if why:
            return [
                Finding(
                    "fail",
                    section,
                    f"{key}: credential {name} {why} in $CREDENTIALS_DIRECTORY ({base})",
                    f"add LoadCredential={name}:/etc/ddnsagent/{name}.secret to the unit",
                )
            ]
        return [Finding("ok", section, f"{key}: credential {name} is there")]
    path = ctx.unit.credentials.get(name)
    if path is None:
        return [
            Finding(
                "fail",
                section,
                f"{key}: cred:{name}, but the unit has no LoadCredential={name}:…",
                f"`systemctl edit ddnsagent`, add [Service] LoadCredential={name}:"
                f"/etc/ddnsagent/{name}.secret (a root-only file holding the secret)",
            )
        ]
    problem = ctx.credentials.get(name, "")
    if problem:
        return [
            Finding(
                "fail",
                section,
                f"{key}: LoadCredential={name}:{path}, but {problem}",
                f"write the secret into {path} (root-owned, mode 0600)",
            )
        ]
    return [Finding("ok", section, f"{key}: systemd hands over {path} as credential {name}")]


def _relay(cfg: Any, ctx: Context) -> list[Finding]:
    r = cfg.relay
    if r is None:
        return [Finding("ok", "[relay]", "not configured: the relay watchdog is off")]
    out = [
        Finding(
            "ok",
            "[relay]",
            f"reads {r.log} for relay {r.host}; acts after {r.threshold} failed connections "
            f"in {format_duration(r.window)}; confirms with `{_argv_text(r.queue)}`, flushes "
            f"with `{_argv_text(r.flush) or 'nothing'}`",
        )
    ]
    if r.log == "journal":
        if not (_in_group("adm") or _in_group("systemd-journal")):
            out.append(
                Finding(
                    "fail",
                    "[relay]",
                    f'log = "journal": {who(ctx)} is in neither group adm nor systemd-journal, '
                    "so it sees no Postfix records",
                    "add the user to group adm (SupplementaryGroups=adm in the unit)",
                )
            )
    else:
        why = why_unreadable(Path(r.log), ctx)
        if why:
            out.append(
                Finding(
                    "fail",
                    "[relay]",
                    f"the mail log {r.log} {why} by {who(ctx)}",
                    "give the user group adm (rsyslog writes it root:adm 0640), or set "
                    'log = "journal"',
                )
            )
        else:
            out.append(Finding("ok", "[relay]", f"{r.log} is readable by {who(ctx)}"))
    for what, argv in (("queue", r.queue), ("flush", r.flush)):
        if not argv:
            continue
        _, why = _program(argv[0], ctx)
        if why:
            out.append(
                Finding(
                    "fail", "[relay]", f"{what}: {why}", "install Postfix or give the full path"
                )
            )
        elif (
            ctx.unit is not None
            and os.path.basename(argv[0]) == "postqueue"
            and not _in_group("postdrop")
        ):
            out.append(
                Finding(
                    "warn",
                    "[relay]",
                    f"{what}: {who(ctx)} is not in group postdrop, so postqueue cannot reach "
                    "Postfix's public/ sockets under NoNewPrivileges=",
                    "SupplementaryGroups=adm postdrop (as the shipped unit has it)",
                )
            )
    return out


@dataclass(frozen=True)
class RootOneshot:
    """A root oneshot the daemon starts for a job that needs root (the reconnect's, the bounce
    guard's), and the words for its findings."""

    section: str  # "[reconnect]"
    key: str  # the key naming the command: "command", "bounce_hold"
    unit: str  # "ddnsagent-reconnect.service"
    polkit_file: str  # the rule that lets the service's user start it
    use: str  # the setting that starts it, for the fixes
    missing_fix: str  # the fix for a command that is not there
    timeout_fix: str | None = None  # None: `set timeout = "…"`
    needs_root: bool = False  # the job always needs root (else only pppd & co. are known to)

    def installed(self, ctx: Context) -> tuple[str | None, float | None, bool]:
        """As root saw it before dropping: its unit file, TimeoutStartSec=, polkit rule."""
        if self.unit == BOUNCE_HOLD_UNIT:
            return ctx.bounce_hold_unit, ctx.bounce_hold_timeout, ctx.bounce_polkit_rule
        return ctx.reconnect_unit, ctx.reconnect_timeout, ctx.polkit_rule


RECONNECT_ONESHOT = RootOneshot(
    "[reconnect]",
    "command",
    RECONNECT_UNIT,
    "50-ddnsagent-reconnect.rules",
    f'command = ["systemctl", "start", "{RECONNECT_UNIT}"] with timeout = "170s", and the '
    f'reconnect script in {RECONNECT_UNIT}\'s ExecStart= (README, "Reconnecting the link")',
    "install it (packaging/reconnect/ has examples) or fix the path",
)
BOUNCE_ONESHOT = RootOneshot(
    "[relay]",
    "bounce_hold",
    BOUNCE_HOLD_UNIT,
    "50-ddnsagent-bounce-hold.rules",
    f'bounce_hold = ["systemctl", "start", "{BOUNCE_HOLD_UNIT}"] (the default) '
    '(README, "Bounce guard")',
    f'use the default, bounce_hold = ["systemctl", "start", "{BOUNCE_HOLD_UNIT}"]',
    timeout_fix=f"keep {BOUNCE_HOLD_UNIT}'s TimeoutStartSec= under "
    f"{format_duration(BOUNCE_HOLD_WAIT)} (the shipped unit has 60)",
    needs_root=True,  # postsuper
)


def _reconnect(cfg: Any, ctx: Context) -> list[Finding]:
    r = cfg.reconnect
    if r is None:
        return [Finding("ok", "[reconnect]", "not configured: no reconnect for a new address")]
    summary = (
        f"runs `{_argv_text(r.command)}` (timeout {format_duration(r.timeout)}, cooldown "
        f"{format_duration(r.cooldown)}, at most {r.max_per_day} a day), then waits up to "
        f"{format_duration(r.wait_for_address)} for a new address"
    )
    checked = root_command(r.command, r.timeout, RECONNECT_ONESHOT, ctx)
    return [Finding("ok", "[reconnect]", summary), *checked]


def _bounce_hold(cfg: Any, ctx: Context) -> list[Finding]:
    """[relay] bounce_hold, the bounce guard's root half, checked like [reconnect] command; not
    at all while the guard is off (bounce_limit = 0)."""
    r = cfg.relay
    if r is None or not r.bounce_limit:
        return []
    summary = (
        f"past {r.bounce_limit} bounces an hour, the bounce guard runs "
        f"`{_argv_text(r.bounce_hold)}`"
    )
    checked = root_command(r.bounce_hold, BOUNCE_HOLD_WAIT, BOUNCE_ONESHOT, ctx)
    return [Finding("ok", "[relay]", summary), *checked]


def root_command(
    command: tuple[str, ...], timeout: float, oneshot: RootOneshot, ctx: Context
) -> list[Finding]:
    """Whether `command` (waited for up to `timeout`) can do its root job as the service: sudo
    under NoNewPrivileges= or without the sudoers file, the oneshot or its polkit rule missing,
    a program that needs root run as the service's user."""
    section, key = oneshot.section, oneshot.key
    out: list[Finding] = []
    argv = list(command)
    path, why = _program(argv[0], ctx)
    if why:
        out.append(Finding("fail", section, f"{key}: {why}", oneshot.missing_fix))
        return out
    unprivileged = ctx.unit is not None and ctx.unit.user not in ("root", "0")
    name = os.path.basename(argv[0])
    if name == "sudo":
        if ctx.unit is not None and ctx.unit.no_new_privileges:
            out.append(
                Finding(
                    "fail",
                    section,
                    f"{key}: sudo cannot become root under the unit's NoNewPrivileges= (set by "
                    "it or by its seccomp settings)",
                    "use polkit: " + oneshot.use + "; or install the drop-in "
                    "/usr/share/doc/ddnsagent/examples/sudo-reconnect.conf",
                )
            )
        elif ctx.unit is not None and not ctx.sudoers:
            out.append(
                Finding(
                    "fail",
                    section,
                    f"{key}: sudo, but /etc/sudoers.d/ddnsagent is not installed",
                    "install packaging/sudoers/ddnsagent (root:root, mode 0440)",
                )
            )
        elif (
            ctx.unit is not None
            and ctx.sudoers_units is not None
            and oneshot.unit not in ctx.sudoers_units
        ):
            out.append(
                Finding(
                    "fail",
                    section,
                    f"{key}: sudo, but /etc/sudoers.d/ddnsagent has no line for "
                    f"`systemctl start {oneshot.unit}`",
                    "install the current packaging/sudoers/ddnsagent (root:root, mode 0440)",
                )
            )
        argv = [a for a in argv[1:] if not a.startswith("-")]
        name = os.path.basename(argv[0]) if argv else ""
    if name == "systemctl" and "start" in argv:
        needs_polkit = unprivileged and command[0] != "sudo"
        out += _oneshot_unit(argv, timeout, oneshot, ctx, needs_polkit)
        return out
    if not unprivileged or ctx.unit is None:
        return out
    if oneshot.needs_root or name in ROOT_ONLY or (path is not None and _script_needs_root(path)):
        out.append(
            Finding(
                "fail",
                section,
                f"{key}: {argv[0]} needs root, but the daemon runs as user {ctx.unit.user} "
                "(unit: User=, NoNewPrivileges=) and cannot become root",
                "use the root oneshot: " + oneshot.use,
            )
        )
    else:
        out.append(
            Finding(
                "warn",
                section,
                f"{key}: {argv[0]} runs as user {ctx.unit.user} without any privilege",
                "make sure it needs none; a reconnect of pppd or the link needs the root "
                "oneshot: " + oneshot.use,
            )
        )
    return out


def _script_needs_root(path: Path) -> bool:
    """Whether a (small, readable) script calls pon/poff/pppd/ifup/ifdown/`ip link`."""
    try:
        with open(path, "rb") as f:
            head = f.read(SCRIPT_PEEK)
    except OSError:
        return False
    if not head.startswith(b"#!"):
        return False
    text = "\n".join(
        line
        for line in head.decode("utf-8", "replace").splitlines()
        if not line.lstrip().startswith("#")
    )
    return bool(_ROOT_WORDS.search(text))


def _oneshot_unit(
    argv: list[str], timeout: float, oneshot: RootOneshot, ctx: Context, needs_polkit: bool
) -> list[Finding]:
    out: list[Finding] = []
    section, unit = oneshot.section, oneshot.unit
    target = argv[argv.index("start") + 1] if argv.index("start") + 1 < len(argv) else ""
    installed, limit, polkit_rule = oneshot.installed(ctx)
    if target != unit:
        return [
            Finding(
                "note",
                section,
                f"{oneshot.key} starts {target or 'nothing'}, not {unit}; not checked",
            )
        ]
    if ctx.unit is None:
        return out
    if installed is None:
        out.append(
            Finding(
                "fail",
                section,
                f"{unit} is not installed",
                f"install packaging/systemd/{unit} into /etc/systemd/system/ and run "
                "systemctl daemon-reload",
            )
        )
    if limit is not None and timeout <= limit:
        out.append(
            Finding(
                "fail",
                section,
                f"timeout {format_duration(timeout)} is not above {unit}'s "
                f"TimeoutStartSec={format_duration(limit)}: the daemon would give up on systemctl "
                "while the oneshot still runs",
                oneshot.timeout_fix or f'set timeout = "{format_duration(limit + 20)}"',
            )
        )
    if needs_polkit and not polkit_rule:
        out.append(
            Finding(
                "fail",
                section,
                f"user {ctx.user} may start {unit} only through polkit's rule "
                f"{oneshot.polkit_file}, which is not installed",
                f"install polkitd and packaging/polkit/{oneshot.polkit_file} into "
                "/etc/polkit-1/rules.d/ (or use the sudo variant)",
            )
        )
    return out


def _zone(z: Any, cfg: Any, ctx: Context) -> list[Finding]:
    section = f"[[zone]] {z.name}"
    names = ", ".join([*z.names, *(h for h, _ in z.hosts)])
    out = [Finding("ok", section, f"{z.type} for {z.origin} ({names})")]
    if z.hosts and not cfg.detect.sources(6):
        out.append(
            Finding(
                "fail",
                section,
                f"hosts = {{{', '.join(h for h, _ in z.hosts)}}} take the detected IPv6 prefix, "
                "but [detect] ipv6 = [] turns IPv6 off: they never get an address",
                '[detect] ipv6 = ["interface:ppp0"] (or your IPv6 source), or remove hosts',
            )
        )
    if z.type == "zonefile":
        out += _zonefile(z, section, ctx)
    elif z.type == "unbound":
        out += _writable_file(Path(z.include), "include", section, ctx)
        out += _command(z.control, "control", section, ctx)
        out += _unbound_socket(z, section, ctx)
    elif z.type == "dnsmasq":
        out += _writable_file(Path(z.hosts_file), "hosts_file", section, ctx)
        out += _others_can_read(Path(z.hosts_file), section)
        out += _dnsmasq(z, section, ctx)
    elif z.type == "rfc2136" and z.tsig_key_file:
        why = why_unreadable(Path(z.tsig_key_file), ctx)
        if why:
            out.append(
                Finding(
                    "fail",
                    section,
                    f"tsig_key_file {z.tsig_key_file} {why} by {who(ctx)}",
                    "make it readable by that user alone (mode 0600, or 0640 with its group)",
                )
            )
    return out


def _zonefile(z: Any, section: str, ctx: Context) -> list[Finding]:
    path = Path(z.path)
    out: list[Finding] = []
    why = why_unreadable(path, ctx)
    if why:
        out.append(
            Finding(
                "fail",
                section,
                f"zone file {path} {why} by {who(ctx)}",
                "create the zone in the name server first, or fix path",
            )
        )
    out += _writable_dir(path.parent, section, ctx)
    out += _zone_owner(z, path.parent, section, ctx)
    out += _command(z.check, "check", section, ctx)
    out += _command(z.reload, "reload", section, ctx)
    if z.reload and os.path.basename(z.reload[0]) == "rndc" and "-k" not in z.reload:
        key = Path("/etc/bind/rndc.key")
        if key.exists():
            why = why_unreadable(key)
            if why:
                out.append(
                    Finding(
                        "fail",
                        section,
                        f"reload: rndc reads {key}, which {why} by {who(ctx)}",
                        "give the user group bind (Debian: /etc/bind/rndc.key is bind:bind 0640): "
                        "SupplementaryGroups=bind in a drop-in",
                    )
                )
    return out


def _zone_owner(z: Any, directory: Path, section: str, ctx: Context) -> list[Finding]:
    """A user other than root cannot give the new zone file back to its owner: the file it
    writes is its own, and the next apply trusts only root, the directory's owner and `owners`."""
    uid = os.getuid()
    if uid == 0:
        return []
    try:
        trusted = {0, directory.stat().st_uid, *z.owners}
    except OSError:
        return []
    if uid in trusted:
        return []
    return [
        Finding(
            "fail",
            section,
            f"{who(ctx)} writes the new zone file as its own, and the next apply refuses a file "
            f"owned by {ctx.user} (trusted: root, the owner of {directory}, `owners`)",
            f'owners = ["{ctx.user}"] in this [[zone]] (with "bind" too where named rewrites '
            "the zone)",
        )
    ]


def _writable_dir(directory: Path, section: str, ctx: Context) -> list[Finding]:
    why = _why_not_writable(directory, ctx)
    if why is None:
        return []
    fix = f"ReadWritePaths={directory} in `systemctl edit ddnsagent`" if "ReadWrite" in why else ""
    if "not writable" in why:
        fix = (
            f"let the user write {directory} (Debian's /var/lib/bind is root:bind 0775: "
            "SupplementaryGroups=bind)"
        )
    if why == "does not exist":
        fix = f"create {directory}"
    return [
        Finding(
            "fail",
            section,
            f"{directory} {why} for {who(ctx)}: the new file cannot be written there",
            fix,
        )
    ]


def _writable_file(path: Path, key: str, section: str, ctx: Context) -> list[Finding]:
    out = _writable_dir(path.parent, section, ctx)
    if path.exists() and not os.access(path, os.W_OK) and not out:
        out.append(
            Finding(
                "warn",
                section,
                f"{key} {path} is not writable by {who(ctx)} (it is replaced, so the directory "
                "decides; the owner must be trusted)",
            )
        )
    return out


def _command(argv: tuple[str, ...], key: str, section: str, ctx: Context) -> list[Finding]:
    if not argv:
        return []
    _, why = _program(argv[0], ctx)
    if why is None:
        return []
    return [Finding("fail", section, f"{key}: {why}", f"install it or give the full path in {key}")]


def _unbound_socket(z: Any, section: str, ctx: Context) -> list[Finding]:
    """unbound-control without -c/-s talks to Debian's control socket, root:unbound 0660."""
    if len(z.control) > 1 or not UNBOUND_SOCKET.exists():
        return []
    if os.access(UNBOUND_SOCKET, os.W_OK):
        return []
    return [
        Finding(
            "fail",
            section,
            f"control: {who(ctx)} may not connect to unbound's control socket {UNBOUND_SOCKET}",
            "give the user group unbound (the socket is root:unbound 0660): "
            "SupplementaryGroups=unbound",
        )
    ]


def _others_can_read(path: Path, section: str) -> list[Finding]:
    """dnsmasq reads its hosts files as its own user (Debian: dnsmasq), at start and on SIGHUP:
    every directory above the file must let others through (the file itself is written 0644)."""
    for parent in path.parents:
        try:
            mode = parent.stat().st_mode
        except OSError:
            continue
        if not mode & stat.S_IXOTH:
            return [
                Finding(
                    "fail",
                    section,
                    f"dnsmasq reads hosts_file {path} as its own user, but {parent} is mode "
                    f'{stat.S_IMODE(mode):04o}: it logs "Permission denied" and serves nothing',
                    "put hosts_file in a directory others may enter, e.g. install -d -o ddnsagent "
                    "-m 0755 /var/lib/ddnsagent-dnsmasq (and ReadWritePaths= for it)",
                )
            ]
    return []


def _dnsmasq(z: Any, section: str, ctx: Context) -> list[Finding]:
    pidfile = Path(z.pidfile)
    try:
        pid = int(pidfile.read_bytes()[:64].strip() or b"x")
    except (OSError, ValueError):
        return [
            Finding(
                "warn",
                section,
                f"no dnsmasq pid in {pidfile} (not running?): the hosts file is written, but "
                "dnsmasq reads it only at start",
                "start dnsmasq, or set pidfile to its --pid-file",
            )
        ]
    out: list[Finding] = []
    try:
        owner = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        owner = None
    if (
        ctx.unit is not None
        and ctx.unit.protect_proc in ("invisible", "ptraceable", "noaccess")
        and owner is not None
        and owner != os.getuid()
    ):
        out.append(
            Finding(
                "fail",
                section,
                f"dnsmasq (pid {pid}) runs as another user; the unit's "
                f"ProtectProc={ctx.unit.protect_proc} hides its /proc entry, so the check that "
                "the pid is dnsmasq fails",
                "ProtectProc=default in `systemctl edit ddnsagent`",
            )
        )
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        out.append(
            Finding("warn", section, f"{pidfile} names pid {pid}, which is not running", None)
        )
    except PermissionError:
        out.append(
            Finding(
                "fail",
                section,
                f"{who(ctx)} may not signal dnsmasq (pid {pid}, another user): SIGHUP is refused",
                "AmbientCapabilities=CAP_KILL and CapabilityBoundingSet=CAP_KILL in "
                "`systemctl edit ddnsagent`",
            )
        )
    return out


def mode_problem(path: Path) -> str:
    """For root, before dropping privileges: why systemd could not load `path` as a
    credential ("" when it can)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"{path} does not exist"
    except OSError as exc:
        return f"{path} cannot be read: {exc.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if st.st_size == 0:
        return f"{path} is empty"
    return ""
