"""Worker threads and worker processes of the collection stage.

The parent process feeds jobs (one URL or file each) to ``workers`` threads, spread over
several fresh worker interpreters (:func:`facelab.collect.fetch.worker_main`) for large lists,
and receives their outcomes; the caller journals them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import selectors
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facelab.collect.fetch import (
    CONNECTION_ERROR,
    CollectSettings,
    Outcome,
    run_job,
    start_worker,
    workers_supported,
)
from facelab.collect.hosts import HostScheduler

if TYPE_CHECKING:
    from facelab.collect.journal import Journal


# lists shorter than this run in one process: starting workers costs more than it saves
PROCESS_MIN_JOBS = 500


MAX_PROCESSES = 8


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def choose_processes(processes: int | None, jobs: int, workers: int) -> int:
    """How many processes run ``jobs`` downloads with ``workers`` threads in all.

    Args:
        processes: Asked for (``None``: automatic).
        jobs: URLs or files to fetch this run.
        workers: Threads in all (every process gets at least one).

    Returns:
        ``processes`` capped at ``workers``; automatically one per usable CPU (at most
        :data:`MAX_PROCESSES`), but a single process below :data:`PROCESS_MIN_JOBS` jobs.
        Always 1 where worker processes are not supported (not POSIX).
    """
    if not workers_supported():
        return 1
    if processes is not None:
        return max(1, min(processes, workers))
    if jobs < PROCESS_MIN_JOBS:
        return 1
    return max(1, min(usable_cpus(), workers, MAX_PROCESSES))


def run_jobs(jobs: list[tuple[str, Any]], settings: CollectSettings, images_dir: Path,
              journal: Journal, progress: bool, done_before: int, total: int,
              processes: int) -> HostScheduler:
    """Run the jobs host-aware (in threads, or in worker processes); journal each outcome.

    Returns:
        The scheduler, with its counts (``retry_waits``, ``tripped``).
    """
    from tqdm.auto import tqdm

    scheduler = HostScheduler(jobs, settings)
    bar = tqdm(total=total, initial=done_before, desc="collect", unit="photo",
               disable=not progress, smoothing=0.05, mininterval=1.0)

    def write(lines: list[Outcome]) -> None:
        for line in lines:
            journal.write(line)
            bar.update(1)

    def record(outcome: Outcome | None) -> None:
        """Journal one outcome (``None``: only what finished probes ended)."""
        write(scheduler.poll())
        if outcome is not None:
            write(scheduler.finish(outcome))

    scheduler.start_probes()
    try:
        if processes > 1:
            _ProcessRun(scheduler, settings, images_dir, record, processes).run()
        else:
            _run_in_threads(scheduler, settings, images_dir, record)
    finally:
        scheduler.close()
        bar.close()
    return scheduler


def _pause(scheduler: HostScheduler) -> None:
    """Nothing in flight and every queued host paused (Retry-After): sleep until one may go."""
    hint = scheduler.wait_hint()
    time.sleep(min(hint, 1.0) if hint is not None else 0.05)


def _run_in_threads(scheduler: HostScheduler, settings: CollectSettings, images_dir: Path,
                    record: Callable[[Outcome | None], None]) -> None:
    """Run the jobs in this process's threads, one job per thread at a time."""
    sessions: list = []
    pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="facelab-collect")
    pending: set[Future] = set()
    try:
        while True:
            record(None)
            while len(pending) < settings.workers and (job := scheduler.take()) is not None:
                pending.add(pool.submit(run_job, job, settings, images_dir, sessions))
            if not pending:
                if not scheduler.pending():
                    break
                _pause(scheduler)
                continue
            ready, pending = wait(pending, timeout=scheduler.wait_hint(),
                                  return_when=FIRST_COMPLETED)
            for future in ready:
                record(future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        # interrupted (Ctrl-C): journal what finished meanwhile, so it is not fetched again
        for future in pending:
            if future.done() and not future.cancelled() and future.exception() is None:
                record(future.result())
        for session in sessions:
            session.close()


@dataclass(eq=False)         # compared and hashed by identity
class _Worker:
    """The parent's view of one worker process."""

    process: Any
    conn: Any
    threads: int
    in_flight: set[str] = field(default_factory=set)   # journal keys sent, not answered
    broken: bool = False                               # a send failed: it is dying


def _readable(conn: Any) -> bool:
    """Whether more bytes wait on a worker's pipe (one poll system call, no selector)."""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _death(process: Any) -> str:
    try:
        code = process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return "its pipe closed"
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


class _ProcessRun:
    """Run the jobs in worker processes that share ``settings.workers`` threads.

    Each worker is a fresh interpreter (:func:`facelab.collect.fetch.start_worker`).  The
    parent feeds each worker at most one job per thread, as the host scheduler allows, and
    journals every outcome as it arrives, so the journal has one writer and a killed run
    resumes as before (workers exit as soon as the parent is gone).  A worker that dies
    (killed, out of memory) leaves the URLs it had in flight as ``connection_error`` rows
    (``--retry-failed`` tries them again) and is replaced; but if one dies before any worker
    has answered at all, workers cannot run here, and that raises.
    """

    def __init__(self, scheduler: HostScheduler, settings: CollectSettings, images_dir: Path,
                 record: Callable[[Outcome | None], None], processes: int) -> None:
        self.scheduler, self.settings, self.images_dir = scheduler, settings, images_dir
        self.record, self.processes = record, processes
        self.workers: list[_Worker] = []
        self.answered = self.replaced = 0
        self.selector = selectors.DefaultSelector()   # one for the run: cheaper than wait()
        self.affinity: dict[str, _Worker] = {}        # host -> the worker that had it last

    def start(self, threads: int) -> _Worker:
        """Start one worker process with ``threads`` threads."""
        worker = _Worker(*start_worker(self.settings, self.images_dir, threads), threads)
        self.workers.append(worker)
        self.selector.register(worker.conn, selectors.EVENT_READ, worker)
        return worker

    def feed(self) -> None:
        """Send jobs to the workers while the host scheduler allows.

        * A worker holds at most one job per thread, so a job sent starts at once (one
          queued behind slow hosts' downloads would hold a slot of its host's cap without
          downloading: on a web of slow hosts, the busiest host's URLs waited there).
        * A host's URLs all go to one worker, the least-loaded one when its first URL goes
          out: that worker's pool holds every connection to the host (at most the per-host
          cap, idle ones included; another worker's would add to them) and keeps them alive
          (a new one costs a round trip).  A host whose worker has no free thread waits.
        * A host's first URL goes to the least-loaded worker: with a per-host cap the
          scheduler may allow fewer jobs in flight than the workers could hold, and
          filling the first worker first would leave the others idle.
        """
        while True:
            open_ = [w for w in self.workers
                     if not w.broken and len(w.in_flight) < w.threads]
            if not open_:
                return
            job = self.scheduler.take(functools.partial(self.may_send, open_))
            if job is None:
                return
            host = self.scheduler.host_name(job[0])
            worker = self.affinity.get(host)
            if worker is None:
                worker = min(open_, key=lambda w: len(w.in_flight) / w.threads)
                self.affinity[host] = worker
            worker.in_flight.add(job[0])
            try:
                worker.conn.send(job)
            except OSError:     # the worker died: its end of file shows up in the wait
                worker.broken = True

    def may_send(self, open_: list[_Worker], host: str) -> bool:
        """Whether a host's URL may go now: its worker (if it has one) is among ``open_``."""
        worker = self.affinity.get(host)
        return worker is None or worker in open_

    def busy(self) -> bool:
        """Whether jobs are queued or in flight."""
        return self.scheduler.pending() or any(w.in_flight for w in self.workers)

    def run(self) -> None:
        """Start the workers, feed them, journal their outcomes, stop them."""
        shares = [self.settings.workers // self.processes
                  + (i < self.settings.workers % self.processes) for i in range(self.processes)]
        try:
            for threads in shares:
                self.start(threads)
            while self.busy():
                self.record(None)
                self.feed()
                # every worker is watched, busy or not: one that dies shows as end of file
                for key, _ in self.selector.select(timeout=self.scheduler.wait_hint()):
                    self.receive(key.data)
            self.stop()
        finally:
            self.selector.close()
            for worker in self.workers:   # interrupted, or a worker stuck: stop them all now
                if worker.process.poll() is None:
                    worker.process.kill()
                worker.process.wait()
                worker.conn.close()

    def receive(self, worker: _Worker) -> None:
        """Take the outcomes a worker has sent (at least one), or handle its death."""
        try:
            while True:
                message = worker.conn.recv()
                if isinstance(message, str):     # a body is in: its host may go on
                    self.scheduler.release(message)
                else:
                    worker.in_flight.discard(message.key)
                    self.answered += 1
                    self.record(message)
                if not worker.in_flight or not _readable(worker.conn):
                    return
        except (EOFError, OSError):
            self.bury(worker)

    def bury(self, worker: _Worker) -> None:
        """A worker died: its URLs in flight become rows, and it is replaced."""
        how = _death(worker.process)
        self.workers.remove(worker)
        # its connections died with it: its hosts may go to any worker
        self.affinity = {host: w for host, w in self.affinity.items() if w is not worker}
        self.selector.unregister(worker.conn)
        worker.conn.close()
        if not self.answered:
            raise RuntimeError(
                f"a collection worker process ended ({how}) before any photo came back: "
                "worker processes cannot run here; rerun with --processes 1 to download in "
                "this process only") from None
        for key in sorted(worker.in_flight):
            self.record(Outcome(key, CONNECTION_ERROR, f"the worker process fetching it died "
                                f"({how}) with {len(worker.in_flight)} URLs in flight; "
                                "--retry-failed tries them again"))
        self.replaced += 1
        if self.scheduler.pending() and self.replaced <= 2 * self.processes:
            self.start(worker.threads)
            self.feed()
        elif self.scheduler.pending():
            raise RuntimeError(
                f"collection worker processes keep dying (the last: {how}); finished work "
                "is journalled: rerun with --processes 1") from None

    def stop(self) -> None:
        """Tell every worker's threads to stop, and wait for the processes to end."""
        for worker in self.workers:
            try:
                for _ in range(worker.threads):
                    worker.conn.send(None)
            except OSError:     # it ended after its last photo: nothing is lost
                pass
        for worker in self.workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(timeout=30)
