"""Self-tests of the emulators: each enforces its protocol and each knob does what it says."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import trustme

from ._server import FakeServer
from .dyndns2 import Dyndns2Server, agent_problem, is_fqdn
from .echo import EchoServer, checkip_html
from .mydns import OK_SENTENCE, REALM, MyDNSServer

AGENT = "ddnsagent/0.1.0 (+https://github.com/ddnsagent/ddnsagent)"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5, trust_env=False, headers={"User-Agent": AGENT}) as client:
        yield client


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


# -- the common server -------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "::", "localhost"])
def test_refuses_to_bind_beyond_loopback(host: str) -> None:
    with pytest.raises(ValueError):
        EchoServer(host=host)


def test_records_requests(http: httpx.Client) -> None:
    with EchoServer() as echo:
        http.get(echo.url + "/", params={"a": "1"}, auth=("u", "p:w"))
        (request,) = echo.requests
    assert (request.method, request.path, request.query) == ("GET", "/", {"a": "1"})
    assert (request.user, request.password) == ("u", "p:w")
    assert request.header("user-agent") == AGENT
    assert request.client_host == "127.0.0.1"
    assert not request.tls


def test_tls_with_trustme(http: httpx.Client) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "::1", "localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with EchoServer(ssl_context=server_context) as echo:
        assert echo.url.startswith("https://127.0.0.1:")
        with httpx.Client(verify=client_context, trust_env=False) as client:
            assert client.get(echo.url + "/").text == "203.0.113.7\n"
        with pytest.raises(httpx.ConnectError):
            http.get(echo.url + "/")  # not trusted by default
        assert echo.requests[0].tls


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_loopback(http: httpx.Client) -> None:
    with EchoServer(echo_client=True, host="::1") as echo:
        assert echo.url.startswith("http://[::1]:")
        assert http.get(echo.url + "/").text == "::1\n"


def test_delay_status_and_body_knobs(http: httpx.Client) -> None:
    with EchoServer() as echo:
        echo.delay = 1.0
        with pytest.raises(httpx.ReadTimeout):
            http.get(echo.url + "/", timeout=0.2)
        echo.delay = 0
        echo.status = 503
        assert http.get(echo.url + "/").status_code == 503
        echo.body = "<html>oops</html>"
        answer = http.get(echo.url + "/")
        assert (answer.status_code, answer.text) == (503, "<html>oops</html>")


def test_stop_cuts_a_delay_short() -> None:
    echo = EchoServer().start()
    echo.delay = 25
    with httpx.Client(trust_env=False, timeout=30) as client:
        started = time.monotonic()
        try:
            thread = threading.Thread(target=lambda: _swallow(client, echo.url + "/"))
            thread.start()
            assert echo.wait_for_requests(1)
        finally:
            echo.stop()
        thread.join(timeout=5)
    assert time.monotonic() - started < 5


def _swallow(client: httpx.Client, url: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        client.get(url)


@pytest.mark.parametrize("declared", [True, False])
def test_huge_body_is_streamed(http: httpx.Client, declared: bool) -> None:
    with EchoServer() as echo:
        echo.huge_body = 10 * 1024 * 1024
        echo.huge_body_declared = declared
        with http.stream("GET", echo.url + "/") as answer:
            assert ("content-length" in answer.headers) == declared
            received = 0
            for chunk in answer.iter_raw():
                received += len(chunk)
                if received > 256 * 1024:
                    break  # a client with a cap stops reading; the server must cope
        assert received > 256 * 1024
        assert http.get(echo.url + "/", timeout=5).status_code == 200  # still serving


def test_garbage_and_hang_up(http: httpx.Client) -> None:
    with EchoServer() as echo:
        echo.garbage = "body"
        answer = http.get(echo.url + "/")
        with pytest.raises(UnicodeDecodeError):
            answer.content.decode("utf-8")
        echo.garbage = "protocol"
        with pytest.raises(httpx.RemoteProtocolError):
            http.get(echo.url + "/")
        echo.garbage = None
        echo.hang_up = True
        with pytest.raises(httpx.RemoteProtocolError):
            http.get(echo.url + "/")


# -- echo --------------------------------------------------------------------------------------


def test_echo_answers(http: httpx.Client) -> None:
    with EchoServer() as echo:
        assert http.get(echo.echo_url).text == "203.0.113.7\n"
        echo.answer = checkip_html("198.51.100.4")
        assert "Current IP Address: 198.51.100.4" in http.get(echo.echo_url).text
        echo.echo_client = True
        assert http.get(echo.echo_url).text == "127.0.0.1\n"
        echo.pretend_peer = "192.0.2.55"
        assert http.get(echo.echo_url).text == "192.0.2.55\n"
        assert http.get(echo.url + "/other").status_code == 404
        assert http.post(echo.echo_url).status_code == 405


# -- MyDNS -------------------------------------------------------------------------------------


def test_mydns_requires_basic_auth(http: httpx.Client) -> None:
    with MyDNSServer({"mydns123": "secret"}) as mydns:
        answer = http.get(mydns.notify_url)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == f'Basic realm="{REALM}"'
        wrong = http.get(mydns.notify_url, auth=("mydns123", "nope"))
        assert wrong.status_code == 200
        assert "login_status = 0." in wrong.text and OK_SENTENCE not in wrong.text
        mydns.bad_login_status = 401
        assert http.get(mydns.notify_url, auth=("mydns123", "nope")).status_code == 401
        assert mydns.notifications == []


def test_mydns_notifies_the_connection_address(http: httpx.Client) -> None:
    with MyDNSServer({"mydns123": "secret"}) as mydns:
        answer = http.get(mydns.notify_url, auth=("mydns123", "secret"))
        assert answer.status_code == 200
        assert OK_SENTENCE in answer.text and "login_status = 1." in answer.text
        assert "<DT>REMOTE ADDRESS:</DT><DD>127.0.0.1</DD>" in answer.text
        assert mydns.address_of("mydns123") == "127.0.0.1"
        mydns.pretend_peer = "2001:db8::7"
        http.get(mydns.notify_url, auth=("mydns123", "secret"))
        assert mydns.address_of("mydns123", 6) == "2001:db8::7"
        assert mydns.address_of("mydns123", 4) == "127.0.0.1"
        assert mydns.notify_count("mydns123") == 2
        assert mydns.violations == []


def test_mydns_failure_knob_path_and_method(http: httpx.Client) -> None:
    with MyDNSServer({"mydns123": "secret"}) as mydns:
        mydns.notify_fails = True
        failed = http.get(mydns.notify_url, auth=("mydns123", "secret"))
        assert failed.status_code == 200 and "login_status = 0." in failed.text
        assert http.get(mydns.url + "/", auth=("mydns123", "secret")).status_code == 404
        assert http.post(mydns.notify_url, auth=("mydns123", "secret")).status_code == 405
        assert mydns.notifications == []
        assert len(mydns.violations) == 2


# -- dyndns2 -----------------------------------------------------------------------------------


@pytest.fixture
def dyn() -> Iterator[Dyndns2Server]:
    hosts = {"same.example.org": "192.0.2.1", "moved.example.org": "192.0.2.1"}
    with Dyndns2Server({"alice": "pw", "bob": "pw2"}, hosts) as server:
        server.add_host("bobs.example.org", owner="bob")
        server.add_host("blocked.example.org")
        server.add_host("odd.example.org")
        yield server


def _update(http: httpx.Client, dyn: Dyndns2Server, **params: str) -> httpx.Response:
    return http.get(dyn.update_url, params=params, auth=("alice", "pw"))


def test_dyndns2_answers_one_line_per_host_in_order(http: httpx.Client, dyn: Dyndns2Server) -> None:
    dyn.block("blocked.example.org")
    dyn.set_answer("odd.example.org", "!active")
    names = [
        "same.example.org",
        "moved.example.org",
        "unknown.example.org",
        "not_a_name",
        "bobs.example.org",
        "blocked.example.org",
        "odd.example.org",
    ]
    answer = _update(http, dyn, hostname=",".join(names), myip="192.0.2.1")
    assert answer.text.split("\r\n") == [
        "nochg 192.0.2.1",
        "nochg 192.0.2.1",
        "nohost",
        "notfqdn",
        "!yours",
        "abuse",
        "!active",
        "",
    ]
    answer = _update(http, dyn, hostname="moved.example.org", myip="198.51.100.2")
    assert (answer.status_code, answer.text) == (200, "good 198.51.100.2\r\n")
    assert dyn.record("moved.example.org").ipv4 == "198.51.100.2"
    assert dyn.record("moved.example.org").changes == 1
    assert dyn.attempts("moved.example.org") == 2
    assert dyn.violations == []


def test_dyndns2_auth(http: httpx.Client, dyn: Dyndns2Server) -> None:
    missing = http.get(dyn.update_url, params={"hostname": "same.example.org"})
    assert (missing.status_code, missing.text) == (401, "badauth\r\n")
    assert missing.headers["WWW-Authenticate"].startswith("Basic realm=")
    wrong = http.get(dyn.update_url, params={"hostname": "x.example.org"}, auth=("alice", "no"))
    assert (wrong.status_code, wrong.text) == (401, "badauth\r\n")
    dyn.badauth_status = 200
    wrong = http.get(dyn.update_url, params={"hostname": "x.example.org"}, auth=("alice", "no"))
    assert (wrong.status_code, wrong.text) == (200, "badauth\r\n")
    assert dyn.attempts("same.example.org") == 0


@pytest.mark.parametrize(
    "agent", ["", "python-httpx/0.28.1", "curl/8.0", "Mozilla/5.0 (X11)", "ddnsagent"]
)
def test_dyndns2_refuses_unidentified_agents(
    http: httpx.Client, dyn: Dyndns2Server, agent: str
) -> None:
    answer = http.get(
        dyn.update_url,
        params={"hostname": "moved.example.org", "myip": "198.51.100.2"},
        auth=("alice", "pw"),
        headers={"User-Agent": agent},
    )
    assert answer.text == "badagent\r\n"
    assert dyn.record("moved.example.org").changes == 0


def test_agent_forms() -> None:
    assert agent_problem(AGENT) is None
    assert agent_problem("Mellenium Inc. - Router 25001 - 1.1") is None
    assert agent_problem("Acme ddnsagent/linux-0.1.0 ops@example.org", contact=True) is None
    assert agent_problem("ddnsagent/0.1.0", contact=True) is not None
    assert is_fqdn("a.example.org") and not is_fqdn("example") and not is_fqdn("-a.example.org")


def test_dyndns2_request_wide_codes(http: httpx.Client, dyn: Dyndns2Server) -> None:
    assert _update(http, dyn).text == "notfqdn\r\n"
    many = ",".join(f"h{i}.example.org" for i in range(21))
    assert _update(http, dyn, hostname=many).text == "numhost\r\n"
    assert _update(http, dyn, hostname="same.example.org", offline="YES").text == "!donator\r\n"
    assert _update(http, dyn, hostname="same.example.org", system="x").text == "badsys\r\n"
    posted = http.post(
        dyn.update_url, params={"hostname": "same.example.org"}, auth=("alice", "pw")
    )
    assert posted.text == "badagent\r\n"
    dyn.answer_once = "911"
    assert _update(http, dyn, hostname="same.example.org,moved.example.org").text == "911\r\n"
    dyn.answer_once = None
    dyn.answer_each = "dnserr"
    assert _update(http, dyn, hostname="same.example.org,moved.example.org").text == (
        "dnserr\r\ndnserr\r\n"
    )
    assert dyn.record("same.example.org").changes == 0


def test_dyndns2_addresses(http: httpx.Client, dyn: Dyndns2Server) -> None:
    answer = _update(http, dyn, hostname="moved.example.org")  # no myip: the peer's address
    assert answer.text == "good 127.0.0.1\r\n"
    answer = _update(http, dyn, hostname="moved.example.org", myip="192.0.2.9,2001:DB8::9")
    assert answer.text == "good 192.0.2.9,2001:db8::9\r\n"
    answer = _update(http, dyn, hostname="moved.example.org", myipv6="2001:db8::9")
    assert answer.text == "nochg 2001:db8::9\r\n"
    answer = _update(http, dyn, hostname="moved.example.org", myip="192.0.2.300")
    assert answer.text == "good 127.0.0.1\r\n"  # a malformed myip is ignored, as Dyn does
    assert len(dyn.violations) == 1


def test_dyndns2_repeated_nochg_blocks_the_host(http: httpx.Client, dyn: Dyndns2Server) -> None:
    dyn.nochg_limit = 2
    lines = [_update(http, dyn, hostname="same.example.org", myip="192.0.2.1").text for _ in "abc"]
    assert lines == ["nochg 192.0.2.1\r\n", "nochg 192.0.2.1\r\n", "abuse\r\n"]


def test_dyndns2_misbehaviour_does_not_reach_the_service(
    http: httpx.Client, dyn: Dyndns2Server
) -> None:
    dyn.status = 500
    answer = _update(http, dyn, hostname="moved.example.org", myip="198.51.100.2")
    assert answer.status_code == 500
    assert dyn.record("moved.example.org").changes == 0
    assert len(dyn.requests) == 1


def test_a_broken_handler_answers_500_and_is_reported(http: httpx.Client) -> None:
    with FakeServer() as bare:
        assert http.get(bare.url + "/").status_code == 500
        assert bare.errors and "NotImplementedError" in bare.errors[0]
