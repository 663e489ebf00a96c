"""Upscaler models: found by name, loaded through spandrel from tiny random-weight files of
real architectures, refused when unsafe or unknown, and run in seamless tiles."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from spandrel.architectures.ESRGAN import ESRGAN

from modules.models.files import ModelFileError
from modules.models.upscalers import (
    ModelUpscaler,
    ResizeUpscaler,
    UnknownUpscalerError,
    UpscalerLibrary,
    tiled_upscale,
)
from tests.upscaler_files import compact_state, random_image, write_tiny_upscaler


@pytest.fixture
def library(tmp_path: Path) -> UpscalerLibrary:
    write_tiny_upscaler(tmp_path / "ESRGAN" / "tiny_x2.safetensors", 2)
    write_tiny_upscaler(tmp_path / "ESRGAN" / "tiny_x4.safetensors", 4, seed=1)
    return UpscalerLibrary([tmp_path / "ESRGAN", tmp_path / "RealESRGAN"], allow_pickle=False)


def test_names_are_builtins_then_model_stems_sorted_including_subfolders(tmp_path: Path) -> None:
    write_tiny_upscaler(tmp_path / "ESRGAN" / "zeta.safetensors", 2)
    write_tiny_upscaler(tmp_path / "RealESRGAN" / "anime" / "Alpha.safetensors", 2)
    write_tiny_upscaler(tmp_path / "ESRGAN" / ".cache" / "hidden.safetensors", 2)
    (tmp_path / "ESRGAN" / "notes.txt").write_text("not a model")
    library = UpscalerLibrary([tmp_path / "ESRGAN", tmp_path / "RealESRGAN"], allow_pickle=False)
    assert library.names() == ["None", "Lanczos", "Nearest", "Alpha", "zeta"]
    assert library.path("Alpha") == tmp_path / "RealESRGAN" / "anime" / "Alpha.safetensors"
    assert library.path("Lanczos") is None


def test_a_new_file_is_found_without_pressing_refresh(tmp_path: Path, library: UpscalerLibrary) -> None:
    write_tiny_upscaler(tmp_path / "ESRGAN" / "late.safetensors", 2)
    assert library.get("late").scale == 2
    assert "late" in library.names()


def test_unknown_name_names_the_choices(library: UpscalerLibrary) -> None:
    with pytest.raises(UnknownUpscalerError) as caught:
        library.get("R-ESRGAN 4x+")
    assert caught.value.name == "R-ESRGAN 4x+"
    assert caught.value.choices == ["None", "Lanczos", "Nearest", "tiny_x2", "tiny_x4"]
    assert "tiny_x4" in str(caught.value)


@pytest.mark.parametrize(("name", "scale"), [("tiny_x2", 2), ("tiny_x4", 4)])
def test_model_upscales_at_its_native_scale(library: UpscalerLibrary, name: str, scale: int) -> None:
    upscaler = library.get(name)
    assert (upscaler.name, upscaler.scale) == (name, scale)
    result = upscaler.upscale(random_image(32, 24), scale)
    assert result.size == (32 * scale, 24 * scale)
    assert result.mode == "RGB"
    assert np.asarray(result).std() > 1  # a real picture, not a constant


class CountingUpscaler(ModelUpscaler):
    """Counts model passes (a subclass, not a patch)."""

    passes = 0

    def upscale_native(self, image: Image.Image) -> Image.Image:
        self.passes += 1
        return super().upscale_native(image)


@pytest.mark.parametrize(("name", "scale", "passes"), [("tiny_x4", 8, 2), ("tiny_x2", 8, 3), ("tiny_x4", 1.5, 1),
                                                        ("tiny_x2", 1, 0), ("tiny_x4", 0.5, 1)])
def test_scales_are_reached_by_repeated_passes_then_lanczos(library: UpscalerLibrary, name: str, scale: float,
                                                            passes: int) -> None:
    loaded = library.get(name)
    counting = CountingUpscaler(name, loaded.path, loaded.descriptor, tile_size=0, tile_overlap=0)
    result = counting.upscale(random_image(16, 12), scale)
    assert result.size == (round(16 * scale), round(12 * scale))
    assert counting.passes == passes


def test_tiled_output_matches_untiled(library: UpscalerLibrary) -> None:
    loaded = library.get("tiny_x2")
    image = random_image(56, 40)
    whole = ModelUpscaler("whole", loaded.path, loaded.descriptor, tile_size=0, tile_overlap=0)
    tiled = CountingTiles("tiled", loaded.path, loaded.descriptor, tile_size=16, tile_overlap=4)
    expected = np.asarray(whole.upscale_native(image), dtype=np.int16)
    actual = np.asarray(tiled.upscale_native(image), dtype=np.int16)
    assert tiled.tiles == 5 * 3  # 16 px tiles at a 12 px stride: 5 columns over 56 px, 3 rows over 40 px
    difference = np.abs(expected - actual)
    # Only pixels within the models' few-pixel reach of a tile edge can differ, and the feather
    # gives those little weight: a seam would show as differences of tens of levels.
    assert difference.max() <= 8
    assert difference.mean() < 0.5


class CountingTiles(ModelUpscaler):
    tiles = 0

    def _run(self, tile: torch.Tensor) -> torch.Tensor:
        self.tiles += 1
        return super()._run(tile)


def test_tiled_blend_is_exact_for_a_model_without_context() -> None:
    """A per-pixel model gives identical tiles, so the feathered blend must reproduce it exactly."""
    calls: list[tuple[int, ...]] = []

    def nearest_x3(tile: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(tile.shape))
        return F.interpolate(tile, scale_factor=3, mode="nearest")

    pixels = torch.rand(1, 3, 37, 50, generator=torch.Generator().manual_seed(0))
    result = tiled_upscale(nearest_x3, pixels, 3, tile=16, overlap=5)
    assert result.shape == (1, 3, 111, 150)
    torch.testing.assert_close(result, F.interpolate(pixels, scale_factor=3, mode="nearest"))
    assert len(calls) == 3 * 5 and all(shape == (1, 3, 16, 16) for shape in calls)
    result.mul_(2)  # a normal tensor, not an inference-mode one: callers may change it in place


def test_tile_settings_are_checked(library: UpscalerLibrary) -> None:
    loaded = library.get("tiny_x2")
    with pytest.raises(ValueError, match="overlap"):
        ModelUpscaler("bad", loaded.path, loaded.descriptor, tile_size=16, tile_overlap=8)


def test_alpha_and_grey_images_keep_their_mode(library: UpscalerLibrary) -> None:
    upscaler = library.get("tiny_x2")
    rgba = random_image(20, 16, "RGBA")
    result = upscaler.upscale(rgba, 2)
    assert (result.mode, result.size) == ("RGBA", (40, 32))
    expected_alpha = rgba.getchannel("A").resize((40, 32), Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(result.getchannel("A")), np.asarray(expected_alpha))
    grey = upscaler.upscale(random_image(20, 16, "L"), 2)
    assert (grey.mode, grey.size) == ("L", (40, 32))


def test_esrgan_rrdb_architecture_loads_and_runs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in ESRGAN(num_filters=8, num_blocks=1, scale=4).state_dict().items()}
    save_file(state, str(tmp_path / "rrdb_x4.safetensors"))
    upscaler = UpscalerLibrary([tmp_path], allow_pickle=False).get("rrdb_x4")
    assert upscaler.scale == 4
    assert upscaler.upscale(random_image(12, 10), 4).size == (48, 40)


def test_pickle_is_refused_unless_allowed_and_then_loads_weights_only(tmp_path: Path) -> None:
    # Official Real-ESRGAN files nest the weights under "params_ema".
    torch.save({"params_ema": compact_state(2)}, tmp_path / "pickled_x2.pth")
    with pytest.raises(ModelFileError) as caught:
        UpscalerLibrary([tmp_path], allow_pickle=False).get("pickled_x2")
    assert caught.value.kind == "pickle_refused"
    upscaler = UpscalerLibrary([tmp_path], allow_pickle=True).get("pickled_x2")
    assert upscaler.upscale(random_image(16, 16), 2).size == (32, 32)


def test_a_pickle_that_runs_code_is_refused_even_when_allowed(tmp_path: Path) -> None:
    torch.save({"params_ema": compact_state(2), "hook": ModelFileError}, tmp_path / "evil.pth")
    with pytest.raises(ModelFileError) as caught:
        UpscalerLibrary([tmp_path], allow_pickle=True).get("evil")
    assert caught.value.kind == "pickle_unsafe"


def test_garbage_and_foreign_files_give_readable_model_file_errors(tmp_path: Path) -> None:
    (tmp_path / "garbage.safetensors").write_bytes(b"this is not a model at all")
    save_file({"text_model.embeddings.weight": torch.zeros(4, 4)}, str(tmp_path / "clip.safetensors"))
    library = UpscalerLibrary([tmp_path], allow_pickle=False)
    with pytest.raises(ModelFileError) as garbage:
        library.get("garbage")
    assert garbage.value.path == tmp_path / "garbage.safetensors"
    with pytest.raises(ModelFileError) as foreign:
        library.get("clip")
    assert foreign.value.kind == "unsupported"
    assert "not an upscaler model of a known architecture" in str(foreign.value)


def test_only_the_most_recently_used_model_stays_loaded(library: UpscalerLibrary) -> None:
    first = library.get("tiny_x2")
    assert library.get("tiny_x2") is first  # kept while it is the latest
    weights = weakref.ref(first.descriptor.model)
    del first
    library.get("tiny_x4")
    gc.collect()
    assert weights() is None  # released when another model was asked for
    assert library.get("tiny_x4") is library.get("tiny_x4")
    library.unload()
    assert library._loaded is None


def test_builtin_resizes() -> None:
    checker = Image.fromarray(np.array([[0, 255], [255, 0]], dtype=np.uint8), "L")
    nearest = ResizeUpscaler("Nearest").upscale(checker, 2)
    assert np.array_equal(np.asarray(nearest), np.kron(np.asarray(checker), np.ones((2, 2), dtype=np.uint8)))
    image = random_image(30, 20)
    lanczos = ResizeUpscaler("Lanczos").upscale(image, 2.5)
    assert np.array_equal(np.asarray(lanczos), np.asarray(image.resize((75, 50), Image.Resampling.LANCZOS)))
    assert ResizeUpscaler("None").upscale(image, 2).size == (60, 40)
    assert ResizeUpscaler("None").upscale(image, 1) is image
    assert ResizeUpscaler("Nearest").scale == 1
