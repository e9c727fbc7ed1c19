"""Figures of the collection stage: statuses, photos per person, placeholders, duplicates, hosts."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from facelab.collect.dedup import DUPLICATE, PLACEHOLDER
from facelab.collect.run import STATUSES
from facelab.manifest import OK


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


def plot_hosts(hosts: pd.DataFrame | str | os.PathLike[str], top: int = 15, axes=None):
    """The per-host view of a run: where the time went, and which hosts were dead.

    Left: the ``top`` hosts that took the most seconds (summed over their URLs), split into
    time lost to timeouts and the rest, labelled with URLs / ok photos.  Right: hosts by
    outcome (answered, dead: probe or breaker, failed otherwise) with the URLs they held.

    Args:
        hosts: A run's per-host table (``hosts.csv``, :func:`facelab.collect.hosts.host_table`),
            or the stage folder holding it.
        top: Slowest hosts shown.
        axes: Two matplotlib axes (default: a new figure).

    Returns:
        The two axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not isinstance(hosts, pd.DataFrame):
        path = Path(hosts)
        hosts = pd.read_csv(path / "hosts.csv" if path.is_dir() else path)
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 0.3 * min(top, len(hosts)) + 3),
                               gridspec_kw={"width_ratios": [2, 1]}, layout="constrained")
    slow_ax, kind_ax = axes
    slow = hosts.sort_values("seconds", ascending=False).head(top).iloc[::-1]
    lost = slow["timeout_seconds"].clip(upper=slow["seconds"])
    slow_ax.barh(slow["host"], slow["seconds"] - lost, color="tab:blue", label="answering")
    slow_ax.barh(slow["host"], lost, left=slow["seconds"] - lost, color="tab:red",
                 label="lost to timeouts")
    for y, (_, row) in enumerate(slow.iterrows()):
        slow_ax.text(row["seconds"], y, f" {row['urls']} URLs / {row['ok']} ok"
                     + (" (dead)" if row["dead"] else ""), va="center", fontsize=7)
    slow_ax.set_xlim(0, max(float(slow["seconds"].max()), 1e-3) * 1.35)   # room for labels
    slow_ax.set_xlabel("seconds spent on the host's URLs (summed over workers)")
    slow_ax.set_title(f"the {len(slow)} slowest of {len(hosts)} hosts" if len(hosts) > len(slow)
                      else f"{len(hosts)} host{'' if len(hosts) == 1 else 's'}", loc="left")
    slow_ax.legend(loc="lower right", bbox_to_anchor=(1, 1), ncols=2, fontsize=8,
                   frameon=False)
    slow_ax.tick_params(axis="y", labelsize=7)
    outcome = pd.Series("answered", index=hosts.index)
    outcome[~hosts["answered"].astype(bool)] = "never answered"
    outcome[hosts["dead"].astype(bool)] = "dead (probe / breaker)"
    order = ["answered", "never answered", "dead (probe / breaker)"]
    counts = outcome.value_counts().reindex(order, fill_value=0)
    urls = hosts.groupby(outcome)["urls"].sum().reindex(order, fill_value=0)
    bars = kind_ax.bar(order, counts, color=["tab:green", "tab:orange", "tab:red"])
    kind_ax.bar_label(bars, labels=[f"{c} host{'' if c == 1 else 's'}\n{u} URLs"
                                    for c, u in zip(counts, urls, strict=True)], fontsize=8)
    kind_ax.set_ylabel("hosts")
    kind_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    kind_ax.set_title(f"{hosts['timeout_seconds'].sum():.0f} s lost to timeouts in all")
    kind_ax.tick_params(axis="x", labelsize=8, rotation=15)
    kind_ax.margins(y=0.25)
    return axes
