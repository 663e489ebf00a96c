"""Saving: A1111 names, atomic writes, never overwriting."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
from PIL import Image

from modules.processing.output.saving import date_folder, next_counter, save_grid, save_image


def _image() -> Image.Image:
    return Image.new("RGB", (8, 8), (200, 10, 10))


def test_names_follow_a1111_and_continue_the_counter(tmp_path: Path) -> None:
    folder = date_folder(tmp_path, "txt2img-images", dt.date(2026, 1, 2))
    assert folder == tmp_path / "txt2img-images" / "2026-01-02"
    first = save_image(_image(), folder, "123", "prompt\nSteps: 1")
    assert first.name == "00000-123.png"
    (folder / "00041-9.png").write_bytes(b"not ours")
    assert save_image(_image(), folder, "124").name == "00042-124.png"
    assert Image.open(first).info["parameters"] == "prompt\nSteps: 1"
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp")]


def test_concurrent_writers_never_overwrite(tmp_path: Path) -> None:
    paths: list[Path] = []
    lock = threading.Lock()

    def write() -> None:
        path = save_image(_image(), tmp_path, "5")
        with lock:
            paths.append(path)

    threads = [threading.Thread(target=write) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(paths)) == 12
    assert next_counter(tmp_path) == 12


def test_exact_path_is_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    save_image(_image(), tmp_path, "", exact_path=target)
    before = target.read_bytes()
    with pytest.raises(FileExistsError):
        save_image(Image.new("RGB", (8, 8)), tmp_path, "", exact_path=target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_grids_are_named_grid_nnnn_with_a_counter_of_their_own(tmp_path: Path) -> None:
    save_image(_image(), tmp_path, "7")  # an image beside them does not move the grids' counter
    first = save_grid(_image(), tmp_path, "prompt\nSteps: 1")
    assert first.name == "grid-0000.png" and Image.open(first).info["parameters"] == "prompt\nSteps: 1"
    (tmp_path / "grid-0041.png").write_bytes(b"not ours")
    assert save_grid(_image(), tmp_path).name == "grid-0042.png"
    assert save_image(_image(), tmp_path, "8").name == "00001-8.png"


def test_a_date_folder_linked_out_of_the_output_folder_is_refused_without_naming_paths(tmp_path: Path) -> None:
    import datetime as dt

    from modules.processing.output.saving import OutputPathError, date_folder

    day = dt.date(2026, 1, 2)
    outside, outputs = tmp_path / "outside", tmp_path / "data" / "outputs"
    outside.mkdir()
    (outputs / "txt2img-images").mkdir(parents=True)
    (outputs / "txt2img-images" / day.isoformat()).symlink_to(outside)
    with pytest.raises(OutputPathError) as raised:
        date_folder(outputs, "txt2img-images", day)
    assert "txt2img-images/2026-01-02" in str(raised.value) and str(tmp_path) not in str(raised.value)
    # A link that stays inside the folder is fine, and so is the folder itself moved elsewhere.
    (outputs / "txt2img-images" / "old").mkdir()
    (outputs / "txt2img-images" / "2026-01-03").symlink_to(outputs / "txt2img-images" / "old")
    assert date_folder(outputs, "txt2img-images", dt.date(2026, 1, 3)).name == "2026-01-03"
    (outputs / "img2img-images").symlink_to(outside)
    assert date_folder(outputs, "img2img-images", day) == outputs / "img2img-images" / "2026-01-02"
