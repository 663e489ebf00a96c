"""Image upscalers: the built-in resizes and model files (ESRGAN, RealESRGAN, SwinIR, DAT, HAT, ...).

Model files live in ``models/ESRGAN`` and ``models/RealESRGAN`` (subfolders too) and are named
by file stem. spandrel detects the architecture from the state dict; the weights are read by
our own loaders, so a pickle (``.pth``/``.pt``/``.ckpt``) is refused unless ``allow_pickle``
and even then is read with ``torch.load(weights_only=True)`` only.

A model runs on overlapping tiles whose seams are hidden by a linear feather (see
``tiled_upscale``), so a 4x upscale of a 2048x2048 image needs the memory of one tile on the
device plus one float32 output buffer in CPU memory (0.8 GB for the 8192x8192 result). Like
A1111's ``Upscaler.upscale``, a scale above the model's own is reached by running the model
again (at most 3 passes), and any remaining difference is closed with a Lanczos resize.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from modules.models.files import PICKLE_SUFFIXES, ModelFileError, load_pickle, load_state_dict
from modules.models.walk import walk_files

__all__ = [
    "BUILTIN_UPSCALERS",
    "DEFAULT_TILE_OVERLAP",
    "DEFAULT_TILE_SIZE",
    "UPSCALER_SUFFIXES",
    "ModelUpscaler",
    "ResizeUpscaler",
    "UnknownUpscalerError",
    "Upscaler",
    "UpscalerLibrary",
    "load_upscaler_model",
    "target_size",
    "tiled_upscale",
]

logger = logging.getLogger(__name__)

#: A1111's built-in upscalers, listed first; "None" resizes with Lanczos like A1111's UpscalerNone.
BUILTIN_UPSCALERS: tuple[str, ...] = ("None", "Lanczos", "Nearest")
UPSCALER_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt")
#: A1111's ESRGAN tile default: a 4x ESRGAN pass on a 192 px tile peaks at a few hundred MB of
#: activations (its 64-channel layers at 768 px), so any GPU copes; bigger tiles are barely faster.
DEFAULT_TILE_SIZE = 192
#: Twice A1111's 8 px: convolutions see zero padding within a few pixels of a tile's edge,
#: and the feather ramp must be wider than that damage to hide it.
DEFAULT_TILE_OVERLAP = 16
# A1111 runs a model at most 3 times to reach the requested scale.
_MAX_PASSES = 3
_RESAMPLE = {"None": Image.Resampling.LANCZOS, "Lanczos": Image.Resampling.LANCZOS,
             "Nearest": Image.Resampling.NEAREST}
_MODE_OF_CHANNELS = {1: "L", 3: "RGB"}


class UnknownUpscalerError(ValueError):
    """No upscaler has this name; ``choices`` lists the names there are."""

    def __init__(self, name: str, choices: Sequence[str]) -> None:
        super().__init__(f"unknown upscaler {name!r}; choose one of: {', '.join(choices)}")
        self.name = name
        self.choices = list(choices)


def target_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """``size`` (width, height) times ``scale``, rounded, at least 1 px.

    A1111 also floors to a multiple of 8; we do not, so "Scale by 2" of 100 px gives 200, not 192.
    """
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


class Upscaler:
    """An image upscaler as the Extras tab and Hires. fix use it.

    Attributes:
        name: the name shown in the upscaler dropdowns.
        scale: the native factor of one pass (1 for the plain resizes).
    """

    name: str
    scale: int

    def upscale(self, image: Image.Image, scale: float) -> Image.Image:
        """``image`` resized by ``scale`` (> 0) to ``target_size(image.size, scale)``, same mode."""
        raise NotImplementedError


class ResizeUpscaler(Upscaler):
    """"None", "Lanczos" or "Nearest": one PIL resize."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.scale = 1
        self._resample = _RESAMPLE[name]

    def upscale(self, image: Image.Image, scale: float) -> Image.Image:
        """One resize to ``target_size(image.size, scale)``; ``image`` itself when that is its size."""
        size = target_size(image.size, scale)
        return image if size == image.size else image.resize(size, self._resample)


class ModelUpscaler(Upscaler):
    """A loaded upscaler model (a spandrel ``ImageModelDescriptor``) run in tiles.

    ``tile_size`` 0 runs each pass on the whole image (A1111's "tile size 0").
    """

    def __init__(self, name: str, path: Path, descriptor: Any, tile_size: int = DEFAULT_TILE_SIZE,
                 tile_overlap: int = DEFAULT_TILE_OVERLAP) -> None:
        if tile_size < 0 or tile_overlap < 0 or (tile_size and 2 * tile_overlap >= tile_size):
            raise ValueError(f"tile overlap {tile_overlap} must be under half the tile size {tile_size}")
        self.name = name
        self.path = path
        self.descriptor = descriptor
        self.scale = int(descriptor.scale)
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap

    def upscale(self, image: Image.Image, scale: float) -> Image.Image:
        """Model passes until the target size is covered (at most 3; a 1x model runs once), then
        a Lanczos resize to exactly ``target_size(image.size, scale)``."""
        target = target_size(image.size, scale)
        # A1111 skips the model only for an exact 1x request to a model that enlarges.
        passes = 0 if scale == 1 and self.scale > 1 else _MAX_PASSES
        for done in range(passes):
            reached = image.width >= target[0] and image.height >= target[1]
            if done > 0 and (reached or self.scale == 1):
                break
            image = self.upscale_native(image)
        return image if image.size == target else image.resize(target, Image.Resampling.LANCZOS)

    def upscale_native(self, image: Image.Image) -> Image.Image:
        """One model pass: ``image`` enlarged ``self.scale`` times. Alpha, which the model does
        not see, is resized with Lanczos and put back."""
        alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
        mode = _MODE_OF_CHANNELS[self.descriptor.input_channels]
        pixels = torch.from_numpy(np.asarray(image.convert(mode), dtype=np.float32) / 255.0)
        pixels = pixels.reshape(image.height, image.width, -1).permute(2, 0, 1).unsqueeze(0)
        output = tiled_upscale(self._run, pixels, self.scale, self.tile_size, self.tile_overlap)
        array = output[0].mul_(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
        del output  # the float buffer is 4x the 8-bit picture: free it before PIL copies the pixels
        result = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
        if alpha is not None:
            result = result.convert("RGBA")
            result.putalpha(alpha.resize(result.size, Image.Resampling.LANCZOS))
            return result if image.mode == "RGBA" else result.convert("LA")
        return result.convert(image.mode) if image.mode in ("RGB", "L") else result

    def _run(self, tile: torch.Tensor) -> torch.Tensor:
        # The descriptor pads to the model's size requirements, runs under inference_mode and
        # clamps to [0, 1]; only device and dtype are ours to match.
        return self.descriptor(tile.to(self.descriptor.device, self.descriptor.dtype))


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering ``length``: a fixed stride, the last one flush with the end."""
    if tile <= 0 or length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return [*starts, length - tile]


def _feather(length: int, ramp: int, ramp_start: bool, ramp_end: bool) -> torch.Tensor:
    """1-D tile weight: 1 inside, a linear ramp over ``ramp`` px at each side that meets a
    neighbour. Ramps of two neighbours over a shared ``ramp`` px sum to exactly 1."""
    weight = torch.ones(length)
    ramp = min(ramp, length // 2)
    if ramp:
        rising = torch.arange(1, ramp + 1, dtype=torch.float32) / (ramp + 1)
        if ramp_start:
            weight[:ramp] = rising
        if ramp_end:
            weight[-ramp:] = torch.minimum(weight[-ramp:], rising.flip(0))
    return weight


def tiled_upscale(model: Callable[[torch.Tensor], torch.Tensor], pixels: torch.Tensor, scale: int,
                  tile: int = DEFAULT_TILE_SIZE, overlap: int = DEFAULT_TILE_OVERLAP) -> torch.Tensor:
    """Run ``model`` on overlapping tiles of ``pixels`` and blend them without seams.

    Args:
        model: maps a (1, C, h, w) tile in [0, 1] to (1, C', h*scale, w*scale) in [0, 1].
        pixels: (1, C, H, W) float in [0, 1], on the CPU.
        scale: the model's factor.
        tile: tile side in input pixels; 0 runs the whole image at once.
        overlap: input pixels shared by neighbouring tiles; the blend ramps across them.

    Returns:
        (1, C', H*scale, W*scale) float32 in [0, 1], on the CPU.

    Every tile's weight is ``wy(y) * wx(x)``, where ``wy`` depends only on the tile's row and
    ``wx`` only on its column, so the sum of weights at a pixel factors into a row sum times a
    column sum: two 1-D accumulators normalise the blend instead of an (H, W) weight buffer.
    """
    _, _, height, width = pixels.shape
    rows, cols = _tile_starts(height, tile, overlap), _tile_starts(width, tile, overlap)
    tile_h, tile_w = (min(tile, height), min(tile, width)) if tile > 0 else (height, width)
    row_weights = [_feather(tile_h * scale, overlap * scale, i > 0, i < len(rows) - 1) for i in range(len(rows))]
    col_weights = [_feather(tile_w * scale, overlap * scale, j > 0, j < len(cols) - 1) for j in range(len(cols))]
    row_sum, col_sum = torch.zeros(height * scale), torch.zeros(width * scale)
    for y, weight in zip(rows, row_weights, strict=True):
        row_sum[y * scale:(y + tile_h) * scale] += weight
    for x, weight in zip(cols, col_weights, strict=True):
        col_sum[x * scale:(x + tile_w) * scale] += weight
    output: torch.Tensor | None = None
    for y, row_weight in zip(rows, row_weights, strict=True):
        for x, col_weight in zip(cols, col_weights, strict=True):
            # Only the model call is in inference mode: the buffer stays a normal tensor that
            # callers may change in place.
            with torch.inference_mode():
                result = model(pixels[:, :, y:y + tile_h, x:x + tile_w]).float().cpu()
            if output is None:  # the model decides the output channel count
                output = torch.zeros(1, result.shape[1], height * scale, width * scale)
            ys, xs = slice(y * scale, (y + tile_h) * scale), slice(x * scale, (x + tile_w) * scale)
            output[:, :, ys, xs] += result * (row_weight[:, None] * col_weight[None, :])
    assert output is not None  # at least one tile always runs
    return output.div_(row_sum[:, None] * col_sum[None, :])


def _read_state_dict(path: Path, allow_pickle: bool) -> dict[str, Any]:
    """The file's state dict. Pickles go through ``load_pickle`` (refused unless allowed,
    ``weights_only`` when allowed) rather than ``load_state_dict``, because official
    Real-ESRGAN ``.pth`` files nest their weights under "params_ema", which spandrel unwraps."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        loaded = load_pickle(path, allow_pickle)
        if not isinstance(loaded, dict):
            raise ModelFileError(path, "unsupported", "does not contain a state dict")
        return loaded
    return dict(load_state_dict(path, allow_pickle))


def load_upscaler_model(path: Path, name: str, allow_pickle: bool, device: str = "cpu",
                        tile_size: int = DEFAULT_TILE_SIZE, tile_overlap: int = DEFAULT_TILE_OVERLAP) -> ModelUpscaler:
    """Load one upscaler file with spandrel onto ``device`` (half precision on CUDA when the
    architecture supports it).

    Raises:
        ModelFileError: unreadable, refused pickle, or not an image upscaler spandrel knows.
    """
    import spandrel

    state = _read_state_dict(path, allow_pickle)
    try:
        descriptor = spandrel.ModelLoader(device).load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        raise ModelFileError(path, "unsupported", "is not an upscaler model of a known architecture "
                             "(ESRGAN, RealESRGAN, SwinIR, DAT, HAT, ...)") from None
    except (KeyError, RuntimeError, ValueError, TypeError, IndexError, AssertionError, AttributeError) as error:
        # Raised by an architecture whose key pattern matched but whose tensors do not fit it.
        raise ModelFileError(path, "unsupported", f"looks like an upscaler but its weights do not fit the "
                             f"architecture ({type(error).__name__}: {error})") from None
    purpose = getattr(descriptor, "purpose", None)
    if not isinstance(descriptor, spandrel.ImageModelDescriptor) or purpose not in ("SR", "Restoration"):
        raise ModelFileError(path, "unsupported", f"is a {descriptor.architecture.name} model for "
                             f"{purpose or 'another task'}, not an image upscaler")
    channels = (descriptor.input_channels, descriptor.output_channels)
    if channels[0] not in _MODE_OF_CHANNELS or channels[1] not in _MODE_OF_CHANNELS:
        raise ModelFileError(path, "unsupported", f"maps {channels[0]} to {channels[1]} image channels; only "
                             "grey (1) and RGB (3) models are supported")
    if torch.device(device).type == "cuda" and descriptor.supports_half:
        descriptor.half()
    descriptor.eval()
    return ModelUpscaler(name, path, descriptor, tile_size, tile_overlap)


@dataclass(frozen=True)
class _ModelFile:
    name: str
    path: Path


class UpscalerLibrary:
    """The upscalers: the built-in resizes plus the model files under ``folders``.

    Only the most recently used model stays loaded; asking for another one releases it first,
    so two large models never sit in memory together. ``refresh()`` rescans the folders (the
    UI's refresh button); a name missing from the last scan triggers one rescan by itself.
    """

    def __init__(self, folders: Sequence[Path], allow_pickle: bool, device: str = "cpu",
                 tile_size: int = DEFAULT_TILE_SIZE, tile_overlap: int = DEFAULT_TILE_OVERLAP) -> None:
        self.folders = [Path(folder) for folder in folders]
        self.allow_pickle = allow_pickle
        self.device = device
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self._files: dict[str, _ModelFile] = {}
        self._loaded: tuple[Path, int, ModelUpscaler] | None = None  # (file, mtime_ns, model)
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> list[str]:
        """Rescan the folders; returns the model names found (sorted)."""
        found: dict[str, _ModelFile] = {}
        for folder in self.folders:
            for hit in walk_files(folder, UPSCALER_SUFFIXES):
                path = hit.path
                if path.stem in found or path.stem in BUILTIN_UPSCALERS:
                    logger.warning("Upscaler %s ignored: the name %r is taken", path, path.stem)
                    continue
                found[path.stem] = _ModelFile(path.stem, path)
        self._files = dict(sorted(found.items()))
        return list(self._files)

    def names(self) -> list[str]:
        """"None", "Lanczos", "Nearest", then the model names sorted (A1111's dropdown order)."""
        return [*BUILTIN_UPSCALERS, *self._files]

    def path(self, name: str) -> Path | None:
        """The file of model upscaler ``name``, or None for built-ins and unknown names."""
        entry = self._files.get(name)
        return entry.path if entry else None

    def get(self, name: str) -> Upscaler:
        """The upscaler called ``name``, loading its model if it is not the one loaded.

        Raises:
            UnknownUpscalerError: no such name, even after a rescan.
            ModelFileError: the file cannot be used.
        """
        if name in BUILTIN_UPSCALERS:
            return ResizeUpscaler(name)
        if name not in self._files:
            self.refresh()
        entry = self._files.get(name)
        if entry is None:
            raise UnknownUpscalerError(name, self.names())
        with self._lock:
            try:
                mtime = entry.path.stat().st_mtime_ns
            except FileNotFoundError:
                raise ModelFileError(entry.path, "missing", "does not exist") from None
            if self._loaded and self._loaded[:2] == (entry.path, mtime):
                return self._loaded[2]
            self._release()
            model = load_upscaler_model(entry.path, name, self.allow_pickle, self.device,
                                        self.tile_size, self.tile_overlap)
            self._loaded = (entry.path, mtime, model)
            return model

    def unload(self) -> None:
        """Drop the loaded model (if any) and free its memory."""
        with self._lock:
            self._release()

    def _release(self) -> None:
        if self._loaded is None:
            return
        self._loaded = None
        # Free the old weights before the next model is read, so peak memory is one model.
        gc.collect()
        if torch.device(self.device).type == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()

