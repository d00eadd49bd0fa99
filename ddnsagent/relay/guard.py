"""The bounce guard: past `[relay] bounce_limit` bounces an hour, further bounces bound for the
relay go on hold in Postfix's hold queue, so the relay's per-address budget is left for real mail.

Split in two, like the reconnect:
- the daemon (user ddnsagent) counts the bounces Postfix logs (relay/decide.py) and, past the
  limit, asks root to hold (`[relay] bounce_hold`, by default `systemctl start
  ddnsagent-bounce-hold.service`). It passes nothing: no queue id, no address.
- root (`ddnsagent bounces hold`, the oneshot's command) reads Postfix's queue itself
  (`postqueue -j`) and holds only what it checked there: null-sender mail (a bounce), in the
  incoming, active or deferred queue, every recipient of it outside the server's own domains
  (so it leaves through the relay), at most `MAX_HOLD` per run — `postsuper -h -`, the ids on
  standard input. Nothing is ever deleted; `bounces release` (`postsuper -r - hold`) only names
  held null-sender mail.

The pure part (what a queue line is, what to hold, the episode and its notice) is tested on plain
data; the I/O goes through ddnsagent.process.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ddnsagent import process

MAX_HOLD = 1000
"""Queue files held (or released) by one run: a bound whatever the queue holds."""
MAX_QUEUE_LINES = 100_000
"""Queue files looked at in one reading."""
MAX_RECIPIENTS = 100
"""Recipients of one queue file looked at; a bounce has one."""
TOP_DOMAINS = 3
QUEUE_TIMEOUT = 30.0
HOUR = 3600.0
POSTSUPER_TIMEOUT = 60.0
#: showq prints the null sender as `empty_address_recipient` (default MAILER-DAEMON), and
#: cleanup turns a submitted sender MAILER-DAEMON (or mailer-daemon@$myorigin) into the null
#: sender, so this name in `postqueue -j` is a bounce, whoever submitted it (Postfix source:
#: src/showq/showq.c showq_report, src/cleanup/cleanup_addr.c cleanup_addr_sender).
NULL_SENDER_NAMES = frozenset({"", "mailer-daemon"})
WAITING_QUEUES = frozenset({"incoming", "active", "deferred"})
HOLD_QUEUE = "hold"

LIKELY_CAUSE = (
    "bounces to forged senders (backscatter): mail to addresses that do not exist here is "
    "accepted and then bounced. Likely causes: a wildcard MX or wildcard A record that sends "
    "any subdomain's mail here, or smtpd_recipient_restrictions without "
    "reject_unknown_recipient_domain / reject_unlisted_recipient. Run `ddnsagent doctor` "
    "(checks: wildcard, mx, postfix)"
)


@dataclass(frozen=True)
class QueuedBounce:
    """One null-sender queue file bound for the relay, as `postqueue -j` shows it."""

    queue_id: str
    queue_name: str
    arrival: float
    recipients: tuple[str, ...]

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(sorted({domain_of(r) for r in self.recipients if domain_of(r)}))

    def to_json(self) -> dict[str, object]:
        return {
            "queue_id": self.queue_id,
            "queue_name": self.queue_name,
            "arrival_time": self.arrival,
            "recipients": list(self.recipients),
        }


@dataclass(frozen=True)
class PostfixView:
    """What root asks Postfix before holding: the server's own domains (mail to them does not
    go to the relay) and the name showq gives the null sender."""

    local_domains: frozenset[str] = frozenset()
    null_sender: str = "MAILER-DAEMON"


def domain_of(address: str) -> str:
    _, at, domain = address.rpartition("@")
    return domain.strip().rstrip(".").lower() if at else ""


def config_dir(queue_argv: Sequence[str]) -> tuple[str, ...]:
    """`-c DIR` from the queue listing command (a second Postfix instance), for postsuper and
    postconf; empty for the default instance."""
    args = list(queue_argv)
    for i, arg in enumerate(args[:-1]):
        if arg == "-c":
            return ("-c", args[i + 1])
    return ()


def parse_bounce(line: str, view: PostfixView) -> QueuedBounce | None:
    """One `postqueue -j` line: a bounce bound for the relay, or None (anything else, or
    anything malformed; never raises). Bound for the relay: every recipient has a domain, and
    none is one of the server's own (those are delivered here, not through the relay)."""
    if not isinstance(line, str) or len(line) > 1 << 20:
        return None
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    queue_id, queue_name = record.get("queue_id"), record.get("queue_name")
    sender, recipients = record.get("sender"), record.get("recipients")
    if not (
        isinstance(queue_id, str)
        and queue_id.isascii()
        and queue_id.isalnum()
        and len(queue_id) <= 64
        and isinstance(queue_name, str)
        and isinstance(sender, str)
        and isinstance(recipients, list)
        and recipients
    ):
        return None
    names = NULL_SENDER_NAMES | {view.null_sender.lower()}
    if sender.lower() not in names:
        return None
    addresses = []
    for recipient in recipients[:MAX_RECIPIENTS]:
        address = recipient.get("address") if isinstance(recipient, dict) else None
        if not isinstance(address, str):
            return None
        domain = domain_of(address)
        if not domain or domain in view.local_domains:
            return None
        addresses.append("".join(c if c.isprintable() else "?" for c in address[:320]))
    arrival = record.get("arrival_time")
    when = float(arrival) if isinstance(arrival, int | float) and arrival >= 0 else 0.0
    return QueuedBounce(queue_id, queue_name[:32], when, tuple(addresses))


def to_hold(bounces: Iterable[QueuedBounce], limit: int = MAX_HOLD) -> list[QueuedBounce]:
    """The bounces still waiting to leave (not held yet), oldest first, at most `limit`."""
    waiting = sorted(
        (b for b in bounces if b.queue_name in WAITING_QUEUES), key=lambda b: b.arrival
    )
    unique = {b.queue_id: b for b in waiting}
    return list(unique.values())[:limit]


def held(bounces: Iterable[QueuedBounce]) -> list[QueuedBounce]:
    return sorted((b for b in bounces if b.queue_name == HOLD_QUEUE), key=lambda b: b.arrival)


def top_domains(bounces: Iterable[QueuedBounce], count: int = TOP_DOMAINS) -> list[str]:
    """The recipient domains most bounces go to, most first (ties by name)."""
    counted = Counter(d for b in bounces for d in b.domains)
    return [d for d, _ in sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))[:count]]


def notice(rate: int, limit: int, on_hold: Sequence[QueuedBounce]) -> str:
    """The one message of an episode: how many, where to, why, what to run."""
    domains = top_domains(on_hold)
    where = f"; top recipient domains: {', '.join(domains)}" if domains else ""
    return (
        f"bounce guard: {rate} bounces in the last hour (limit {limit}); further bounces to "
        f"the relay are put on hold, {len(on_hold)} held now{where}. Cause: {LIKELY_CAUSE}. "
        "Held mail is kept, never deleted: `ddnsagent bounces list`, then "
        "`ddnsagent bounces release --all --pace 30s` once the cause is fixed"
    )


@dataclass
class Episode:
    """Past the limit or not, from the bounce rate: pure. `observe` says what to do now:
    "start" (the limit was just passed: hold and notify once), "hold" (still past it and a new
    bounce arrived: hold again), "end" (an hour without passing it) or None. An episode lasts
    until a whole hour passed under the limit, so a count hovering at the limit (or a restart,
    which counts from zero again) does not repeat the notice."""

    limit: int
    active: bool = False
    since: float | None = None
    last_excess: float = 0.0

    def observe(self, rate: int, now: float, new_bounce: bool) -> str | None:
        if self.limit <= 0:
            return None
        if rate > self.limit:
            self.last_excess = now
            if not self.active:
                self.active, self.since = True, now
                return "start"
            return "hold" if new_bounce else None
        if self.active and now - self.last_excess >= HOUR:
            self.active, self.since = False, None
            return "end"
        return None

    def resume(self, since: float, last: float) -> None:
        """After a restart inside an episode (the state's record): its notice was given."""
        self.active, self.since, self.last_excess = True, since, last


# -- the I/O (root runs hold/release; anyone who may list the queue runs the reading) --------


@dataclass
class BounceReading:
    bounces: list[QueuedBounce] = field(default_factory=list)
    problem: str | None = None


async def postfix_view(queue_argv: Sequence[str]) -> PostfixView | str:
    """Ask `postconf -x -h` for the server's own domains and the null sender's name; literal
    domain names only (a table or file in the list is not read: mail to such a domain is
    treated as bound for the relay). Why not, as text, when postconf fails."""
    names = ("myhostname", "mydestination", "virtual_alias_domains", "virtual_mailbox_domains")
    argv = ("postconf", *config_dir(queue_argv), "-x", "-h", *names, "empty_address_recipient")
    result = await process.run_async(argv, QUEUE_TIMEOUT, separate_stderr=True)
    if not result.ok:  # without the server's domains, a local bounce could look relay-bound
        return f"Postfix's domains are unknown: {result.describe()}"
    lines = result.output.splitlines()
    domains: set[str] = set()
    for value in lines[: len(names)]:
        for item in value.replace(",", " ").split():
            if ":" not in item and "/" not in item and "$" not in item:
                domains.add(item.rstrip(".").lower())
    null_sender = lines[len(names)].strip() if len(lines) > len(names) else "MAILER-DAEMON"
    return PostfixView(frozenset(domains), null_sender or "MAILER-DAEMON")


async def read_bounces(
    queue_argv: Sequence[str], view: PostfixView | None = None, timeout: float = QUEUE_TIMEOUT
) -> BounceReading:
    """The relay-bound bounces in Postfix's queue (every queue, hold included); `view` is
    asked of postconf when not given."""
    reading = BounceReading()
    if view is None:
        asked = await postfix_view(queue_argv)
        if isinstance(asked, str):
            reading.problem = asked
            return reading
        view = asked
    seen = 0

    def on_line(line: str) -> None:
        nonlocal seen
        seen += 1
        if seen > MAX_QUEUE_LINES:
            return
        bounce = parse_bounce(line, view)
        if bounce is not None:
            reading.bounces.append(bounce)

    result = await process.run_async(queue_argv, timeout, separate_stderr=True, on_line=on_line)
    if not result.ok:
        reading.problem = result.describe()
    return reading


async def postsuper(
    queue_argv: Sequence[str], flag: str, ids: Sequence[str], queue: str | None = None
) -> process.Outcome:
    """`postsuper [-c DIR] -h - [QUEUE]` (or -r): the ids on standard input, one a line; with
    `queue`, only in that queue (a requeue touches held mail only)."""
    argv = ("postsuper", *config_dir(queue_argv), flag, "-", *([queue] if queue else []))
    return await process.run_async(
        argv, POSTSUPER_TIMEOUT, stdin="".join(f"{i}\n" for i in ids), separate_stderr=True
    )


@dataclass
class Done:
    """What `hold_now` or `release` did: the queue ids acted on, those refused and why, and a
    problem that stopped it (the queue unreadable, postsuper failing)."""

    acted: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    problem: str | None = None


async def hold_now(queue_argv: Sequence[str]) -> Done:
    """Root's side: read the queue, hold the relay-bound bounces still waiting (at most
    MAX_HOLD). Nothing from the caller but the configuration's queue command."""
    reading = await read_bounces(queue_argv)
    if reading.problem is not None:
        return Done(problem=f"the queue cannot be read: {reading.problem}")
    ids = [b.queue_id for b in to_hold(reading.bounces)]
    if not ids:
        return Done()
    result = await postsuper(queue_argv, "-h", ids)
    if not result.ok:
        return Done(problem=result.describe())
    return Done(acted=ids)


def choose_release(
    bounces: Sequence[QueuedBounce], named: Sequence[str], every: bool
) -> tuple[list[str], dict[str, str]]:
    """Which held bounces to release: all of them (`every`), or those named — a named id that
    is not a relay-bound bounce on hold is refused, with the reason (pure)."""
    on_hold = {b.queue_id: b for b in held(bounces)}
    if every:
        return list(on_hold)[:MAX_HOLD], {}
    chosen: list[str] = []
    refused: dict[str, str] = {}
    waiting = {b.queue_id for b in bounces if b.queue_name != HOLD_QUEUE}
    for queue_id in named:
        if queue_id in on_hold:
            if queue_id not in chosen:
                chosen.append(queue_id)
        elif queue_id in waiting:
            refused[queue_id] = "is a bounce, but not on hold"
        else:
            refused[queue_id] = (
                "is not a bounce on hold (not in the queue, not null-sender, or not bound for "
                f"the relay); if you mean it, `postsuper -H {queue_id}` releases any held mail"
            )
    return chosen[:MAX_HOLD], refused


async def release(
    queue_argv: Sequence[str],
    named: Sequence[str],
    every: bool,
    pace: float,
    progress: Callable[[str], None] | None = None,
) -> Done:
    """Release held bounces, one every `pace` seconds (0: all at once), by requeueing them
    (`postsuper -r`): each gets a new queue file and id through pickup and cleanup, and leaves
    like new mail. Not `postsuper -H`: a bounce held from the active queue is still in the
    queue manager's memory for a while, and on real Postfix 3.7 a message released with -H and
    activated again during that time was removed by qmgr, undelivered
    (tests/e2e/test_bounce_guard_e2e.py shows the requeue keeps every one)."""
    reading = await read_bounces(queue_argv)
    if reading.problem is not None:
        return Done(problem=f"the queue cannot be read: {reading.problem}")
    chosen, refused = choose_release(reading.bounces, named, every)
    done = Done(refused=refused)
    batches = [chosen] if pace <= 0 else [[i] for i in chosen]
    for n, batch in enumerate(batches):
        if not batch:
            continue
        if n and pace > 0:
            await asyncio.sleep(pace)
        result = await postsuper(queue_argv, "-r", batch, queue=HOLD_QUEUE)
        if not result.ok:
            done.problem = result.describe()
            return done
        done.acted += batch
        if progress is not None:
            progress(" ".join(batch))
    return done
