"""Finding the WAN address of one family from the configured sources.

Sources are tried in the order written. A local source (`interface:`, `command:`) is the
machine's own knowledge and decides alone. Remote echoes (`web`, `dns:`) can lie or be stale,
so `quorum` of them must agree: they are asked in parallel, a failed one is replaced by the next
listed, and disagreement means no update at all — publishing a wrong address is worse than
publishing none.
"""

from __future__ import annotations

import asyncio
import logging

from ddnsagent.address import IPAddress, refusal
from ddnsagent.detect import nat, web
from ddnsagent.detect.settings import DetectConfig, Source
from ddnsagent.errors import DetectError
from ddnsagent.outcome import Detection

log = logging.getLogger(__name__)


def expand(sources: tuple[Source, ...], family: int) -> list[Source]:
    """`web` stands for the built-in list of echo services."""
    out: list[Source] = []
    for s in sources:
        if s.kind == "web" and not s.arg:
            out.extend(Source("web", url, f"web:{url}") for url in web.BUILTIN[family])
        else:
            out.append(s)
    return out


async def ask(source: Source, family: int, cfg: DetectConfig) -> IPAddress:
    """One source's answer, checked against the accept policy."""
    if source.kind == "interface":
        # lazy: netlink (600 lines) only for interface: sources
        from ddnsagent.detect import interface

        return interface.lookup(source.arg, family, cfg.accept)
    if source.kind == "command":
        from ddnsagent.detect import command  # lazy: only the source kinds configured

        address = await command.lookup(source.arg, family, cfg.timeout)
    elif source.kind == "web":
        address = await web.lookup(source.arg, family, cfg.timeout)
    else:
        from ddnsagent.detect import dns  # lazy: only the source kinds configured

        address = await dns.lookup(source.arg, family, cfg.timeout)
    why = refusal(address, cfg.accept)
    if why:
        raise DetectError(f"answered {address}, which is {why}; refused (see [detect] accept)")
    return address


async def detect(cfg: DetectConfig, family: int) -> Detection:
    result = Detection(family)
    sources = expand(cfg.sources(family), family)
    remote = [s for s in sources if s.remote]
    need = min(cfg.quorum, len(remote))
    remote_done = False
    for source in sources:
        if source.remote:
            if remote_done:
                continue
            remote_done = True
            if await _quorum(remote, need, family, cfg, result):
                return result
            if result.conflict:
                return result
            continue
        try:
            result.address = await ask(source, family, cfg)
            result.source = source.text
            return result
        except DetectError as exc:
            result.notes.append(f"{source.text}: {exc}")
    return result


async def _quorum(
    remote: list[Source], need: int, family: int, cfg: DetectConfig, result: Detection
) -> bool:
    """Ask remote sources `need` at a time until `need` answers are in; True when they agree."""
    answers: list[tuple[Source, IPAddress]] = []
    queue = list(remote)
    while queue and len(answers) < need:
        batch, queue = queue[: need - len(answers)], queue[need - len(answers) :]
        outcomes = await asyncio.gather(
            *(ask(s, family, cfg) for s in batch), return_exceptions=True
        )
        for source, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, DetectError):
                result.notes.append(f"{source.text}: {outcome}")
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                answers.append((source, outcome))
    if len(answers) < need:
        if answers:
            result.notes.append(
                f"only {len(answers)} of the {need} agreeing answers that quorum asks for"
            )
        return False
    distinct = {address for _, address in answers}
    if len(distinct) > 1:
        result.conflict = True
        shown = ", ".join(f"{s.text} said {a}" for s, a in answers)
        result.notes.append(f"sources disagree, nothing will be sent: {shown}")
        return False
    result.address = answers[0][1]
    result.source = " + ".join(s.text for s, _ in answers)
    return True


async def crosscheck(
    cfg: DetectConfig,
    family: int,
    echo: IPAddress | None = None,
    echoes: tuple[Source, ...] | None = None,
) -> tuple[nat.Verdict | None, list[str]]:
    """The configured interface source's addresses against what the echoes see (see nat.py).

    `echo` is the echoes' answer when this sync already has it (no request is made); else the
    `echoes` (default: the family's remote sources) are asked, `quorum` of them agreeing as in
    a detection. Returns the verdict (None when no comparison could be made) and notes saying
    why not."""
    names = [s.arg for s in cfg.sources(family) if s.kind == "interface"]
    if not names:
        return None, [f"no interface: source for IPv{family}"]
    # lazy: netlink (600 lines) only for interface: sources
    from ddnsagent.detect import netlink

    try:
        everything = netlink.list_addresses(None, family)
    except OSError as exc:
        return None, [f"cannot read this machine's addresses: {exc}"]
    chosen = None
    for name in names:
        own = [a.address for a in everything if a.ifname == name]
        if nat.usable(own):
            chosen = name, own
            break
    if chosen is None:
        shown = ", ".join(names)
        return None, [f"{shown}: no IPv{family} address to compare with the echo"]
    if echo is None:
        remote = expand(echoes if echoes is not None else cfg.sources(family), family)
        remote = [s for s in remote if s.remote]
        if not remote:
            return None, [f"no echo source (web, dns:) for IPv{family} to compare with"]
        found = Detection(family)
        if not await _quorum(remote, min(cfg.quorum, len(remote)), family, cfg, found):
            return None, found.notes or ["the echoes did not answer"]
        echo = found.address
        assert echo is not None
    name, own = chosen
    return nat.judge(name, own, [a.address for a in everything], echo), []
