"""Passwords never reach the output, even at log_level = "debug" and when things go wrong.

`notify-now --force` runs as a real process against the emulators with one password from a file,
one from the environment and one inline, and everything it prints (its report and the debug
logs of httpx/httpcore) is searched for each password in the forms it travels in.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ddnsagent.providers import mydns as mydns_provider_module
from tests.conftest import (
    FIRST,
    child_env,
    config_text,
    ddnsagent,
    mydns_provider,
    write_config,
)
from tests.fakes import Dyndns2Server, EchoServer, MyDNSServer

FILE_ID, FILE_PW = "mid-file", "file-Secret-4c7d2a"
INLINE_ID, INLINE_PW = "mid-inline", "inline-Secret-92e0c5"
ENV_USER, ENV_PW = "dyn-env", "env-Secret-a81f3b"
CRED_ID, CRED_PW = "mid-cred", "cred-Secret-6be417"
PW_VAR = "DDNSAGENT_TEST_SECRET_PW"
HOST = "home.example.org"


def forms(user: str, password: str) -> list[str]:
    """How a password can show up: bare, as `user:password`, and base64 (Basic auth)."""
    pair = f"{user}:{password}"
    return [password, pair, *(base64.b64encode(x.encode()).decode() for x in (pair, password))]


def assert_no_secret(output: str, *accounts: tuple[str, str]) -> None:
    for user, password in accounts:
        for form in forms(user, password):
            assert form not in output, f"{form!r} leaked:\n{output}"


def private_file(path: Path, text: str, mode: int = 0o600) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.chmod(path, mode)
    return path


@pytest.fixture
def mydns() -> Iterator[MyDNSServer]:
    accounts = {FILE_ID: FILE_PW, INLINE_ID: INLINE_PW, CRED_ID: CRED_PW}
    with MyDNSServer(accounts) as server:
        # MyDNS records the connection's address, which the agent checks (issue 12): play the
        # route of the address the echo reports, as conftest's fixture does.
        server.pretend_peer = FIRST
        yield server


@pytest.fixture
def dyn() -> Iterator[Dyndns2Server]:
    with Dyndns2Server({ENV_USER: ENV_PW}, {HOST: None}) as server:
        yield server


def three_sources(
    tmp_path: Path, echo: EchoServer, mydns: MyDNSServer, dyn: Dyndns2Server, timeout: str = "5s"
) -> Path:
    """A debug-level configuration (the libraries' debug records too) with a password from a
    file, one inline, one from $PW_VAR."""
    secret_file = private_file(tmp_path / "mydns.secret", FILE_PW)
    providers = (
        mydns_provider(mydns.notify_url, "by-file", f'password_file = "{secret_file}"', FILE_ID)
        + mydns_provider(mydns.notify_url, "inline", f'password = "{INLINE_PW}"', INLINE_ID)
        + f'[[provider]]\nname = "by-env"\ntype = "dyndns2"\nserver = "{dyn.update_url}"\n'
        f'hostnames = ["{HOST}"]\nusername = "{ENV_USER}"\npassword_env = "{PW_VAR}"\n'
    )
    text = config_text(
        tmp_path / "state",
        echo.echo_url,
        providers,
        agent='log_level = "debug"\ndebug_libraries = true',
        timeout=timeout,
    )
    return write_config(tmp_path, text)


ALL = ((FILE_ID, FILE_PW), (INLINE_ID, INLINE_PW), (ENV_USER, ENV_PW))


def notify_now(config: Path, **env: str) -> tuple[int, str]:
    run = ddnsagent("notify-now", "--force", "--config", config, env=child_env(**env))
    return run.returncode, run.stdout + run.stderr


def assert_debug_was_on(output: str) -> None:
    assert "DEBUG httpcore" in output, output  # httpcore speaks only with debug_libraries
    assert "HTTP Request: GET" in output, output


def test_accepted_passwords_are_sent_and_never_shown(
    tmp_path: Path, echo: EchoServer, mydns: MyDNSServer, dyn: Dyndns2Server
) -> None:
    code, output = notify_now(three_sources(tmp_path, echo, mydns, dyn), **{PW_VAR: ENV_PW})
    assert code == 0, output
    assert mydns.notify_count(FILE_ID) == mydns.notify_count(INLINE_ID) == 1
    assert dyn.record(HOST).changes == 1 and dyn.requests[0].password == ENV_PW
    assert_debug_was_on(output)
    assert_no_secret(output, *ALL)


@pytest.mark.parametrize(
    ("trouble", "exit_code", "said"),
    [
        ("wrong password", 3, ("badauth", "login_status = 0")),
        ("HTTP 500", 1, ("HTTP 500",)),
        ("timeout", 1, ("timed out",)),
        ("credentials echoed", 1, ("unexpected answer",)),
    ],
    ids=["wrong-password", "http-500", "timeout", "credentials-echoed"],
)
def test_failures_do_not_show_passwords(
    trouble: str,
    exit_code: int,
    said: tuple[str, ...],
    tmp_path: Path,
    echo: EchoServer,
    mydns: MyDNSServer,
    dyn: Dyndns2Server,
) -> None:
    timeout = "5s"
    if trouble == "wrong password":  # the accounts have other passwords now
        mydns.accounts = {FILE_ID: "other-1", INLINE_ID: "other-2"}
        dyn.users = {ENV_USER: "other-3"}
    elif trouble == "HTTP 500":
        mydns.status = dyn.status = 500
    elif trouble == "timeout":
        mydns.delay = dyn.delay = 3.0
        timeout = "1s"
    else:  # a service that quotes the request's credentials back in an error page
        pair = f"{ENV_USER}:{ENV_PW}"
        dyn.body = f"error: {pair} ({base64.b64encode(pair.encode()).decode()}) refused"
    config = three_sources(tmp_path, echo, mydns, dyn, timeout=timeout)
    code, output = notify_now(config, **{PW_VAR: ENV_PW})
    assert code == exit_code, output
    assert all(words in output for words in said), output
    # each was tried once; a MyDNS login_status = 0 is asked LOGIN_ANSWERS times (issue 12)
    asks = mydns_provider_module.LOGIN_ANSWERS if trouble == "wrong password" else 1
    assert len(mydns.requests) == 2 * asks and len(dyn.requests) == 1
    assert_debug_was_on(output)
    assert_no_secret(output, *ALL)
    status = ddnsagent("status", "--config", config)  # shows the errors kept in the state
    assert status.returncode == exit_code, status.stdout + status.stderr
    assert_no_secret(status.stdout + status.stderr, *ALL)


def test_a_password_file_readable_by_others_is_refused_unread(
    tmp_path: Path, echo: EchoServer, mydns: MyDNSServer, dyn: Dyndns2Server
) -> None:
    config = three_sources(tmp_path, echo, mydns, dyn)
    secret_file = private_file(tmp_path / "mydns.secret", FILE_PW, mode=0o644)
    code, output = notify_now(config, **{PW_VAR: ENV_PW})
    assert code == 2, output
    (line,) = [x for x in output.splitlines() if "by-file [mydns]" in x]
    assert str(secret_file) in line and "readable by others (mode 0644)" in line
    assert f"chmod 600 {secret_file}" in line
    assert [r.user for r in mydns.requests] == [INLINE_ID]  # the others went on
    assert_no_secret(output, *ALL)


def test_an_inline_password_in_a_config_readable_by_others_is_refused(
    tmp_path: Path, echo: EchoServer, mydns: MyDNSServer, dyn: Dyndns2Server
) -> None:
    config = three_sources(tmp_path, echo, mydns, dyn)
    os.chmod(config, 0o644)
    code, output = notify_now(config, **{PW_VAR: ENV_PW})
    assert code == 2, output
    assert f"chmod 600 {config}" in output and "provider.inline.password" in output
    assert mydns.requests == [] and dyn.requests == []
    assert_no_secret(output, *ALL)


def test_systemd_credential(tmp_path: Path, echo: EchoServer, mydns: MyDNSServer) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir(mode=0o700)
    private_file(creds / "mydns", CRED_PW, mode=0o400)
    providers = mydns_provider(mydns.notify_url, "cred", 'password_file = "cred:mydns"', CRED_ID)
    agent = 'log_level = "debug"\ndebug_libraries = true'
    text = config_text(tmp_path / "state", echo.echo_url, providers, agent=agent)
    config = write_config(tmp_path, text)

    code, output = notify_now(config)
    assert code == 2, output
    assert "cred:mydns needs $CREDENTIALS_DIRECTORY" in output
    assert mydns.requests == []

    code, output = notify_now(config, CREDENTIALS_DIRECTORY=str(creds))
    assert code == 0, output
    assert mydns.notify_count(CRED_ID) == 1
    assert_debug_was_on(output)
    assert_no_secret(output, (CRED_ID, CRED_PW))


# -- a mistyped secret is not echoed --------------------------------------------------------------

DYN_SECRET_KEYS = {
    "integer": ("password = 12345678", "12345678"),
    "float": ("password = 1234.5678", "1234.5678"),
    "boolean": ("password = true", "True"),
    "list": ('password = ["list-Secret-3c1e"]', "list-Secret-3c1e"),
    "table": ('password = { v = "table-Secret-9d0a" }', "table-Secret-9d0a"),
    "date": ("password = 1987-06-05T04:03:02Z", "1987"),
}


def _dyndns2(server: str, secret: str) -> str:
    return (
        f'[[provider]]\nname = "dyn"\ntype = "dyndns2"\nserver = "{server}"\n'
        f'hostnames = ["{HOST}"]\nusername = "{ENV_USER}"\n{secret}\n'
    )


def _check_both(config: Path, key: str, *hidden: str) -> list[str]:
    """check-config and notify-now both refuse the configuration naming `key` without showing
    any of `hidden`; the lines they printed."""
    lines = []
    for args in (("check-config", config), ("notify-now", "--config", config)):
        run = ddnsagent(*args)
        output = run.stdout + run.stderr
        assert run.returncode == 2, output
        assert "Traceback" not in output
        for value in hidden:
            assert value not in output, f"{value!r} leaked:\n{output}"
        (line,) = output.strip().splitlines()
        assert key in line, line
        lines.append(line)
    return lines


@pytest.mark.parametrize("kind", DYN_SECRET_KEYS)
def test_a_mistyped_inline_password_is_named_but_never_shown(
    kind: str, tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server
) -> None:
    line, shown = DYN_SECRET_KEYS[kind]
    text = config_text(tmp_path / "state", echo.echo_url, _dyndns2(dyn.update_url, line))
    for said in _check_both(write_config(tmp_path, text), "provider.dyn.password", shown):
        assert "(not shown: provider.dyn.password holds a secret), expected a string" in said
        assert 'write it in quotes: password = "…"' in said
    assert dyn.requests == []


def test_a_mistyped_token_is_not_shown_either(tmp_path: Path, echo: EchoServer) -> None:
    providers = (
        '[[provider]]\nname = "duck"\ntype = "duckdns"\ndomains = ["myhome"]\ntoken = 87654321\n'
    )
    config = write_config(tmp_path, config_text(tmp_path / "state", echo.echo_url, providers))
    (said, _) = _check_both(config, "provider.duck.token", "87654321")
    assert "found an integer (not shown" in said


def test_credentials_in_a_url_are_refused_without_showing_them(
    tmp_path: Path, echo: EchoServer
) -> None:
    """Even when the URL is wrong in another way too (the scheme), whose message quotes it."""
    for server in (
        f"ftp://{ENV_USER}:url-Secret-2b7f@example.net/nic/update",
        f"{ENV_USER}:url-Secret-2b7f@example.net/nic/update",
        f"https://{ENV_USER}:url-Secret-2b7f@example.net/nic/update",
    ):
        providers = _dyndns2(server, f'password_env = "{PW_VAR}"')
        config = write_config(tmp_path, config_text(tmp_path / "state", echo.echo_url, providers))
        for said in _check_both(config, "provider.dyn.server", "url-Secret-2b7f"):
            assert "must not carry credentials in the URL" in said


def test_an_inline_notify_url_given_as_a_string_is_not_shown(
    tmp_path: Path, echo: EchoServer, dyn: Dyndns2Server
) -> None:
    notify = '\n[notify]\nurls = "tgram://bot-Secret-5e2a/12345"\n'
    providers = _dyndns2(dyn.update_url, f'password_env = "{PW_VAR}"') + notify
    config = write_config(tmp_path, config_text(tmp_path / "state", echo.echo_url, providers))
    for said in _check_both(config, "notify.urls", "bot-Secret-5e2a"):
        assert 'expected a list — write ["…"]' in said


def test_a_mistyped_lexicon_credential_is_not_shown(tmp_path: Path, echo: EchoServer) -> None:
    """lexicon's inline credentials table: a non-string value is named by its type only."""
    providers = (
        '[[provider]]\nname = "lx"\ntype = "lexicon"\nprovider = "powerdns"\n'
        'domain = "example.net."\nrecords = ["home"]\n'
        'options = { pdns_server = "http://127.0.0.1:9" }\n'
        "credentials = { auth_token = 55512345 }\n"
    )
    config = write_config(tmp_path, config_text(tmp_path / "state", echo.echo_url, providers))
    config.chmod(0o600)
    (said, _) = _check_both(config, "auth_token", "55512345")
    assert "found a value of type int, expected a non-empty string" in said
