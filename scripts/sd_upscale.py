"""SD upscale (A1111's built-in img2img script): enlarge, then redraw in overlapping tiles.

The input is enlarged by "Scale Factor" with the chosen upscaler (a resize, or a model from
``models/ESRGAN``; "None" keeps its size, as in A1111), cut into tiles of the request's width x
height that overlap by "Tile overlap" pixels, each tile goes through img2img at the request's
denoising strength, and the tiles are put back with linear cross-fades across the overlaps, so
no seams show. The tiles themselves are not saved; the assembled image is.

A1111 clients send ``script_args: [info, overlap, upscaler_index, scale_factor]``: ``info`` is
its UI's help text (ignored), ``upscaler_index`` a position in ``/sdapi/v1/upscalers`` (0 None,
1 Lanczos, 2 Nearest, then the models); the upscaler's name is accepted there too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from modules.extensions.api import (
    Dropdown,
    Img2ImgRequest,
    Processed,
    Script,
    ScriptArgError,
    Slider,
    args_by_position,
    merge_results,
    with_fixed_seeds,
)
from modules.models.upscalers import BUILTIN_UPSCALERS, ResizeUpscaler

#: A1111's ``run(p, info, overlap, upscaler_index, scale_factor)``, after ``p``.
A1111_ARGS = ("info", "overlap", "upscaler_index", "scale_factor")
#: A 4x upscale of a large image into small tiles could mean thousands of img2img runs.
MAX_TILES = 256


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Left (or top) edges of tiles of size ``tile`` covering ``length`` with at least ``overlap``."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    stride = (length - tile) / (count - 1)
    return [round(k * stride) for k in range(count)]


def _ramp(size: int, overlap: int, fade_in: bool, fade_out: bool) -> np.ndarray:
    """Weights along one axis of a tile: rising over the first ``overlap`` pixels if it has a
    neighbour there, falling over the last ones likewise; 1 elsewhere (never 0, so every
    pixel keeps some weight)."""
    weights = np.ones(size, dtype=np.float32)
    width = min(overlap, size // 2)
    if width > 0:
        ramp = (np.arange(width, dtype=np.float32) + 1) / (width + 1)
        if fade_in:
            weights[:width] = ramp
        if fade_out:
            weights[-width:] = ramp[::-1]
    return weights


def blend_tiles(tiles: list[Image.Image], xs: list[int], ys: list[int], size: tuple[int, int],
                overlap: int) -> Image.Image:
    """Put tiles (row by row over ``ys`` x ``xs``) back into one ``size`` image, cross-fading overlaps."""
    width, height = size
    total = np.zeros((height, width, 3), dtype=np.float32)
    weight = np.zeros((height, width, 1), dtype=np.float32)
    for index, tile in enumerate(tiles):
        row, col = divmod(index, len(xs))
        x, y = xs[col], ys[row]
        pixels = np.asarray(tile.convert("RGB"), dtype=np.float32)
        h, w = pixels.shape[:2]
        mask = np.outer(_ramp(h, overlap, row > 0, row < len(ys) - 1), _ramp(w, overlap, col > 0, col < len(xs) - 1))
        total[y:y + h, x:x + w] += pixels * mask[..., None]
        weight[y:y + h, x:x + w] += mask[..., None]
    return Image.fromarray(np.clip(total / np.maximum(weight, 1e-6) + 0.5, 0, 255).astype(np.uint8))


class SdUpscale(Script):
    def title(self) -> str:
        return "SD upscale"

    def show(self, is_img2img: bool) -> bool:
        return is_img2img

    def ui(self, is_img2img: bool) -> dict:
        return {
            "overlap": Slider("Tile overlap", 0, 256, 64, step=16),
            "scale_factor": Slider("Scale Factor", 1.0, 4.0, 2.0, step=0.05),
            "upscaler": Dropdown("Upscaler", self._upscaler_names(), "Lanczos"),
        }

    def _upscaler_names(self) -> list[str]:
        """A1111's upscaler list, as ``/sdapi/v1/upscalers`` has it (the resizes alone in tests)."""
        library = self.resources.upscalers
        return library.names() if library is not None else list(BUILTIN_UPSCALERS)

    def api_args(self, positional: Sequence[Any], is_img2img: bool) -> dict[str, Any]:
        """A1111's ``[info, overlap, upscaler_index, scale_factor]``: the index (or a name) picks
        from the upscaler list; ``info`` is a placeholder."""
        named = args_by_position(self.title(), A1111_ARGS, positional)
        named.pop("info", None)
        if "upscaler_index" in named:
            named["upscaler"] = self._upscaler_at(named.pop("upscaler_index"))
        return named

    def _upscaler_at(self, value: Any) -> str:
        names = self._upscaler_names()
        if isinstance(value, str) and value in names:
            return value
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
            return names[value]
        listed = ", ".join(f"{index} {name}" for index, name in enumerate(names))
        raise ScriptArgError(f"{self.title()}: script_args[2] (upscaler_index): {value!r} is not an upscaler here; "
                             f"give its index or name: {listed}")

    def _enlarge(self, image: Image.Image, scale_factor: float, upscaler: str) -> Image.Image:
        """The input before tiling: A1111 leaves it as it is for "None", else upscales it."""
        image = image.convert("RGB")
        if upscaler == "None":
            return image
        library = self.resources.upscalers
        engine = library.get(upscaler) if library is not None else ResizeUpscaler(upscaler)
        return engine.upscale(image, scale_factor).convert("RGB")

    def run(self, p: Img2ImgRequest, overlap: int, scale_factor: float, upscaler: str) -> Processed:
        if overlap >= min(p.width, p.height):
            raise ValueError(f"SD upscale: tile overlap {overlap} must be smaller than the {p.width}x{p.height} tile")
        p = with_fixed_seeds(p)  # every tile from the same seed, as in A1111
        parts, finals, infotexts = [], [], []
        for source in p.init_images:
            big = self._enlarge(source, scale_factor, upscaler)
            size = big.size
            xs, ys = tile_starts(size[0], p.width, overlap), tile_starts(size[1], p.height, overlap)
            if len(xs) * len(ys) > MAX_TILES:
                raise ValueError(f"SD upscale: {len(xs) * len(ys)} tiles is more than {MAX_TILES}; use bigger tiles")
            boxes = [(x, y, min(x + p.width, size[0]), min(y + p.height, size[1])) for y in ys for x in xs]
            tiles = []
            for box in boxes:
                tile = big.crop(box)
                part = self.process_images(dataclasses.replace(
                    p, init_images=(tile,), width=tile.width // 8 * 8 or 8, height=tile.height // 8 * 8 or 8,
                    batch_size=1, batch_count=1, resize_mode="Just resize"), save=False)
                parts.append(part)
                if part.interrupted or not part.images:
                    return merge_results(parts)
                tiles.append(part.images[0].resize(tile.size, Image.Resampling.LANCZOS))
            finals.append(blend_tiles(tiles, xs, ys, size, overlap))
            infotexts.append(parts[-1].infotexts[0])
        result = merge_results(parts[:1])
        result.images, result.infotexts = finals, infotexts
        result.seeds, result.subseeds = result.seeds[:1] * len(finals), result.subseeds[:1] * len(finals)
        result.paths = [path for image, info in zip(finals, infotexts, strict=True)
                        if (path := self.save_image(image, p, info)) is not None]
        return result
