"""An emulated realistic web: the hosts of a real URL list, each on its own loopback address.

The real PubFig ``dev_urls.txt`` spreads 16,336 URLs over 5,416 hosts (one with 698 URLs,
3,650 with a single one), and what a collector waits for there is round trips, dead hosts
and timeouts, not CPU.  :class:`HostWeb` serves the demo photos the way that web would:

* **one address per host**: every distinct host of the list becomes its own
  ``127.a.b.c`` (Linux routes all of 127.0.0.0/8 to the loopback interface, no setup
  needed), so connection reuse happens only within a host, as on the web; the URLs are
  ``http://127.a.b.c:PORT/<demo photo path>``, in the same per-host counts as the rows
  sampled from the real list (:func:`plan_hosts`);
* **round trips**: each host has a round-trip time drawn from a log-normal distribution
  (median 80 ms, sigma 0.6, clipped to 20-400 ms: :class:`WebShape`); a new connection
  costs one round trip (TCP's handshake; TLS is not emulated) and every request one more;
* **dead hosts of each kind** (shares of hosts, :data:`DEFAULT_DEAD`): ``refused``
  (nothing listens: connection refused at once), ``blackhole`` (a connect that never
  completes: the listen queue is full, the SYNs are dropped), ``silent`` (accepts, reads
  the request, never answers), ``error5xx`` (answers 500 to everything) and ``ratelimited``
  (answers each URL's first GET, and every HEAD, with 429 and ``Retry-After: 1``, then
  serves it).  These shares are an assumption (only the host distribution comes from the
  real list): pass another :class:`WebShape`, or scale the dead hosts alone
  (:func:`scale_dead`: ``2`` for twice as many, ``0`` for none);
* **connections counted**: every connection the web accepts is counted while it is open
  (kept-alive idle ones too), per host and in total, and the peaks kept
  (:meth:`HostWeb.connection_peaks`); a connect to a black hole never reaches a server, so
  the clients' sockets still connecting to one are read from the kernel's table
  (``/proc/net/tcp``, Linux) every ``sample_s`` and added to the connections accepted at
  those instants.

The server is one asyncio loop in a background thread (:meth:`HostWeb.start`), cheap next
to any client.  Only loopback addresses are ever bound or written into a URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import socket
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pandas as pd

HOST_KINDS = ("ok", "refused", "blackhole", "silent", "error5xx", "ratelimited")


# share of hosts dead (or throttling) in each way; the rest answer normally.  An assumption,
# not a measurement: only the host distribution comes from the real list
DEFAULT_DEAD = {"refused": 0.15, "blackhole": 0.06, "silent": 0.04, "error5xx": 0.05,
                "ratelimited": 0.05}


# the kinds that never answer (what :func:`scale_dead` scales)
DEAD_KINDS = ("refused", "blackhole", "silent")


PROC_TCP = Path("/proc/net/tcp")


RETRY_AFTER_S = 1


@dataclass(frozen=True)
class WebShape:
    """How the emulated web behaves: round trips and dead-host shares (documented defaults)."""

    rtt_median: float = 0.080
    rtt_sigma: float = 0.6
    rtt_min: float = 0.020
    rtt_max: float = 0.400
    dead: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_DEAD))

    def draw_rtt(self, rng: random.Random) -> float:
        """One host's round-trip time, seconds (log-normal, clipped)."""
        value = self.rtt_median * math.exp(rng.gauss(0.0, self.rtt_sigma))
        return min(self.rtt_max, max(self.rtt_min, value))

    def draw_kind(self, rng: random.Random) -> str:
        """One host's kind (:data:`HOST_KINDS`)."""
        roll, total = rng.random(), 0.0
        for kind in HOST_KINDS[1:]:
            total += self.dead.get(kind, 0.0)
            if roll < total:
                return kind
        return "ok"


@dataclass
class Host:
    """One emulated host: its real name, loopback address, kind, round trip and photos."""

    name: str
    address: str
    kind: str
    rtt: float
    paths: list[str] = field(default_factory=list)


async def _ticks(n: int) -> None:
    """Let an event loop run ``n`` rounds of its callbacks."""
    for _ in range(n):
        await asyncio.sleep(0)


def _proc_address(address: str, port: int) -> str:
    """An IPv4 address and port as ``/proc/net/tcp`` writes them (hex, host byte order)."""
    raw = int.from_bytes(socket.inet_aton(address), sys.byteorder)
    return f"{raw:08X}:{port:04X}"


def loopback_address(index: int) -> str:
    """The ``index``-th host's address, ``127.a.b.c`` with every octet in 1..250."""
    if not 0 <= index < 250 ** 3:
        raise ValueError(f"host index {index} out of range")
    return f"127.{index // 62_500 + 1}.{index // 250 % 250 + 1}.{index % 250 + 1}"


def real_hosts(url_list: str | Path) -> list[str]:
    """The host of every row of a PubFig-format list, in row order (``""`` if none)."""
    from facelab.collect.sources import read_pubfig_list

    hosts = []
    for url in read_pubfig_list(url_list)["url"]:
        try:
            hosts.append((urlsplit(str(url)).hostname or "").lower())
        except ValueError:
            hosts.append("")
    return hosts


def plan_hosts(row_hosts: list[str], n: int, seed: int = 0,
               shape: WebShape | None = None,
               kinds: dict[str, str] | None = None) -> tuple[list[Host], list[int]]:
    """Sample ``n`` rows of a real list and give each distinct host an address and a kind.

    Args:
        row_hosts: The host of each row of the real list (:func:`real_hosts`).
        n: Rows to keep (a seeded sample, kept in list order, so a host keeps its share).
        seed: The sample's, round trips' and kinds' seed.
        shape: Round-trip and dead-host distribution.
        kinds: Fixed kinds of some hosts (tests).

    Returns:
        ``(hosts, row_host)``: the hosts in order of first appearance, and for each kept
        row (in order) the index of its host.
    """
    shape = shape or WebShape()
    rng = random.Random(seed)
    rows = sorted(rng.sample(range(len(row_hosts)), min(n, len(row_hosts))))
    index: dict[str, int] = {}
    hosts: list[Host] = []
    row_host = []
    for row in rows:
        name = row_hosts[row] or f"(no host, row {row})"
        if name not in index:
            index[name] = len(hosts)
            kind = (kinds or {}).get(name) or shape.draw_kind(rng)
            hosts.append(Host(name, loopback_address(len(hosts)), kind, shape.draw_rtt(rng)))
        row_host.append(index[name])
    return hosts, row_host


def _cumulative(parts: dict[str, float], total: float) -> list[tuple[str, float]]:
    """``(key, running share)`` of each part of ``total``, in order."""
    running, out = 0.0, []
    for key, part in parts.items():
        running += part / total
        out.append((key, running))
    return out


def scale_dead(hosts: list[Host], factor: float, seed: int = 0,
               shape: WebShape | None = None) -> list[Host]:
    """The same hosts with ``factor`` times the share of dead ones (0: none dead).

    Only dead hosts (:data:`DEAD_KINDS`) and answering ones (``ok``) change kind; 5xx and
    rate-limited hosts, round trips and addresses stay, so that what changes is the dead-host
    mix alone.  Below 1, a dead host stays dead with probability ``factor`` (else it
    answers); above, an answering host turns dead with the probability that adds
    ``factor - 1`` times the shape's dead share, its kind drawn in the shape's proportions.
    The mixes nest: a host dead at one factor is dead, with the same kind, at a larger one.

    Raises:
        ValueError: For a negative factor, or one that needs more dead hosts than answer.
    """
    shape = shape or WebShape()
    dead = {k: shape.dead.get(k, 0.0) for k in DEAD_KINDS}
    share = sum(dead.values())
    answering = 1.0 - sum(shape.dead.values())
    turn = (factor - 1) * share / answering if factor > 1 and answering > 0 else 0.0
    if factor < 0 or turn > 1:
        raise ValueError(f"dead-host factor {factor}: it must be between 0 and "
                         f"{1 + answering / share:g} for these shares")
    rng = random.Random(f"dead-scale-{seed}")
    kinds = _cumulative(dead, share) if share else []     # once, not per host
    scaled = []
    for host in hosts:
        stay, pick = rng.random(), rng.random()     # two rolls per host: the mixes nest
        kind = host.kind
        if kind in DEAD_KINDS and factor < 1 and stay >= factor:
            kind = "ok"
        elif kind == "ok" and stay < turn:
            kind = next((k for k, total in kinds if pick < total), DEAD_KINDS[-1])
        scaled.append(Host(host.name, host.address, kind, host.rtt, list(host.paths)))
    return scaled


class HostWeb:
    """Serve demo photos over emulated hosts (see the module doc); a context manager.

    Args:
        demo_dir: A demo collection (``photos.csv`` and its photos).
        hosts: The hosts (:func:`plan_hosts`).
        row_host: For each URL (in order) its host index; URL ``i`` serves demo photo ``i``
            (cycling, with a ``?copy=`` suffix past the last photo).
        port: The port on every address (0: a free one).
        sample_s: How often the clients' connects to black holes are counted from the
            kernel's socket table (seconds; 0: never).
    """

    def __init__(self, demo_dir: str | Path, hosts: list[Host], row_host: list[int],
                 port: int = 0, sample_s: float = 0.1) -> None:
        self.demo_dir = Path(demo_dir)
        self.photos = pd.read_csv(self.demo_dir / "photos.csv",
                                  dtype={"person": str, "rect": str, "md5": str})
        self.hosts, self.row_host = hosts, row_host
        self.port = port
        self.hits: Counter[str] = Counter()
        self.connections: Counter[str] = Counter()
        self.active: Counter[str] = Counter()    # requests being answered, per address
        self.peak: Counter[str] = Counter()      # the most at once, per address
        self.sample_s = sample_s
        self.open: Counter[str] = Counter()      # connections open now, per address
        self.open_total = 0
        self.accepted_total = 0                  # connections accepted since the start
        self._peaks: dict[str, Any] = {}
        self._sampler: threading.Thread | None = None
        self._sampling = threading.Event()
        self._data: dict[str, bytes] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sockets: list[socket.socket] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._by_address = {h.address: h for h in hosts}
        self._rows = self._make_rows()
        self.reset_counts()

    @classmethod
    def from_url_list(cls, demo_dir: str | Path, url_list: str | Path, n: int | None = None,
                      seed: int = 0, shape: WebShape | None = None) -> HostWeb:
        """A web with the host distribution of a real list (``n`` URLs; default: one per photo)."""
        photos = pd.read_csv(Path(demo_dir) / "photos.csv", usecols=["path"])
        hosts, row_host = plan_hosts(real_hosts(url_list), n or len(photos), seed, shape)
        return cls(demo_dir, hosts, row_host)

    # ------------------------------------------------------------------ the list
    def _make_rows(self) -> list[dict[str, Any]]:
        rows = []
        for i, host_index in enumerate(self.row_host):
            photo = self.photos.iloc[i % len(self.photos)]
            copy = i // len(self.photos)
            path = "/" + str(photo["path"]) + (f"?copy={copy}" if copy else "")
            host = self.hosts[host_index]
            host.paths.append(path)
            rows.append({"person": photo["person"], "imagenum": i + 1, "path": path,
                         "rect": photo["rect"], "md5sum": photo["md5"], "host": host.name,
                         "address": host.address, "kind": host.kind,
                         "rtt_ms": round(1000 * host.rtt, 1)})
        return rows

    def truth(self) -> pd.DataFrame:
        """One row per URL: person, imagenum, url, real host name, address, kind, rtt_ms."""
        df = pd.DataFrame(self._rows)
        df.insert(2, "url", [self.url(r["address"], r["path"]) for r in self._rows])
        return df.drop(columns=["path"])

    def url(self, address: str, path: str) -> str:
        """The URL of a path on a host address."""
        return f"http://{address}:{self.port}{path}"

    def write_list(self, path: str | Path) -> Path:
        """Write the URLs as a PubFig-format list (valid while this web runs)."""
        from facelab.collect.sources import write_pubfig_list

        rows = [{**r, "url": self.url(r["address"], r["path"])} for r in self._rows]
        return write_pubfig_list(rows, path, title="PubFig-shaped emulated web")

    def write_plain_list(self, path: str | Path) -> Path:
        """Write the URLs one per line (for other downloaders)."""
        path = Path(path)
        path.write_text("".join(self.url(r["address"], r["path"]) + "\n"
                                for r in self._rows), encoding="utf-8")
        return path

    def floor(self, per_host: int, connect_timeout: float = 0.0, timeout: float = 0.0,
              breaker: int = 0, attempts: int = 1, probe: bool = True,
              workers: int = 0, retry_after: bool = True) -> dict[str, float]:
        """The least wall time a collector with a per-host cap can take (seconds).

        ``live``: the busiest answering host's round trips (one per request, one per
        connection) divided by its cap.  A rate-limited host answers every URL's first GET
        with 429 and ``Retry-After``; a client that honours it (``retry_after``) pauses the
        host (the header asks to wait before the next request, not only this URL's), so
        each round of ``cap`` URLs there costs a 429, the wait and the retry; one that does
        not ends each URL at its 429.
        ``dead``: the black-hole and silent hosts' timeouts that must still be waited out:
        with a connect check (``probe``: a host's first URL alone), one wait per host
        (``attempts`` connect timeouts for a black hole, a read timeout for a silent host);
        without, a circuit breaker of ``breaker`` failures waits ``ceil(breaker / cap)``
        rounds of them.
        ``workers``: every answering host's round trips summed, divided by ``workers``
        (the bound that a fixed number of blocking downloads sets; 0: not counted).
        ``budget``: the same with the dead hosts' waits added (each holds a connection), the
        bound when every connection counts against ``workers``.
        ``floor`` is the largest.
        """
        live = dead = total = waits = 0.0
        for host in self.hosts:
            n = len(host.paths)
            if not n:
                continue
            cap = min(per_host or n, n)
            if host.kind in ("ok", "ratelimited", "error5xx"):
                limited = host.kind == "ratelimited" and retry_after
                trips = (n + cap + (n if limited else 0)) * host.rtt
                total += trips
                own = trips / cap
                if limited:
                    own = math.ceil(n / cap) * (2 * host.rtt + RETRY_AFTER_S) + host.rtt
                live = max(live, own)
            elif host.kind in ("blackhole", "silent"):
                wait = attempts * connect_timeout if host.kind == "blackhole" else timeout
                tries = 1 if probe else min(breaker or n, n)
                waits += tries * wait
                dead = max(dead, math.ceil(tries / cap) * wait)
        spread = total / workers if workers else 0.0
        budget = (total + waits) / workers if workers else 0.0
        return {"live": live, "dead": dead, "workers": spread, "budget": budget,
                "floor": max(live, dead, budget)}

    # ------------------------------------------------------------------ connections
    def reset_counts(self) -> None:
        """Forget hits (a rate-limited host's 429s come again) and connection peaks."""
        self.hits.clear()
        self.peak.clear()
        self._peaks = {"accepted": self.open_total, "host": Counter(self.open),
                       "sampled": 0, "connecting": 0}

    def connection_peaks(self) -> dict[str, Any]:
        """The most connections open at once since :meth:`reset_counts`.

        Returns:
            ``total``: in all; ``host``: to the one host that had the most, ``host_name``
            (its real name); ``accepted``: the most connections the web had accepted and
            not yet closed (exact: counted as they open and close; idle kept-alive ones
            too); ``connecting``: the most clients' sockets still connecting to black holes
            at a sampling instant (read from ``/proc/net/tcp`` every ``sample_s``, Linux
            only: no server sees them).  ``total`` is the larger of ``accepted`` and, at each
            sampling instant, the connections accepted then plus those connecting.
        """
        peaks = self._peaks
        address, most = max(peaks["host"].items(), key=lambda item: item[1],
                            default=("", 0))
        host = self._by_address.get(address)
        return {"total": max(peaks["accepted"], peaks["sampled"]), "host": most,
                "host_name": host.name if host else "", "accepted": peaks["accepted"],
                "connecting": peaks["connecting"]}

    def _opened(self, address: str) -> None:
        self.connections[address] += 1
        self.open[address] += 1
        self.open_total += 1
        self.accepted_total += 1
        peaks = self._peaks
        peaks["accepted"] = max(peaks["accepted"], self.open_total)
        peaks["host"][address] = max(peaks["host"][address], self.open[address])

    def _closed(self, address: str) -> None:
        self.open[address] -= 1
        self.open_total -= 1

    def _black_hole_keys(self) -> dict[str, str]:
        """``/proc/net/tcp`` remote-address field -> address, for every black hole."""
        return {_proc_address(host.address, self.port): host.address
                for host in self.hosts if host.kind == "blackhole"}

    def _connecting(self, keys: dict[str, str]) -> Counter[str]:
        """Clients' sockets still connecting (SYN_SENT) to each black hole.

        The kernel writes the table a page at a time while sockets come and go, so one
        socket may be listed twice: each is counted once, by its two ends.
        """
        sockets = set()
        for line in PROC_TCP.read_text().splitlines()[1:]:
            fields = line.split(None, 4)
            if len(fields) > 3 and fields[3] == "02" and fields[2] in keys:
                sockets.add((fields[1], fields[2]))
        return Counter(keys[remote] for _, remote in sockets)

    def _sample(self, keys: dict[str, str]) -> None:
        """Count the clients' connects to black holes every ``sample_s``, with the accepted.

        The server takes in a close or an accept a little after it happened.  So the
        connections open when the socket table was read are counted once the server has
        taken in what happened until then, less every accept it took in since: a
        connection closed and another opened around the read is never counted twice (one
        opened just before it may be missed).
        """
        while not self._sampling.wait(self.sample_s):
            opened = self.accepted_total
            try:
                now = self._connecting(keys)
                asyncio.run_coroutine_threadsafe(_ticks(3), self._loop).result(5)
            except Exception:  # noqa: BLE001 - the file or the server is gone: stop counting
                return
            accepted = self.open_total - (self.accepted_total - opened)
            peaks = self._peaks
            connecting = sum(now.values())
            peaks["sampled"] = max(peaks["sampled"], accepted + connecting)
            peaks["connecting"] = max(peaks["connecting"], connecting)
            for address, n in now.items():
                peaks["host"][address] = max(peaks["host"][address], n)

    # ------------------------------------------------------------------ serving
    def _photo(self, path: str) -> bytes | None:
        base = unquote(path.split("?", 1)[0]).lstrip("/")
        data = self._data.get(base)
        if data is None:
            file = (self.demo_dir / base).resolve()
            if not file.is_relative_to(self.demo_dir.resolve()) or not file.is_file():
                return None
            data = self._data[base] = file.read_bytes()
        return data

    async def _answer(self, writer: asyncio.StreamWriter, host: Host, path: str,
                      keep: bool, method: str) -> None:
        data = self._photo(path)
        head_only = method == "HEAD"           # a HEAD is answered, never counted as a hit
        if not head_only:
            self.hits[f"{host.address}{path}"] += 1
        extra = ""
        if host.kind == "error5xx":
            code, data = "500 Internal Server Error", b""
        elif host.kind == "ratelimited" and self.hits[f"{host.address}{path}"] <= 1:
            code, data, extra = "429 Too Many Requests", b"", f"Retry-After: {RETRY_AFTER_S}\r\n"
        elif data is None:
            code, data = "404 Not Found", b""
        else:
            code = "200 OK"
        head = (f"HTTP/1.1 {code}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}"
                f"\r\n{extra}Connection: {'keep-alive' if keep else 'close'}\r\n\r\n")
        writer.write(head.encode("ascii") + (b"" if head_only else data))
        await writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("sockname")[0]
        host = self._by_address[address]
        self._opened(address)
        try:
            await asyncio.sleep(host.rtt)          # the TCP handshake's round trip
            while True:
                request = await reader.readline()
                if not request:
                    return
                headers = []
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    headers.append(line.decode("latin-1").strip().lower())
                if host.kind == "silent":
                    await reader.read()            # never answers; waits for the client
                    return
                parts = request.decode("latin-1").split()
                keep = (len(parts) == 3 and parts[2] == "HTTP/1.1"
                        and "connection: close" not in headers)
                self.active[address] += 1
                self.peak[address] = max(self.peak[address], self.active[address])
                try:
                    await asyncio.sleep(host.rtt)  # the request's round trip
                    await self._answer(writer, host, parts[1] if len(parts) > 1 else "/", keep,
                                       parts[0] if parts else "GET")
                finally:
                    self.active[address] -= 1
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            self._closed(address)

    def _blackhole(self, address: str) -> None:
        """A listener whose queue is full: further connects hang (their SYNs are dropped)."""
        listener = socket.socket()
        listener.bind((address, self.port))
        listener.listen(0)
        filler = socket.create_connection((address, self.port), timeout=2)
        self._sockets += [listener, filler]

    async def _start_servers(self) -> None:
        for host in self.hosts:
            if host.kind == "refused":
                continue
            if host.kind == "blackhole":
                self._blackhole(host.address)
                continue
            self._servers.append(await asyncio.start_server(
                self._serve, host.address, self.port, backlog=256, reuse_address=True))

    async def _close_servers(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()

    def _pick_port(self) -> int:
        for _ in range(50):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            try:                                   # free on every host's address too
                for host in self.hosts[:50]:
                    with socket.socket() as test:
                        test.bind((host.address, port))
                return port
            except OSError:
                continue
        raise RuntimeError("no free port on the loopback addresses")

    def start(self) -> HostWeb:
        """Bind every live host's address and serve in a background thread."""
        if not self.port:
            self.port = self._pick_port()
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._start_servers())
            except BaseException as error:  # noqa: BLE001 - reported by start()
                failure.append(error)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="facelab-hostweb", daemon=True)
        self._thread.start()
        ready.wait(60)
        if failure:
            self.stop()
            raise RuntimeError(f"the emulated web could not bind its addresses: {failure[0]}")
        keys = self._black_hole_keys()
        if keys and PROC_TCP.is_file() and self.sample_s > 0:
            self._sampling.clear()
            self._sampler = threading.Thread(target=self._sample, args=(keys,), daemon=True,
                                             name="facelab-hostweb-sampler")
            self._sampler.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every socket."""
        self._sampling.set()
        if self._sampler is not None:
            self._sampler.join(5)
            self._sampler = None
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._close_servers(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()

    def __enter__(self) -> HostWeb:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
