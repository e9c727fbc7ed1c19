"""Sharded collection: join shard folders (:func:`merge`) and run the shards on Ray.

``facelab collect LIST --out DIR_i --shard I/N`` collects the I-th of N shards, split by host
(:func:`facelab.collect.run.shard_of_host`), so each machine keeps per-host politeness.
:func:`merge` joins the shard folders into one stage folder whose manifest is the one a
single run over the whole list gives: the journals are joined, each photo file is linked
(or copied) once, and placeholders, duplicates and md5 flags are decided again over all
shards.  :func:`run_on_ray` runs the shards as Ray tasks (Ray is imported only there).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from facelab.collect import dedup
from facelab.collect.fetch import CollectSettings
from facelab.collect.journal import Journal, read_journal
from facelab.collect.run import (
    IMAGES_DIR,
    JOURNAL_NAME,
    SHARD_NAME,
    _check_out,
    _finish,
    _plan,
    summary,
)
from facelab.lock import check_complete, lock_folder
from facelab.manifest import OK


def _read_shard_infos(shard_dirs: list[Path]) -> list[dict[str, Any]]:
    """Every shard folder's ``shard.json``, checked to be one complete set from one list."""
    infos = []
    for folder in shard_dirs:
        check_complete(folder, how_to_wait=None)   # a shard still collecting
        path = folder / SHARD_NAME
        if not path.is_file():
            raise ValueError(f"{folder} is not a shard folder (no {SHARD_NAME}): give the "
                             "folders written by `facelab collect ... --shard I/N`")
        infos.append(json.loads(path.read_text(encoding="utf-8")) | {"folder": str(folder)})
    first = infos[0]
    for info in infos[1:]:
        if (info["source_sha256"], info["limit"]) != (first["source_sha256"], first["limit"]):
            raise ValueError(f"shard folder {info['folder']} was collected from another list "
                             f"({info['source']}, limit {info['limit']}) than "
                             f"{first['folder']} ({first['source']}, limit {first['limit']}): "
                             "merge only the shards of one list")
        if info["shards"] != first["shards"]:
            raise ValueError(f"{info['folder']} is shard {info['shard']}/{info['shards']} but "
                             f"{first['folder']} is {first['shard']}/{first['shards']}: "
                             "merge the shards of one split")
    numbers = sorted(info["shard"] for info in infos)
    wanted = list(range(1, first["shards"] + 1))
    if numbers != wanted:
        missing = sorted(set(wanted) - set(numbers))
        twice = sorted({n for n in numbers if numbers.count(n) > 1})
        raise ValueError(f"merge needs each of the {first['shards']} shards once: missing "
                         f"{missing or 'none'}, given twice {twice or 'none'}")
    return infos


def _source_of(infos: list[dict[str, Any]], source: str | os.PathLike[str] | None) -> Path:
    """The list the shards came from, checked against their recorded hash."""
    path = Path(source) if source is not None else Path(infos[0]["source"])
    if not path.is_file():
        raise FileNotFoundError(f"the shards' list {path} is gone: pass it with --source")
    if hashlib.sha256(path.read_bytes()).hexdigest() != infos[0]["source_sha256"]:
        raise ValueError(f"{path} is not the list the shards were collected from (its "
                         "content differs): pass the right one with --source")
    return path


def _join_files(infos: list[dict[str, Any]], out: Path) -> dict[str, dict[str, Any]]:
    """Join the shard journals into ``out``'s and link each photo file in once."""
    entries: dict[str, dict[str, Any]] = {}
    have = read_journal(out / JOURNAL_NAME)
    journal = Journal(out / JOURNAL_NAME)
    try:
        for info in infos:
            folder = Path(info["folder"])
            for key, entry in read_journal(folder / JOURNAL_NAME).items():
                entries[key] = entry
                if entry["status"] == OK:
                    _link_once(folder / IMAGES_DIR, out / IMAGES_DIR,
                               f"{entry['sha256']}{entry['ext']}")
                if have.get(key) != entry:     # a second merge adds nothing
                    journal.handle.write(json.dumps(entry, ensure_ascii=False,
                                                    sort_keys=True) + "\n")
    finally:
        journal.close()
    return entries


def _link_once(source_dir: Path, target_dir: Path, name: str) -> None:
    """Hard-link (or copy, across file systems) one content-named file unless present."""
    target = target_dir / name
    if target.exists():
        return
    try:
        os.link(source_dir / name, target)
    except OSError:
        shutil.copy2(source_dir / name, target)


def merge(shard_dirs: list[str | os.PathLike[str]], out: str | os.PathLike[str], *,
          source: str | os.PathLike[str] | None = None, placeholders: str | None = None,
          verbose: bool = True) -> pd.DataFrame:
    """Join the shard folders of one list into one stage folder; return its manifest.

    Args:
        shard_dirs: The folders of ``facelab collect ... --shard I/N``, every shard once.
        out: The merged stage folder (``images/``, ``manifest.csv``, ``journal.jsonl``,
            ``hosts.csv``); rerunning ``facelab collect LIST --out OUT`` then finds every
            URL done.
        source: The list, where it moved since the shards ran.
        placeholders: Optional folder of known placeholder pictures.
        verbose: Print the summary.

    Returns:
        The manifest: equal, row for row, to a single run's over the whole list.

    Raises:
        ValueError: For a folder that is no shard, shards of different lists or splits,
            missing or repeated shards, or an unfinished shard.
        facelab.lock.FolderBusyError: When another run writes ``out`` or a shard folder.
    """
    if not shard_dirs:
        raise ValueError("merge needs the shard folders to join")
    infos = _read_shard_infos([Path(d).resolve() for d in shard_dirs])
    path = _source_of(infos, source)
    fields = CollectSettings.__dataclass_fields__
    settings = CollectSettings(**{k: v for k, v in infos[0]["settings"].items() if k in fields})
    plan = _plan(path, infos[0]["limit"], None)
    with _check_out(out, plan.folder, "merge") as held:    # merge takes the whole folder
        out = held.folder
        entries = _join_files(infos, out)
        missing = {k for k, p in zip(plan.keys, plan.pre, strict=True) if p == OK} - set(entries)
        if missing:
            raise ValueError(f"{len(missing)} URLs of the list are in no shard's journal (e.g. "
                             f"{sorted(missing)[0]}): a shard is unfinished; rerun its collect "
                             "command (it resumes), then merge again")
        df, _ = _finish(plan, out, settings, dedup.load_known_placeholders(placeholders))
    if verbose:
        print(f"facelab merge: {len(infos)} shards -> {out / 'manifest.csv'}")
        print(summary(df))
    return df


def run_on_ray(source: str | os.PathLike[str], out: str | os.PathLike[str], *, shards: int,
               address: str | None = None, ray_init: dict[str, Any] | None = None,
               verbose: bool = True, **collect_kwargs: Any) -> pd.DataFrame:
    """Collect a list as ``shards`` Ray tasks (one shard each), then :func:`merge` them.

    Each task runs :func:`facelab.collect.collect` with ``shard=(i, shards)`` into
    ``out/shards/<i>`` (which every node must reach: a shared file system on a real
    cluster).  A task whose worker dies is retried by Ray and resumes from its journal, so
    nothing finished is downloaded twice.

    Args:
        source: The PubFig-format list (a path every node can read).
        out: The merged stage folder; the shards go to ``out/shards/``.
        shards: How many shards (tasks).
        address: A running cluster's address (``ray://host:10001`` or ``auto``);
            ``None`` or ``"local"`` starts a local Ray instance.
        ray_init: More keyword arguments of ``ray.init`` (e.g. ``num_cpus``).
        verbose: Print the merged summary.
        **collect_kwargs: Options of :func:`facelab.collect.collect` (workers, per_host...).

    Returns:
        The merged manifest.

    Raises:
        ImportError: When Ray is not installed (``pip install ray==2.60.0``).
    """
    try:
        import ray
    except ImportError as error:
        raise ImportError("run_on_ray needs Ray: pip install ray==2.60.0 (or run the "
                          "shards yourself with `facelab collect --shard I/N` and "
                          "`facelab merge`)") from error
    if shards < 1:
        raise ValueError(f"shards must be at least 1 (got {shards})")
    source, out = Path(source).resolve(), Path(out).resolve()
    with lock_folder(out, "collect --ray"):     # each shard task locks its own folder
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=None if address in (None, "local") else address,
                     **{"include_dashboard": False, "log_to_driver": False,
                        **(ray_init or {})})
        try:
            task = ray.remote(max_retries=3, retry_exceptions=False)(_collect_shard)
            folders = ray.get([task.remote(str(source), str(out / "shards" / str(i)),
                                           f"{i}/{shards}", collect_kwargs)
                               for i in range(1, shards + 1)])
        finally:
            if started_here:
                ray.shutdown()
        return merge(folders, out, source=source,
                     placeholders=collect_kwargs.get("placeholders"), verbose=verbose)


def _collect_shard(source: str, out: str, shard: str, options: dict[str, Any]) -> str:
    """One Ray task: collect one shard (resuming its journal); return its folder."""
    from facelab.collect.run import collect

    collect(source, out, shard=shard, **{"progress": False, "verbose": False, **options})
    return out
