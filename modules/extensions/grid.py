"""Image grids with legends, as A1111's X/Y/Z plot and prompt matrix draw them.

Column labels go in a band above the grid, row labels in a band to its left; long labels
wrap. Cells keep their pixels (no resampling), so a grid is a faithful contact sheet.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

__all__ = ["image_grid"]

_BACKGROUND = (255, 255, 255)
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
