"""Worker threads and worker processes of the collection stage.

The parent process feeds jobs (one URL or file each) to ``workers`` threads, spread over
several fresh worker interpreters (:func:`facelab.collect.fetch.worker_main`) for large lists,
and receives their outcomes; the caller journals them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
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
              processes: int) -> int:
    """Run the jobs (in threads, or in worker processes); journal each outcome on arrival."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=done_before, desc="collect", unit="photo",
               disable=not progress, smoothing=0.05, mininterval=1.0)
    try:
        if processes > 1:
            return _run_in_processes(jobs, settings, images_dir, journal, bar, processes)
        return _run_in_threads(jobs, settings, images_dir, journal, bar)
    finally:
        bar.close()


def _run_in_threads(jobs: list[tuple[str, Any]], settings: CollectSettings,
                    images_dir: Path, journal: Journal, bar: Any) -> int:
    """Run the jobs in this process's threads, at most ``2 * workers`` in flight."""
    sessions: list = []
    window = 2 * settings.workers
    finished = 0
    pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="facelab-collect")
    pending: set[Future] = set()
    queue: Iterator[tuple[str, Any]] = iter(jobs)
    try:
        while True:
            for job in queue:
                pending.add(pool.submit(run_job, job, settings, images_dir, sessions))
                if len(pending) >= window:
                    break
            if not pending:
                break
            ready, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in ready:
                journal.write(future.result())
                finished += 1
                bar.update(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        # interrupted (Ctrl-C): journal what finished meanwhile, so it is not fetched again
        for future in pending:
            if future.done() and not future.cancelled() and future.exception() is None:
                journal.write(future.result())
        for session in sessions:
            session.close()
    return finished


@dataclass
class _Worker:
    """The parent's view of one worker process."""

    process: Any
    conn: Any
    threads: int
    in_flight: set[str] = field(default_factory=set)   # journal keys sent, not answered


def _death(process: Any) -> str:
    try:
        code = process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return "its pipe closed"
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


def _run_in_processes(jobs: list[tuple[str, Any]], settings: CollectSettings,
                      images_dir: Path, journal: Journal, bar: Any, processes: int) -> int:
    """Run the jobs in worker processes that share ``settings.workers`` threads.

    Each worker is a fresh interpreter (:func:`facelab.collect.fetch.start_worker`).  The parent
    feeds each worker at most two jobs per thread and journals every outcome as it arrives,
    so the journal has one writer and a killed run resumes as before (workers exit as soon
    as the parent is gone).  A worker that dies (killed, out of memory) leaves the URLs it
    had in flight as ``connection_error`` rows (``--retry-failed`` tries them again) and is
    replaced; but if one dies before any worker has answered at all, workers cannot run
    here, and that raises.
    """
    from multiprocessing.connection import wait as wait_for

    workers: list[_Worker] = []
    position = finished = answered = replaced = 0

    def record(outcome: Outcome) -> None:
        nonlocal finished
        journal.write(outcome)
        finished += 1
        bar.update(1)

    def start(threads: int) -> _Worker:
        worker = _Worker(*start_worker(settings, images_dir, threads), threads)
        workers.append(worker)
        return worker

    def feed(worker: _Worker) -> None:
        nonlocal position
        while len(worker.in_flight) < 2 * worker.threads and position < len(jobs):
            job = jobs[position]
            try:
                worker.conn.send(job)
            except OSError:     # the worker died: its end of file shows up in the wait
                return
            position += 1
            worker.in_flight.add(job[0])

    shares = [settings.workers // processes + (i < settings.workers % processes)
              for i in range(processes)]
    try:
        for threads in shares:
            start(threads)
        for worker in list(workers):
            feed(worker)
        # every worker is watched, busy or not: one that dies shows up as its end of file
        while position < len(jobs) or any(w.in_flight for w in workers):
            by_conn = {w.conn: w for w in workers}
            for conn in wait_for(list(by_conn)):
                worker = by_conn[conn]
                try:
                    outcome = conn.recv()
                except (EOFError, OSError):
                    how = _death(worker.process)
                    workers.remove(worker)
                    worker.conn.close()
                    if not answered:
                        raise RuntimeError(
                            f"a collection worker process ended ({how}) before any photo came "
                            "back: worker processes cannot run here; rerun with --processes 1 "
                            "to download in this process only") from None
                    for key in sorted(worker.in_flight):
                        record(Outcome(key, CONNECTION_ERROR, f"the worker process fetching "
                                       f"it died ({how}) with {len(worker.in_flight)} URLs in "
                                       "flight; --retry-failed tries them again"))
                    replaced += 1
                    if position < len(jobs) and replaced <= 2 * processes:
                        feed(start(worker.threads))
                    elif position < len(jobs):
                        raise RuntimeError(
                            f"collection worker processes keep dying (the last: {how}); "
                            "finished work is journalled: rerun with --processes 1") from None
                    continue
                worker.in_flight.discard(outcome.key)
                answered += 1
                record(outcome)
                feed(worker)
        for worker in workers:
            try:
                for _ in range(worker.threads):
                    worker.conn.send(None)
            except OSError:     # it ended after its last photo: nothing is lost
                pass
        for worker in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(timeout=30)
    finally:
        for worker in workers:      # interrupted, or a worker stuck: stop them all now
            if worker.process.poll() is None:
                worker.process.kill()
            worker.process.wait()
            worker.conn.close()
    return finished
