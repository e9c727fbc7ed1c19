"""Connect checks of many hosts at once, without holding a download worker.

On a real PubFig list most hosts have one or two URLs and many are long dead: refused,
unresolvable, or black holes whose connect never completes.  A circuit breaker needs a few
failures per host, so it cannot help a host with one URL; a worker thread waiting out a
connect timeout there is a worker not downloading.  :class:`HostProber` resolves each host
and opens one non-blocking TCP connection to it (hundreds at once, in one thread, the
name look-ups in a small thread pool), closes it, and reports whether the host accepts
connections; for a plain-HTTP host it then sends one ``HEAD`` of the host's first URL and
waits (up to the read timeout) for the first byte of an answer, which finds the hosts that
accept connections and never answer.  The scheduler (:mod:`facelab.collect.hosts`) sends a
host's URLs only once its probe succeeded, and ends a host whose probe failed as
``host_unreachable`` rows at once.  Standard library only.
"""

from __future__ import annotations

import errno
import os
import queue
import selectors
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

# (host name, error kind or "" when the host accepts connections, reason, seconds)
ProbeResult = tuple[str, str, str, float]
# what to probe: (name, host, port, path to HEAD or "" for a connect check only)
ProbeTarget = tuple[str, str, int, str]


def _resolve(host: str, port: int) -> tuple:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, kind, proto, _, address = infos[0]
    return family, kind, proto, address


class HostProber:
    """Probe targets (:data:`ProbeTarget`) in a background thread; results on :attr:`results`.

    Args:
        targets: One entry per host, in the order to probe them (busiest first).
        timeout: Connect timeout per attempt, seconds.
        attempts: Connect attempts before a host is reported down (refusals and timeouts).
        concurrency: Connections being opened at once.
        read_timeout: Seconds to wait for the first byte of the answer to the ``HEAD``.
        user_agent: The ``User-Agent`` of the ``HEAD``.
    """

    def __init__(self, targets: list[ProbeTarget], timeout: float, attempts: int = 1,
                 concurrency: int = 256, read_timeout: float = 10.0,
                 user_agent: str = "facelab") -> None:
        self.results: queue.SimpleQueue[ProbeResult] = queue.SimpleQueue()
        self.timeout, self.attempts, self.concurrency = timeout, max(1, attempts), concurrency
        self.read_timeout, self.user_agent = read_timeout, user_agent
        self._heads = {name: (host, port, path) for name, host, port, path in targets}
        self._targets = targets
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="facelab-probe", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop probing (results not yet reported are dropped)."""
        self._stop.set()
        self._thread.join(5)

    def alive(self) -> bool:
        """Whether the probing thread still runs."""
        return self._thread.is_alive()

    def _report(self, name: str, kind: str, reason: str, started: float) -> None:
        self._reported.add(name)
        self.results.put((name, kind, reason, round(time.monotonic() - started, 4)))

    def _run(self) -> None:
        self._reported: set[str] = set()
        pool = ThreadPoolExecutor(16, thread_name_prefix="facelab-resolve")
        started = time.monotonic()
        try:
            self._loop(pool)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            # whatever went wrong here, no host may wait for a probe forever: the ones
            # not reported go ahead unprobed (their downloads fail as rows if they must)
            for name, *_ in self._targets:
                if name not in self._reported:
                    self._report(name, "", "", started)

    def _loop(self, pool: ThreadPoolExecutor) -> None:
        started = time.monotonic()
        resolving: list[tuple[str, int, Future]] = [
            (name, 1, pool.submit(_resolve, host, port)) for name, host, port, _ in self._targets]
        selector = selectors.DefaultSelector()
        open_: dict[socket.socket, tuple[str, int, tuple, float]] = {}
        while (resolving or open_) and not self._stop.is_set():
            waiting = []
            for name, attempt, future in resolving:
                if len(open_) >= self.concurrency or not future.done():
                    waiting.append((name, attempt, future))
                    continue
                try:
                    target = future.result()
                except (OSError, UnicodeError) as error:
                    self._report(name, "dns", f"host name not resolved ({error})", started)
                    continue
                self._connect(selector, open_, name, attempt, target, started, waiting)
            resolving = waiting
            now = time.monotonic()
            timeout = min([d for *_, d in open_.values()], default=now + 0.02) - now
            for key, _ in selector.select(timeout=max(0.0, min(timeout, 0.02))):
                sock = key.fileobj
                name, attempt, target, _ = open_.pop(sock)
                selector.unregister(sock)
                if attempt < 0:                    # the HEAD's answer (or its end) came
                    sock.close()
                    self._report(name, "", "", started)
                    continue
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code == 0 and self._send_head(sock, name):
                    open_[sock] = (name, -1, target, time.monotonic() + self.read_timeout)
                    selector.register(sock, selectors.EVENT_READ)
                    continue
                sock.close()
                self._outcome(name, attempt, target, code, started, waiting)
            now = time.monotonic()
            for sock, (name, attempt, target, deadline) in list(open_.items()):
                if deadline <= now:
                    del open_[sock]
                    selector.unregister(sock)
                    sock.close()
                    if attempt < 0:
                        self._report(name, "read_timeout", "accepted the connection but sent "
                                     f"no answer to a HEAD request within "
                                     f"{self.read_timeout:g} s", started)
                        continue
                    self._outcome(name, attempt, target, errno.ETIMEDOUT, started, waiting)
            resolving = waiting
        for sock in open_:
            sock.close()
        selector.close()

    def _send_head(self, sock: socket.socket, name: str) -> bool:
        """Send the ``HEAD`` of a plain-HTTP host's first URL (``False``: none to send)."""
        host, port, path = self._heads[name]
        if not path:
            return False
        authority = host if port == 80 else f"{host}:{port}"
        if ":" in host:
            authority = f"[{host}]" if port == 80 else f"[{host}]:{port}"
        request = (f"HEAD {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: "
                   f"{self.user_agent}\r\nConnection: close\r\n\r\n")
        try:
            sock.send(request.encode("latin-1", errors="replace"))
        except OSError:
            return False       # reported as connected: the download will say what is wrong
        return True

    def _connect(self, selector: selectors.BaseSelector, open_: dict, name: str, attempt: int,
                 target: tuple, started: float, waiting: list) -> None:
        family, kind, proto, address = target
        try:
            sock = socket.socket(family, kind, proto)
        except OSError as error:      # e.g. no IPv6 here
            self._report(name, "connection", f"cannot connect: {error}", started)
            return
        sock.setblocking(False)
        code = sock.connect_ex(address)
        if code in (0, errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
            open_[sock] = (name, attempt, target, time.monotonic() + self.timeout)
            selector.register(sock, selectors.EVENT_WRITE)
            return
        sock.close()
        self._outcome(name, attempt, target, code, started, waiting)

    def _outcome(self, name: str, attempt: int, target: tuple, code: int, started: float,
                 waiting: list) -> None:
        if code == 0:
            self._report(name, "", "", started)
            return
        if attempt < self.attempts:
            done: Future = Future()
            done.set_result(target)
            waiting.append((name, attempt + 1, done))
            return
        if code == errno.ETIMEDOUT:
            kind, text = "connect_timeout", f"connect timed out after {self.timeout:g} s"
        elif code == errno.ECONNREFUSED:
            kind, text = "refused", "connection refused"
        else:
            kind, text = "connection", f"cannot connect: {os.strerror(code)}"
        self._report(name, kind, f"{text} ({attempt} attempt(s))", started)
