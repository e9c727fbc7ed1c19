"""Host-aware scheduling of a collection: per-host cap, longest work first, circuit breaker.

A real PubFig list spreads its URLs over thousands of hosts, most with a handful of URLs and
many long dead.  :class:`HostScheduler` decides which URL goes out next:

* **per-host cap** (``per_host``, polite default 2): at most that many URLs of one host are
  downloading at once, so one slow host never holds all the workers, and no host is
  hammered (a URL whose body is in gives its slot back before its decode: :meth:`release`);
  its connections, kept-alive idle ones included, live in one worker process's pool of at
  most that many (:mod:`facelab.collect.workers`);
* **longest work first**: among hosts with a free slot, the one with the most work left goes
  first: its URLs over its cap times the run's seconds per URL, so the busiest host stays at
  its cap from start to end (what bounds the wall time) and the others fill the remaining
  workers; a host not yet checked counts its check as a dead host's whole timeout, so those
  waits start early instead of idling the other connections at the end of the run, and a
  host whose rounds take as long as all the work left over the workers goes before any;
* **connect check** (``probe``, default on): every connection counts against the one
  budget of ``workers`` (:mod:`facelab.collect.connections`), so a host is checked by its
  first URL, sent alone: until the host has answered, at most one of its URLs is out.  If
  that URL finds the host dead (refused, connect timeout: ``retries + 1`` attempts; or
  connected and no answer within the read timeout), the host ends at once: that URL and
  all its others become ``host_unreachable`` rows.  Host names are looked up ahead, many at
  once and without a connection (:mod:`facelab.collect.probe`): a name that does not
  resolve ends its host before any URL goes out.  This is what saves the hosts with one or
  two URLs, which no breaker can; it is skipped where requests would go through a proxy;
* **circuit breaker** (``breaker``, default 3): after that many consecutive failures of one
  host before any answer (DNS, refused, connect timeout, reset; read timeouts too while the
  host has never answered), its remaining URLs end at once as ``host_unreachable`` rows
  whose reason names the failures seen, instead of waiting out each timeout.  A host that
  has answered before and then stalls on some URLs is slow per URL, not dead: its read
  timeouts do not count;
* **Retry-After**: a 429 or 503 pauses its host for the time asked and sends the URL again
  (up to :data:`RETRY_AFTER_WAITS` times; without the header: an exponential backoff, up to
  ``retries`` times); a wait longer than ``max_retry_after`` is not made and the URL ends as
  an ``http_error`` row that says so.  The waits are counted (``extra["retry_waits"]``).

:func:`host_table` turns the journal into the per-host view (hosts contacted, dead hosts,
time lost to timeouts, slowest hosts).  Standard library only at import time.
"""

from __future__ import annotations

import functools
import heapq
import queue
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from facelab.collect.fetch import (
    CONNECTION_ERROR,
    HTTP_ERROR,
    RETRY_LATER_STATUSES,
    TIMEOUT,
    CollectSettings,
    Outcome,
)
from facelab.collect.probe import HostResolver, needs_lookup
from facelab.manifest import OK

HOST_UNREACHABLE = "host_unreachable"


# failure kinds (``extra["host_failure"]`` of an outcome) that always count for the breaker
CONNECT_FAILURES = ("dns", "refused", "connect_timeout", "connection")


# failure kinds of a host's first URL that end the host at once (its connect check)
DEAD_ON_FIRST = {"dns": "host name not resolved", "refused": "connection refused",
                 "connect_timeout": "connect timed out",
                 "read_timeout": "accepted the connection but sent no answer"}


FILE_HOST = ""   # the pseudo-host of local files (no cap, no breaker)


# a URL waits at most this many times for a Retry-After the server gave (whatever --retries:
# the server asked for it); without the header, 429/503 are retried --retries times
RETRY_AFTER_WAITS = 3


def host_of(target: Any) -> str:
    """The host a job goes to: lower-case ``host[:port]`` of a URL, ``""`` for a file.

    A URL that cannot be split (a broken IPv6 literal, say) is its own "host", so it is
    fetched (and fails as a row) without touching any other host's state.
    """
    if isinstance(target, Path):
        return FILE_HOST
    return _url_host(str(target))


@functools.lru_cache(maxsize=1 << 16)
def _url_host(url: str) -> str:
    """:func:`host_of` a URL (cached: the scheduler and the per-host view both ask)."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return f"(unparsable) {url[:60]}"
    if ":" in host:                    # IPv6 literal
        host = f"[{host}]"
    return f"{host}:{port}" if port else host


@dataclass
class _Host:
    """The scheduler's state of one host."""

    name: str
    order: int
    queue: deque = field(default_factory=deque)
    in_flight: int = 0
    not_before: float = 0.0
    answered: bool = False
    failures: list[str] = field(default_factory=list)   # consecutive, newest last
    dead: str = ""
    up: bool = True                  # False while its name is being looked up
    checked: bool = True             # False until its first URL shows it is alive
    boosted: int = -1                # queued when last pushed as critical (see _promote)
    target: tuple[str, int] | None = None   # (host name, port) to look up


class HostScheduler:
    """Hands out jobs host-aware and turns outcomes into journal lines (see the module doc).

    Use: ``take()`` a job whenever a worker slot is free (``None``: nothing may go out now;
    :meth:`wait_hint` says how long until a paused host may go again), and give every
    outcome to :meth:`finish`, which returns the outcomes to journal (none when the URL
    was put back to wait for a ``Retry-After``; several when a host's breaker trips).
    """

    def __init__(self, jobs: Iterable[tuple[str, Any]], settings: CollectSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.hosts: dict[str, _Host] = {}
        self.host_of_key: dict[str, _Host] = {}
        self.waits: dict[str, int] = {}
        self.retry_waits = 0
        self.tripped = 0
        self.probing = 0
        self.prober: HostResolver | None = None
        self._released: set[str] = set()     # keys whose host slot came back early
        for job in jobs:
            name = host_of(job[1])
            host = self.hosts.get(name)
            if host is None:
                host = self.hosts[name] = _Host(name, len(self.hosts),
                                                target=_probe_target(job[1]))
            host.queue.append(job)
            self.host_of_key[job[0]] = host
        self.queued = sum(len(h.queue) for h in self.hosts.values())
        self.per_url = 0.5        # seconds per URL (moving average of the photos fetched)
        self.checks = [1, 10]     # [dead, all] first URLs of hosts (a prior of 1 in 10)
        self._unchecked = 0
        # seconds a dead host's check may take (connect or read timeouts, retried): fixed
        # by the (frozen) settings, so worked out once, not on every push
        self._worst = min(settings.total_deadline, (settings.retries + 1)
                          * max(settings.connect_timeout, settings.timeout))
        self._long: dict[str, _Host] = {}     # hosts whose URLs outlast a dead host's check
        # (-seconds of work, order, name, queued, checked): stale when those two changed
        self._ready: list[tuple[float, int, str, int, bool]] = []
        self._paused: list[tuple[float, int, str]] = []  # (not_before, order, name)
        for host in self.hosts.values():
            self._push(host)

    # ------------------------------------------------------------------ checking hosts
    def start_probes(self) -> None:
        """Check hosts when ``settings.probe``: names looked up ahead, first URLs alone."""
        if not self.settings.probe or _proxied():
            return
        targets = []
        for host in sorted(self.hosts.values(), key=lambda h: (-len(h.queue), h.order)):
            if host.target is None:
                continue
            host.checked = False
            self._unchecked += 1
            if needs_lookup(host.target[0]):
                host.up = False
                targets.append((host.name, *host.target))
        self.probing = len(targets)
        self._ready = []
        for host in self.hosts.values():
            self._push(host)
        if targets:
            self.prober = HostResolver(targets)

    def poll(self) -> list[Outcome]:
        """Take in finished look-ups: hosts that resolve may go; the others end as rows."""
        ended: list[Outcome] = []
        while self.prober is not None and self.probing:
            try:
                name, kind, reason, seconds = self.prober.results.get_nowait()
            except queue.Empty:
                if not self.prober.alive() and self.prober.results.empty():
                    self._unprobed()     # cannot happen: the prober reports every host
                break
            self.probing -= 1
            host = self.hosts[name]
            if not kind:
                host.up = True
                self._push(host)
                continue
            host.failures.append(f"{kind}: {reason}")
            ended.extend(self._trip(host, f"name look-up failed: {reason}", kind, seconds))
        return ended

    def _unprobed(self) -> None:
        self.probing = 0
        for host in self.hosts.values():
            if not host.up:
                host.up = True
                self._push(host)

    def close(self) -> None:
        """Stop the look-ups."""
        if self.prober is not None:
            self.prober.close()

    # ------------------------------------------------------------------ handing out
    def _cap(self, host: _Host) -> int:
        if host.name == FILE_HOST:
            return 0
        if not host.checked:               # its first URL is its connect check: alone
            return 1
        cap = self.settings.per_host
        return 0 if cap <= 0 else cap

    def _push(self, host: _Host) -> None:
        if not host.queue or host.dead or not host.up:
            return
        if host.not_before > self.clock():
            heapq.heappush(self._paused, (host.not_before, host.order, host.name))
            return
        cap = self._cap(host)
        if cap and host.in_flight >= cap:
            return
        work = self._work(host)
        if host.checked and work > self._worst:
            self._long[host.name] = host
        heapq.heappush(self._ready, (-work, host.order, host.name, len(host.queue),
                                     host.checked))

    def _promote(self) -> None:
        """Put first the hosts whose URLs would otherwise end last.

        A host's URLs go one round of its cap after another; when that takes as long as all
        the work left spread over the workers, the host must not wait any more.
        """
        if not self._long:
            return
        dead, seen = self.checks
        left = (self.queued * self.per_url + self._unchecked * dead / seen * self._worst
                ) / self.settings.workers
        for name, host in list(self._long.items()):
            if not host.queue or host.dead:
                del self._long[name]
                continue
            work = self._work(host)
            if work >= left and host.boosted != len(host.queue) and host.up:
                host.boosted = len(host.queue)
                heapq.heappush(self._ready, (-(work + self._worst), host.order, host.name,
                                             len(host.queue), host.checked))

    def _work(self, host: _Host) -> float:
        """Seconds of work a host holds: the longest goes first.

        A checked host's URLs take rounds of its cap, one after another (the busiest host,
        at its cap from start to end, bounds the wall time).  An unchecked host's first URL
        may wait out a dead host's timeouts: those waits start early, not at the end of the
        run where they would leave the other connections idle.
        """
        queued = len(host.queue)
        if host.checked:
            return queued / max(1, self._cap(host) or queued) * self.per_url
        return self._worst + (queued - 1) / max(1, self.settings.per_host or queued
                                                  ) * self.per_url

    def _wake(self) -> None:
        now = self.clock()
        while self._paused and self._paused[0][0] <= now:
            _, _, name = heapq.heappop(self._paused)
            self._push(self.hosts[name])

    def take(self, allowed: Callable[[str], bool] | None = None) -> tuple[str, Any] | None:
        """The next job to send (busiest eligible host first), or ``None`` for now.

        Args:
            allowed: Hosts (names) that may be sent to now (default: all), e.g. those
                whose worker process has a free thread.
        """
        self._wake()
        self._promote()
        skipped = []
        try:
            while self._ready:
                entry = heapq.heappop(self._ready)
                host = self.hosts[entry[2]]
                cap = self._cap(host)
                if (entry[3] != len(host.queue) or entry[4] != host.checked or not host.queue
                        or host.dead or not host.up or (cap and host.in_flight >= cap)
                        or host.not_before > self.clock()):
                    continue                      # a stale entry: the host is pushed anew
                if allowed is not None and not allowed(host.name):
                    skipped.append(entry)
                    continue
                job = host.queue.popleft()
                host.in_flight += 1
                self.queued -= 1
                self._push(host)
                return job
            return None
        finally:
            for entry in skipped:
                heapq.heappush(self._ready, entry)

    def host_name(self, key: str) -> str:
        """The host of a job's key (``""`` for one not scheduled here)."""
        host = self.host_of_key.get(key)
        return host.name if host is not None else ""

    def pending(self) -> bool:
        """Whether jobs are still queued (some perhaps paused)."""
        return self.queued > 0

    def wait_hint(self) -> float | None:
        """Seconds until a paused host may go or a probe may end (``None``: none pending)."""
        live = [t - self.clock() for t, _, name in self._paused if self.hosts[name].queue]
        if self.probing:
            live.append(0.02)
        return max(0.0, min(live)) if live else None

    # ------------------------------------------------------------------ taking back
    def release(self, key: str) -> None:
        """A download's body is in (its decode goes on): its host may take its next URL."""
        host = self.host_of_key.get(key)
        if host is None or key in self._released:
            return
        self._released.add(key)
        host.in_flight = max(0, host.in_flight - 1)
        self._checked(host, dead=False)       # a body came: the host is alive
        self._push(host)

    def finish(self, outcome: Outcome) -> list[Outcome]:
        """Account for one outcome; return the outcomes to journal now."""
        host = self.host_of_key.get(outcome.key)
        if host is None:
            return [outcome]
        if outcome.key in self._released:     # its slot was given back already
            self._released.discard(outcome.key)
        else:
            host.in_flight = max(0, host.in_flight - 1)
        kind = outcome.extra.get("host_failure") if outcome.extra else None
        if not host.checked:
            if kind in DEAD_ON_FIRST:
                self._checked(host, dead=True)
                host.failures.append(f"{kind}: {outcome.reason[:120]}")
                return self._trip(host, f"{DEAD_ON_FIRST[kind]} (its first URL, the connect "
                                  f"check: {outcome.reason[:160]})", first=outcome)
            self._checked(host, dead=False)
        if outcome.status == OK:
            self.per_url += 0.1 * (outcome.seconds - self.per_url)
        retry = self._retry_later(host, outcome)
        if retry:
            self._push(host)
            return []
        written = [self._with_waits(outcome)]
        if kind and (kind in CONNECT_FAILURES or not host.answered):
            host.failures.append(f"{kind}: {outcome.reason[:120]}")
            limit = self.settings.breaker
            if limit and len(host.failures) >= limit and host.name != FILE_HOST:
                seen = "; ".join(dict.fromkeys(f.split(":", 1)[0] for f in host.failures))
                last = host.failures[-1].split(": ", 1)[-1]
                written.extend(self._trip(host, f"{len(host.failures)} consecutive failures "
                                          f"({seen}; the last: {last})"))
        elif outcome.status not in (TIMEOUT, CONNECTION_ERROR):
            host.answered = True           # any answer (even a 404) shows the host is up
            host.failures.clear()
        self._push(host)
        return written

    def _checked(self, host: _Host, dead: bool) -> None:
        """A host's first URL has told whether it is alive."""
        if not host.checked:
            host.checked = True
            self._unchecked -= 1
            self.checks[0] += dead
            self.checks[1] += 1

    def _with_waits(self, outcome: Outcome) -> Outcome:
        waits = self.waits.pop(outcome.key, 0)
        if waits:
            outcome.extra = {**(outcome.extra or {}), "retry_waits": waits}
        return outcome

    def _retry_later(self, host: _Host, outcome: Outcome) -> bool:
        """Put a 429/503 URL back, its host paused, when its wait is allowed."""
        extra = outcome.extra or {}
        if outcome.status != HTTP_ERROR or extra.get("http_status") not in RETRY_LATER_STATUSES:
            return False
        host.answered = True
        host.failures.clear()
        attempt = self.waits.get(outcome.key, 0)
        asked = extra.get("retry_after")
        delay = asked if asked is not None else self.settings.backoff * 2 ** attempt
        limit = RETRY_AFTER_WAITS if asked is not None else self.settings.retries
        if attempt >= limit:
            outcome.reason += (f" (still after {attempt} wait(s) for the host"
                               + ("" if asked is not None else "; --retries to wait more") + ")")
            return False
        if delay > self.settings.max_retry_after:
            outcome.reason += (f" (asked to retry after {delay:g} s, more than "
                               f"--max-retry-after {self.settings.max_retry_after:g} s: "
                               "not waited)")
            return False
        self.waits[outcome.key] = attempt + 1
        self.retry_waits += 1
        host.not_before = max(host.not_before, self.clock() + delay)
        job = (outcome.key, _job_target(outcome.key))
        host.queue.appendleft(job)
        self.queued += 1
        return True

    def _trip(self, host: _Host, why: str, kind: str = "", seconds: float = 0.0,
              first: Outcome | None = None) -> list[Outcome]:
        """Open the breaker: every queued URL of the host ends as ``host_unreachable``.

        The first row carries the failure's kind and time (``kind``, ``seconds``, or those
        of ``first``: the URL that found the host dead, which ends as ``host_unreachable``
        too), so the per-host view counts it.
        """
        rest = "the rest not tried" if first is not None else "not tried"
        host.dead = (f"host {host.name} unreachable: {why}; {rest} (--retry-failed tries "
                     "again)")
        self.tripped += 1
        ended = []
        if first is not None:
            ended.append(self._with_waits(Outcome(first.key, HOST_UNREACHABLE, host.dead,
                                                  seconds=first.seconds,
                                                  extra=dict(first.extra))))
        while host.queue:
            key, _ = host.queue.popleft()
            self.queued -= 1
            extra = {"host_failure": kind} if kind and not ended else {}
            ended.append(self._with_waits(Outcome(key, HOST_UNREACHABLE, host.dead,
                                                  seconds=seconds if not ended else 0.0,
                                                  extra=extra)))
        return ended


def _probe_target(target: Any) -> tuple[str, int] | None:
    """``(host, port)`` to look up for a URL (``None``: a file, or unparsable)."""
    if isinstance(target, Path):
        return None
    try:
        parts = urlsplit(str(target))
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not host or scheme not in ("http", "https"):
        return None
    return host, port or (443 if scheme == "https" else 80)


def _proxied() -> bool:
    """Whether requests go through a proxy (then the origin hosts are not connect-checked)."""
    import urllib.request

    proxies = urllib.request.getproxies()
    return bool(proxies.get("http") or proxies.get("https"))


def _job_target(key: str) -> str:
    """The URL of a journal key (``url:<url>``, see :mod:`facelab.collect.run`)."""
    return key[4:] if key.startswith("url:") else key


# --------------------------------------------------------------------------- per-host view
HOST_COLUMNS = ("host", "urls", "ok", "failed", "unreachable", "answered", "dead", "seconds",
                "median_seconds", "timeout_seconds", "retry_waits", "reason")


def host_table(entries: dict[str, dict[str, Any]], keys: Iterable[str]) -> list[dict[str, Any]]:
    """Per-host figures of a run, from its journal entries.

    Args:
        entries: The journal (:func:`facelab.collect.journal.read_journal`).
        keys: The journal keys of the run's URLs (``url:<url>``; others are skipped).

    Returns:
        One dict per host (:data:`HOST_COLUMNS`), the slowest (most seconds in all) first:
        URLs, fetched ``ok``, other failures, ``host_unreachable`` rows, ``dead`` (the
        breaker tripped), seconds spent in all and per ``ok`` photo (median), seconds lost
        to timeouts (connect and read timeouts, stalls), Retry-After waits, and the
        breaker's reason.
    """
    rows: dict[str, dict[str, Any]] = {}
    times: dict[str, list[float]] = {}
    for key in dict.fromkeys(keys):
        if not key.startswith("url:"):
            continue
        entry = entries.get(key)
        if entry is None:
            continue
        name = host_of(key[4:])
        row = rows.setdefault(name, {c: 0 for c in HOST_COLUMNS} | {
            "host": name, "answered": False, "dead": False, "reason": "",
            "median_seconds": 0.0})
        status, seconds = entry["status"], float(entry.get("seconds") or 0.0)
        extra = entry.get("extra") or {}
        row["urls"] += 1
        row["seconds"] += seconds
        row["retry_waits"] += int(extra.get("retry_waits", 0))
        if status == OK:
            row["ok"] += 1
            times.setdefault(name, []).append(seconds)
        elif status == HOST_UNREACHABLE:
            row["unreachable"] += 1
            row["dead"], row["reason"] = True, entry.get("reason", "")
        else:
            row["failed"] += 1
        if status not in (TIMEOUT, CONNECTION_ERROR, HOST_UNREACHABLE):
            row["answered"] = True
        if status == TIMEOUT or extra.get("host_failure") in ("connect_timeout",
                                                              "read_timeout"):
            row["timeout_seconds"] += seconds
    for name, values in times.items():
        values.sort()
        rows[name]["median_seconds"] = values[len(values) // 2]
    for row in rows.values():
        row["seconds"] = round(row["seconds"], 3)
        row["timeout_seconds"] = round(row["timeout_seconds"], 3)
    return sorted(rows.values(), key=lambda r: (-r["seconds"], r["host"]))


def host_summary(table: list[dict[str, Any]], top: int = 5) -> list[str]:
    """Summary lines of :func:`host_table`: hosts contacted, dead, time lost, slowest."""
    if not table:
        return []
    dead = [r for r in table if r["dead"]]
    lost = sum(r["timeout_seconds"] for r in table)
    answering = sum(1 for r in table if r["answered"])
    lines = [f"hosts: {len(table)} contacted, {answering} answered, {len(dead)} dead "
             f"({sum(r['unreachable'] for r in dead)} URLs not tried: probe or breaker), "
             f"{lost:.1f} s lost to timeouts, "
             f"{sum(r['retry_waits'] for r in table)} Retry-After waits"]
    slow = [r for r in table if r["seconds"] > 0][:top]
    if slow:
        lines.append("  slowest hosts (seconds in all, URLs, ok): " + ", ".join(
            f"{r['host']} {r['seconds']:.1f} s/{r['urls']}/{r['ok']}" for r in slow))
    return lines
