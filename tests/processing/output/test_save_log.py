"""The Save button's files: log/images PNGs with their infotext, and A1111's log.csv."""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image

from modules.processing.output.save_log import LOG_COLUMNS, append_log_row, log_row, save_to_log

INFOTEXT = ('a cat, "quoted"\nNegative prompt: dog\nSteps: 12, Sampler: Euler a, CFG scale: 5.5, Seed: 77, '
            "Size: 64x96, Model hash: abcdef1234, Model: tiny-sd15, Version: aigen-v0.1.0")


def _rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "log.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_log_row_takes_a1111_columns_from_the_infotext() -> None:
    row = log_row(INFOTEXT, "00003-77.png")
    assert list(row) == list(LOG_COLUMNS)
    assert row == {"prompt": 'a cat, "quoted"', "seed": "77", "width": "64", "height": "96", "sampler": "Euler a",
                   "cfgs": "5.5", "steps": "12", "filename": "00003-77.png", "negative_prompt": "dog",
                   "sd_model_name": "tiny-sd15", "sd_model_hash": "abcdef1234"}
    assert log_row("", "x.png") == dict.fromkeys(LOG_COLUMNS, "") | {"filename": "x.png"}


def test_save_writes_pngs_with_infotext_and_one_log_row_each(tmp_path: Path) -> None:
    folder = tmp_path / "log" / "images"
    red, blue = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    paths = save_to_log([(red, INFOTEXT), (blue, INFOTEXT.replace("Seed: 77", "Seed: 78"))], folder)
    assert [p.name for p in paths] == ["00000-77.png", "00001-78.png"]
    assert Image.open(paths[0]).info["parameters"] == INFOTEXT
    assert Image.open(paths[1]).getpixel((0, 0)) == (0, 0, 255)
    rows = _rows(folder)
    assert [(r["filename"], r["seed"], r["prompt"]) for r in rows] == [
        ("00000-77.png", "77", 'a cat, "quoted"'), ("00001-78.png", "78", 'a cat, "quoted"')]


def test_saving_again_never_overwrites_and_appends_to_the_log(tmp_path: Path) -> None:
    image = Image.new("RGB", (8, 8))
    first = save_to_log([(image, INFOTEXT)], tmp_path)
    second = save_to_log([(image, INFOTEXT)], tmp_path)
    assert first[0].name == "00000-77.png" and second[0].name == "00001-77.png" and first[0].exists()
    assert [r["filename"] for r in _rows(tmp_path)] == ["00000-77.png", "00001-77.png"]
    assert (tmp_path / "log.csv").read_text(encoding="utf-8").count("prompt,seed,") == 1  # one header
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_untrusted_seed_text_never_reaches_the_file_name(tmp_path: Path) -> None:
    hostile = "x\nSteps: 1, Sampler: Euler, Seed: ../../evil, Size: 8x8"
    (path,) = save_to_log([(Image.new("RGB", (8, 8)), hostile)], tmp_path / "out")
    assert path.parent == tmp_path / "out" and path.name == "00000-image.png"
    (plain,) = save_to_log([(Image.new("RGB", (8, 8)), "")], tmp_path / "out")
    assert plain.name == "00001-image.png" and "parameters" not in Image.open(plain).info


def test_an_older_log_layout_is_padded_and_a_foreign_one_kept_aside(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    (old / "log.csv").write_text("prompt,seed,width,height,sampler,cfgs,steps,filename,negative_prompt\n"
                                 "cat,1,8,8,Euler,7,20,00000-1.png,\n", encoding="utf-8")
    append_log_row(old, log_row(INFOTEXT, "00001-77.png"))
    rows = _rows(old)
    assert rows[0]["filename"] == "00000-1.png" and rows[0]["sd_model_hash"] == ""
    assert rows[1]["sd_model_hash"] == "abcdef1234"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "log.csv").write_text("when,what\nmonday,x\n", encoding="utf-8")
    append_log_row(foreign, log_row(INFOTEXT, "a.png"))
    assert (foreign / "log-1.csv").read_text(encoding="utf-8") == "when,what\nmonday,x\n"
    assert [r["filename"] for r in _rows(foreign)] == ["a.png"]
