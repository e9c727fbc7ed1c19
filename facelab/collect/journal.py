"""The collection's journal: one flushed JSON line per finished URL, so a killed run resumes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from facelab.collect.fetch import (
    Outcome,
)


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


class Journal:
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
        """Append one finished URL's outcome and flush it to disk."""
        entry = dict(vars(outcome))      # not asdict(): its deep copies cost per URL
        if not entry["extra"]:
            entry.pop("extra")
        self.handle.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
        self.handle.flush()

    def close(self) -> None:
        """Close the file."""
        self.handle.close()
