"""Figures of the data stages: split shares, class counts, label order in batches, augmentation."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from facelab.data.augment import augment_examples, load_image
from facelab.data.pipeline import batch_stats, expected_distinct_classes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from facelab.data.labels import LabelMap


def plot_split_shares(splits: Mapping[str, pd.DataFrame], split: str = "val",
                      label: str = "person") -> Figure:
    """Per class, the share of its photos in ``split``, for several ways of splitting.

    A stratified split puts every class at its fraction; a random split scatters them
    (and a small class can end with no validation photo at all).
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.6))
    for i, (name, df) in enumerate(splits.items()):
        share = (df["split"] == split).groupby(df[label]).mean()
        share = share.sort_index()
        ax.plot(np.arange(len(share)), share.to_numpy(), marker="o" if i else "x", ls="",
                label=f"{name}: {split} share per class {share.min():.2f}-{share.max():.2f}")
    ax.set_xlabel("class (sorted by name)")
    ax.set_ylabel(f"share of the class in {split}")
    ax.set_ylim(0, None)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_counts(distributions: Mapping[str, pd.Series] | pd.Series, title: str = "",
                sharey: bool = True) -> Figure:
    """Bar charts of class distributions side by side (one panel per entry).

    Args:
        distributions: ``{"before": counts, "undersample": counts, ...}`` or one Series.
        title: Figure title.
        sharey: One y scale for all panels (shows how much data a strategy drops).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    if isinstance(distributions, pd.Series):
        distributions = {"counts": distributions}
    n = len(distributions)
    fig, axes = plt.subplots(1, n, figsize=(max(4.0, 3.6 * n), 3.4), sharey=sharey,
                             squeeze=False)
    for ax, (name, counts) in zip(axes[0], distributions.items(), strict=True):
        values = np.asarray(counts.to_numpy(), dtype=float)
        ax.bar(np.arange(len(values)), values, width=0.85, color="tab:blue")
        if values.size and values.min() > 0:
            ratio = values.max() / values.min()
            ax.axhline(values.mean(), color="tab:red", lw=1, ls="--")
            ax.set_title(f"{name}\nratio {ratio:.2f}, total {values.sum():.0f}", fontsize=9)
        else:
            ax.set_title(name, fontsize=9)
        ax.set_xlabel("class (largest first)")
        ax.set_xticks([])
    axes[0][0].set_ylabel("photos per class")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_label_order(scenarios: Mapping[str, np.ndarray], num_classes: int,
                     show_batches: int = 8) -> Figure:
    """Draw the label sequences and classes per batch of each scenario.

    Top row: one panel per scenario, the class id of every example of the first
    ``show_batches`` batches (one row per batch; a one-colour row = a one-class batch).
    Bottom: distinct classes per batch for every scenario, with the expectation for K
    uniformly drawn classes dashed.
    """
    import matplotlib.pyplot as plt

    n = len(scenarios)
    # one colour per class, neighbouring ids far apart on the colour wheel
    colours = plt.get_cmap("gist_ncar")(np.linspace(0.02, 0.95, max(num_classes, 1)))[:, :3]
    colours = colours[np.random.default_rng(0).permutation(len(colours))]
    fig = plt.figure(figsize=(3.6 * n, 6.2))
    grid = fig.add_gridspec(2, n, height_ratios=[1.2, 1])
    for i, (name, batches) in enumerate(scenarios.items()):
        ax = fig.add_subplot(grid[0, i])
        shown = batches[:show_batches]
        ax.imshow(colours[shown], aspect="auto", interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("position in batch")
        ax.set_ylabel("batch")
        ax.set_yticks(range(len(shown)))
    ax = fig.add_subplot(grid[1, :])
    for name, batches in scenarios.items():
        ax.plot(batch_stats(batches)["distinct"].to_numpy(), marker="o", ms=3, label=name)
    b = next(iter(scenarios.values())).shape[1]
    ax.axhline(expected_distinct_classes(b, num_classes), color="k", ls="--", lw=1,
               label=f"expected, {num_classes} classes drawn uniformly")
    ax.set_xlabel("batch")
    ax.set_ylabel("distinct classes in batch")
    ax.set_ylim(0, None)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_batch(images: Any, onehot: Any, label_map: LabelMap, n: int = 16,
               ncols: int = 8) -> Figure:
    """Show the first ``n`` images of a batch with their class names."""
    images = np.asarray(images)[:n]
    ids = np.asarray(onehot).argmax(axis=-1)[:n]
    titles = [str(label_map.decode(int(i)))[:16] for i in ids]
    return image_grid(images, titles, ncols=ncols, fontsize=7)


def preview_grid(image: np.ndarray | str | os.PathLike[str], layer: Any = None,
                 n: int = 15, ncols: int = 8, seed: int = 0, title: str = "") -> Figure:
    """Draw one face and ``n`` augmented versions of it in a grid (the original first).

    Args:
        image: An (H, W, 3) array in [0, 255] or an image file.
        layer: The augmentation (default :func:`make_augmentation` with ``seed``).
        n: Augmented copies.
        ncols: Columns of the grid.
        seed: Seed of the default augmentation.
        title: Figure title.

    Returns:
        The matplotlib figure.
    """
    original = image if isinstance(image, np.ndarray) else load_image(image)
    copies = augment_examples(original, layer, n=n, seed=seed)
    titles = ["original", *(f"#{i}" for i in range(1, len(copies) + 1))]
    fig = image_grid([original, *copies], titles, ncols=ncols)
    if title:
        fig.suptitle(title)
        fig.tight_layout()
    return fig


def image_grid(images: Sequence[Any], titles: Sequence[str], ncols: int = 8,
               fontsize: int = 8) -> Figure:
    """Draw (H, W, 3) images with values in [0, 255] in a grid, one title each.

    Args:
        images: The images (arrays or tensors).
        titles: One title per image.
        ncols: Columns of the grid.
        fontsize: Title font size.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    nrows = max(1, -(-len(images) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 1.75 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(np.clip(np.asarray(images[i]), 0, 255).astype(np.uint8))
            ax.set_title(titles[i], fontsize=fontsize)
    fig.tight_layout()
    return fig
