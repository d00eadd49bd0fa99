"""Issue 13, items 5–7: a dry run reads the secrets and fails as the real run does, naming the
source and how to set it; `--config`/`--json` before or after every command, help for every
option; a mask that hides real secrets everywhere and never our own words; a changed secret
that lifts a stop but keeps what was sent; a `status` that says what the relay watchdog would do
next; a `nohost` that names the host."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import ipaddress
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ddnsagent import cli, config, secrets
from ddnsagent.errors import FatalAnswer
from ddnsagent.outcome import SyncReport
from ddnsagent.providers import dyndns2
from ddnsagent.schedule import DAY
from ddnsagent.store import Relay, Sent, Stopped, Store
from ddnsagent.sync import Agent, SyncOptions
from tests.conftest import child_env, ddnsagent, write_config
from tests.fakes import Dyndns2Server
from tests.fakes.duckdns import DuckDNSServer

HOST = "home.example.net"
USER, PASSWORD = "me", "pw13-Secret-6a1f"
PW_VAR = "DDNSAGENT_TEST13_PW"
ADDR, ADDR2 = "203.0.113.9", "203.0.113.10"
DUCK_TOKEN = "c0ffee13-5b6f-4c3d-9e8f-0123456789ab"


@pytest.fixture
def dyn() -> Iterator[Dyndns2Server]:
    with Dyndns2Server({USER: PASSWORD}, {HOST: None}) as server:
        yield server


def dyn_table(url: str, secret: str = f'password_env = "{PW_VAR}"', name: str = "dd") -> str:
    return (
        f'[[provider]]\nname = "{name}"\ntype = "dyndns2"\nserver = "{url}"\n'
        f'hostnames = ["{HOST}"]\nusername = "{USER}"\n{secret}\n\n'
    )


def config_file(tmp_path: Path, tables: str, agent: str = "") -> Path:
    text = (
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\nretries = 1\nretry_delay = "0s"\n{agent}\n'
        '[detect]\nipv4 = []\naccept = "any"\ntimeout = "3s"\n\n' + tables
    )
    tmp_path.mkdir(parents=True, exist_ok=True)
    return write_config(tmp_path, text)


def sync(path: Path, address: str = ADDR, **options: bool) -> SyncReport:
    """One sync in this process, as `notify-now --local --address ADDRESS` does."""
    given = {4: ipaddress.ip_address(address)}
    agent = Agent(config.load(path))
    return asyncio.run(agent.sync(SyncOptions(reason="test", addresses=given, **options)))


def one(report: SyncReport) -> tuple[str, str, str | None]:
    (t,) = report.targets
    return t.action, t.message, t.fix


# == item 5: a dry run reads the secrets ========================================================


def test_dry_run_fails_like_the_real_run_when_the_secret_is_unset(
    tmp_path: Path, dyn: Dyndns2Server
) -> None:
    path = config_file(tmp_path, dyn_table(dyn.update_url))
    unset = child_env()
    unset.pop(PW_VAR, None)
    args = ("notify-now", "--local", "--config", path, "--address", ADDR)
    dry = ddnsagent(*args, "--dry-run", env=unset)
    real = ddnsagent(*args, env=unset)
    for run in (dry, real):
        out = run.stdout + run.stderr
        assert run.returncode == 2, out
        assert f"provider.dd.password_env: environment variable {PW_VAR} is not set" in out
        assert f"fix: export {PW_VAR}=…" in out and "EnvironmentFile=" in out
        assert "fix the secret's source" not in out and "would send" not in out
    assert dry.stdout == real.stdout  # the same lines, the same way
    assert dyn.requests == []

    given = child_env(**{PW_VAR: PASSWORD})
    dry = ddnsagent(*args, "--dry-run", env=given)
    assert dry.returncode == 0 and "would send (first update)" in dry.stdout, dry.stderr
    assert dyn.requests == []
    assert ddnsagent(*args, env=given).returncode == 0 and len(dyn.requests) == 1


@pytest.mark.parametrize(
    "source", ["missing-file", "empty-file", "no-credentials", "no-credential"]
)
def test_dry_run_names_each_source_and_how_to_set_it(
    source: str, tmp_path: Path, dyn: Dyndns2Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "dd.secret"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    if source == "missing-file":
        line, said, fix = (
            f'password_file = "{secret_file}"',
            f"{secret_file} does not exist",
            (f"install -m 600 /dev/null {secret_file}"),
        )
    elif source == "empty-file":
        secret_file.write_text("\n")
        secret_file.chmod(0o600)
        line, said = f'password_file = "{secret_file}"', f"{secret_file} is empty"
        fix = f"write the secret into {secret_file}"
    elif source == "no-credentials":
        line, said = 'password_file = "cred:dd13"', "cred:dd13 needs $CREDENTIALS_DIRECTORY"
        fix = "systemd-run -p LoadCredential=dd13:/etc/ddnsagent/dd13.secret --pipe --wait"
    else:
        creds = tmp_path / "creds"
        creds.mkdir()
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
        line, said = 'password_file = "cred:dd13"', "this unit has no credential dd13"
        fix = "add LoadCredential=dd13:/etc/ddnsagent/dd13.secret to the unit"
    path = config_file(tmp_path, dyn_table(dyn.update_url, line))
    for dry_run in (True, False):
        action, message, got_fix = one(sync(path, dry_run=dry_run))
        assert action == "config" and said in message and "provider.dd.password_file" in message
        assert got_fix is not None and fix in got_fix, got_fix
    assert dyn.requests == []


def test_dry_run_of_a_zone_reads_its_tsig_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DDNSAGENT_TEST13_TSIG", raising=False)
    zone = (
        '[[zone]]\nname = "lan"\ntype = "rfc2136"\norigin = "example.net"\nnames = ["mail"]\n'
        'server = "127.0.0.1:9"\nzone = "example.net"\ntsig_name = "k"\n'
        'tsig_algorithm = "hmac-sha256"\ntsig_secret_env = "DDNSAGENT_TEST13_TSIG"\n'
    )
    path = config_file(tmp_path, zone)
    action, message, fix = one(sync(path, dry_run=True))
    assert action == "failed" and "DDNSAGENT_TEST13_TSIG is not set" in message
    assert fix is not None and "export DDNSAGENT_TEST13_TSIG=" in fix
    monkeypatch.setenv("DDNSAGENT_TEST13_TSIG", "c2VjcmV0LWtleS0xMw==")
    assert one(sync(path, dry_run=True))[0] == "dry-run"


# == item 6: the command line ====================================================================


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


# What each command needs besides its options, to parse.
REQUIRED = {
    "reset": ["dd"],
    "acme-hook": ["mydns", "--auth"],
    "hook": ["ip-up"],
    "relay": ["explain"],
    "bounces": ["list"],
}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = cli.build_parser()
    args, extra = parser.parse_known_args(argv)
    assert extra == [], extra
    cli._merge_options(parser, args)
    return args


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_config_is_accepted_before_and_after_every_command(command: str) -> None:
    rest = REQUIRED.get(command, [])
    before = parse(["--config", "/x/c.toml", command, *rest])
    after = parse([command, *rest, "--config", "/x/c.toml"])
    assert before.command == after.command == command
    assert before.config == after.config == Path("/x/c.toml")
    assert parse([command, *rest]).config is None


def test_json_is_accepted_before_and_after_where_it_applies() -> None:
    with_json = {name for name, sub in subcommands().items() if "--json" in _options(sub)}
    assert {"notify-now", "status", "doctor", "providers", "reconnect"} <= with_json
    for command in sorted(with_json):
        rest = REQUIRED.get(command, [])
        assert parse(["--json", command, *rest]).json and parse([command, *rest, "--json"]).json
        assert not parse([command, *rest]).json
    run = ddnsagent("--json", "run")
    assert run.returncode == 2 and "`run` has no --json output" in run.stderr


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def test_every_command_and_every_option_has_help() -> None:
    parser = cli.build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helped = {a.dest: a.help for a in action._choices_actions}
    for name, sub in action.choices.items():
        assert helped.get(name) and sub.description, name
        for a in sub._actions:
            assert a.help, f"{name} {a.option_strings or a.dest} has no help"
    for a in parser._actions:
        assert a.help, a.option_strings
    shown = ddnsagent("init", "--help")
    assert shown.returncode == 0 and "file to write" in shown.stdout and "--config" in shown.stdout


def test_hook_keeps_pppds_arguments_with_config_before_the_command() -> None:
    pppd = ["ppp0", "/dev/ttyS0", "115200", "203.0.113.7", "198.51.100.1", "flets"]
    argv = ["--config", "/x/c.toml", "hook", "ip-up", "--timeout", "30", *pppd]
    parser = cli.build_parser()
    args, extra = parser.parse_known_args(argv)
    assert [*args.args, *extra] == pppd and args.config_first == Path("/x/c.toml")


def test_config_before_the_command_end_to_end(tmp_path: Path, dyn: Dyndns2Server) -> None:
    path = config_file(tmp_path, dyn_table(dyn.update_url))
    env = child_env(**{PW_VAR: PASSWORD})
    sent = ddnsagent("--config", path, "notify-now", "--local", "--address", ADDR, env=env)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    status = ddnsagent("--config", path, "--json", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["targets"][0]["sent"]["ipv4"]["address"] == ADDR
    checked = ddnsagent("--config", path, "check-config", env=env)
    assert checked.returncode == 0 and str(path) in checked.stdout, checked.stderr
    twice = ddnsagent("check-config", path, "--config", tmp_path / "other.toml", env=env)
    assert twice.returncode == 2 and "two configuration files given" in twice.stderr
    assert "Traceback" not in twice.stderr


@pytest.mark.parametrize("where", ["after", "before"])
def test_init_writes_the_file_config_names(tmp_path: Path, where: str) -> None:
    target = tmp_path / "etc" / "c.toml"
    args = ("init", "--config", target) if where == "after" else ("--config", target, "init")
    run = ddnsagent(*args)
    assert run.returncode == 0, run.stderr
    assert target.stat().st_mode & 0o777 == 0o600 and f"wrote {target}" in run.stdout


def test_providers_json_lists_every_type() -> None:
    run = ddnsagent("providers", "--json")
    assert run.returncode == 0, run.stderr
    listing = json.loads(run.stdout)
    assert "master_id" in listing["providers"]["mydns"]
    assert "rfc2136" in listing["zones"]


# == item 6: masking =============================================================================


@pytest.fixture
def fresh_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "_known", set())


@pytest.mark.usefixtures("fresh_mask")
def test_short_and_common_passwords_do_not_mangle_our_messages() -> None:
    message = "badauth: the username or password is wrong (HTTP 401) — check username and password"
    for weak in ("is", "or", "password", "wrong", "Password", "dry-run", "check"):
        secrets.register(weak)
        secrets.register_basic_auth(USER, weak)
    assert secrets.redact(message) == message
    real = "k3Y-9f2c7e51aa"
    secrets.register_query_value(real)
    assert secrets.redact(f"GET /update?token={real}&x=1 {message}") == (
        f"GET /update?token=***&x=1 {message}"
    )
    assert secrets.MIN_MASKED == 4
    assert secrets.is_our_word("password") and not secrets.is_our_word(real)


@pytest.mark.parametrize("weak", ["is", "password", "wrong"])
def test_a_weak_password_keeps_messages_whole_and_a_real_token_stays_hidden(
    weak: str, tmp_path: Path, dyn: Dyndns2Server
) -> None:
    """A run at log_level = "debug": httpx logs DuckDNS's URL with the token in it, dyndns2
    refuses the weak password. The token is masked in every line; our words are not."""
    with DuckDNSServer({DUCK_TOKEN: ["myhome"]}) as duck:
        tables = dyn_table(dyn.update_url) + (
            f'[[provider]]\nname = "duck"\ntype = "duckdns"\ndomains = ["myhome"]\n'
            f'url = "{duck.update_url}"\ntoken_env = "DDNSAGENT_TEST13_TOKEN"\n'
        )
        path = config_file(tmp_path, tables, agent='log_level = "debug"\ndebug_libraries = true')
        env = child_env(**{PW_VAR: weak, "DDNSAGENT_TEST13_TOKEN": DUCK_TOKEN})
        run = ddnsagent("notify-now", "--local", "--config", path, "--address", ADDR, env=env)
        out = run.stdout + run.stderr
        assert run.returncode == 3, out
        assert duck.requests and duck.requests[0].query["token"] == DUCK_TOKEN  # it travelled
    assert "HTTP Request: GET" in out and "token=***" in out  # httpx's own debug line, masked
    assert DUCK_TOKEN not in out
    assert "badauth: the username or password is wrong" in out, out
    assert "check username and password" in out and "***" not in out.replace("token=***", "")
    status = ddnsagent("status", "--config", path, env=env)
    assert "the username or password is wrong" in status.stdout and DUCK_TOKEN not in status.stdout
    # The weak one is said to be unmaskable, without being shown.
    assert "logs and messages cannot hide this secret" in out


# == item 7: a changed secret keeps what was sent ================================================


def test_a_changed_secret_lifts_the_stop_and_keeps_what_was_sent(
    tmp_path: Path, dyn: Dyndns2Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config_file(tmp_path, dyn_table(dyn.update_url))
    store = Store.of(config.load(path).agent)
    monkeypatch.setenv(PW_VAR, PASSWORD)
    assert one(sync(path))[0] == "sent"
    monkeypatch.setenv(PW_VAR, "not-the-Password-1")
    assert one(sync(path, address=ADDR2))[0] == "stopped"
    kept = store.load().targets["dd"]
    assert kept.stopped is not None and kept.sent[4].address == ADDR
    # The user sets the right password; the service is down at the next sync.
    monkeypatch.setenv(PW_VAR, PASSWORD)
    dyn.status = 500
    action, message, _ = one(sync(path, address=ADDR2))
    assert action == "failed", message
    target = store.load().targets["dd"]
    assert target.stopped is None and target.sent[4].address == ADDR  # history kept
    status = ddnsagent("status", "--config", path)
    assert f"dd [dyndns2]: sent ipv4 {ADDR}" in status.stdout, status.stdout
    assert "nothing sent yet" not in status.stdout


def test_the_new_secret_is_tried_at_once_even_for_the_same_address(
    tmp_path: Path, dyn: Dyndns2Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config_file(tmp_path, dyn_table(dyn.update_url))
    monkeypatch.setenv(PW_VAR, PASSWORD)
    assert one(sync(path))[0] == "sent"
    monkeypatch.setenv(PW_VAR, "not-the-Password-1")
    assert one(sync(path, force=True))[0] == "stopped"
    monkeypatch.setenv(PW_VAR, PASSWORD)
    action, message, _ = one(sync(path))
    assert action == "sent" and message.startswith("the secret changed; trying it"), message
    assert one(sync(path))[0] == "unchanged" and len(dyn.requests) == 3


def test_moving_a_secret_to_another_source_changes_nothing(
    tmp_path: Path, dyn: Dyndns2Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From password_env to password_file with the same value: no setting changed, so the
    stop stays and nothing is forgotten; a new host list still forgets what was sent."""
    monkeypatch.setenv(PW_VAR, "not-the-Password-1")
    path = config_file(tmp_path, dyn_table(dyn.update_url))
    store = Store.of(config.load(path).agent)
    with store.edit() as state:
        state.target("dd").sent[4] = Sent(ADDR, time.time())
    assert one(sync(path, address=ADDR2))[0] == "stopped"
    secret_file = write_config(tmp_path, "not-the-Password-1\n", name="dd.secret")
    moved = config_file(tmp_path, dyn_table(dyn.update_url, f'password_file = "{secret_file}"'))
    assert one(sync(moved, address=ADDR2))[0] == "stopped" and len(dyn.requests) == 1
    assert store.load().targets["dd"].sent[4].address == ADDR
    renamed = dyn_table(dyn.update_url, f'password_file = "{secret_file}"').replace(
        f'["{HOST}"]', f'["{HOST}", "mail.example.net"]'
    )
    config_file(tmp_path, renamed)
    assert one(sync(moved, address=ADDR2))[0] == "stopped"  # badauth again: lifted, tried
    assert 4 not in store.load().targets["dd"].sent and len(dyn.requests) == 2


def test_a_fingerprint_kept_by_an_earlier_version_lifts_nothing(
    tmp_path: Path, dyn: Dyndns2Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PW_VAR, PASSWORD)
    path = config_file(tmp_path, dyn_table(dyn.update_url))
    cfg = config.load(path)
    store = Store.of(cfg.agent)
    with store.edit() as state:
        salt = bytes.fromhex(state.salt)
        target = state.target("dd")
        target.sent[4] = Sent(ADDR, time.time())
        target.stopped = Stopped("badauth: the username or password is wrong", "check", 1.0)
        (settings,) = cfg.providers
        data = settings.fingerprint_data().encode()  # the earlier form: origins included
        target.config_fp = hashlib.blake2b(data, key=salt, digest_size=16).hexdigest()
        h = hashlib.blake2b(key=salt, digest_size=16)
        h.update(PASSWORD.encode() + b"\0")
        target.secret_fp = h.hexdigest()
    assert one(sync(path, address=ADDR2))[0] == "stopped" and dyn.requests == []
    after = store.load().targets["dd"]
    assert after.config_fp is not None and after.config_fp.startswith("2:")
    assert after.sent[4].address == ADDR


# == item 7: nohost names the host ===============================================================


def test_a_nohost_answer_names_the_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FatalAnswer, match=r"nohost: no such hostname in this account \(a\.example"):
        dyndns2.judge(200, "nohost\n", ["a.example.net"], 1800)
    with Dyndns2Server({USER: PASSWORD}, {"other.example.net": None}) as dyn:
        path = config_file(tmp_path, dyn_table(dyn.update_url))
        monkeypatch.setenv(PW_VAR, PASSWORD)
        action, message, _ = one(sync(path))
    assert action == "stopped" and "nohost" in message and HOST in message
    status = ddnsagent("status", "--config", path)
    assert status.returncode == 3 and f"nohost: no such hostname in this account ({HOST})" in (
        status.stdout
    )


# == item 7: what the relay watchdog would do next ===============================================


def relay_config(tmp_path: Path, relay: bool = True) -> config.Config:
    text = '[reconnect]\ncommand = ["/bin/true"]\ncooldown = "30m"\nmax_per_day = 3\n'
    if relay:
        text += '[relay]\nhost = "auth.gate-on.net"\nlog = "/var/log/mail.log"\n'
    return config.load(config_file(tmp_path, text))


def test_status_says_what_the_watchdog_would_do_next(tmp_path: Path) -> None:
    cfg = relay_config(tmp_path)
    now = time.time()
    ready = cli._relay_status(Relay(), cfg)
    assert ready["reconnects_left"] == 3 and ready["reconnect_at"] is None
    assert "would reconnect at once; 3 of 3 reconnects left in 24 h" in ready["next"]
    assert "auth.gate-on.net" in ready["next"]

    cooling = cli._relay_status(Relay(attempts=[now - 600]), cfg)
    assert cooling["reconnects_left"] == 2
    assert abs(cooling["reconnect_at"] - (now + 1200)) < 5
    assert "(cooldown, 20m left); 2 of 3 reconnects left in 24 h" in cooling["next"]
    assert "a relay refusal is logged and the mail waits in the queue" in cooling["next"]

    used = [now - DAY + 3600, now - 7200, now - 3600]
    capped = cli._relay_status(Relay(attempts=used), cfg)
    assert capped["reconnects_left"] == 0 and abs(capped["reconnect_at"] - (now + 3600)) < 5
    assert "(daily cap reached, 1h left); 0 of 3" in capped["next"]

    by_hand = cli._relay_status(Relay(), relay_config(tmp_path / "b", relay=False))
    assert by_hand["next"].startswith("`ddnsagent reconnect` would reconnect at once")


def test_status_prints_the_next_step(tmp_path: Path) -> None:
    cfg = relay_config(tmp_path)
    with Store.of(cfg.agent).edit() as state:
        state.relay.attempts = [time.time() - 60]
    run = ddnsagent("status", "--config", cfg.file)
    assert run.returncode == 0, run.stderr
    (line,) = [x for x in run.stdout.splitlines() if x.startswith("  next: ")]
    assert "no reconnect before" in line and "(cooldown, 29m left); 2 of 3" in line
    shown = json.loads(ddnsagent("status", "--json", "--config", cfg.file).stdout)
    assert shown["relay"]["reconnects_left"] == 2 and shown["relay"]["next"] in line
