"""The relay world works: a real Postfix at home, relaying through the ISP's MyDNS relay, meets
the two failures of the incident and recovers from each by a new address and a notification.

1. Rate limit: the relay answers `450 Error: too much mail from <ip>` at MAIL FROM after
   `RELAY_LIMIT` messages; the rest stay deferred until home has a new, notified address.
2. Silence: the ISP drops the address; Postfix's connect times out; a new, notified address
   gets the mail through.

Each test prints the Postfix log it produced: real samples of the lines the watchdog parses.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from tests.e2e.conftest import MASTER_ID, PASSWORD, RELAY_LIMIT
from tests.e2e.netlab import HOME_ADDRESS, ISP_ADDRESS, Lab
from tests.e2e.postfix_home import HomePostfix
from tests.e2e.relay_isp import RelayISP, notify_from

pytestmark = pytest.mark.root

NEW_ADDRESS = "198.51.100.8"
RELAY = f"{ISP_ADDRESS}[{ISP_ADDRESS}]"
TOO_MUCH = (
    rf"status=deferred \(host {re.escape(RELAY)} said: 450 Error: too much mail from "
    rf"{re.escape(HOME_ADDRESS)} \(in reply to MAIL FROM command\)\)"
)
TIMED_OUT = rf"connect to {re.escape(RELAY)}:587: Connection timed out"
QUEUE_ID = r"postfix/\w+\[\d+\]: ([0-9A-F]+): "


def message_ids(postfix: HomePostfix) -> dict[str, str]:
    """Queue id → Message-ID, from cleanup's log lines."""
    found = {}
    for line in postfix.maillog_lines():
        match = re.search(QUEUE_ID + r"message-id=(<[^>]*>)", line)
        if match:
            found[match[1]] = match[2]
    return found


def queue_id(line: str) -> str:
    match = re.search(QUEUE_ID, line)
    assert match, line
    return match[1]


def show_log(postfix: HomePostfix) -> None:
    print(f"--- {postfix.maillog} ---")
    print("".join(postfix.maillog_lines()), end="")


def deferred_ids(postfix: HomePostfix) -> set[str]:
    return {m["queue_id"] for m in postfix.queue() if m["queue_name"] == "deferred"}


def test_rate_limit_then_new_address_delivers_each_message_once(
    lab: Lab, relay: RelayISP, home_postfix: HomePostfix
) -> None:
    notify_from(lab.home, relay.notify_url, MASTER_ID, PASSWORD)
    assert relay.state()["notified"].keys() == {HOME_ADDRESS}

    sent = home_postfix.submit_many(RELAY_LIMIT + 3)
    relay.wait_deliveries(RELAY_LIMIT, timeout=30)
    refused = home_postfix.wait_log(TOO_MUCH, count=3, timeout=30)
    queued = home_postfix.wait_queue(
        lambda q: len(q) == 3 and {m["queue_name"] for m in q} == {"deferred"},
        "3 messages deferred",
        timeout=10,
    )
    assert all("too much mail from" in m["recipients"][0]["delay_reason"] for m in queued)
    assert {d.client for d in relay.deliveries()} == {HOME_ADDRESS}
    refused_ids = {queue_id(line) for line in refused}
    assert refused_ids == deferred_ids(home_postfix)
    held_back = {message_ids(home_postfix)[qid] for qid in refused_ids}

    lab.move_home(NEW_ADDRESS)
    notify_from(lab.home, relay.notify_url, MASTER_ID, PASSWORD)
    home_postfix.flush()
    delivered = relay.wait_deliveries(RELAY_LIMIT + 3, timeout=30)
    home_postfix.wait_queue(lambda q: not q, "empty queue", timeout=15)
    show_log(home_postfix)

    counts = Counter(d.message_id for d in delivered)
    assert counts == Counter(sent), "every message delivered exactly once"
    assert {d.message_id for d in delivered if d.client == NEW_ADDRESS} == held_back
    assert Counter(d.client for d in delivered) == {HOME_ADDRESS: RELAY_LIMIT, NEW_ADDRESS: 3}
    assert relay.notified() == [HOME_ADDRESS, NEW_ADDRESS]
    assert relay.state()["mydns_violations"] == []


def test_dropped_address_times_out_then_new_address_delivers(
    lab: Lab, relay: RelayISP, home_postfix: HomePostfix
) -> None:
    relay.set_limit(10)  # only the silence is under test here
    notify_from(lab.home, relay.notify_url, MASTER_ID, PASSWORD)
    lab.drop_from(HOME_ADDRESS)

    # As many as Postfix's initial concurrency: one failed pseudo-cohort marks the relay dead.
    sent = home_postfix.submit_many(5)
    home_postfix.wait_log(rf"status=deferred \({TIMED_OUT}\)", count=5, timeout=30)
    # qmgr now defers new mail for the dead relay without trying to connect.
    sent.append(home_postfix.submit(subject="after the timeouts"))
    home_postfix.wait_log(rf"status=deferred \(delivery temporarily suspended: {TIMED_OUT}\)")
    home_postfix.wait_queue(
        lambda q: len(q) == 6 and {m["queue_name"] for m in q} == {"deferred"},
        "6 messages deferred",
        timeout=10,
    )
    assert relay.deliveries() == []

    lab.move_home(NEW_ADDRESS)
    notify_from(lab.home, relay.notify_url, MASTER_ID, PASSWORD)
    home_postfix.flush()
    delivered = relay.wait_deliveries(6, timeout=30)
    home_postfix.wait_queue(lambda q: not q, "empty queue", timeout=15)
    show_log(home_postfix)

    assert Counter(d.message_id for d in delivered) == Counter(sent)
    assert {d.client for d in delivered} == {NEW_ADDRESS}
    deferred = [line for line in home_postfix.maillog_lines() if "status=deferred" in line]
    assert deferred and all("Connection timed out" in line for line in deferred)
