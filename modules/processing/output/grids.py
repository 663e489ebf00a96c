"""Image grids: the one drawing of a grid (batch grids, X/Y/Z plot, prompt matrix, loopback),
A1111's row-count rule, and the batch grid a job of several images shows first.

Column labels go in a band above the grid, row labels in a band to its left; long labels
wrap. Cells keep their pixels (no resampling), so a grid is a faithful contact sheet.

A1111's batch grid (``process_images``): when a job makes two images or more (any fewer
only with "Do not save grids consisting of one picture" off), the images are laid out in
``grid_rows`` rows; "Show grid in gallery" (``return_grid``) puts it first among the
results, with the first image's infotext (``index_of_first_image`` becomes 1), and "Always
save all generated image grids" (``grid_save``) writes it as ``grid-NNNN.png`` with that
infotext inside.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

from modules.processing.output.image_formats import PNG, ImageFormat
from modules.processing.output.saving import date_folder, save_grid

if TYPE_CHECKING:
    from modules.processing.generation.txt2img import GenerationResult
    from modules.processing.sampling.hooks import HookDispatcher

__all__ = ["GridOptions", "add_batch_grid", "grid_rows", "image_grid"]

_BACKGROUND = (255, 255, 255)  # A1111's grid_background_color default
_INK = (0, 0, 0)
_PADDING = 8


def _font(cell_height: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    # Pillow's built-in scalable font: no font file to ship or find on the system.
    return ImageFont.load_default(size=max(10, cell_height // 20))


def _wrapped(label: str, width_px: int, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> str:
    average = max(1.0, font.getlength("x"))
    return "\n".join(textwrap.wrap(label, max(4, int(width_px / average))) or [""])


def _band_height(labels: Sequence[str], width_px: int, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> int:
    if not any(labels):
        return 0
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    heights = [probe.multiline_textbbox((0, 0), _wrapped(label, width_px, font), font=font)[3] for label in labels]
    return max(heights) + 2 * _PADDING


def image_grid(images: Sequence[Image.Image], cols: int, row_labels: Sequence[str] = (),
               col_labels: Sequence[str] = (), margin: int = 0) -> Image.Image:
    """Lay ``images`` out row by row, ``cols`` per row, with optional legends.

    Args:
        images: the cells, all the size of the first (smaller ones are centred).
        cols: cells per row; rows = ceil(len(images) / cols).
        row_labels / col_labels: legends (empty: no band); counts must match rows / cols.
        margin: pixels between cells (A1111 "Grid margins (px)").

    Returns:
        An RGB image of (label band + cols * w + (cols-1) * margin) by the same for rows.

    Raises:
        ValueError: no images, ``cols`` < 1, or label counts that do not match.
    """
    if not images or cols < 1:
        raise ValueError("a grid needs at least one image and one column")
    rows = -(-len(images) // cols)
    if row_labels and len(row_labels) != rows or col_labels and len(col_labels) != cols:
        raise ValueError(f"a {rows}x{cols} grid needs {rows} row labels and {cols} column labels")
    cell_w, cell_h = images[0].size
    font = _font(cell_h)
    top = _band_height(col_labels, cell_w, font)
    left = (cell_w // 2 + 2 * _PADDING) if any(row_labels) else 0
    grid = Image.new("RGB", (left + cols * cell_w + (cols - 1) * margin, top + rows * cell_h + (rows - 1) * margin),
                     _BACKGROUND)
    draw = ImageDraw.Draw(grid)
    for index, image in enumerate(images):
        row, col = divmod(index, cols)
        x, y = left + col * (cell_w + margin), top + row * (cell_h + margin)
        grid.paste(image.convert("RGB"), (x + (cell_w - image.width) // 2, y + (cell_h - image.height) // 2))
    for col, label in enumerate(col_labels):
        x = left + col * (cell_w + margin) + cell_w // 2
        draw.multiline_text((x, top // 2), _wrapped(label, cell_w, font), fill=_INK, font=font, anchor="mm",
                            align="center")
    for row, label in enumerate(row_labels):
        y = top + row * (cell_h + margin) + cell_h // 2
        draw.multiline_text((left // 2, y), _wrapped(label, left - _PADDING, font), fill=_INK, font=font,
                            anchor="mm", align="center")
    return grid


def grid_rows(count: int, batch_size: int = 1, n_rows: int = -1, prevent_empty_spots: bool = False) -> int:
    """How many rows A1111 gives a grid of ``count`` images (its ``image_grid`` rule).

    ``n_rows`` > 0: that many; 0: one row per image of a batch (``batch_size``); -1 (auto):
    round(sqrt(count)), or with ``prevent_empty_spots`` the largest divisor of ``count`` not
    above sqrt(count), so every row is full. Never more rows than images, never fewer than 1.
    """
    if count < 1:
        raise ValueError("a grid needs at least one image")
    if n_rows > 0:
        rows = n_rows
    elif n_rows == 0:
        rows = batch_size
    elif prevent_empty_spots:
        rows = math.isqrt(count)
        while count % rows:
            rows -= 1
    else:
        rows = round(math.sqrt(count))
    return max(1, min(rows, count))


@dataclass(frozen=True)
class GridOptions:
    """Whether and how a job makes its batch grid (A1111's options of the same names).

    ``show``: "Show grid in gallery" (``return_grid``); ``save``: "Always save all generated
    image grids" (``grid_save``) into ``folder`` (the tab's grids folder, with a ``YYYY-MM-DD``
    subfolder when ``date_subfolder``); ``only_if_multiple``: no grid of a single image
    (``grid_only_if_multiple``); ``n_rows`` / ``prevent_empty_spots``: see ``grid_rows``.
    """

    show: bool = True
    save: bool = True
    folder: Path | None = None
    date_subfolder: bool = True
    embed_infotext: bool = True
    only_if_multiple: bool = True
    n_rows: int = -1
    prevent_empty_spots: bool = False
    image_format: ImageFormat = PNG

    def target(self) -> Path | None:
        """The folder grids are written to (None: nowhere)."""
        if self.folder is None:
            return None
        return date_folder(self.folder.parent, self.folder.name) if self.date_subfolder else self.folder


def add_batch_grid(result: GenerationResult, options: GridOptions,
                   hooks: HookDispatcher | None = None) -> Path | None:
    """Make A1111's grid of ``result``'s images: put it first (``options.show``), save it
    (``options.save``). Returns the saved file, or None. ``hooks`` see the saved grid as they see
    every saved image (``before_image_saved`` may replace what is written, ``image_saved``), as
    A1111's ``save_image`` runs its callbacks for grids too.

    Nothing happens when neither is asked, when there are fewer than two images (one, with
    ``only_if_multiple`` off), or when the result already starts with a grid (a script's).
    """
    images = result.images[result.index_of_first_image:]
    too_few = len(images) < 2 if options.only_if_multiple else not images
    if not (options.show or options.save) or too_few or result.index_of_first_image:
        return None
    rows = grid_rows(len(images), result.request.batch_size, options.n_rows, options.prevent_empty_spots)
    grid = image_grid(images, math.ceil(len(images) / rows))
    infotext = result.infotexts[0] if result.infotexts else ""
    saved = None
    target = options.target()
    if options.save and target is not None:
        written, text = hooks.before_image_saved(grid, infotext) if hooks else (grid, infotext)
        saved = save_grid(written, target, text if options.embed_infotext else None, options.image_format)
        if hooks:
            hooks.image_saved(saved, written, text)
    if options.show:
        result.prepend_grid(grid, infotext)
    return saved
