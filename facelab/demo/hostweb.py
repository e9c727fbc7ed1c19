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
  serves it).

The server is one asyncio loop in a background thread (:meth:`HostWeb.start`), cheap next
to any client.  Only loopback addresses are ever bound or written into a URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pandas as pd

HOST_KINDS = ("ok", "refused", "blackhole", "silent", "error5xx", "ratelimited")


# share of hosts dead (or throttling) in each way; the rest answer normally
DEFAULT_DEAD = {"refused": 0.15, "blackhole": 0.06, "silent": 0.04, "error5xx": 0.05,
                "ratelimited": 0.05}


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


class HostWeb:
    """Serve demo photos over emulated hosts (see the module doc); a context manager.

    Args:
        demo_dir: A demo collection (``photos.csv`` and its photos).
        hosts: The hosts (:func:`plan_hosts`).
        row_host: For each URL (in order) its host index; URL ``i`` serves demo photo ``i``
            (cycling, with a ``?copy=`` suffix past the last photo).
        port: The port on every address (0: a free one).
    """

    def __init__(self, demo_dir: str | Path, hosts: list[Host], row_host: list[int],
                 port: int = 0) -> None:
        self.demo_dir = Path(demo_dir)
        self.photos = pd.read_csv(self.demo_dir / "photos.csv",
                                  dtype={"person": str, "rect": str, "md5": str})
        self.hosts, self.row_host = hosts, row_host
        self.port = port
        self.hits: Counter[str] = Counter()
        self.connections: Counter[str] = Counter()
        self.active: Counter[str] = Counter()    # requests being answered, per address
        self.peak: Counter[str] = Counter()      # the most at once, per address
        self._data: dict[str, bytes] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sockets: list[socket.socket] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._by_address = {h.address: h for h in hosts}
        self._rows = self._make_rows()

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
              workers: int = 0) -> dict[str, float]:
        """The least wall time a collector with a per-host cap can take (seconds).

        ``live``: the busiest answering host's round trips (one per request, one per
        connection) divided by its cap.  A rate-limited host answers every URL's first GET
        with 429 and ``Retry-After``; a client that honours it pauses the host (the header
        asks to wait before the next request, not only this URL's), so each round of
        ``cap`` URLs there costs a 429, the wait and the retry.
        ``dead``: the black-hole and silent hosts' timeouts that must still be waited out:
        with a ``probe`` (all hosts checked at once), one probe's (``attempts`` connect
        timeouts for a black hole, a read timeout for a silent host); without, a circuit
        breaker of ``breaker`` failures waits ``ceil(breaker / cap)`` rounds of them.
        ``workers``: every answering host's round trips summed, divided by ``workers``
        (the bound that a fixed number of blocking downloads sets; 0: not counted).
        ``floor`` is the largest.
        """
        live = dead = total = 0.0
        for host in self.hosts:
            n = len(host.paths)
            if not n:
                continue
            cap = min(per_host or n, n)
            if host.kind in ("ok", "ratelimited", "error5xx"):
                trips = (n + cap + (n if host.kind == "ratelimited" else 0)) * host.rtt
                total += trips
                own = trips / cap
                if host.kind == "ratelimited":
                    own = math.ceil(n / cap) * (2 * host.rtt + RETRY_AFTER_S) + host.rtt
                live = max(live, own)
            elif host.kind in ("blackhole", "silent"):
                wait = attempts * connect_timeout if host.kind == "blackhole" else timeout
                rounds = 1 if probe else math.ceil(min(breaker, n) / cap)
                dead = max(dead, rounds * wait)
        spread = total / workers if workers else 0.0
        return {"live": live, "dead": dead, "workers": spread, "floor": max(live, dead, spread)}

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
        self.connections[address] += 1
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
        return self

    def stop(self) -> None:
        """Stop serving and close every socket."""
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
