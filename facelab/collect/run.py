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
:mod:`facelab.collect.fetch`.  ``workers`` threads run it, spread over several worker processes for
large lists (``processes``; one per core by default), which the parent feeds and whose
outcomes it journals.  At most ``workers`` URLs are in flight, so memory stays bounded
by about ``workers * max_bytes``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from facelab.collect import dedup
from facelab.collect.fetch import (
    CONNECTION_ERROR,
    CORRUPT,
    HTTP_ERROR,
    NOT_IMAGE,
    TIMEOUT,
    TOO_LARGE,
    TOO_MANY_REDIRECTS,
    UNSUPPORTED_URL,
    CollectSettings,
)
from facelab.collect.hosts import HOST_COLUMNS, HOST_UNREACHABLE, host_of, host_summary, host_table
from facelab.collect.journal import Journal, read_journal
from facelab.collect.sources import BAD_ROW, read_folder, read_pubfig_list
from facelab.collect.workers import choose_processes, run_jobs
from facelab.lock import FolderLock, lock_folder
from facelab.manifest import OK, write_manifest

# every row ends in exactly one of these
DUPLICATE = dedup.DUPLICATE


PLACEHOLDER = dedup.PLACEHOLDER


MD5_MISMATCH = "md5_mismatch"


STATUSES = (OK, DUPLICATE, PLACEHOLDER, HTTP_ERROR, TIMEOUT, CONNECTION_ERROR,
            HOST_UNREACHABLE, TOO_MANY_REDIRECTS, NOT_IMAGE, CORRUPT, TOO_LARGE, MD5_MISMATCH,
            UNSUPPORTED_URL, BAD_ROW)


# outcomes worth another try with --retry-failed
TRANSIENT = (HTTP_ERROR, TIMEOUT, CONNECTION_ERROR, HOST_UNREACHABLE)


MANIFEST_COLUMNS = ("person", "imagenum", "url", "rect", "md5_expected", "status", "reason",
                    "path", "sha256", "width", "height", "bytes", "md5_ok", "dup_group",
                    "phash", "dhash", "line", "source")


IMAGES_DIR = "images"


JOURNAL_NAME = "journal.jsonl"


HOSTS_NAME = "hosts.csv"


SHARD_NAME = "shard.json"


SCHEMES = ("http", "https")


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
    try:
        scheme = urlsplit(url).scheme.lower() if "://" in url or ":" in url else ""
    except ValueError:       # e.g. a broken IPv6 literal: requests says why, as a row
        scheme = "http"
    if scheme not in SCHEMES:
        return "", UNSUPPORTED_URL
    return f"url:{url}", OK


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
    """Human-readable summary: rows per status, kept photos per person, hosts, speed.

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
    lines.extend(host_summary(df.attrs.get("hosts", [])))
    if stats:
        lines.append(f"fetched {stats['fetched']} URLs/files this run in "
                     f"{stats['seconds']:.1f} s with {stats.get('workers', '?')} threads in "
                     f"{stats.get('processes', 1)} process(es): "
                     f"{stats['urls_per_s']:.1f} URLs/s, "
                     f"{stats['images_per_s']:.1f} decoded images/s "
                     f"({stats['from_journal']} taken from the journal)")
    return "\n".join(lines)


@dataclass(frozen=True)
class _Plan:
    """One run's input rows, their journal keys and their status before any download."""

    records: list[dict[str, Any]]
    keys: list[str]
    pre: list[str]
    folder: Path | None


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"I/N"`` (or ``(I, N)``) -> ``(I, N)`` with ``1 <= I <= N``; ``None`` stays ``None``.

    Raises:
        ValueError: For anything else, saying what to pass.
    """
    if shard is None:
        return None
    try:
        i, n = (int(v) for v in shard.split("/")) if isinstance(shard, str) else shard
    except ValueError:
        raise ValueError(f"--shard must be I/N, e.g. 1/4 (got {shard!r})") from None
    if not 1 <= i <= n:
        raise ValueError(f"--shard I/N needs 1 <= I <= N (got {i}/{n}): shards are numbered "
                         "from 1")
    return i, n


def shard_of_host(host: str, shards: int) -> int:
    """The shard (1..``shards``) of a host's URLs, from a hash of its name.

    Deterministic on every machine, and one host's URLs always together, so per-host
    politeness holds across machines.
    """
    return int(hashlib.sha256(host.encode("utf-8")).hexdigest()[:16], 16) % shards + 1


def _plan(source: str | os.PathLike[str], limit: int | None,
          shard: tuple[int, int] | None) -> _Plan:
    """Read the source; key each row; keep the shard's rows (rows of no host: shard 1)."""
    rows, folder = _read_source(source)
    if limit is not None:
        rows = rows.iloc[:limit]
    records = rows.reset_index(drop=True).to_dict("records")
    keys, pre = [], []
    for row in records:
        key, status = _row_key(row, folder)
        keys.append(key)
        pre.append(status)
    if shard is not None:
        i, n = shard
        mine = [(shard_of_host(host_of(key[4:]), n) if key.startswith("url:") else 1) == i
                for key in keys]
        records = [r for r, m in zip(records, mine, strict=True) if m]
        keys = [k for k, m in zip(keys, mine, strict=True) if m]
        pre = [p for p, m in zip(pre, mine, strict=True) if m]
    return _Plan(records, keys, pre, folder)


def _check_out(out: str | os.PathLike[str], folder: Path | None, what: str) -> FolderLock:
    """Refuse impossible ``out``s, lock it, create ``images/`` and drop stale temp files.

    Returns:
        The held lock (``.folder``: ``out`` resolved); a second writer is refused here.
    """
    out = Path(out).resolve()
    if folder is not None and out.is_relative_to(folder.resolve()):
        raise ValueError(f"--out {out} is inside the source folder {folder}: choose a folder "
                         "outside it")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    held = lock_folder(out, what)
    try:
        images_dir = out / IMAGES_DIR
        images_dir.mkdir(parents=True, exist_ok=True)
        for stale in images_dir.glob(".*.tmp"):   # temp files of a killed run
            stale.unlink(missing_ok=True)
    except BaseException:
        held.release()
        raise
    return held


def _usable_entries(out: Path, retry_failed: bool) -> dict[str, dict[str, Any]]:
    """The journal, less what is to be redone (``retry_failed``) or whose file is gone."""
    entries = read_journal(out / JOURNAL_NAME)
    for key, entry in list(entries.items()):
        redo = retry_failed and entry["status"] in TRANSIENT
        lost = entry["status"] == OK and not (out / IMAGES_DIR
                                             / f"{entry['sha256']}{entry['ext']}").exists()
        if redo or lost:
            del entries[key]
    return entries


def _jobs(plan: _Plan, entries: dict[str, dict[str, Any]]) -> tuple[list[tuple[str, Any]], int]:
    """The jobs still to do (one per distinct key) and how many keys the journal has."""
    jobs: list[tuple[str, Any]] = []
    wanted: set[str] = set()
    for row, key, status in zip(plan.records, plan.keys, plan.pre, strict=True):
        if status != OK or key in wanted:
            continue
        wanted.add(key)
        if key not in entries:
            target: Any = (plan.folder / row["source"]) if plan.folder is not None else str(
                row["url"]).strip()
            jobs.append((key, target))
    return jobs, len(wanted) - len(jobs)


def _fetch(jobs: list[tuple[str, Any]], settings: CollectSettings, out: Path, progress: bool,
           from_journal: int, processes: int) -> dict[str, Any]:
    """Run the jobs, journalling each outcome; return the run's timing and host counts."""
    started = time.perf_counter()
    journal = Journal(out / JOURNAL_NAME)
    # urllib3 logs a warning per retry: thousands of lines on a real list; outcomes are rows
    pool_log = logging.getLogger("urllib3.connectionpool")
    level = pool_log.level
    pool_log.setLevel(logging.ERROR)
    try:
        scheduler = run_jobs(jobs, settings, out / IMAGES_DIR, journal, progress, from_journal,
                             from_journal + len(jobs), processes)
    finally:
        journal.close()
        pool_log.setLevel(level)
    return {"seconds": time.perf_counter() - started, "retry_waits": scheduler.retry_waits,
            "hosts_tripped": scheduler.tripped}


def _finish(plan: _Plan, out: Path, settings: CollectSettings,
            known: list[dedup.KnownPlaceholder]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Manifest and per-host table from the journal; both written to ``out``."""
    entries = read_journal(out / JOURNAL_NAME)
    df = _finalize(plan.records, plan.keys, plan.pre, entries, settings, known)
    write_manifest(df, out)
    hosts = host_table(entries, plan.keys)
    pd.DataFrame(hosts, columns=list(HOST_COLUMNS)).to_csv(out / HOSTS_NAME, index=False)
    df.attrs["hosts"] = hosts
    return df, entries


def _write_shard_info(out: Path, source: str | os.PathLike[str], shard: tuple[int, int],
                      limit: int | None, settings: CollectSettings, rows: int) -> None:
    """``out/shard.json``: which list and shard this folder holds (read by :func:`merge`)."""
    path = Path(source).resolve()
    info = {"source": str(path), "source_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "shard": shard[0], "shards": shard[1], "limit": limit, "rows": rows,
            "settings": asdict(settings)}
    (out / SHARD_NAME).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")


def collect(source: str | os.PathLike[str], out: str | os.PathLike[str], *,
            workers: int = 16, timeout: float = 10.0, connect_timeout: float = 5.0,
            deadline: float | None = None, retries: int = 2, backoff: float = 0.5,
            max_bytes: int = 20_000_000, max_pixels: int = 50_000_000,
            max_redirects: int = 10, md5: str = "flag", limit: int | None = None,
            placeholders: str | os.PathLike[str] | None = None, placeholder_people: int = 3,
            placeholder_distance: int = 4, near_threshold: int = 8,
            retry_failed: bool = False, processes: int | None = None,
            per_host: int = 2, breaker: int = 3, max_retry_after: float = 60.0,
            probe: bool = True, shard: str | tuple[int, int] | None = None,
            progress: bool = True, verbose: bool = True) -> pd.DataFrame:
    """Download (or import) the photos of a source into ``out``; return the manifest.

    Args:
        source: A PubFig-format URL list, or a folder with one sub-folder per person.
        out: The stage folder (``images/``, ``manifest.csv``, ``journal.jsonl``,
            ``hosts.csv``).
        workers: Concurrent downloads (threads, in all processes together), and the most
            connections open at once, idle kept-alive ones included.
        timeout: Read timeout per attempt, seconds.
        connect_timeout: Connect timeout per attempt, seconds.
        deadline: Total seconds per URL, retries included (default ``3 * timeout``).
        retries: Retries on connection errors and 5xx (exponential backoff), and waits
            for a host that answers 429/503.
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
        retry_failed: Try again URLs the journal has as timeout / connection / HTTP errors
            or ``host_unreachable``.
        processes: Worker processes sharing the ``workers`` threads (``None``: one per
            usable CPU, up to 8, for runs of at least 500 URLs/files; 1: everything in
            this process).  Decoding, hashing and the HTTP stack's Python code share one
            interpreter lock per process, so on a fast network several processes go
            faster; on a slow one it is latency, not CPU, that limits.
        per_host: URLs of one host in flight at once (0: no cap); see
            :mod:`facelab.collect.hosts`.
        breaker: Consecutive failures after which a host's remaining URLs end as
            ``host_unreachable`` without being tried (0: never).
        max_retry_after: Longest ``Retry-After`` wait honoured, seconds.
        probe: Check every host first: its name looked up ahead (no connection), its first
            URL sent alone; a dead host ends at once, one wait whatever its URLs.
        shard: ``"I/N"``: collect only the I-th of N shards (by host; rows of no host go
            to shard 1) and write ``shard.json``; join shards with :func:`merge`.
        progress: Show a tqdm progress bar.
        verbose: Print the summary.

    Returns:
        The manifest (also written to ``out/manifest.csv``); ``df.attrs["collect"]`` holds
        the run's figures, ``df.attrs["hosts"]`` the per-host table (``out/hosts.csv``).

    Raises:
        FileNotFoundError: When the source does not exist.
        ValueError: For impossible settings or an ``out`` inside a source folder.
        facelab.lock.FolderBusyError: When another run is writing ``out``.
    """
    settings = CollectSettings(
        workers=workers, timeout=timeout, connect_timeout=connect_timeout, deadline=deadline,
        retries=retries, backoff=backoff, max_bytes=max_bytes, max_pixels=max_pixels,
        max_redirects=max_redirects, md5=md5, placeholder_people=placeholder_people,
        placeholder_distance=placeholder_distance, near_threshold=near_threshold,
        per_host=per_host, breaker=breaker, max_retry_after=max_retry_after, probe=probe)
    settings.check()
    if limit is not None and limit < 0:
        raise ValueError(f"--limit must be 0 or more (got {limit})")
    if processes is not None and processes < 1:
        raise ValueError(f"--processes must be at least 1 (got {processes}); leave it out "
                         "for one per CPU")
    shard = parse_shard(shard)
    plan = _plan(source, limit, shard)
    known = dedup.load_known_placeholders(placeholders)
    with _check_out(out, plan.folder, "collect") as held:   # one writer per folder
        out = held.folder
        if shard is not None:
            _write_shard_info(out, source, shard, limit, settings, len(plan.records))
        jobs, from_journal = _jobs(plan, _usable_entries(out, retry_failed))
        processes = choose_processes(processes, len(jobs), settings.workers)
        run = _fetch(jobs, settings, out, progress, from_journal, processes)
        df, entries = _finish(plan, out, settings, known)
    seconds = run.pop("seconds")
    fetched_ok = sum(1 for key, _ in jobs if entries.get(key, {}).get("status") == OK)
    stats = {"fetched": len(jobs), "from_journal": from_journal,
             "seconds": round(seconds, 3), "workers": settings.workers,
             "processes": processes, "per_host": settings.per_host, **run,
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
        truth: A table with ``url`` and ``kind`` (e.g. :func:`facelab.demo.web.read_truth`).

    Returns:
        Rows: kinds; columns: statuses (in :data:`STATUSES` order); cells: row counts.
        URLs absent from ``truth`` count under the kind ``(not in truth)``.
    """
    kinds = truth.drop_duplicates("url").set_index("url")["kind"]
    kind = df["url"].map(kinds).fillna("(not in truth)").rename("kind")
    table = pd.crosstab(kind, df["status"].rename("status"))
    return table[[s for s in STATUSES if s in table.columns]]
