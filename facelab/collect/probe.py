"""Host name look-ups ahead of the downloads, without opening a connection to any host.

On a real PubFig list most hosts have one or two URLs and many are long dead.  Every
connection a collection opens counts against one budget, ``--workers``
(:mod:`facelab.collect.connections`), so a host's connect check is its first URL, sent
alone (:mod:`facelab.collect.hosts`): a second connection just to check it would cost its
round trips twice.  What needs no connection to the host is done ahead, many at once:
:class:`HostResolver` looks every host name up in a small thread pool (busiest host
first), so a name that does not resolve ends its host at once, without a worker waiting on
the resolver.  IP addresses need no look-up.  Standard library only.
"""

from __future__ import annotations

import ipaddress
import queue
import socket
import time
from concurrent.futures import ThreadPoolExecutor

# (host name, "" or "dns" when the name does not resolve, reason, seconds)
ProbeResult = tuple[str, str, str, float]
# what to look up: (name, host, port)
ProbeTarget = tuple[str, str, int]


def needs_lookup(host: str) -> bool:
    """Whether ``host`` is a name to resolve (not an IP address)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return True
    return False


class HostResolver:
    """Look targets (:data:`ProbeTarget`) up in the background; results on :attr:`results`.

    Args:
        targets: One entry per host, in the order to resolve them (busiest first).
        threads: Look-ups at once.
    """

    def __init__(self, targets: list[ProbeTarget], threads: int = 16) -> None:
        self.results: queue.SimpleQueue[ProbeResult] = queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="facelab-resolve")
        self._futures = [self._pool.submit(self._resolve, *target) for target in targets]

    def _resolve(self, name: str, host: str, port: int) -> None:
        started = time.monotonic()
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            kind, reason = "", ""
        except (OSError, UnicodeError) as error:
            kind, reason = "dns", f"host name not resolved ({error})"
        except Exception as error:  # noqa: BLE001 - a host must never wait for ever
            kind, reason = "", f"look-up skipped ({type(error).__name__})"
        self.results.put((name, kind, reason, round(time.monotonic() - started, 4)))

    def close(self) -> None:
        """Stop looking up (results not yet reported are dropped)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def alive(self) -> bool:
        """Whether look-ups are still running."""
        return not all(future.done() for future in self._futures)
