"""ControlNet preprocessors: map sizes, thresholds, seeds, and annotator files (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from modules.models.files import ModelFileError
from modules.processing.control.control_preprocess import (
    PREPROCESSORS,
    Preprocessors,
    UnknownPreprocessorError,
    canonical_module,
)


@pytest.fixture
def drawing() -> Image.Image:
    """A 300x200 black-on-white drawing: a ring and a filled square."""
    image = Image.new("RGB", (300, 200), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((50, 50, 150, 150), outline="black", width=4)
    draw.rectangle((180, 40, 260, 160), fill="black")
    return image


@pytest.fixture
def preprocessors(tmp_path: Path) -> Preprocessors:
    return Preprocessors(tmp_path / "annotators")


@pytest.mark.parametrize("module", ["canny", "shuffle", "lineart_standard", "invert", "threshold", "color",
                                    "scribble_xdog", "blur_gaussian"])
@pytest.mark.parametrize("resolution", [128, 200])
def test_weight_free_maps_have_the_requested_resolution(preprocessors: Preprocessors, drawing: Image.Image,
                                                         module: str, resolution: int) -> None:
    control_map = preprocessors.run(module, drawing, resolution)
    assert control_map.mode == "RGB"
    assert min(control_map.size) == resolution  # shorter side, aspect ratio of the 3:2 drawing kept
    assert control_map.size == (round(resolution * 1.5), resolution)
    assert control_map.getextrema()[0] != (0, 0), f"{module} drew nothing"


def test_canny_finds_the_edges_and_obeys_its_thresholds(preprocessors: Preprocessors, drawing: Image.Image) -> None:
    edges = np.asarray(preprocessors.run("canny", drawing, 200))[:, :, 0]
    assert set(np.unique(edges)) == {0, 255}
    assert edges[100, 200:220].max() == 0  # inside the ring: no edge
    assert edges[60:140, 170:190].max() == 255  # the square's left side
    strict = np.asarray(preprocessors.run("canny", Image.fromarray((np.asarray(drawing) * 0.1).astype(np.uint8)),
                                          200, threshold_a=200, threshold_b=255))
    assert strict.max() == 0  # a faint drawing under high thresholds has no edges


def test_shuffle_depends_on_the_seed_only(preprocessors: Preprocessors, drawing: Image.Image) -> None:
    state = np.random.get_state()
    first, again = (np.asarray(preprocessors.run("shuffle", drawing, 128, seed=7)) for _ in range(2))
    other = np.asarray(preprocessors.run("shuffle", drawing, 128, seed=8))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert np.array_equal(np.random.get_state()[1], state[1])  # numpy's own generator is left as it was


def test_none_and_tile_keep_the_image_size(preprocessors: Preprocessors, drawing: Image.Image) -> None:
    assert preprocessors.run("none", drawing, 64).tobytes() == drawing.tobytes()
    blurred = preprocessors.run("tile_resample", drawing, 512, threshold_a=4)
    assert blurred.size == drawing.size and blurred.tobytes() != drawing.tobytes()


def test_invert_and_aliases(preprocessors: Preprocessors, drawing: Image.Image) -> None:
    inverted = np.asarray(preprocessors.run("invert (from white bg & black line)", drawing, 200))
    assert inverted[5, 5].tolist() == [0, 0, 0]  # white background -> black
    assert canonical_module(" HED ") == "softedge_hed"
    assert canonical_module("lineart") == "lineart_realistic"


def test_bad_values_name_the_field(preprocessors: Preprocessors, drawing: Image.Image) -> None:
    with pytest.raises(UnknownPreprocessorError, match="available: none, invert"):
        preprocessors.run("sobel", drawing, 128)
    with pytest.raises(ValueError, match="threshold_a: 300"):
        preprocessors.run("canny", drawing, 128, threshold_a=300)
    with pytest.raises(ValueError, match="processor_res: 16"):
        preprocessors.run("canny", drawing, 16)


def test_missing_annotator_file_is_named_and_nothing_is_downloaded(preprocessors: Preprocessors,
                                                                    drawing: Image.Image) -> None:
    assert preprocessors.missing_files("canny") == []
    assert preprocessors.missing_files("openpose") == [preprocessors.annotator_dir / name for name in
                                                        ("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth")]
    with pytest.raises(ModelFileError, match="annotator file ControlNetHED.pth, which is not in ") as error:
        preprocessors.run("softedge_hed", drawing, 128)
    assert error.value.kind == "missing" and str(preprocessors.annotator_dir) not in error.value.detail  # no path
    for name, info in PREPROCESSORS.items():  # every weighted one says which file, none tries the hub
        if info.needs:
            assert info.needs[0] in (preprocessors.problem(name) or "")


def _random_hed_file(folder: Path) -> None:
    """A ControlNetHED.pth with random weights, laid out as the real annotator file."""
    from controlnet_aux.hed import ControlNetHED_Apache2

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(ControlNetHED_Apache2().state_dict(), folder / "ControlNetHED.pth")


def test_annotator_file_loads_from_the_folder_with_allow_pickle(tmp_path: Path, drawing: Image.Image) -> None:
    folder = tmp_path / "annotators"
    _random_hed_file(folder)
    refused = Preprocessors(folder, allow_pickle=False)
    assert "--allow-pickle" in (refused.problem("softedge_hed") or "")
    with pytest.raises(ModelFileError) as error:
        refused.run("softedge_hed", drawing, 128)
    assert error.value.kind == "pickle_refused"

    allowed = Preprocessors(folder, allow_pickle=True)
    assert allowed.problem("softedge_hed") is None
    soft = allowed.run("softedge_hed", drawing, 128)
    scribble = allowed.run("scribble_hed", drawing, 128)
    assert soft.size == scribble.size == (192, 128)
    assert soft.tobytes() != scribble.tobytes()


def test_a_broken_annotator_file_is_a_clear_error(tmp_path: Path, drawing: Image.Image) -> None:
    folder = tmp_path / "annotators"
    folder.mkdir()
    (folder / "ControlNetHED.pth").write_bytes(b"<html>not the model</html>")
    with pytest.raises(ModelFileError, match="not a usable HEDdetector annotator file") as error:
        Preprocessors(folder, allow_pickle=True).run("softedge_hed", drawing, 128)
    assert error.value.kind == "unsupported"
