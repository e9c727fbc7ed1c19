"""One budget of open connections per process: a kept-alive idle one is closed for a new one.

``--workers`` bounds what a collection holds open at once, whatever state a connection is
in: connecting (a black hole's connect waits out its timeout), downloading, or kept alive
idle for its host's next URL.  A worker process's threads share one set of urllib3 pools
(:func:`facelab.collect.fetch.make_session`); :class:`ConnectionBudget` caps the
connections of all of them together at that process's share of ``--workers`` (its thread
count).  A thread that needs a new connection while the budget is full closes an idle
one (one always exists, since each thread uses at most one connection at a time): of the
host that has sent the fewest requests, the one used longest ago.  Most hosts of a real
list have one or two URLs, and their idle connections go first; a host with many URLs
keeps its kept-alive connections (each closed one would cost its next URL a round trip,
and the busiest host's URLs, one round after another, set the run's wall time).  Per host,
the scheduler sends at most ``--per-host`` URLs at once and a host's pool keeps at most that
many connections, all in one process (:mod:`facelab.collect.workers`).

urllib3 is imported by :func:`budget_adapter` only (worker processes start light).
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections import OrderedDict
from typing import Any


class ConnectionBudget:
    """At most ``limit`` connections open at once (see the module doc).

    Args:
        limit: Connections this process may hold open, idle ones included.
    """

    # a thread finds every slot in use and none idle only if a connection leaked (dropped
    # unclosed and not yet collected): after this long it goes ahead over the budget
    # (counted in ``overdrawn``) rather than wait for ever
    LEAK_WAIT_S = 10.0

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a connection budget needs at least 1 connection (got {limit})")
        self.limit = limit
        self.lock = threading.RLock()
        self._freed = threading.Condition(self.lock)
        self._idle: OrderedDict[Any, None] = OrderedDict()   # oldest first
        self.held = 0
        self.peak = 0
        self.evicted = 0
        self.overdrawn = 0

    def acquire(self, conn: Any) -> None:
        """Give ``conn`` a slot before it connects, closing idle connections to make room."""
        with self.lock:
            held = getattr(conn, "_facelab_slot", None)
            if held and held[0]:                # reconnecting without a close: same slot
                return
            waited = 0.0
            while self.held >= self.limit:
                if self._idle:
                    victim = self._victim()
                    del self._idle[victim]
                    self.evicted += 1
                    victim.close()              # gives its slot back (release)
                elif waited >= self.LEAK_WAIT_S:
                    self.overdrawn += 1
                    break
                else:                           # every slot in use: wait for one
                    started = time.monotonic()
                    self._freed.wait(0.5)
                    waited += time.monotonic() - started
                    if waited >= 1.0:
                        gc.collect()            # a dropped connection's finalizer frees it
            self.held += 1
            self.peak = max(self.peak, self.held)
            slot = conn._facelab_slot = [True]
            # a connection dropped without close() still gives its slot back
            weakref.finalize(conn, self._free, slot)

    def _victim(self) -> Any:
        """The idle connection to close: of the host with the fewest requests, the oldest."""
        victim, fewest = None, 0
        for conn in self._idle:                 # oldest first
            uses = requests_sent(conn)
            if victim is None or uses < fewest:
                victim, fewest = conn, uses
                if uses <= 1:                   # a host with one request: the fewest
                    break
        return victim

    def release(self, conn: Any) -> None:
        """``conn`` is closed: its slot is free."""
        with self.lock:
            self._idle.pop(conn, None)
            self._free(getattr(conn, "_facelab_slot", None))

    def _free(self, slot: list[bool] | None) -> None:
        with self.lock:
            if slot and slot[0]:
                slot[0] = False
                self.held -= 1
                self._freed.notify()

    def park(self, conn: Any) -> None:
        """``conn`` is back in its pool, idle: it may be closed for a new connection."""
        slot = getattr(conn, "_facelab_slot", None)
        if slot and slot[0]:
            self._idle[conn] = None
            self._idle.move_to_end(conn)

    def unpark(self, conn: Any) -> None:
        """``conn`` was taken from its pool: it is in use, never closed from here."""
        self._idle.pop(conn, None)


def requests_sent(conn: Any) -> int:
    """Requests the host of ``conn`` has been sent through its pool (0: not counted)."""
    counter = getattr(conn, "_facelab_host_requests", None)
    return counter[0] if counter else 0


def _pool_classes(budget: ConnectionBudget) -> dict[str, type]:
    """urllib3 pool classes whose connections hold a slot of ``budget`` while open."""
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    def connection_class(base: type) -> type:
        class Budgeted(base):
            def connect(self) -> None:
                budget.acquire(self)
                try:
                    super().connect()
                except BaseException:
                    self.close()
                    raise

            def close(self) -> None:
                try:
                    super().close()
                finally:
                    budget.release(self)

        return Budgeted

    def pool_class(base: type, connection: type) -> type:
        class Pool(base):
            ConnectionCls = connection

            def _get_conn(self, timeout: float | None = None) -> Any:
                # taken and marked busy under the budget's lock: an idle connection is
                # never closed for another one while a thread starts using it
                with budget.lock:
                    conn = super()._get_conn(timeout)
                    budget.unpark(conn)
                    # the host's requests, shared by its connections (a list: no cycle)
                    counter = self.__dict__.setdefault("_facelab_host_requests", [0])
                    counter[0] += 1
                    conn._facelab_host_requests = counter
                return conn

            def _put_conn(self, conn: Any) -> None:
                with budget.lock:
                    if conn is not None:
                        budget.park(conn)
                    super()._put_conn(conn)

        return Pool

    return {"http": pool_class(HTTPConnectionPool, connection_class(HTTPConnection)),
            "https": pool_class(HTTPSConnectionPool, connection_class(HTTPSConnection))}


def budget_adapter(budget: ConnectionBudget, **options: Any) -> Any:
    """A ``requests`` ``HTTPAdapter`` whose pools draw on ``budget`` (``options``: its own)."""
    from requests.adapters import HTTPAdapter
    from urllib3 import ProxyManager

    classes = _pool_classes(budget)

    class BudgetAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = dict(classes)

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            manager = super().proxy_manager_for(proxy, **kwargs)
            if type(manager) is ProxyManager:      # not SOCKS: its own pool classes
                manager.pool_classes_by_scheme = dict(classes)
            return manager

    adapter = BudgetAdapter(**options)
    adapter.budget = budget
    return adapter
