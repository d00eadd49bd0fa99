"""The command line: a thin shell over the agent. Parses arguments, loads the configuration,
runs one thing, maps the outcome to an exit code. User mistakes end in one clear message, never
a traceback."""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ddnsagent import __version__
from ddnsagent.errors import ConfigError, DdnsagentError
from ddnsagent.exitcodes import EXIT_CONFIG, EXIT_FOR, EXIT_OK, EXIT_RETRY
from ddnsagent.secrets import redact

if TYPE_CHECKING:
    from ddnsagent.outcome import SyncReport
    from ddnsagent.store import Backoff, Detected, Relay, Sent, Stopped

DAEMON_TIMEOUT = 300.0  # seconds `notify-now` waits for the daemon (a sync may run before it)
STATUS_SCHEMA = 1  # `status --json`: bump only for changes that break readers (see README)


CONFIG_HELP = (
    "configuration file (default: $DDNSAGENT_CONFIG, else /etc/ddnsagent/config.toml as root, "
    "else ~/.config/ddnsagent/config.toml); accepted before or after the command"
)
JSON_HELP = "print the result as JSON (for scripts; see README)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ddnsagent",
        description="Keep dynamic-DNS names in step with this machine's WAN address.",
        epilog="`--config PATH` and `--json` may come before or after the command. Exit codes: "
        "0 done, 1 will retry by itself, 2 configuration or usage, 3 a service needs you.",
    )
    p.add_argument("--version", action="version", version=f"ddnsagent {__version__}")
    # Before the command, under names of their own: a subcommand's defaults would overwrite
    # the same names (argparse sets them after the main parser's); main() merges the two.
    p.add_argument("--config", dest="config_first", type=Path, metavar="PATH", help=CONFIG_HELP)
    p.add_argument("--json", dest="json_first", action="store_true", help=JSON_HELP)
    sub = p.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="what to do; `ddnsagent COMMAND --help` tells more",
    )

    def cmd(name: str, help_text: str, json: bool = False) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_text, description=help_text)
        c.add_argument("--config", type=Path, metavar="PATH", help=CONFIG_HELP)
        if json:
            c.add_argument("--json", action="store_true", help=JSON_HELP)
        return c

    c = cmd("notify-now", "detect the address and send updates where needed, once", json=True)
    c.add_argument("--force", action="store_true", help="send even if nothing changed")
    c.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be sent; send nothing (secrets are read: a missing one fails as "
        "in a real run)",
    )
    c.add_argument(
        "--address",
        action="append",
        default=[],
        metavar="IP",
        help="use this address instead of detecting (repeat for IPv4 and IPv6)",
    )
    c.add_argument(
        "--local",
        action="store_true",
        help="sync in this process even when the daemon runs (default: ask the daemon)",
    )
    c.add_argument(
        "--timeout",
        type=float,
        default=DAEMON_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for the running daemon's result ({DAEMON_TIMEOUT:g})",
    )
    cmd("run", "run as a daemon in the foreground (for systemd)")
    cmd(
        "status",
        "show what was detected and sent, what is stopped, and what the relay watchdog would do",
        json=True,
    )
    c = cmd("check-config", "validate the configuration and exit")
    c.add_argument(
        "path", nargs="?", type=Path, metavar="PATH", help="file to check (same as --config)"
    )
    c.add_argument(
        "--as-service",
        action="store_true",
        help="check as the user and sandbox of ddnsagent.service (needs root; the default "
        "when root checks the file the installed unit runs)",
    )
    c.add_argument(
        "--unit",
        type=Path,
        metavar="FILE",
        help="with --as-service: the unit file to read (default: the installed ddnsagent.service)",
    )
    c = cmd("init", "write a commented starter configuration (mode 0600)")
    c.add_argument(
        "path",
        nargs="?",
        type=Path,
        metavar="PATH",
        help="file to write (same as --config; default: where the other commands look)",
    )
    c.add_argument("--force", action="store_true", help="overwrite an existing file")
    c = cmd("reset", "lift a stop or back-off of a target and forget what was sent to it")
    c.add_argument("name", help="the provider's name")
    c = cmd("acme-hook", "certbot manual hook: publish/remove the DNS-01 TXT record via MyDNS")
    c.add_argument("service", choices=["mydns"], help="the DNS service holding the name")
    mode = c.add_mutually_exclusive_group(required=True)
    mode.add_argument("--auth", action="store_true", help="as --manual-auth-hook")
    mode.add_argument("--cleanup", action="store_true", help="as --manual-cleanup-hook")
    c.add_argument("--provider", metavar="NAME", help="which mydns provider (default: the first)")
    c.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="seconds to wait after --auth for propagation (0)",
    )
    cmd("providers", "list the provider and local-zone types with their keys", json=True)
    cmd(
        "doctor",
        "check the backscatter trap: local resolver, wildcards, MX, Postfix, relay",
        json=True,
    )
    c = cmd(
        "reconnect",
        "get a new WAN address now: reconnect, re-notify, flush the mail queue",
        json=True,
    )
    c.add_argument("--ignore-cooldown", action="store_true", help="run even within the cooldown")
    c = cmd("hook", "entry point for pppd, NetworkManager and networkd-dispatcher scripts")
    c.add_argument("event", choices=["ip-up"], help="what happened")
    c.add_argument("args", nargs="*", help="the caller's own arguments (interface, action, …)")
    c.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="give up after this many seconds (30)",
    )
    _add_relay_parser(cmd)
    _add_history_parser(cmd)
    _add_dnsbl_parser(cmd)
    _add_bounces_parser(cmd)
    return p


def _add_bounces_parser(cmd: Any) -> None:
    """`bounces list|release|hold`: the bounce guard's held mail (README "Bounce guard")."""
    bounces = cmd("bounces", "bounces the bounce guard put on hold: list, release, hold")
    actions = bounces.add_subparsers(
        dest="bounces_command", required=True, metavar="ACTION", help="list, release or hold"
    )

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        a: argparse.ArgumentParser = actions.add_parser(name, help=help_text, description=help_text)
        a.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="configuration file")
        a.add_argument("--json", action="store_true", help=JSON_HELP)
        return a

    action("list", "show the null-sender mail to the relay on hold (and what still waits)")
    r = action(
        "release",
        "release held bounces (requeued: postsuper -r) at a pace; held null-sender mail only",
    )
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every held bounce")
    which.add_argument("ids", nargs="*", default=[], metavar="QUEUEID", help="these held bounces")
    r.add_argument(
        "--pace",
        default="10s",
        metavar="DURATION",
        help="one message every DURATION, e.g. 30s or 2m; 0 releases all at once (10s)",
    )
    action(
        "hold",
        "hold the null-sender mail to the relay waiting in the queue (root; what "
        "ddnsagent-bounce-hold.service runs)",
    )


def _add_history_parser(cmd: Any) -> None:
    """`history`: the addresses held, with the relay's incidents on the same time line."""
    c = cmd(
        "history",
        "the addresses held (when, where from, which targets got them) and the relay's "
        "incidents and reconnects, oldest first",
        json=True,
    )
    c.add_argument("--family", type=int, choices=[4, 6], help="only IPv4 or only IPv6")
    c.add_argument(
        "--since",
        metavar="DATE",
        help="from this date or date-time on (YYYY-MM-DD[ HH:MM[:SS]], local time unless "
        "followed by an offset such as +09:00)",
    )
    c.add_argument(
        "--at",
        metavar="DATETIME",
        help="only the address held at this moment (same forms as --since)",
    )


def _add_relay_parser(cmd: Any) -> None:
    """`relay explain`: the watchdog's reading of mail-log lines, without an incident."""
    relay = cmd("relay", "the relay watchdog by hand: `relay explain` shows how it reads lines")
    actions = relay.add_subparsers(
        dest="relay_command", required=True, metavar="ACTION", help="explain (the only one)"
    )
    help_text = (
        "show, per mail-log line, what the parser saw and what the watchdog would do and why"
    )
    e = actions.add_parser("explain", help=help_text, description=help_text)
    e.add_argument("lines", nargs="*", metavar="LINE", help="mail-log lines, each one argument")
    e.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, help="configuration file (see README)"
    )
    e.add_argument(
        "--log",
        nargs="?",
        const="",
        metavar="FILE",
        help="read the lines from FILE (- for standard input; no FILE: [relay] log)",
    )
    e.add_argument("--last", type=int, default=20, metavar="N", help="of --log, the last N (20)")
    e.add_argument(
        "--address",
        action="append",
        default=[],
        metavar="IP",
        help="judge as if this were our current address (default: the state's)",
    )
    e.add_argument("--host", help="the relay as Postfix names it (default: [relay] host)")
    e.add_argument(
        "--no-queue",
        action="store_true",
        help="do not read Postfix's queue to confirm a decision to reconnect",
    )


def _add_dnsbl_parser(cmd: Any) -> None:
    """`dnsbl`: the DNSBL check of an address, now (see README "DNSBL check")."""
    c = cmd(
        "dnsbl",
        "check an address (default: the detected ones) against the DNS blocklists of [dnsbl]",
        json=True,
    )
    c.add_argument(
        "address", nargs="?", metavar="ADDRESS", help="the address to check (default: the state's)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "hook":
        # pppd appends its six arguments after our options (`hook ip-up --timeout 30 "$@"`);
        # argparse would call them unrecognized, since `args` was matched before `--timeout`.
        args.args = [*args.args, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _merge_options(parser, args)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_CONFIG
    except DdnsagentError as exc:
        fix = getattr(exc, "fix", None)
        _err(f"{exc} — {fix}" if fix else str(exc))
        return EXIT_RETRY
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `ddnsagent status | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _merge_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """`--config` and `--json` given before the command count as if given after it; a file
    named twice (two --config, or --config and check-config's/init's PATH) must agree."""
    named = [
        (what, value)
        for what, value in (
            ("--config before the command", args.config_first),
            ("--config", args.config),
            ("PATH", getattr(args, "path", None)),
        )
        if value is not None
    ]
    if len({value for _, value in named}) > 1:
        shown = ", ".join(f"{what} {value}" for what, value in named)
        parser.error(f"two configuration files given ({shown}); give one")
    args.config = named[0][1] if named else None
    if args.json_first:
        if not hasattr(args, "json"):
            parser.error(f"`{args.command}` has no --json output")
        args.json = True


def _err(text: str) -> None:
    print(f"ddnsagent: error: {redact(text)}", file=sys.stderr)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "init":
        return _init(args)
    if args.command == "providers":
        return _providers(args.json)
    # lazy: the configuration parser (~20 ms) is not needed for --help, init or providers
    from ddnsagent import config, logsetup

    path: Path = getattr(args, "path", None) or args.config or config.default_config_path()
    if args.command == "notify-now" and not args.local:
        # The running daemon does the work with its configuration; asking it needs only
        # [agent] and [detect] (the provider modules load httpx, ~50 ms)
        agent, detect = config.load_front(path)
        logsetup.setup(
            "debug" if agent.log_level == "debug" else "warning", libraries=agent.debug_libraries
        )
        code = _notify_through_daemon(args, path, agent, detect)
        if code is not None:
            return code
    if args.command == "hook":
        # Like notify-now: the running daemon syncs with its own configuration, so asking it
        # needs [agent] and [detect] alone; the rest is read only when no daemon answers.
        agent, detect = config.load_front(path)
        logsetup.setup(
            "debug" if agent.log_level == "debug" else "warning", libraries=agent.debug_libraries
        )
        return _hook(args, path, agent, detect)
    cfg = config.load(path)
    level = cfg.agent.log_level
    if args.command != "run" and level != "debug":
        level = "warning"  # one-shot commands print their own report; logs add only trouble
    logsetup.setup(level, libraries=cfg.agent.debug_libraries)
    if args.command == "check-config":
        return _check_config(cfg, args)
    if args.command == "notify-now":
        return _notify_now(args, cfg)
    if args.command == "run":
        # lazy: the daemon loads the scheduler and every output (~100 ms); only `run` needs it
        from ddnsagent import daemon

        return daemon.run(path, cfg)
    if args.command == "status":
        return _status(args, cfg)
    if args.command == "reset":
        return _reset(args, cfg)
    if args.command == "reconnect":
        return _reconnect(args, cfg)
    if args.command == "relay":
        return _relay_explain(args, cfg)
    if args.command == "history":
        return _history(args, cfg)
    if args.command == "dnsbl":
        return _dnsbl(args, cfg)
    if args.command == "bounces":
        return _bounces(args, cfg)
    if args.command == "doctor":
        # lazy: the doctor's checks load DNS and SMTP code (~70 ms) no other command needs
        from ddnsagent import doctor

        return doctor.main(cfg, args.json, sys.stdout)
    if args.command == "acme-hook":
        # lazy: the ACME hook loads httpx and the mydns client (~100 ms) for certbot alone
        from ddnsagent import acme

        return acme.main(cfg, "auth" if args.auth else "cleanup", args.provider, wait=args.wait)
    raise AssertionError(args.command)


def _notify_now(args: argparse.Namespace, cfg: Any) -> int:
    """One sync here: with --local, or when no daemon answered (see _dispatch)."""
    addresses = _given_addresses(args, cfg.file, cfg.detect)
    if isinstance(addresses, int):
        return addresses
    # lazy: the orchestrator loads asyncio, httpx, the detectors and the providers (~55 ms),
    # which status, check-config, --help and a notify-now answered by the daemon do without
    import asyncio

    from ddnsagent.outputs import report  # lazy: see above
    from ddnsagent.sync import Agent, SyncOptions  # lazy: see above

    options = SyncOptions(
        reason="command", force=args.force, dry_run=args.dry_run, addresses=addresses or None
    )
    result = asyncio.run(_sync_once(Agent(cfg), cfg, options))
    report.print_sync(result, sys.stdout, args.json)
    return result.exit_code


async def _sync_once(agent: Any, cfg: Any, options: Any) -> SyncReport:
    """One sync by notify-now; with [heartbeat] (not for a dry run) its pings go out before
    this returns, as the daemon's would, each within [heartbeat] timeout."""
    if cfg.heartbeat is None or options.dry_run:
        result: SyncReport = await agent.sync(options)
        return result
    # lazy: the pinger and the store's writer, for a local notify-now with [heartbeat] alone
    from ddnsagent.outputs.heartbeat import Heartbeat, PingResult
    from ddnsagent.store import Store, note_heartbeat  # lazy: as above

    store = Store.of(cfg.agent)

    def record(ping: PingResult, preset: str) -> None:
        with store.edit() as state:
            note_heartbeat(state, ping.time, ping.kind, ping.ok, ping.result, preset)

    beat = Heartbeat.from_config(cfg.heartbeat, user_agent=cfg.agent.user_agent, record=record)
    agent.on_start.append(beat.sync_started)
    agent.on_report.append(beat.observe_sync)
    agent.on_failure.append(beat.sync_failed)
    try:
        result = await agent.sync(options)
    finally:
        await beat.aclose(beat.drain_limit())
    return result


def _given_addresses(args: argparse.Namespace, file: Path, detect: Any) -> dict[int, Any] | int:
    """notify-now's --address values by family, or the exit code of a refusal (printed)."""
    # lazy: the address rules (~1 ms), for notify-now alone
    from ddnsagent.address import refusal

    addresses: dict[int, Any] = {}
    for text in args.address:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            _err(f"--address {text!r} is not an IP address")
            return EXIT_CONFIG
        why = refusal(address, detect.accept)
        if why:
            _err(f"--address {address} is {why}; refused (see [detect] accept in {file})")
            return EXIT_CONFIG
        if address.version in addresses:
            _err(f"--address given twice for IPv{address.version}")
            return EXIT_CONFIG
        addresses[address.version] = address
    return addresses


def _notify_through_daemon(
    args: argparse.Namespace, file: Path, agent: Any, detect: Any
) -> int | None:
    """The exit code of a sync the running daemon did (no second process doing the same work,
    no wait for the state lock); None when no daemon answers. Loads neither asyncio nor httpx."""
    # lazy: the blocking control client and the printed report (~3 ms), without asyncio
    from ddnsagent import ctlclient
    from ddnsagent.outputs import report  # lazy: see above

    addresses = _given_addresses(args, file, detect)
    if isinstance(addresses, int):
        return addresses
    payload: dict[str, Any] = {"cmd": "sync", "reason": "command"}
    stamp = ctlclient.config_stamp(file)
    if stamp is not None:
        payload["config_stamp"] = stamp
    if args.force:
        payload["force"] = True
    if args.dry_run:
        payload["dry_run"] = True
    if addresses:
        payload["addresses"] = {str(f): str(a) for f, a in addresses.items()}
    path = agent.control_socket or ctlclient.default_socket_path()
    try:
        answer = ctlclient.ask(path, payload, args.timeout)
    except ctlclient.NoAnswer:
        _err(
            f"the daemon gave no result within {args.timeout:g}s (a long sync?); it goes on "
            "trying — see `ddnsagent status`, or pass --local"
        )
        return EXIT_RETRY
    if answer is None:
        return None
    if answer.get("stale_config"):
        # The daemon runs another version of the file: sync here, where the file's mistakes are
        # reported, and say how to bring the daemon up to date.
        print(
            f"{file} changed since the daemon loaded it; syncing here "
            "(reload the daemon: systemctl reload ddnsagent)",
            file=sys.stderr,
        )
        return None
    if not answer.get("ok"):
        error = str(answer.get("error") or "no reason given")
        _err(f"the daemon refused: {error}")
        return EXIT_CONFIG if error.startswith("bad request") else EXIT_RETRY
    try:
        result = _report_from(answer["report"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ctlclient.BadAnswer(
            f"the answer on {path} is not a ddnsagent daemon's reply"
        ) from None
    report.print_sync(result, sys.stdout, args.json)
    return result.exit_code


def _report_from(data: dict[str, Any]) -> SyncReport:
    """A SyncReport back from its `as_dict()`, as the daemon sends it."""
    # lazy: the outcome records, for notify-now alone
    from ddnsagent.outcome import Detection, SyncReport, TargetReport

    detections = {}
    for key, d in data["detected"].items():
        family = int(key.removeprefix("ipv"))
        address = ipaddress.ip_address(d["address"]) if d["address"] is not None else None
        detections[family] = Detection(
            family, address, d["source"], [str(n) for n in d["notes"]], bool(d["conflict"])
        )
    targets = [TargetReport(**t) for t in data["targets"]]
    changed = [int(f.removeprefix("ipv")) for f in data["changed"]]
    return SyncReport(str(data["reason"]), detections, targets, changed)


def _check_config(cfg: Any, args: argparse.Namespace) -> int:
    """The pre-flight: every section summarised, every path, command and secret checked (as
    the service's user with --as-service); exit 2 when something cannot work."""
    # lazy: the pre-flight's checks (~2 ms), for check-config alone
    from ddnsagent import preflight

    return preflight.run(
        cfg, sys.stdout, as_service=args.as_service or bool(args.unit), unit_file=args.unit
    )


def _status(args: argparse.Namespace, cfg: Any) -> int:
    # lazy: the store's records (~5 ms) for the commands that read the state
    from ddnsagent import history  # lazy: as above (the address history's summary)
    from ddnsagent.detect import nat  # lazy: the double-NAT verdict's words, pure and small
    from ddnsagent.store import Store, Target, ZoneRecord

    state = Store.of(cfg.agent).load()
    codes = [EXIT_OK]
    rows = []
    for s in cfg.providers:
        t = state.targets.get(s.name) or Target()
        row = {
            "name": s.name,
            "type": s.type,
            "sent": {f"ipv{f}": _sent_json(v) for f, v in sorted(t.sent.items())},
            "stopped": _stopped_json(t.stopped) if t.stopped else None,
            "stopped_names": {h: _stopped_json(v) for h, v in sorted(t.stopped_names.items())},
            "backoff": {f"ipv{f}": _backoff_json(b) for f, b in sorted(t.backoff.items())},
        }
        if t.stopped:
            codes.append(EXIT_FOR["stopped"])
        elif t.backoff:
            codes.append(EXIT_FOR["waiting"])
        rows.append(row)
    detected = {f"ipv{f}": _detected_json(d) for f, d in sorted(state.detected.items())}
    relay = _relay_status(state.relay, cfg) if cfg.relay or cfg.reconnect else None
    dnsbl = None
    if cfg.dnsbl is not None or state.dnsbl.checks:
        # lazy: the DNSBL words only where the check is configured or has run
        from ddnsagent.dnsbl import check as dnsbl_check

        dnsbl = dnsbl_check.status_json(state.dnsbl, cfg.dnsbl)
    zones = []
    for z in cfg.zones:
        kept = state.zones.get(z.name) or ZoneRecord()
        addresses = None
        if kept.addresses is not None:
            addresses = {str(f): a for f, a in sorted(kept.addresses.items())}
        zones.append(
            {
                "name": z.name,
                "type": z.type,
                "result": kept.result,
                "time": kept.time,
                "message": kept.message,
                "error": kept.error,
                "addresses": addresses,
            }
        )
        if kept.result == "failed":
            codes.append(EXIT_FOR["failed"])
    code = max(codes)
    beat = _heartbeat_status(cfg, state)
    if args.json:
        out = {
            "schema": STATUS_SCHEMA,
            "detected": detected,
            "targets": rows,
            "zones": zones,
            "relay": relay,
            "dnsbl": dnsbl,
        }
        out["heartbeat"] = beat
        out["history"] = history.status_json(state.history)  # issue 14 part 4
        out["nat"] = nat.status_json(state.nat)  # issue 14 part 5: double NAT
        out["bounce_guard"] = _guard_status(cfg, state)
        json.dump(out, sys.stdout, indent=2)
        print()
        return code
    if not state.detected:
        print("no address detected yet")
    for f, d in sorted(state.detected.items()):
        print(f"ipv{f}: {d.address} since {_ts(d.since)} (from {d.source})")
    for line in nat.status_lines(state.nat, _ts):  # issue 14 part 5: double NAT
        print(line)
    for s in cfg.providers:
        t = state.targets.get(s.name) or Target()
        sent = ", ".join(f"ipv{f} {v.address} at {_ts(v.time)}" for f, v in sorted(t.sent.items()))
        line = f"{s.name} [{s.type}]: " + (f"sent {sent}" if sent else "nothing sent yet")
        print(line)
        if t.stopped:
            print(f"  STOPPED since {_ts(t.stopped.since)}: {t.stopped.reason}")
            print(f"  fix: {t.stopped.fix}, then run `ddnsagent reset {s.name}`")
        for f, v in sorted(t.sent.items()):
            if v.unconfirmed:
                print(f"  ipv{f} {v.address} not confirmed: {v.unconfirmed}")
        for host, stop in sorted(t.stopped_names.items()):
            print(f"  {host} STOPPED since {_ts(stop.since)}: {stop.reason}")
            print(f"  fix: {stop.fix}, then run `ddnsagent reset {s.name}`")
        for f, b in sorted(t.backoff.items()):
            print(f"  ipv{f} failing ({b.failures}x): {b.last_error}")
            print(f"  next try after {_ts(b.retry_after)}")
    for zone in zones:
        result = zone.get("result") or "not applied yet"
        detail = zone.get("error") or zone.get("message") or ""
        when = f" at {_ts(zone['time'])}" if zone.get("time") else ""
        print(
            f"zone {zone['name']} [{zone['type']}]: {result}{when}"
            + (f": {detail}" if detail else "")
        )
    if relay is not None:
        _print_relay(relay)
    _print_guard(cfg, state)
    if dnsbl is not None:
        for line in dnsbl_check.status_lines(state.dnsbl, cfg.dnsbl, _ts):
            print(line)
    if cfg.heartbeat is not None:
        # lazy: the [heartbeat] section's module is loaded already when it is configured
        from ddnsagent.outputs.heartbeat_settings import status_lines

        for line in status_lines(beat, _ts):
            print(line)
    said = history.status_line(state.history)  # issue 14 part 4
    if said is not None:
        print(said)
    return code


def _heartbeat_status(cfg: Any, state: Any) -> dict[str, Any] | None:
    """`status`'s heartbeat object (README: `status --json`); None without [heartbeat]."""
    if cfg.heartbeat is None:
        return None
    # lazy: the [heartbeat] section's module is loaded already when it is configured
    from ddnsagent.outputs.heartbeat_settings import status_json

    return status_json(cfg.heartbeat, state.heartbeat)


def _history(args: argparse.Namespace, cfg: Any) -> int:
    """`ddnsagent history`: read the state (no lock), print the time line or one moment."""
    # lazy: the history's reading and the store's records (~5 ms), as `status`
    from ddnsagent import history
    from ddnsagent.store import Store  # lazy: see above

    moments: dict[str, float | None] = {}
    for option in ("since", "at"):
        text = getattr(args, option)
        try:
            moments[option] = history.parse_when(text) if text is not None else None
        except ValueError as exc:
            _err(f"--{option} {exc}")
            return EXIT_CONFIG
    state = Store.of(cfg.agent).load()
    return history.main(
        state,
        sys.stdout,
        as_json=args.json,
        family=args.family,
        since=moments["since"],
        at=moments["at"],
    )


def _guard_status(cfg: Any, state: Any) -> dict[str, Any] | None:
    """The `bounce_guard` key of `status --json` (null without [relay])."""
    if cfg.relay is None:
        return None
    # lazy: the guard's view (~1 ms), only with [relay]
    from ddnsagent.relay import guardview

    return guardview.status_json(cfg.relay.bounce_limit, state.guard)


def _print_guard(cfg: Any, state: Any) -> None:
    shown = _guard_status(cfg, state)
    if shown is not None:
        # lazy: see _guard_status
        from ddnsagent.relay import guardview

        for line in guardview.status_lines(shown):
            print(line)


# The objects of `status --json` (README), keys in the order the file always had them in.


def _sent_json(s: Sent) -> dict[str, Any]:
    return {"address": s.address, "time": s.time, "unconfirmed": s.unconfirmed}


def _stopped_json(s: Stopped) -> dict[str, Any]:
    return {"fix": s.fix, "reason": s.reason, "since": s.since}


def _backoff_json(b: Backoff) -> dict[str, Any]:
    return {"failures": b.failures, "last_error": b.last_error, "retry_after": b.retry_after}


def _detected_json(d: Detected) -> dict[str, Any]:
    out: dict[str, Any] = {"address": d.address}
    if d.checked is not None:
        out["checked"] = d.checked
    if d.previous is not None:
        out["previous"] = d.previous
    out["since"] = d.since
    if d.source is not None:
        out["source"] = d.source
    return out


def _relay_status(relay: Relay, cfg: Any) -> dict[str, Any]:
    # lazy: the schedule's rules only where a relay is configured
    from ddnsagent.schedule import recent_attempts, refusal_to_reconnect

    now = time.time()
    signal, last, recovery = relay.last_signal, relay.last_reconnect, relay.last_recovery
    out: dict[str, Any] = {
        "last_signal": (
            {"action": signal.action, "reason": signal.reason, "time": signal.time}
            if signal
            else None
        ),
        "last_reconnect": (
            {
                "message": last.message,
                "new": last.new,
                "old": last.old,
                "reason": last.reason,
                "result": last.result,
                "time": last.time,
            }
            if last
            else None
        ),
        "last_recovery": (
            {"seconds": recovery.seconds, "time": recovery.time} if recovery else None
        ),
        "reconnects_24h": len(recent_attempts(relay, now)),
        "unchanged_reconnects": relay.unchanged,
        "bounces_last_hour": relay.bounce_rate,
        "cooldown": None,
    }
    if cfg.reconnect is not None:
        out["cooldown"] = refusal_to_reconnect(relay, cfg.reconnect, now)
    out.update(_relay_next(relay, cfg, now))
    return out


def _relay_next(relay: Relay, cfg: Any, now: float) -> dict[str, Any]:
    """What the watchdog would do next: `reconnects_left` in the 24 h window, `reconnect_at`
    (when the cooldown or the daily cap lets a reconnect run; None: now), and `next`, the same
    said in words. The rules are schedule.py's, as the reconnect applies them."""
    # lazy: the schedule's rules only where a relay is configured
    from ddnsagent.schedule import DAY, recent_attempts

    rc, watched = cfg.reconnect, cfg.relay is not None
    if rc is None:
        return {
            "reconnects_left": None,
            "reconnect_at": None,
            "next": "no reconnect (no [reconnect] section): a refusal of our address is only "
            "logged; a relay access denial re-notifies the providers",
        }
    attempts = sorted(recent_attempts(relay, now))
    left = max(rc.max_per_day - len(attempts), 0)
    at = now
    if attempts:
        at = max(at, attempts[-1] + rc.cooldown)
    if left == 0:  # the oldest attempt that keeps the count at the cap leaves the window
        at = max(at, attempts[-rc.max_per_day] + DAY)
    budget = f"{left} of {rc.max_per_day} reconnects left in 24 h"
    if at <= now and watched:
        text = (
            f"a confirmed refusal of our address, or {cfg.relay.threshold} failed connections "
            f"to {cfg.relay.host} within {_span(cfg.relay.window)}, would reconnect at once; "
            f"{budget}"
        )
    elif at <= now:
        text = (
            "`ddnsagent reconnect` would reconnect at once (no [relay] section watches the "
            f"mail log); {budget}"
        )
    else:
        why = "daily cap reached" if left == 0 else "cooldown"
        meanwhile = (
            "a relay refusal is logged and the mail waits in the queue"
            if watched
            else "`ddnsagent reconnect` is refused"
        )
        text = (
            f"no reconnect before {_ts(at)} ({why}, {_span(at - now)} left); {budget}; until "
            f"then {meanwhile} (`ddnsagent reconnect --ignore-cooldown` overrides)"
        )
    return {"reconnects_left": left, "reconnect_at": at if at > now else None, "next": text}


def _span(seconds: float) -> str:
    """`1h 5m`, `20m`, `45s`: a wait for a human, rounded up (never says less than is left)."""
    if seconds < 60:
        return f"{max(math.ceil(seconds), 0)}s"
    hours, minutes = divmod(math.ceil(seconds / 60), 60)
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m"


def _print_relay(r: dict[str, Any]) -> None:
    print("relay:")
    signal = r["last_signal"]
    print(
        f"  last signal: {_ts(signal['time'])} {signal['action']}: {signal['reason']}"
        if signal
        else "  last signal: none"
    )
    last = r["last_reconnect"]
    if last:
        print(f"  last reconnect: {_ts(last['time'])} {last['result']}: {last['message']}")
    else:
        print("  last reconnect: none")
    print(f"  reconnects in 24 h: {r['reconnects_24h']}; {r['cooldown'] or 'no cooldown'}")
    print(f"  next: {r['next']}")
    rec = r["last_recovery"]
    if rec:
        print(f"  last recovery: {_ts(rec['time'])} after {rec['seconds']:.1f}s")
    print(f"  bounces generated in the last hour: {r['bounces_last_hour']}")


def _providers(as_json: bool) -> int:
    # lazy: the registries, for this listing alone
    from ddnsagent import providers
    from ddnsagent.zones import registry

    if as_json:
        listing = {
            "providers": {n: _keys(providers.module(n).KEYS) for n in providers.TYPES},
            "zones": {n: _keys(registry.module(n).KEYS) for n in registry.TYPES},
        }
        json.dump(listing, sys.stdout, indent=2)
        print()
        return EXIT_OK
    print("[[provider]] types (common keys: name, type, ipv4, ipv6, keepalive, insecure_http):")
    for name in providers.TYPES:
        print(f"  {name:<11} {providers.module(name).KEYS}")
    if registry.TYPES:
        print("[[zone]] types (common keys: name, type, origin, names, hosts, prefix_length,")
        print("                 ttl, verify):")
        for name in registry.TYPES:
            print(f"  {name:<11} {registry.module(name).KEYS}")
    return EXIT_OK


def _keys(text: str) -> list[str]:
    """A type's KEYS line as a list: "a, b|b_file" → ["a", "b|b_file"]."""
    return [k.strip() for k in text.split(",") if k.strip()]


def _hook(args: argparse.Namespace, file: Path, agent: Any, detect: Any) -> int:
    """Sync for the address the system just got: through the daemon when one runs, else here.

    Bounded by --timeout, because pppd runs ip-up.d scripts one after the other and a dead
    provider must not hold back the link's other scripts (Debian's postfix flush among them).
    Asking the daemon goes through the blocking control client: no asyncio, no httpx, no
    provider or zone module, so the link's other scripts wait a few milliseconds, not 100.
    """
    # lazy: the hook's modules (~2 ms), for `hook` alone
    from ddnsagent import ctlclient, hooks
    from ddnsagent.address import refusal  # lazy: see above

    deadline = time.monotonic() + args.timeout
    event = hooks.from_environment(os.environ, args.args)
    watched = {s.arg for f in (4, 6) for s in detect.sources(f) if s.kind == "interface"}
    if not event.relevant:
        print(f"hook: {event.caller} event without a new address; nothing to do")
        return EXIT_OK
    if watched and event.interface and event.interface not in watched:
        print(f"hook: {event.interface} is not a WAN interface of this configuration; ignored")
        return EXIT_OK
    addresses: dict[int, Any] = {}
    for a in event.addresses:
        if a.version not in addresses and refusal(a, detect.accept) is None:
            addresses[a.version] = a
    reason = f"hook {event.caller}"
    payload: dict[str, Any] = {
        "cmd": "sync",
        "reason": reason,
        "addresses": {str(k): str(v) for k, v in addresses.items()} or None,
    }
    path = agent.control_socket or ctlclient.default_socket_path()
    late = f"hook: no result within {args.timeout:g}s; the daemon goes on trying"
    try:
        answer = ctlclient.ask(path, payload, args.timeout)
    except ctlclient.NoAnswer:
        _err(late)
        return EXIT_RETRY
    code: int | None
    if answer is None:
        how = "synced (no daemon running)"
        code = _hook_here(file, reason, addresses, deadline - time.monotonic())
        if code is None:
            _err(late)
            return EXIT_RETRY
    elif not answer.get("ok"):
        how, code = f"the daemon refused: {answer.get('error') or 'no reason given'}", EXIT_RETRY
    else:
        how = "the daemon synced"
        code = int(answer.get("report", {}).get("exit_code", EXIT_RETRY))
    shown = ", ".join(str(a) for a in addresses.values()) or "detected address"
    print(f"hook {args.event} ({event.caller}, {event.interface or '?'}, {shown}): {how}")
    return code


def _hook_here(file: Path, reason: str, addresses: dict[int, Any], seconds: float) -> int | None:
    """The exit code of a sync in this process (no daemon answered); None past `seconds`."""
    if seconds <= 0:
        return None
    # lazy: the whole configuration and the orchestrator (~55 ms), only when no daemon runs
    import asyncio

    from ddnsagent import config  # lazy: see above
    from ddnsagent.sync import Agent, SyncOptions  # lazy: see above

    cfg = config.load(file)
    options = SyncOptions(reason=reason, addresses=addresses or None)
    try:
        report = asyncio.run(asyncio.wait_for(Agent(cfg).sync(options), seconds))
    except TimeoutError:
        return None
    return report.exit_code


def _reconnect(args: argparse.Namespace, cfg: Any) -> int:
    # lazy: the reconnect procedure and the orchestrator (~75 ms) for this command alone
    import asyncio

    from ddnsagent import control  # lazy: see above
    from ddnsagent.relay.reconnect import reconnect  # lazy: see above
    from ddnsagent.sync import Agent  # lazy: see above

    if cfg.reconnect is None:
        _err(f'{cfg.file}: no [reconnect] section — add one with command = ["…"]')
        return EXIT_CONFIG
    limit = cfg.reconnect.timeout + cfg.reconnect.wait_for_address + 300

    async def go() -> tuple[bool, str]:
        path = cfg.agent.control_socket or control.default_socket_path()
        payload = {"cmd": "reconnect", "ignore_cooldown": args.ignore_cooldown}
        answer = await control.request(path, payload, limit)
        if answer is not None:
            return bool(answer.get("ok")), str(answer.get("message") or answer.get("error"))
        outcome = await reconnect(Agent(cfg), "requested by hand", args.ignore_cooldown)
        return outcome.done, outcome.message

    done, message = asyncio.run(go())
    if args.json:
        json.dump({"done": done, "message": message}, sys.stdout, indent=2)
        print()
    else:
        print(f"reconnect: {message}")
    return EXIT_OK if done else EXIT_RETRY


def _relay_explain(args: argparse.Namespace, cfg: Any) -> int:
    """`relay explain`: each line through the watchdog's parser and decider, in words."""
    # lazy: the relay code (~20 ms), for this command alone
    import asyncio
    import dataclasses

    from ddnsagent.relay import explain  # lazy: see above
    from ddnsagent.relay.settings import RelayConfig  # lazy: see above
    from ddnsagent.store import Store  # lazy: see above

    relay = cfg.relay
    if args.host:
        relay = dataclasses.replace(relay or RelayConfig(log="", host=""), host=args.host)
    if relay is None:
        _err(
            f'{cfg.file}: no [relay] section — add one with host = "auth.gate-on.net" (the relay '
            "as Postfix names it), or pass --host"
        )
        return EXIT_CONFIG
    for text in args.address:
        try:
            ipaddress.ip_address(text)
        except ValueError:
            _err(f"--address {text!r} is not an IP address")
            return EXIT_CONFIG
    if not 1 <= args.last <= explain.MAX_LAST:
        _err(f"--last {args.last}: give a number from 1 to {explain.MAX_LAST}")
        return EXIT_CONFIG
    if args.log is not None and args.lines:
        _err("give lines as arguments or --log, not both")
        return EXIT_CONFIG
    if args.log == "-":
        lines = explain.stdin_lines(args.last)
    elif args.log is not None:
        log_path = args.log or relay.log
        if not log_path or log_path == "journal":
            _err(
                f"{cfg.file}: [relay] log is {relay.log!r}: give a file with --log FILE (for the "
                "journal: journalctl -u postfix@- -o short --no-pager | ddnsagent relay explain "
                "--log -)"
            )
            return EXIT_CONFIG
        lines = explain.tail_lines(Path(log_path), args.last)
    else:
        lines = list(args.lines)
    if not lines:
        _err("no lines to explain: give them as arguments, or --log FILE")
        return EXIT_CONFIG
    situation, note = explain.situation_from_state(
        Store.of(cfg.agent), args.address, not args.no_queue
    )
    explainer = explain.Explainer(relay, cfg.reconnect, situation)
    rows = asyncio.run(explainer.explain(lines))
    print(
        f"relay {relay.host}: threshold = {relay.threshold} within window = "
        f"{int(relay.window)}s; our addresses: {explain.ours_text(situation)}"
    )
    if note:
        print(f"note: {note}")
    sys.stdout.write(explain.render(rows))
    return EXIT_OK


def _dnsbl(args: argparse.Namespace, cfg: Any) -> int:
    """Ask the lists now (blocking, no event loop); the result of a detected address is kept
    for `status`. Exit 0: not listed, or on a policy list only; 1: no answer or refused;
    3: listed."""
    # lazy: the check's DNS code, for this command alone
    from ddnsagent.dnsbl import check as dnsbl_check
    from ddnsagent.dnsbl.lists import VERDICTS, DnsblConfig  # lazy: see above
    from ddnsagent.store import Store, dnsbl_check_json  # lazy: see above

    settings = cfg.dnsbl or DnsblConfig()
    store = Store.of(cfg.agent)
    if args.address is not None:
        try:
            addresses = [ipaddress.ip_address(args.address)]
        except ValueError:
            _err(f"{args.address!r} is not an IP address")
            return EXIT_CONFIG
    else:
        detected = store.load().detected
        addresses = [ipaddress.ip_address(d.address) for _, d in sorted(detected.items())]
        if not addresses:
            _err("no address detected yet: run `ddnsagent notify-now` first, or give one")
            return EXIT_CONFIG
    reports = [dnsbl_check.check(settings, a) for a in addresses]
    known = {f: d.address for f, d in store.load().detected.items()}
    mine = [r for r in reports if known.get(r.family) == r.address]
    if mine:
        with store.edit() as state:
            for r in mine:
                previous = state.dnsbl.checks.get(r.family)
                kept = previous.action if previous and previous.address == r.address else None
                state.dnsbl.checks[r.family] = dnsbl_check.record(r, kept)
    worst = min((r.verdict for r in reports), key=VERDICTS.index)
    code = {"listed": EXIT_FOR["stopped"], "refused": EXIT_RETRY, "error": EXIT_RETRY}
    if args.json:
        out = {r.address: dnsbl_check_json(dnsbl_check.record(r)) for r in reports}
        json.dump(out, sys.stdout, indent=2)
        print()
        return code.get(worst, EXIT_OK)
    for r in reports:
        print(dnsbl_check.summary(r))
        for _, text in dnsbl_check.lines(r):
            print(f"  {text}")
    return code.get(worst, EXIT_OK)


def _bounces(args: argparse.Namespace, cfg: Any) -> int:
    """`bounces list|release|hold` (relay/guard.py does the work)."""
    # lazy: the guard's queue code and asyncio (~20 ms), for this command alone
    import asyncio

    from ddnsagent.durations import parse_duration  # lazy: see above
    from ddnsagent.relay import guard  # lazy: see above

    if cfg.relay is None:
        _err(
            f'{cfg.file}: no [relay] section — add one with host = "…" (the bounce guard '
            "is part of it)"
        )
        return EXIT_CONFIG
    queue = cfg.relay.queue
    as_json = getattr(args, "json", False)
    if args.bounces_command == "list":
        reading = asyncio.run(guard.read_bounces(queue))
        if reading.problem is not None:
            _err(f"cannot read Postfix's queue ([relay] queue): {reading.problem}")
            return EXIT_RETRY
        on_hold = guard.held(reading.bounces)
        waiting = guard.to_hold(reading.bounces)
        if as_json:
            out = {
                "held": [b.to_json() for b in on_hold],
                "waiting": [b.to_json() for b in waiting],
                "top_domains": guard.top_domains(on_hold),
            }
            json.dump(out, sys.stdout, indent=2)
            print()
            return EXIT_OK
        print(f"{len(on_hold)} bounces on hold, {len(waiting)} waiting to go to the relay")
        for b in on_hold:
            print(f"{b.queue_id}  {_ts(b.arrival)}  to {', '.join(b.recipients)}")
        if on_hold:
            print(f"top recipient domains: {', '.join(guard.top_domains(on_hold))}")
        return EXIT_OK
    if os.geteuid() != 0:
        _err(
            f"bounces {args.bounces_command}: postsuper needs root — run it as root (sudo); "
            "the daemon starts ddnsagent-bounce-hold.service for the hold"
        )
        return EXIT_CONFIG
    if args.bounces_command == "hold":
        done = asyncio.run(guard.hold_now(queue))
    else:
        try:
            pace = parse_duration(args.pace)
        except ValueError as exc:
            _err(f"--pace {args.pace!r}: {exc} (e.g. 30s, 2m, or 0 for all at once)")
            return EXIT_CONFIG
        bad = [i for i in args.ids if not (i.isascii() and i.isalnum() and len(i) <= 64)]
        if bad:
            _err(
                f"{bad[0]!r} is not a Postfix queue id (letters and digits, as "
                "`bounces list` shows)"
            )
            return EXIT_CONFIG

        def progress(ids: str) -> None:
            if not as_json:
                print(f"released {ids}", flush=True)

        done = asyncio.run(guard.release(queue, args.ids, args.all, pace, progress))
    if as_json:
        out = {"done": done.acted, "refused": done.refused, "problem": done.problem}
        json.dump(out, sys.stdout, indent=2)
        print()
    else:
        verb = "held" if args.bounces_command == "hold" else "released"
        if args.bounces_command == "hold":
            print(
                f"{verb} {len(done.acted)} bounces"
                + (f": {' '.join(done.acted)}" if done.acted else "")
            )
        else:
            print(f"{verb} {len(done.acted)} bounces")
        for queue_id, why in done.refused.items():
            print(f"not released: {queue_id} {why}")
        if done.problem:
            _err(f"bounces {args.bounces_command}: {done.problem}")
    if done.problem:
        return EXIT_RETRY
    return EXIT_CONFIG if done.refused and not done.acted else EXIT_OK


def _reset(args: argparse.Namespace, cfg: Any) -> int:
    # lazy: reset lives beside the sync, which loads httpx (~55 ms); see _notify_now
    from ddnsagent.store import Store
    from ddnsagent.sync import reset

    names = [s.name for s in cfg.providers]
    store = Store.of(cfg.agent)
    if args.name not in names and args.name not in store.load().targets:
        _err(f"no target named {args.name!r}; known: {', '.join(names) or 'none'}")
        return EXIT_CONFIG
    reset(store, args.name)
    print(f"{args.name}: reset; the next sync sends its address again")
    return EXIT_OK


def _init(args: argparse.Namespace) -> int:
    from importlib.resources import files

    # lazy: see _dispatch
    from ddnsagent import config

    path: Path = args.config or config.default_config_path()
    if path.exists() and not args.force:
        _err(f"{path} already exists; pass --force to overwrite it")
        return EXIT_CONFIG
    text = (files("ddnsagent") / "data" / "config.example.toml").read_text(encoding="utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)
    print(f"wrote {path} (mode 0600); edit it, then run: ddnsagent check-config {path}")
    return EXIT_OK


def _ts(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"
