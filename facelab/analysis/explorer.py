"""A confusion matrix you can open: an ipywidgets explorer for JupyterLab.

:func:`explore` shows the confusion matrix as a grid of cells (the count and share on
hover, colour = share of the true class, mistakes in red), the verdict's classes marked
(dominant columns red, swallowed rows orange, one-way pairs outlined), and a list of the
mistakes sorted by count.  Choosing a cell, by clicking it or from the list, shows the faces
behind it with their scores when image paths are given.  Empty cells are one shared widget
shown many times, so a 47-class matrix costs a few hundred widgets, not thousands.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
import pandas as pd

from facelab.analysis.bias import DEFAULT_THRESHOLD, Verdict, bias_verdict, confusion
from facelab.analysis.labels import LabelsLike, prediction_table

DOMINANT = "#c62828"
SWALLOWED = "#ef6c00"
RIGHT_RGB = (21, 101, 192)      # diagonal cells: blue
WRONG_RGB = (198, 40, 40)       # off-diagonal cells: red
MAX_FACES = 48                  # faces shown per cell


def _colour(share: float, rgb: tuple[int, int, int]) -> str:
    """White -> ``rgb`` by the square root of a share (small mistakes stay visible)."""
    t = float(np.sqrt(np.clip(share, 0.0, 1.0)))
    r, g, b = (round(255 + (c - 255) * t) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def _thumbnail(path: Any, side: int) -> bytes | None:
    """A JPEG thumbnail of an image file, or ``None`` when it is missing or unreadable."""
    from PIL import Image

    if not isinstance(path, str) or not path:
        return None
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            img.thumbnail((side, side))
            buffer = io.BytesIO()
            img.save(buffer, format="JPEG", quality=90)
    except OSError:
        return None
    return buffer.getvalue()


def _label(name: str, role: str, colour: str, size: tuple[int, int]) -> widgets.HTML:
    """A header: ``predicted`` (a column, written upwards) or ``true`` (a row)."""
    cell, font = size
    if role == "predicted":
        style, layout = ("writing-mode:vertical-rl;transform:rotate(180deg)",
                         widgets.Layout(width=f"{cell}px", margin="0", overflow="hidden"))
    else:
        style, layout = ("text-align:right", widgets.Layout(height=f"{cell}px",
                                                             margin="0 4px 0 0", overflow="hidden"))
    return widgets.HTML(f"<div title='{role}: {html.escape(name)}' style='{style};font-size:"
                        f"{font}px;white-space:nowrap;color:{colour};line-height:{cell}px'>"
                        f"{html.escape(name[:22])}</div>", layout=layout)


class Explorer(widgets.VBox):
    """The confusion-matrix explorer (:func:`explore` builds it).

    Attributes:
        names: Class names in id order.
        counts: The confusion matrix (rows true, columns predicted).
        verdict: The bias verdict on the same predictions.
        predictions: One row per example (``person``, ``predicted``, ``path``,
            ``confidence`` when given).
        pairs: The list of mistakes, sorted by count (a ``Select``; value ``(i, j)``).
        gallery: The faces (or rows) behind the chosen cell.
        selected: The chosen cell as ``(true, predicted)`` names, or ``None``.
    """

    def __init__(self, predictions: pd.DataFrame, names: Sequence[str], verdict: Verdict, *,
                 thumb: int = 96, max_faces: int = MAX_FACES) -> None:
        self.names = list(names)
        self.predictions = predictions
        self.verdict = verdict
        self.counts = confusion(predictions["true"], predictions["pred"], self.names)
        self.selected: tuple[str, str] | None = None
        self._thumb, self._max_faces = thumb, max_faces
        self._cells: dict[tuple[int, int], widgets.Button] = {}
        self._borders: dict[tuple[int, int], str] = {}
        self._syncing = False
        options = self._pair_options()
        self.pairs = widgets.Select(options=options, value=None,
                                    rows=min(12, max(3, len(options))),
                                    layout=widgets.Layout(width="100%"))
        self.pairs.observe(self._on_pair, names="value")
        self.title = widgets.HTML("<i>click a cell, or choose a mistake from the list</i>")
        self.gallery = widgets.Box(layout=widgets.Layout(flex_flow="row wrap", width="100%"))
        side = widgets.VBox([widgets.HTML("<b>mistakes, most frequent first</b> "
                                          "(true &rarr; predicted)"), self.pairs, self.title,
                             self.gallery],
                            layout=widgets.Layout(flex="1 1 auto", min_width="260px"))
        body = widgets.HBox([self._matrix(), side], layout=widgets.Layout(
            align_items="flex-start", width="100%"))
        super().__init__([self._header(), body])

    def __repr__(self) -> str:
        return (f"Explorer({len(self.names)} classes, {len(self.predictions)} predictions, "
                f"selected {self.selected}: {self.verdict.message[:80]})")

    # ------------------------------------------------------------------ building
    def _header(self) -> widgets.HTML:
        colour = DOMINANT if self.verdict.fired else "#2e7d32"
        legend = (f"cell colour: share of the true class (<span style='color:"
                  f"{_colour(0.8, RIGHT_RGB)}'>right</span>, <span style='color:"
                  f"{_colour(0.8, WRONG_RGB)}'>wrong</span>); <span style='color:{DOMINANT}'>"
                  f"red column</span>: dominant class; <span style='color:{SWALLOWED}'>orange "
                  f"row</span>: swallowed class; outlined cell: one-way pair; hover a cell for "
                  f"its count")
        return widgets.HTML(f"<div style='color:{colour}'><b>{html.escape(self.verdict.message)}"
                            f"</b></div><div style='font-size:11px'>{len(self.predictions)} "
                            f"predictions, {len(self.names)} classes. {legend}</div>")

    def _pair_options(self) -> list[tuple[str, tuple[int, int]]]:
        cm = self.counts
        support = np.maximum(cm.sum(axis=1), 1)
        cells = [(int(cm[i, j]), i, j) for i, j in zip(*np.nonzero(cm), strict=True) if i != j]
        cells.sort(key=lambda c: (-c[0], c[1], c[2]))
        return [(f"{self.names[i]} \u2192 {self.names[j]}: {n} ({n / support[i]:.0%} of "
                 f"{self.names[i]})", (i, j)) for n, i, j in cells]

    def _matrix(self) -> widgets.GridBox:
        k = len(self.names)
        size = (24, 11) if k <= 15 else ((14, 9) if k <= 50 else (10, 9))   # cell px, font px
        dominant = set(self.verdict.dominant.offenders)
        swallowed = set(self.verdict.swallowed.classes)
        one_way = {(p["true"], p["predicted"]) for p in self.verdict.pairs.pairs}
        empty = widgets.HTML("", tooltip="no example in this cell",
                             layout=widgets.Layout(width=f"{size[0]}px", height=f"{size[0]}px",
                                                   margin="0", border="1px solid #f2f2f2"))
        children: list[widgets.Widget] = [widgets.HTML(
            "<div style='font-size:10px;text-align:right'>true \u2193 predicted \u2192</div>")]
        children += [_label(name, "predicted", DOMINANT if name in dominant else "inherit", size)
                     for name in self.names]
        for i, name in enumerate(self.names):
            children.append(_label(name, "true", SWALLOWED if name in swallowed else "inherit",
                                   size))
            children += [self._button(i, j, size, (name, self.names[j]) in one_way)
                         if self.counts[i, j] else empty for j in range(k)]
        return widgets.GridBox(children, layout=widgets.Layout(
            grid_template_columns=f"max-content repeat({k}, {size[0]}px)",
            grid_template_rows=f"max-content repeat({k}, {size[0]}px)", grid_gap="0px",
            margin="0 16px 0 0", flex="0 0 auto"))

    def _button(self, i: int, j: int, size: tuple[int, int], outlined: bool) -> widgets.Button:
        """The button of a non-empty cell: count on hover (and in the cell up to 15 classes)."""
        n, true = int(self.counts[i, j]), self.names[i]
        share = n / self.counts[i].sum()
        button = widgets.Button(
            description=str(n) if len(self.names) <= 15 else "",
            tooltip=f"{true} \u2192 {self.names[j]}: {n} ({share:.0%} of {true})",
            layout=widgets.Layout(width=f"{size[0]}px", height=f"{size[0]}px", margin="0",
                                  padding="0", border=f"2px solid {DOMINANT}" if outlined
                                  else "1px solid #ffffff"))
        button.style.button_color = _colour(share, RIGHT_RGB if i == j else WRONG_RGB)
        button.style.font_size = f"{size[1]}px"
        button.style.text_color = "white" if share > 0.4 else "black"
        button.on_click(lambda _: self.select(i, j))
        self._cells[(i, j)] = button
        self._borders[(i, j)] = button.layout.border
        return button

    # ------------------------------------------------------------------ behaviour
    def cell(self, true: str | int, predicted: str | int) -> widgets.Button:
        """The button of a non-empty cell (by names or ids); ``KeyError`` for an empty one."""
        return self._cells[(self._id(true), self._id(predicted))]

    def _id(self, label: str | int) -> int:
        if isinstance(label, (int, np.integer)):
            return int(label)
        if label not in self.names:
            raise ValueError(f"{label!r} is not a class of this explorer")
        return self.names.index(label)

    def select(self, true: str | int, predicted: str | int) -> None:
        """Choose a cell: highlight it, show its faces (what a click on it does)."""
        i, j = self._id(true), self._id(predicted)
        if self.selected is not None:
            old = (self._id(self.selected[0]), self._id(self.selected[1]))
            if old in self._cells:
                self._cells[old].layout.border = self._borders[old]
        if (i, j) in self._cells:
            self._cells[(i, j)].layout.border = "3px solid black"
        self.selected = (self.names[i], self.names[j])
        self._syncing = True
        try:
            self.pairs.value = (i, j) if i != j and self.counts[i, j] else None
        finally:
            self._syncing = False
        self._show_cell(i, j)

    def _on_pair(self, change: dict[str, Any]) -> None:
        if not self._syncing and change["new"] is not None:
            self.select(*change["new"])

    def _show_cell(self, i: int, j: int) -> None:
        rows = self.predictions[(self.predictions["true"] == i) & (self.predictions["pred"] == j)]
        if "confidence" in rows:
            rows = rows.sort_values("confidence", ascending=False, kind="stable")
        kind = "right" if i == j else "wrong"
        shown = rows.head(self._max_faces)
        more = f", the {len(shown)} with the highest score" if len(rows) > len(shown) else ""
        self.title.value = (f"<b>{html.escape(self.names[i])} \u2192 "
                            f"{html.escape(self.names[j])}</b>: {len(rows)} {kind} "
                            f"prediction(s){more}")
        self.gallery.children = ([self._face(index, row) for index, row in shown.iterrows()]
                                 if "path" in rows else [self._listing(rows)])

    def _face(self, index: Any, row: pd.Series) -> widgets.VBox:
        score = row.get("confidence", np.nan)
        caption = f"#{index}" + ("" if pd.isna(score) else f" score {score:.2f}")
        data = _thumbnail(row["path"], self._thumb)
        name = html.escape(Path(str(row["path"])).name)
        picture = (widgets.Image(value=data, format="jpeg", width=self._thumb) if data else
                   widgets.HTML(f"<div style='width:{self._thumb}px;height:{self._thumb}px;"
                                f"font-size:10px'>missing: {name}</div>"))
        label = widgets.HTML(f"<div title='{html.escape(str(row['path']))}' style='font-size:"
                             f"10px'>{caption}</div>")
        return widgets.VBox([picture, label], layout=widgets.Layout(margin="2px"))

    def _listing(self, rows: pd.DataFrame) -> widgets.HTML:
        scores = rows["confidence"] if "confidence" in rows else None
        items = [f"#{index}" + ("" if scores is None else f" ({scores[index]:.2f})")
                 for index in rows.index[:200]]
        return widgets.HTML("<div style='font-size:11px'>rows (no images given): "
                            + ", ".join(items) + ("..." if len(rows) > 200 else "") + "</div>")


def explore(y_true: LabelsLike, y_pred: LabelsLike, images: Any = None, *,
            scores: Any = None, names: Sequence[str] | None = None,
            threshold: float = DEFAULT_THRESHOLD, thumb: int = 96) -> Explorer:
    """Open the confusion matrix in JupyterLab: hover for counts, click a cell for its faces.

    Args:
        y_true: True labels (names or ids; a list, array or Series).
        y_pred: Predicted labels.
        images: Image path per example (optional): choosing a cell shows its faces.
        scores: Score of each prediction (optional): shown under the faces, best first.
        names: Class names in id order (default: the labels' classes, sorted).
        threshold: The dominant-class threshold of the verdict.
        thumb: Thumbnail size in pixels.

    Returns:
        An :class:`Explorer` widget (display it, or leave it last in a cell).
    """
    table, names = prediction_table(y_true, y_pred, names, images=images, scores=scores)
    verdict = bias_verdict(table["true"], table["pred"], names, threshold)
    return Explorer(table, names, verdict, thumb=thumb)
