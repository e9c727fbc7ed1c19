"""Collection stage: download (or import) photos into ``DIR/images`` and ``DIR/manifest.csv``.

``facelab collect SOURCE --out DIR`` takes a PubFig-format URL list or a folder with one
sub-folder per person and writes:

* ``DIR/images/<sha256>.<ext>``: each distinct decoded photo once, named by its content
  (never by a person's name or a URL), the extension from the decoded format;
* ``DIR/manifest.csv``: one row per input row, in input order, with ``person``,
  ``imagenum``, ``url``, ``rect``, ``md5_expected``, ``status``, ``reason``, ``path``,
  ``sha256``, ``width``, ``height``, ``bytes``, ``md5_ok``, ``dup_group`` (and ``phash``,
  ``dhash``, ``line``, ``source``);
* ``DIR/journal.jsonl``: one JSON line per finished URL, appended and flushed as each one
  finishes.  A run killed at any moment and started again skips every URL in the journal
  and ends with the same manifest as an uninterrupted run: statuses that depend on several
  photos (placeholders, duplicates, md5 policy) are computed at the end from the journal.
  A URL's journalled outcome is final (``--retry-failed`` tries timeouts, connection and
  HTTP errors again; delete the journal to redo everything, e.g. after raising
  ``--max-bytes``).

Every row ends in exactly one status of :data:`STATUSES`.  Downloads use a
``requests.Session`` per worker thread with urllib3's ``Retry`` (exponential backoff on
429/5xx and connection errors), separate connect/read timeouts and a total deadline per
URL, stream with a byte cap, and decode every photo with Pillow (``verify`` and ``load``:
truncated files are ``corrupt``, decompression bombs ``too_large``); the per-photo work is
:mod:`facelab.fetch`.  ``workers`` threads run it, spread over several worker processes for
large lists (``processes``; one per core by default), which the parent feeds and whose
outcomes it journals.  At most ``2 * workers`` URLs are in flight, so memory stays bounded
by about ``2 * workers * max_bytes``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from facelab import dedup
from facelab.fetch import (  # noqa: F401 - the per-photo API is also reachable from here
    CONNECTION_ERROR,
    CORRUPT,
    FORMAT_EXTENSIONS,
    HTTP_ERROR,
    NOT_IMAGE,
    TIMEOUT,
    TOO_LARGE,
    TOO_MANY_REDIRECTS,
    UNSUPPORTED_URL,
    CollectSettings,
    Outcome,
    fetch_url,
    import_file,
    inspect_image,
    make_session,
    run_job,
    start_worker,
    workers_supported,
)
from facelab.manifest import OK, write_manifest
from facelab.sources import BAD_ROW, read_folder, read_pubfig_list

# every row ends in exactly one of these
DUPLICATE = dedup.DUPLICATE
PLACEHOLDER = dedup.PLACEHOLDER
MD5_MISMATCH = "md5_mismatch"
STATUSES = (OK, DUPLICATE, PLACEHOLDER, HTTP_ERROR, TIMEOUT, CONNECTION_ERROR,
            TOO_MANY_REDIRECTS, NOT_IMAGE, CORRUPT, TOO_LARGE, MD5_MISMATCH, UNSUPPORTED_URL,
            BAD_ROW)
# outcomes worth another try with --retry-failed
TRANSIENT = (HTTP_ERROR, TIMEOUT, CONNECTION_ERROR)

MANIFEST_COLUMNS = ("person", "imagenum", "url", "rect", "md5_expected", "status", "reason",
                    "path", "sha256", "width", "height", "bytes", "md5_ok", "dup_group",
                    "phash", "dhash", "line", "source")
IMAGES_DIR = "images"
JOURNAL_NAME = "journal.jsonl"
SCHEMES = ("http", "https")
# lists shorter than this run in one process: starting workers costs more than it saves
PROCESS_MIN_JOBS = 500
MAX_PROCESSES = 8


# --------------------------------------------------------------------------- journal

def read_journal(path: Path) -> dict[str, dict[str, Any]]:
    """Read the journal: the last complete line per key wins (a torn last line is skipped)."""
    entries: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return entries
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and "key" in entry and "status" in entry:
                entries[entry["key"]] = entry
    return entries


class _Journal:
    """Append-only JSON-lines journal, one flushed line per finished URL."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a torn last line (killed mid-write) must not glue onto the next one
        if path.exists() and path.stat().st_size:
            with open(path, "rb") as handle:
                handle.seek(-1, os.SEEK_END)
                torn = handle.read(1) != b"\n"
            if torn:
                with open(path, "ab") as handle:
                    handle.write(b"\n")
        self.handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, outcome: Outcome) -> None:
        entry = dict(vars(outcome))      # not asdict(): its deep copies cost per URL
        if not entry["extra"]:
            entry.pop("extra")
        self.handle.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


# --------------------------------------------------------------------------- the stage

def _read_source(source: str | os.PathLike[str]) -> tuple[pd.DataFrame, Path | None]:
    """Rows of a PubFig list or a person folder (folder root returned for the latter)."""
    path = Path(source)
    if path.is_dir():
        rows = read_folder(path)
        rows["source"] = rows["path"]
        rows = rows.drop(columns=["path"])
        for column in ("url", "rect", "md5_expected"):
            rows[column] = ""
        rows["line"] = pd.NA
        return rows, path
    if path.is_file():
        rows = read_pubfig_list(path)
        rows["source"] = ""
        return rows, None
    raise FileNotFoundError(f"no source at {path}: pass a PubFig-format URL list (e.g. "
                            "dev_urls.txt or the demo web's urls.txt) or a folder with one "
                            "sub-folder of photos per person")


def _row_key(row: Any, folder: Path | None) -> tuple[str, str]:
    """(journal key, status before download) of one input row."""
    if row["status"] == BAD_ROW:
        return "", BAD_ROW
    if folder is not None:
        return f"file:{row['source']}", OK
    url = str(row["url"]).strip()
    scheme = urlsplit(url).scheme.lower() if "://" in url or ":" in url else ""
    if scheme not in SCHEMES:
        return "", UNSUPPORTED_URL
    return f"url:{url}", OK


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


def _run_jobs(jobs: list[tuple[str, Any]], settings: CollectSettings, images_dir: Path,
              journal: _Journal, progress: bool, done_before: int, total: int,
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
                    images_dir: Path, journal: _Journal, bar: Any) -> int:
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
                      images_dir: Path, journal: _Journal, bar: Any, processes: int) -> int:
    """Run the jobs in worker processes that share ``settings.workers`` threads.

    Each worker is a fresh interpreter (:func:`facelab.fetch.start_worker`).  The parent
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


def _finalize(rows: list[dict[str, Any]], keys: list[str], pre: list[str],
              entries: dict[str, dict[str, Any]], settings: CollectSettings,
              known: list[dedup.KnownPlaceholder]) -> pd.DataFrame:
    """Build the manifest from the input rows and the journal (deterministic)."""
    records = []
    for row, key, status in zip(rows, keys, pre, strict=True):
        record = {c: row.get(c, "") for c in ("person", "imagenum", "url", "rect",
                                               "md5_expected", "line", "source")}
        record.update(status=status, reason=row["reason"] if status == BAD_ROW else "",
                      path="", sha256="", width=pd.NA, height=pd.NA, bytes=pd.NA,
                      md5_ok=pd.NA, dup_group="", phash="", dhash="")
        if status == UNSUPPORTED_URL:
            record["reason"] = (f"scheme of {str(row['url'])[:80]!r} is not http(s): nothing "
                                "is fetched")
        elif status == OK:
            entry = entries[key]
            record.update(status=entry["status"], reason=entry.get("reason", ""),
                          bytes=entry.get("bytes") if entry.get("bytes") is not None
                          else pd.NA)
            if entry["status"] == OK:
                record.update(path=f"{IMAGES_DIR}/{entry['sha256']}{entry['ext']}",
                              sha256=entry["sha256"], width=entry["width"],
                              height=entry["height"], phash=entry["phash"],
                              dhash=entry.get("dhash", ""))
            expected = str(record["md5_expected"] or "")
            if expected and entry.get("md5"):
                record["md5_ok"] = entry["md5"] == expected
                if not record["md5_ok"] and entry["status"] == OK:
                    if settings.md5 == "reject":
                        record.update(status=MD5_MISMATCH, reason=(
                            f"md5 {entry['md5']} differs from the list's {expected} "
                            "(--md5 reject)"))
                    else:
                        record["reason"] = ("md5 differs from the list's (kept: resized or "
                                            "re-encoded originals are still good photos)")
        records.append(record)
    df = pd.DataFrame.from_records(records, columns=[c for c in MANIFEST_COLUMNS])
    df = dedup.mark_placeholders_and_duplicates(
        df, min_people=settings.placeholder_people,
        placeholder_distance=settings.placeholder_distance,
        near_threshold=settings.near_threshold, known=known)
    for column in ("imagenum", "width", "height", "bytes", "line"):
        df[column] = pd.to_numeric(df[column], errors="coerce").astype("Int64")
    df["md5_ok"] = df["md5_ok"].astype("boolean")
    for column in ("person", "url", "rect", "md5_expected", "status", "reason", "path",
                   "sha256", "dup_group", "phash", "dhash", "source"):
        df[column] = df[column].fillna("").astype(str)
    return df


def summary(df: pd.DataFrame, stats: dict[str, Any] | None = None, top: int = 80) -> str:
    """Human-readable summary: rows per status, kept photos per person, speed.

    Args:
        df: A collection manifest.
        stats: ``df.attrs["collect"]`` of a run (adds the images/s line).
        top: At most this many people are listed.

    Returns:
        The text :func:`collect` prints.
    """
    lines = [f"{len(df)} rows"]
    counts = df["status"].value_counts()
    for status in STATUSES:
        if counts.get(status, 0):
            lines.append(f"  {status:<20}{counts[status]:>7}")
    per_person = df[df["status"] == OK].groupby("person").size().sort_values(ascending=False)
    if len(per_person):
        lines.append(f"photos per person (ok): {len(per_person)} people, min "
                     f"{per_person.min()}, median {per_person.median():g}, max "
                     f"{per_person.max()}")
        cells = [f"{name[:22]:<22}{n:>5}" for name, n in per_person.head(top).items()]
        for start in range(0, len(cells), 3):
            lines.append("  " + "   ".join(cells[start:start + 3]))
        if len(per_person) > top:
            lines.append(f"  ... and {len(per_person) - top} more")
    if stats:
        lines.append(f"fetched {stats['fetched']} URLs/files this run in "
                     f"{stats['seconds']:.1f} s with {stats.get('workers', '?')} threads in "
                     f"{stats.get('processes', 1)} process(es): "
                     f"{stats['urls_per_s']:.1f} URLs/s, "
                     f"{stats['images_per_s']:.1f} decoded images/s "
                     f"({stats['from_journal']} taken from the journal)")
    return "\n".join(lines)


def collect(source: str | os.PathLike[str], out: str | os.PathLike[str], *,
            workers: int = 16, timeout: float = 10.0, connect_timeout: float = 5.0,
            deadline: float | None = None, retries: int = 2, backoff: float = 0.5,
            max_bytes: int = 20_000_000, max_pixels: int = 50_000_000,
            max_redirects: int = 10, md5: str = "flag", limit: int | None = None,
            placeholders: str | os.PathLike[str] | None = None, placeholder_people: int = 3,
            placeholder_distance: int = 4, near_threshold: int = 8,
            retry_failed: bool = False, processes: int | None = None,
            progress: bool = True, verbose: bool = True) -> pd.DataFrame:
    """Download (or import) the photos of a source into ``out``; return the manifest.

    Args:
        source: A PubFig-format URL list, or a folder with one sub-folder per person.
        out: The stage folder (``images/``, ``manifest.csv``, ``journal.jsonl``).
        workers: Concurrent downloads (threads, in all processes together).
        timeout: Read timeout per attempt, seconds.
        connect_timeout: Connect timeout per attempt, seconds.
        deadline: Total seconds per URL, retries included (default ``3 * timeout``).
        retries: Retries on connection errors, 429 and 5xx (exponential backoff).
        backoff: urllib3's ``backoff_factor``, seconds.
        max_bytes: Larger responses are ``too_large`` (the rest is not read).
        max_pixels: Larger images are refused as decompression bombs.
        max_redirects: More redirects are ``too_many_redirects``.
        md5: ``flag`` (keep, ``md5_ok`` False) or ``reject`` (``md5_mismatch``).
        limit: Only the first ``limit`` input rows.
        placeholders: Optional folder of known placeholder pictures.
        placeholder_people: A picture behind URLs of this many different people is a
            placeholder.
        placeholder_distance: phash and dhash bits within which two pictures are "the
            same" there.
        near_threshold: phash and dhash bits within which two photos are near duplicates.
        retry_failed: Try again URLs the journal has as timeout / connection / HTTP errors.
        processes: Worker processes sharing the ``workers`` threads (``None``: one per
            usable CPU, up to 8, for runs of at least 500 URLs/files; 1: everything in
            this process).  Decoding, hashing and the HTTP stack's Python code share one
            interpreter lock per process, so on a fast network several processes go
            faster; on a slow one it is latency, not CPU, that limits.
        progress: Show a tqdm progress bar.
        verbose: Print the summary.

    Returns:
        The manifest (also written to ``out/manifest.csv``); ``df.attrs["collect"]`` holds
        the run's figures.

    Raises:
        FileNotFoundError: When the source does not exist.
        ValueError: For impossible settings or an ``out`` inside a source folder.
    """
    settings = CollectSettings(
        workers=workers, timeout=timeout, connect_timeout=connect_timeout, deadline=deadline,
        retries=retries, backoff=backoff, max_bytes=max_bytes, max_pixels=max_pixels,
        max_redirects=max_redirects, md5=md5, placeholder_people=placeholder_people,
        placeholder_distance=placeholder_distance, near_threshold=near_threshold)
    settings.check()
    if limit is not None and limit < 0:
        raise ValueError(f"--limit must be 0 or more (got {limit})")
    if processes is not None and processes < 1:
        raise ValueError(f"--processes must be at least 1 (got {processes}); leave it out "
                         "for one per CPU")
    rows, folder = _read_source(source)
    out = Path(out).resolve()
    if folder is not None and out.is_relative_to(folder.resolve()):
        raise ValueError(f"--out {out} is inside the source folder {folder}: choose a folder "
                         "outside it")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    known = dedup.load_known_placeholders(placeholders)
    if limit is not None:
        rows = rows.iloc[:limit]
    rows = rows.reset_index(drop=True)

    images_dir = out / IMAGES_DIR
    images_dir.mkdir(parents=True, exist_ok=True)
    for stale in images_dir.glob(".*.tmp"):   # temp files of a killed run
        stale.unlink(missing_ok=True)
    journal_path = out / JOURNAL_NAME
    entries = read_journal(journal_path)
    for key, entry in list(entries.items()):
        redo = retry_failed and entry["status"] in TRANSIENT
        lost = entry["status"] == OK and not (images_dir
                                             / f"{entry['sha256']}{entry['ext']}").exists()
        if redo or lost:
            del entries[key]

    records = rows.to_dict("records")
    keys, pre = [], []
    for row in records:
        key, status = _row_key(row, folder)
        keys.append(key)
        pre.append(status)
    jobs: list[tuple[str, Any]] = []
    wanted: set[str] = set()
    for row, key, status in zip(records, keys, pre, strict=True):
        if status != OK or key in wanted:
            continue
        wanted.add(key)
        if key not in entries:
            target: Any = (folder / row["source"]) if folder is not None else str(
                row["url"]).strip()
            jobs.append((key, target))
    from_journal = len(wanted) - len(jobs)

    processes = choose_processes(processes, len(jobs), settings.workers)
    started = time.perf_counter()
    journal = _Journal(journal_path)
    # urllib3 logs a warning per retry: thousands of lines on a real list; outcomes are rows
    pool_log = logging.getLogger("urllib3.connectionpool")
    level = pool_log.level
    pool_log.setLevel(logging.ERROR)
    try:
        _run_jobs(jobs, settings, images_dir, journal, progress, from_journal, len(wanted),
                  processes)
    finally:
        journal.close()
        pool_log.setLevel(level)
    seconds = time.perf_counter() - started
    entries = read_journal(journal_path)
    df = _finalize(records, keys, pre, entries, settings, known)
    write_manifest(df, out)
    fetched_ok = sum(1 for key, _ in jobs if entries.get(key, {}).get("status") == OK)
    stats = {"fetched": len(jobs), "from_journal": from_journal,
             "seconds": round(seconds, 3), "workers": settings.workers,
             "processes": processes,
             "urls_per_s": len(jobs) / seconds if seconds > 0 else 0.0,
             "images_per_s": fetched_ok / seconds if seconds > 0 else 0.0,
             "out": str(out)}
    df.attrs["collect"] = stats
    if verbose:
        print(f"facelab collect: {out / 'manifest.csv'}")
        print(summary(df, stats))
    return df


def compare_with_truth(df: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Cross-table of what really hid behind each URL (the demo web's truth) vs the status.

    Args:
        df: A collection manifest.
        truth: A table with ``url`` and ``kind`` (e.g. :func:`facelab.demoweb.read_truth`).

    Returns:
        Rows: kinds; columns: statuses (in :data:`STATUSES` order); cells: row counts.
        URLs absent from ``truth`` count under the kind ``(not in truth)``.
    """
    kinds = truth.drop_duplicates("url").set_index("url")["kind"]
    kind = df["url"].map(kinds).fillna("(not in truth)").rename("kind")
    table = pd.crosstab(kind, df["status"].rename("status"))
    return table[[s for s in STATUSES if s in table.columns]]


# --------------------------------------------------------------------------- plots

def plot_status_counts(df: pd.DataFrame, ax=None):
    """Bar chart of rows per status (every status of the vocabulary that occurs).

    Returns:
        The matplotlib axes.
    """
    import matplotlib.pyplot as plt

    counts = df["status"].value_counts()
    order = [s for s in STATUSES if counts.get(s, 0)]
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.5))
    colors = ["tab:green" if s == OK else "tab:gray" if s in (DUPLICATE, PLACEHOLDER)
              else "tab:red" for s in order]
    bars = ax.bar(order, [counts[s] for s in order], color=colors)
    ax.bar_label(bars, fontsize=8)
    ax.set_ylabel("rows")
    ax.set_title(f"collection: {len(df)} rows, {counts.get(OK, 0)} kept")
    ax.tick_params(axis="x", rotation=45)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    return ax


def plot_photos_per_person(df: pd.DataFrame, ax=None):
    """Horizontal bars: kept (``ok``) photos per person, most first.

    Returns:
        The matplotlib axes.
    """
    import matplotlib.pyplot as plt

    people = df["person"].unique()
    per_person = (df[df["status"] == OK].groupby("person").size()
                  .reindex(people, fill_value=0).sort_values())
    if ax is None:
        _, ax = plt.subplots(figsize=(7, max(2.5, 0.18 * len(per_person))))
    ax.barh(per_person.index.astype(str), per_person.to_numpy(), color="tab:blue")
    ax.set_xlabel("photos kept (status ok)")
    ax.set_title(f"photos per person after collection (min {per_person.min()}, "
                 f"max {per_person.max()})")
    ax.tick_params(axis="y", labelsize=7)
    return ax


def _show(ax, path: Path, title: str) -> None:
    from PIL import Image

    ax.axis("off")
    try:
        with Image.open(path) as image:
            image.thumbnail((256, 256))
            ax.imshow(image.convert("RGB"))
    except Exception:  # noqa: BLE001 - a missing file just shows its title
        pass
    ax.set_title(title, fontsize=7)


def plot_placeholders(df: pd.DataFrame, root: str | os.PathLike[str], max_images: int = 8):
    """Gallery of the distinct pictures detected as placeholders, with how often each came.

    Args:
        df: A collection manifest.
        root: The folder holding it (paths are relative to it).
        max_images: At most this many pictures.

    Returns:
        The matplotlib figure (``None`` when there is no placeholder).
    """
    import matplotlib.pyplot as plt

    rows = df[(df["status"] == PLACEHOLDER) & (df["path"] != "")]
    if rows.empty:
        return None
    groups = rows.groupby("path").agg(urls=("url", "size"), people=("person", "nunique"))
    groups = groups.sort_values("urls", ascending=False).head(max_images)
    fig, axes = plt.subplots(1, len(groups), figsize=(2.2 * len(groups), 2.6), squeeze=False)
    for ax, (path, info) in zip(axes[0], groups.iterrows(), strict=True):
        _show(ax, Path(root) / path, f"{info['urls']} URLs, {info['people']} people")
    fig.suptitle(f"detected placeholders: {len(rows)} rows", fontsize=9)
    fig.tight_layout()
    return fig


def plot_duplicate_groups(df: pd.DataFrame, root: str | os.PathLike[str], n_groups: int = 4,
                          per_group: int = 4):
    """Show a few duplicate groups side by side: the kept copy first, then the duplicates.

    Args:
        df: A collection manifest.
        root: The folder holding it.
        n_groups: Rows of the figure (groups with near copies first).
        per_group: Photos per group shown.

    Returns:
        The matplotlib figure (``None`` when there is no duplicate group).
    """
    import matplotlib.pyplot as plt

    grouped = df[df["dup_group"] != ""].groupby("dup_group", sort=True)
    if not grouped.ngroups:
        return None
    # prefer groups that show near copies (several distinct files), then bigger ones
    order = sorted(grouped, key=lambda g: (-g[1]["sha256"].nunique(), -len(g[1]), g[0]))
    chosen = order[:n_groups]
    columns = min(per_group, max(len(group) for _, group in chosen))
    fig, axes = plt.subplots(len(chosen), columns, figsize=(2.2 * columns, 2.4 * len(chosen)),
                             squeeze=False)
    for axrow, (name, group) in zip(axes, chosen, strict=True):
        group = pd.concat([group[group["status"] == OK], group[group["status"] != OK]])
        for ax in axrow:
            ax.axis("off")
        for ax, (_, row) in zip(axrow, group.head(per_group).iterrows(), strict=False):
            title = (f"{name} {row['status']}\n{str(row['person'])[:18]} "
                     f"{row['width']}x{row['height']}")
            _show(ax, Path(root) / row["path"], title)
    fig.suptitle("duplicate groups (kept copy first)", fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facelab collect``."""
    parser.add_argument("source", help="PubFig-format URL list, or a folder with one "
                        "sub-folder of photos per person")
    parser.add_argument("--out", required=True, help="stage folder to write (images/, "
                        "manifest.csv, journal.jsonl); rerun the same command to resume")
    parser.add_argument("--workers", type=int, default=16, help="concurrent downloads")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="read timeout per attempt, seconds (default 10)")
    parser.add_argument("--connect-timeout", type=float, default=5.0,
                        help="connect timeout per attempt, seconds (default 5)")
    parser.add_argument("--deadline", type=float, default=None,
                        help="total seconds per URL, retries included (default 3x --timeout)")
    parser.add_argument("--retries", type=int, default=2,
                        help="retries on connection errors, 429 and 5xx (default 2)")
    parser.add_argument("--max-bytes", type=int, default=20_000_000,
                        help="larger responses are too_large (default 20 MB)")
    parser.add_argument("--md5", choices=("flag", "reject"), default="flag",
                        help="md5 differs from the list's: flag (keep, md5_ok false; "
                        "default) or reject (status md5_mismatch)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N rows")
    parser.add_argument("--placeholders", default=None,
                        help="folder of known placeholder pictures")
    parser.add_argument("--placeholder-people", type=int, default=3,
                        help="a picture behind URLs of this many different people is a "
                        "placeholder (default 3)")
    parser.add_argument("--near-threshold", type=int, default=8,
                        help="phash and dhash bits within which photos are near duplicates "
                        "(default 8)")
    parser.add_argument("--processes", type=int, default=None,
                        help="worker processes sharing the --workers threads (default: one "
                        "per CPU, up to 8, for 500 URLs or more; 1: all in this process)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="try again URLs that ended in timeout / connection / HTTP errors")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``facelab collect``."""
    collect(args.source, args.out, workers=args.workers, timeout=args.timeout,
            connect_timeout=args.connect_timeout, deadline=args.deadline,
            retries=args.retries, max_bytes=args.max_bytes, md5=args.md5, limit=args.limit,
            placeholders=args.placeholders, placeholder_people=args.placeholder_people,
            near_threshold=args.near_threshold, retry_failed=args.retry_failed,
            processes=args.processes, progress=not args.no_progress)
    return 0

